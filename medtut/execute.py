"""Execute a notebook in place and stamp where its outputs came from.

    python -m medtut.execute book/00_getting_started/getting_started.ipynb [more.ipynb ...] [--quick]

Runs every cell in a fresh ``python3`` kernel (full mode unless ``--quick``), writes the outputs back
and records under ``metadata["medtut"]``: the medtut and torch versions, the quick flag, the device,
the wall time in total and per code cell, a hash of the code cells, and a hash of every source file of
the ``medtut`` package as it was when the run started. ``tests/test_notebooks.py`` fails when a committed
notebook was run in quick mode, lacks outputs, or its code, its chapter module or its data module changed
after the stamp (stale outputs).

    python -m medtut.execute --stale

lists every notebook whose outputs may be out of date, and why: its code cells, a medtut module it
imports, or the shared core (``config``, ``train``, ``metrics``...) changed since it was executed. A core
change does not fail the tests (it would force every chapter to re-run for a typo), but ``--stale`` says
what to re-run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

STAMP_KEY = "medtut"


INSTALL_TAG = "colab-install"
INSTALL_MARKER = "# Colab set-up"


def is_install_cell(cell) -> bool:
    """The Colab install cell: tagged ``colab-install`` (its first line is ``# Colab set-up``).

    It names the repository address and release, which ``python -m medtut.release`` rewrites; it is left
    out of :func:`code_hash`, so publishing under a new address does not make the outputs stale.
    """
    if cell["cell_type"] != "code":
        return False
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return INSTALL_TAG in cell.get("metadata", {}).get("tags", []) or src.lstrip().startswith(INSTALL_MARKER)


def code_hash(nb) -> str:
    """sha256 over the code cells' sources (outputs, markdown and the Colab install cell do not count)."""
    h = hashlib.sha256()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and not is_install_cell(cell):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            h.update(src.strip().encode())
            h.update(b"\x00")
    return h.hexdigest()


PACKAGE_ROOT = Path(__file__).resolve().parent
# Modules every chapter shares; a change here is reported by --stale but does not fail the stamp test.
CORE_MODULES = frozenset({"medtut/__init__.py", "medtut/config.py", "medtut/train.py", "medtut/metrics.py",
                          "medtut/viz.py", "medtut/widgets.py", "medtut/checks.py", "medtut/execute.py",
                          "medtut/student.py", "medtut/colab.py", "medtut/release.py",
                          "medtut/data/__init__.py", "medtut/data/imaging.py"})


def source_hashes() -> dict[str, str]:
    """``{"medtut/<file>.py": sha256}`` for every source file of the package, as it is now."""
    hashes = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = "medtut/" + path.relative_to(PACKAGE_ROOT).as_posix()
        hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _code_text(nb) -> str:
    """The code the notebook's results depend on (the Colab install cell does not count)."""
    return "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                     for c in nb["cells"] if c["cell_type"] == "code" and not is_install_cell(c))


def imported_modules(nb) -> list[str]:
    """The non-core medtut source files a notebook's code imports (its chapter and data modules).

    Recognises ``import medtut.x``, ``import medtut.x.y as z``, ``from medtut.x import ...``,
    ``from medtut.data.x import ...`` and ``from medtut import x, y``.
    """
    import re

    code = _code_text(nb)
    names = set()
    for m in re.finditer(r"^\s*import\s+medtut((?:\.\w+)+)", code, re.M):
        names.add(m.group(1).lstrip("."))
    for m in re.finditer(r"^\s*from\s+medtut((?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n#]+)", code, re.M):
        package = m.group(1).lstrip(".")
        if package:
            names.add(package)
        for item in m.group(2).strip("()").split(","):
            item = item.strip().split(" as ")[0].strip()
            if item:
                names.add(f"{package}.{item}" if package else item)
    files = set()
    for name in names:
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            candidate = PACKAGE_ROOT.joinpath(*parts[:k]).with_suffix(".py")
            if candidate.is_file():
                files.add("medtut/" + candidate.relative_to(PACKAGE_ROOT).as_posix())
                break
    return sorted(files - CORE_MODULES)


def staleness(path: str | os.PathLike, nb=None) -> dict[str, list[str]]:
    """Why the stamped outputs of ``path`` may be out of date: ``{"code": [...], "module": [...],
    "core": [...]}`` (each empty when that part is unchanged). ``"module"`` lists the notebook's own
    chapter and data modules that changed; ``"core"`` the shared modules that changed."""
    import nbformat

    nb = nb if nb is not None else nbformat.read(Path(path), as_version=4)
    stamp = nb["metadata"].get(STAMP_KEY) or {}
    recorded = stamp.get("source_sha256") or {}
    current = source_hashes()
    out = {"code": [], "module": [], "core": []}
    if stamp.get("code_sha256") != code_hash(nb):
        out["code"].append("code cells changed")
    for rel in imported_modules(nb):
        if recorded.get(rel) != current.get(rel):
            out["module"].append(rel if rel in recorded else f"{rel} (not in the stamp)")
    for rel in sorted(CORE_MODULES):
        if recorded.get(rel) != current.get(rel):
            out["core"].append(rel)
    return out


def _cell_seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    parse = lambda s: _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(end) - parse(start)).total_seconds(), 3)


def execute_notebook(path: str | os.PathLike, quick: bool = False, timeout: int = 7200) -> dict:
    """Run ``path`` in place and return the stamp written into its metadata."""
    import nbformat
    from nbclient import NotebookClient

    import medtut

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    sources = source_hashes()     # the code the run starts with (an edit during the run makes it stale)
    env_backup = os.environ.get("MEDTUT_QUICK")
    os.environ["MEDTUT_QUICK"] = "1" if quick else "0"
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}, record_timing=True)
        t0 = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - t0
    finally:
        if env_backup is None:
            os.environ.pop("MEDTUT_QUICK", None)
        else:
            os.environ["MEDTUT_QUICK"] = env_backup
    env = medtut.describe_environment()
    env["quick"] = quick
    stamp = {
        "medtut_version": medtut.__version__,
        "quick": quick,
        "device": env["device"],
        "gpu": env.get("gpu"),
        "torch": env["torch"],
        "threads": env["threads"],
        "cpu_count": os.cpu_count(),
        "wall_time_s": round(wall, 1),
        "cell_seconds": [_cell_seconds(c) for c in nb["cells"] if c["cell_type"] == "code"],
        "code_sha256": code_hash(nb),
        "source_sha256": sources,
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    nb["metadata"][STAMP_KEY] = stamp
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return stamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to execute in place")
    parser.add_argument("--quick", action="store_true", help="run in quick mode (not for committing)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds allowed per cell")
    parser.add_argument("--stale", action="store_true",
                        help="list the notebooks (default: every one under book/) whose outputs may be stale")
    args = parser.parse_args(argv)
    if args.stale:
        paths = args.notebooks or sorted(str(p) for p in Path("book").glob("**/*.ipynb")
                                         if ".ipynb_checkpoints" not in p.parts)
        any_stale = False
        for nb_path in paths:
            reasons = staleness(nb_path)
            if any(reasons.values()):
                any_stale = True
                why = "; ".join(f"{kind}: {', '.join(items)}" for kind, items in reasons.items() if items)
                print(f"{nb_path}: re-run ({why})")
        if not any_stale:
            print("every notebook's outputs match its code, its modules and the core")
        return 1 if any_stale else 0
    if not args.notebooks:
        parser.error("name the notebooks to execute (or pass --stale)")
    for nb_path in args.notebooks:
        stamp = execute_notebook(nb_path, quick=args.quick, timeout=args.timeout)
        print(f"{nb_path}: {stamp['wall_time_s']:.1f} s on {stamp['device']} "
              f"({'quick' if stamp['quick'] else 'full'} mode)")
        print(json.dumps({k: v for k, v in stamp.items() if k not in ("cell_seconds", "source_sha256")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
