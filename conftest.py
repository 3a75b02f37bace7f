"""pytest set-up shared by the unit tests and the notebook run (nbval).

* Quick mode is the default under pytest: ``MEDTUT_QUICK=1`` unless the caller set it, so the bare
  ``pytest`` command is the CI command. Notebook kernels inherit this environment.
* A chapter with nbgrader exercises is run as a course (``medtut.coursework.check_chapter``) instead of
  by nbval: ``nbgrader generate_assignment``, then ``nbgrader autograde`` of two submissions made from
  the release: the instructor's solutions filled back in (full marks on every autograded cell, no cell
  raising, and nbval-lax's comparison of the ``# NBVAL_CHECK_OUTPUT`` cells with the book) and the release
  as it is (zero on the exercises, every other cell runs). The solutions run executes everything nbval
  would, so the chapter runs twice in quick mode, not three times.
* After the run, a table of seconds per notebook is printed, so CI keeps an honest record of the
  quick-mode budget (<= 180 s per run of a notebook on 2 CPU cores).
"""
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("MEDTUT_QUICK", "1")
# Figures render inline in notebook kernels; never force a non-interactive backend here (it would drop
# figures from the outputs). The unit tests use Agg through matplotlib's default on a headless machine.

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_COURSE_SECONDS: dict[str, dict] = {}
_NOTEBOOK_FAILED: set[str] = set()
QUICK_BUDGET_S = 180.0


def _has_nbgrader_cells(path: Path) -> bool:
    import nbformat

    try:
        from medtut.coursework import exercise_cells
    except ImportError:   # nbgrader's extra is not installed: nbval runs the notebook
        return False
    return bool(exercise_cells(nbformat.read(path, as_version=4)))


class CourseworkNotebook(pytest.File):
    def collect(self):
        yield CourseworkItem.from_parent(self, name="nbgrader")


class CourseworkItem(pytest.Item):
    """A chapter run as an nbgrader course (see the module docstring)."""

    def runtest(self):
        from medtut import coursework

        path = Path(self.path)
        with tempfile.TemporaryDirectory(prefix="medtut-course-") as course:
            self.entry = coursework.check_chapter(Path(course), path.parents[1], path.parent.name)
        self.user_properties.append(("course_seconds", self.entry["seconds"]))
        problems = coursework.chapter_ok(self.entry)
        if problems:
            raise AssertionError(f"{path.parent.name}: " + "\n".join(problems))

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, 0, f"nbgrader course: {self.path.name}"


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    collectors = yield
    if file_path.suffix == ".ipynb" and collectors and _has_nbgrader_cells(file_path):
        collectors = [c for c in collectors if type(c).__name__ != "IPyNbFile"]
        collectors.append(CourseworkNotebook.from_parent(parent, path=file_path))
    return collectors


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration
        for key, value in report.user_properties:
            if key == "course_seconds":
                _COURSE_SECONDS[path] = value
        if report.failed:
            _NOTEBOOK_FAILED.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    tr = terminalreporter
    tr.section("seconds per notebook (quick mode)" if os.environ.get("MEDTUT_QUICK") == "1"
               else "seconds per notebook")
    tr.write_line("(an nbgrader chapter runs twice: 'solutions' also does nbval's checks, 'released' is the release "
                  "as handed out; the total includes generate_assignment)")
    tr.write_line(f"{'notebook':60s} {'solutions':>9s} {'released':>9s} {'total':>8s}  status")
    for path, secs in sorted(_NOTEBOOK_SECONDS.items()):
        status = "FAILED" if path in _NOTEBOOK_FAILED else "ok"
        runs = _COURSE_SECONDS.get(path, {})
        per_run = [runs[k] for k in ("solutions", "released") if k in runs] or [secs]
        if max(per_run) > QUICK_BUDGET_S and os.environ.get("MEDTUT_QUICK") == "1":
            status += f" (over the {QUICK_BUDGET_S:.0f} s quick budget)"
        sol = f"{runs['solutions']:9.1f}" if "solutions" in runs else f"{'(nbval)':>9s}"
        rel = f"{runs['released']:9.1f}" if "released" in runs else f"{'-':>9s}"
        tr.write_line(f"{path:60s} {sol} {rel} {secs:8.1f}  {status}")
    tr.write_line(f"{'total':60s} {'':9s} {'':9s} {sum(_NOTEBOOK_SECONDS.values()):8.1f}")
