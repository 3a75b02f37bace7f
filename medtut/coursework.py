"""Coursework on nbgrader: the book's chapters are nbgrader *source* notebooks.

    python -m medtut.coursework init COURSE_DIR            # lay out the course folder from book/
    cd COURSE_DIR
    nbgrader generate_assignment 00_getting_started        # the student release (release/...)
    nbgrader release_assignment 00_getting_started         # or hand out release/ yourself
    nbgrader autograde 00_getting_started                  # grade what students submitted
    python -m medtut.coursework selftest COURSE_DIR        # what CI runs: full marks and zero, as expected

Everything nbgrader needs lives in cell *metadata* of the book's notebooks, so the rendered book stays
clean:

- ``nbgrader`` (nbgrader's own schema): a solution cell (``solution: true``), an autograded test cell
  (``grade: true`` with ``points``) or a manually graded answer (a markdown ``solution`` + ``grade`` cell
  holding the model answer and its rubric);
- ``medtut.hidden_tests``: the hidden tests of a test cell, which exist only in the instructor source.

:func:`to_nbgrader_source` turns a book notebook into the course's source notebook: it wraps each solution
function's body (after its docstring) in nbgrader's ``### BEGIN/END SOLUTION`` markers, so the release keeps
signatures and docstrings; appends the hidden tests between ``### BEGIN/END HIDDEN TESTS``; drops the
book's ``{solution-start}``/``{solution-end}`` fences; and clears the outputs of the exercise cells (the
chapter's other outputs, from the full run, stay in the release for students to read).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_FENCE = re.compile(r"```\{solution-(start|end)\}[^\n]*\n(:[^\n]*\n)*```\n?")

NBGRADER_CONFIG = '''\
# nbgrader configuration of the medtut course, written by `python -m medtut.coursework init`.
c = get_config()
c.CourseDirectory.course_id = "medtut"
# Keep the chapter's full-run outputs in the release (students read the results without re-running);
# medtut.coursework has already cleared the outputs of the exercise cells.
c.ClearOutput.enabled = False
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
# A chapter re-runs in full while autograding: allow for its full budget (set MEDTUT_QUICK=1 for minutes).
c.Execute.timeout = 3600
'''


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercise_cells(nb) -> list:
    """The cells nbgrader grades or clears: solutions, autograded tests and manually graded answers."""
    return [c for c in nb.cells if _nbgrader(c).get("solution") or _nbgrader(c).get("grade")]


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def mark_solution(source: str) -> str:
    """Wrap a solution cell's answer in nbgrader's solution markers.

    A cell made only of function definitions (and imports) keeps each signature and docstring: the
    markers go around the body. Any other cell (a script, an experiment) is wrapped whole. A cell that
    already has markers is returned as it is.
    """
    if BEGIN_SOLUTION in source:
        return source
    tree = ast.parse(source)
    lines = source.splitlines()
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    only_defs = defs and all(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Import, ast.ImportFrom))
                             for n in tree.body)
    if not only_defs:
        return f"{BEGIN_SOLUTION}\n{source.rstrip()}\n{END_SOLUTION}\n"
    for node in reversed(defs):   # bottom-up, so earlier line numbers stay valid
        first = node.body[0]
        has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                   and isinstance(first.value.value, str))
        if has_doc and len(node.body) == 1:
            raise ValueError(f"solution function {node.name!r} has a docstring but no body to hide")
        body = node.body[1] if has_doc else first
        start, end = body.lineno - 1, node.end_lineno   # 0-based first body line, exclusive end
        indent = _indent_of(lines[start])
        lines[start:end] = [f"{indent}{BEGIN_SOLUTION}", *lines[start:end], f"{indent}{END_SOLUTION}"]
    return "\n".join(lines) + "\n"


def to_nbgrader_source(nb):
    """A book notebook (nbformat v4) → the course's nbgrader source notebook (a new object)."""
    nb = copy.deepcopy(nb)
    cells = []
    ids = set()
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if cell.cell_type == "markdown" and "{solution-" in cell.source:
            cell.source = _FENCE.sub("", cell.source).strip()
            if not cell.source and not meta:
                continue   # a bare fence cell: nothing left for a student
        if meta:
            gid = meta.get("grade_id")
            if not gid or gid in ids:
                raise ValueError(f"every nbgrader cell needs a unique grade_id; got {gid!r} twice or missing")
            ids.add(gid)
            if cell.cell_type == "code":
                if meta.get("solution"):
                    cell.source = mark_solution(cell.source)
                hidden = cell.metadata.get("medtut", {}).get("hidden_tests")
                if hidden:
                    if not meta.get("grade"):
                        raise ValueError(f"cell {gid!r} has hidden tests but is not an autograded test cell")
                    cell.source = f"{cell.source.rstrip()}\n{BEGIN_HIDDEN}\n{hidden.rstrip()}\n{END_HIDDEN}\n"
                cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("medtut", None)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("medtut", None)   # the execution stamp belongs to the book's copy
    return nb


def assignments(book_dir: Path) -> dict[str, Path]:
    """``{assignment id: notebook}`` for every chapter of ``book_dir`` with nbgrader exercise cells."""
    found = {}
    for path in sorted(Path(book_dir).glob("*/*.ipynb")):
        if exercise_cells(nbformat.read(path, as_version=4)):
            found[path.parent.name] = path
    return found


def init(course_dir: Path, book_dir: Path = Path("book"), chapters: list[str] | None = None) -> dict[str, Path]:
    """Lay out an nbgrader course folder: ``nbgrader_config.py`` and ``source/<chapter>/``.

    Each chapter folder is copied (data files the notebook reads come along) with its notebook converted
    by :func:`to_nbgrader_source`. Returns ``{assignment id: source notebook}``.
    """
    book_dir, course_dir = Path(book_dir), Path(course_dir)
    if not book_dir.is_dir():
        raise ValueError(f"book_dir {str(book_dir)!r} is not a folder: run from a clone of the medtut "
                         "repository or pass --book PATH/TO/book")
    available = assignments(book_dir)
    if not available:
        raise ValueError(f"no notebook under {book_dir} has nbgrader exercise cells")
    chosen = chapters or sorted(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"chapters {unknown} have no nbgrader exercises; choose from {sorted(available)}")
    course_dir.mkdir(parents=True, exist_ok=True)
    (course_dir / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    written = {}
    for name in chosen:
        src_nb = available[name]
        target = course_dir / "source" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src_nb.parent, target, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints",
                                                                            "__pycache__"))
        out = target / src_nb.name
        nbformat.write(to_nbgrader_source(nbformat.read(src_nb, as_version=4)), out)
        written[name] = out
    return written


def fill_in_solutions(release_nb, source_nb):
    """A submission made from the release with the instructor's answers put back (by grade_id)."""
    answers = {_nbgrader(c)["grade_id"]: c.source for c in source_nb.cells if _nbgrader(c).get("solution")}
    filled = copy.deepcopy(release_nb)
    for cell in filled.cells:
        gid = _nbgrader(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return filled


def _run_nbgrader(course_dir: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course_dir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def selftest(course_dir: Path, book_dir: Path = Path("book"), chapters: list[str] | None = None) -> dict:
    """Build the course, generate every release and autograde two submissions per chapter.

    ``solutions``: the release with the instructor's answers filled back in; ``released``: the release
    as it is. Returns ``{chapter: {"solutions": {grade_id: (score, max)}, "released": {...},
    "released_ran_to_end": bool, "manual": [grade ids needing a human]}}``.
    """
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir)
    sources = init(course_dir, book_dir, chapters)
    report = {}
    for name, src in sources.items():
        _run_nbgrader(course_dir, "generate_assignment", name)
        release = nbformat.read(course_dir / "release" / name / src.name, as_version=4)
        source = nbformat.read(src, as_version=4)
        for student, nb in {"solutions": fill_in_solutions(release, source), "released": release}.items():
            dest = course_dir / "submitted" / student / name
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / src.name)
        _run_nbgrader(course_dir, "autograde", name)
        entry = {"manual": []}
        with Gradebook(f"sqlite:///{(course_dir / 'gradebook.db').resolve()}") as gradebook:
            for student in ("solutions", "released"):
                submission = gradebook.find_submission(name, student)
                grades = {}
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        if grade.auto_score is None:   # a manually graded answer
                            if student == "solutions":
                                entry["manual"].append(grade.name)
                            continue
                        grades[grade.name] = (grade.auto_score, grade.max_score)
                entry[student] = grades
        graded = nbformat.read(course_dir / "autograded" / "released" / name / src.name, as_version=4)
        code = [c for c in graded.cells if c.cell_type == "code"]
        entry["released_ran_to_end"] = bool(code) and all(c.get("execution_count") for c in code)
        report[name] = entry
    return report


def visible_answers(source_nb) -> list[str]:
    """The instructor's answers in a source notebook: solution lines, hidden-test lines, model answers.

    Used to check that none of them is left in a visible cell of the release. Lines that also occur
    outside the answers (``t0 = time.perf_counter()``) are not answers and are left out.
    """
    found, elsewhere = [], []
    for cell in source_nb.cells:
        meta = _nbgrader(cell)
        text = cell.source
        regions = re.findall(rf"{BEGIN_SOLUTION}\n(.*?)\n\s*{END_SOLUTION}", text, re.S)
        regions += re.findall(rf"{BEGIN_HIDDEN}\n(.*?)\n{END_HIDDEN}", text, re.S)
        if cell.cell_type == "markdown" and meta.get("solution"):
            regions.append(text)
        else:
            outside = re.sub(rf"{BEGIN_SOLUTION}\n.*?{END_SOLUTION}", "", text, flags=re.S)
            elsewhere.append(re.sub(rf"{BEGIN_HIDDEN}\n.*?{END_HIDDEN}", "", outside, flags=re.S))
        for region in regions:
            for line in region.splitlines():
                line = line.strip()
                if len(line) >= 12 and not line.startswith("#"):
                    found.append(line)
    context = "\n".join(elsewhere)
    return [line for line in dict.fromkeys(found) if line not in context]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The book's chapters as an nbgrader course.")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in (("init", "lay out COURSE_DIR (nbgrader_config.py, source/<chapter>/)"),
                      ("selftest", "init, generate every release and autograde it with and without the "
                                   "solutions (what CI runs; set MEDTUT_QUICK=1 for minutes)")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("course_dir", type=Path)
        p.add_argument("--book", type=Path, default=Path("book"), help="the book's folder (default: ./book)")
        p.add_argument("--chapters", nargs="+", help="chapter folders, e.g. 00_getting_started (default: all)")
    args = parser.parse_args(argv)
    if args.command == "init":
        for name, path in init(args.course_dir, args.book, args.chapters).items():
            print(f"{name}: {path}")
        print(f"next: cd {args.course_dir} && nbgrader generate_assignment <chapter>")
        return 0
    report = selftest(args.course_dir, args.book, args.chapters)
    print(json.dumps(report, indent=1))
    ok = all(all(s == m for s, m in r["solutions"].values()) and all(s == 0 for s, _ in r["released"].values())
             and r["released_ran_to_end"] for r in report.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
