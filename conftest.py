"""pytest set-up shared by the unit tests and the notebook run (nbval).

* Quick mode is the default under pytest: ``MEDTUT_QUICK=1`` unless the caller set it, so the bare
  ``pytest`` command is the CI command. Notebook kernels inherit this environment.
* After the run, a table of seconds per notebook (summed over its cells) is printed, so CI keeps an
  honest record of the quick-mode budget (<= 180 s each on 2 CPU cores).
"""
import os
from collections import defaultdict

os.environ.setdefault("MEDTUT_QUICK", "1")
# Figures render inline in notebook kernels; never force a non-interactive backend here (it would drop
# figures from the outputs). The unit tests use Agg through matplotlib's default on a headless machine.

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_FAILED: set[str] = set()
QUICK_BUDGET_S = 180.0


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration
        if report.failed:
            _NOTEBOOK_FAILED.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    tr = terminalreporter
    tr.section("seconds per notebook (quick mode)" if os.environ.get("MEDTUT_QUICK") == "1"
               else "seconds per notebook")
    tr.write_line(f"{'notebook':64s} {'seconds':>8s}  status")
    for path, secs in sorted(_NOTEBOOK_SECONDS.items()):
        status = "FAILED" if path in _NOTEBOOK_FAILED else "ok"
        if secs > QUICK_BUDGET_S and os.environ.get("MEDTUT_QUICK") == "1":
            status += f" (over the {QUICK_BUDGET_S:.0f} s quick budget)"
        tr.write_line(f"{path:64s} {secs:8.1f}  {status}")
    tr.write_line(f"{'total':64s} {sum(_NOTEBOOK_SECONDS.values()):8.1f}")
