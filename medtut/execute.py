"""Execute a notebook in place and stamp where its outputs came from.

    python -m medtut.execute book/00_getting_started/getting_started.ipynb [more.ipynb ...] [--quick]

Runs every cell in a fresh ``python3`` kernel (full mode unless ``--quick``), writes the outputs back
and records under ``metadata["medtut"]``: the medtut and torch versions, the quick flag, the device,
the wall time in total and per code cell, and a hash of the code cells. ``tests/test_notebooks.py``
fails when a committed notebook was run in quick mode, lacks outputs, or its code changed after the
stamp (stale outputs).
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


def code_hash(nb) -> str:
    """sha256 over the code cells' sources (outputs and markdown do not count)."""
    h = hashlib.sha256()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            h.update(src.strip().encode())
            h.update(b"\x00")
    return h.hexdigest()


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
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    nb["metadata"][STAMP_KEY] = stamp
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return stamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="notebooks to execute in place")
    parser.add_argument("--quick", action="store_true", help="run in quick mode (not for committing)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    for nb_path in args.notebooks:
        stamp = execute_notebook(nb_path, quick=args.quick, timeout=args.timeout)
        print(f"{nb_path}: {stamp['wall_time_s']:.1f} s on {stamp['device']} "
              f"({'quick' if stamp['quick'] else 'full'} mode)")
        print(json.dumps({k: v for k, v in stamp.items() if k != "cell_seconds"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
