"""Single-source coursework: make the student version of the book from the instructor's.

    python -m medtut.student notebooks book/ --out student/   # notebooks with solution stubs
    python -m medtut.student html                               # HTML book without solutions

In the instructor's notebooks every exercise's solution lives in code cells tagged ``solution``
(inside a hidden ``{solution-start}``/``{solution-end}`` block). The student notebooks keep each
solution function's signature and docstring and replace its body with ``raise NotImplementedError``;
other top-level assignments in a solution cell become ``name = None``. Outputs are cleared, so the
autograder cells (``medtut.checks.check``) report "not implemented yet" until the student's code works.
The HTML student book is the normal build with sphinx-exercise's ``hide_solutions: true``.
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

SOLUTION_TAG = "solution"
STUB = 'raise NotImplementedError("Exercise: write your solution here")'


def stub_source(source: str) -> str:
    """Replace function bodies by a ``NotImplementedError`` stub and assigned values by ``None``."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body_start = node.body[0]
            keep_docstring = (isinstance(body_start, ast.Expr) and isinstance(body_start.value, ast.Constant)
                              and isinstance(body_start.value.value, str))
            first_body = node.body[1] if keep_docstring and len(node.body) > 1 else (
                None if keep_docstring else body_start)
            header_end = (first_body.lineno - 1) if first_body is not None else node.end_lineno
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            out.extend(lines[start:header_end])
            indent = " " * (body_start.col_offset)
            out.append(f"{indent}{STUB}")
            out.append("")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = ", ".join(ast.unparse(t) for t in targets)
            out.append(f"{names} = None  # your answer")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
    return "\n".join(out).rstrip() + "\n"


def make_student_notebook(src: Path, dst: Path) -> int:
    """Write the student copy of one notebook; return the number of stubbed cells."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = stub_source(cell.source)
            count += 1
    nb.metadata.pop("medtut", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return count


def build_student_html(root: Path, out: Path) -> int:
    """Build the HTML book with every solution hidden (``hide_solutions: true``)."""
    config = (root / "_config.yml").read_text()
    if "hide_solutions: false" not in config:
        raise ValueError("_config.yml must contain 'hide_solutions: false' for the student build to flip")
    student_config = root / "_build" / "_config_student.yml"
    student_config.parent.mkdir(parents=True, exist_ok=True)
    student_config.write_text(config.replace("hide_solutions: false", "hide_solutions: true"))
    return subprocess.call(["jupyter-book", "build", str(root), "--config", str(student_config),
                            "--path-output", str(out)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the student version of the book.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_nb = sub.add_parser("notebooks", help="student notebooks with solution stubs")
    p_nb.add_argument("source", type=Path, help="folder of instructor notebooks (e.g. book/)")
    p_nb.add_argument("--out", type=Path, default=Path("student"))
    p_html = sub.add_parser("html", help="HTML book without solutions")
    p_html.add_argument("--root", type=Path, default=Path("."))
    p_html.add_argument("--out", type=Path, default=Path("_build/student"))
    args = parser.parse_args(argv)
    if args.command == "notebooks":
        for src in sorted(args.source.glob("**/*.ipynb")):
            if ".ipynb_checkpoints" in src.parts:
                continue
            dst = args.out / src.relative_to(args.source)
            print(f"{dst}: {make_student_notebook(src, dst)} solution cell(s) stubbed")
        return 0
    return build_student_html(args.root, args.out)


if __name__ == "__main__":
    sys.exit(main())
