"""The HTML book for students: every exercise's solution hidden.

    python -m medtut.student html --out _build/student

The normal build with sphinx-exercise's ``hide_solutions: true``. Student *notebooks* (solutions
replaced by stubs, hidden tests removed) are nbgrader's job: see :mod:`medtut.coursework`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def student_config(root: Path) -> Path:
    """Write ``_build/_config_student.yml``: ``_config.yml`` with ``hide_solutions: true``."""
    config = (root / "_config.yml").read_text()
    if "hide_solutions: false" not in config:
        raise ValueError("_config.yml must contain 'hide_solutions: false' for the student build to flip")
    path = root / "_build" / "_config_student.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.replace("hide_solutions: false", "hide_solutions: true"))
    return path


def build_student_html(root: Path, out: Path) -> int:
    """Build the HTML book with every solution hidden; returns jupyter-book's exit status."""
    return subprocess.call(["jupyter-book", "build", str(root), "--config", str(student_config(root)),
                            "--path-output", str(out)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The HTML book without solutions (student notebooks: "
                                                 "python -m medtut.coursework).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_html = sub.add_parser("html", help="HTML book without solutions")
    p_html.add_argument("--root", type=Path, default=Path("."))
    p_html.add_argument("--out", type=Path, default=Path("_build/student"))
    args = parser.parse_args(argv)
    return build_student_html(args.root, args.out)


if __name__ == "__main__":
    sys.exit(main())
