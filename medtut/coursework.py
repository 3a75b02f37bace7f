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
import time
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


# What nbval --nbval-lax compares in a `# NBVAL_CHECK_OUTPUT` cell: every output field except these.
_NBVAL_SKIP = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
               "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


def _flatten_outputs(outputs) -> dict:
    """nbval's view of a cell's outputs: {stream name or MIME type or field: [values in order]}."""
    flat: dict = {}
    for out in outputs:
        if out.get("output_type") == "stream":   # a stream's text, however the kernel chunked it
            flat[out["name"]] = [flat.get(out["name"], [""])[0] + out["text"]]
            continue
        for key, value in out.items():
            if key == "data":
                for mime, data in value.items():
                    if mime not in _NBVAL_SKIP:
                        flat.setdefault(mime, []).append(data)
            elif key not in _NBVAL_SKIP:
                flat.setdefault(key, []).append(value)
    return flat


def _errors(nb, skip_exercises: bool) -> list[str]:
    """Cells of an executed notebook that raised (exercise cells left out when ``skip_exercises``)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or (skip_exercises and (_nbgrader(cell).get("solution") or _nbgrader(cell).get("grade"))):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {str(out.get('evalue'))[:200]}")
    return found


def output_mismatches(book_nb, executed_nb) -> list[str]:
    """The ``# NBVAL_CHECK_OUTPUT`` cells whose outputs differ between the book and an executed copy.

    The same comparison as ``nbval --nbval-lax``: only marked cells, figures and widget ids ignored.
    Code cells are matched in order (the course's source notebook keeps every code cell of the book).
    """
    book_code = [c for c in book_nb.cells if c.cell_type == "code"]
    run_code = [c for c in executed_nb.cells if c.cell_type == "code"]
    if len(book_code) != len(run_code):
        return [f"the executed notebook has {len(run_code)} code cells, the book {len(book_code)}"]
    bad = []
    for i, (ref, run) in enumerate(zip(book_code, run_code)):
        if "# NBVAL_CHECK_OUTPUT" in ref.source and _flatten_outputs(ref.outputs) != _flatten_outputs(run.outputs):
            bad.append(f"code cell {i} ({ref.source.splitlines()[0][:60]!r}...): outputs differ from the book's")
    return bad


def check_chapter(course_dir: Path, book_dir: Path, name: str) -> dict:
    """The instructor's workflow on one chapter, and what CI asserts about it.

    Lays out ``course_dir`` for chapter ``name`` (:func:`init`), runs ``nbgrader generate_assignment``,
    then ``nbgrader autograde`` on two submissions made from the release: ``solutions`` (the instructor's
    answers filled back in) and ``released`` (the release as it is). Returns a report: the grades of each
    (``{grade_id: (score, max)}``), the manually graded ids, the seconds of each autograde run, the cells
    that raised (any cell with the solutions; non-exercise cells as released), the ``# NBVAL_CHECK_OUTPUT``
    cells whose outputs differ from the book's (the nbval-lax comparison, on the solutions run), and the
    instructor answers visible in the release.
    """
    from nbgrader.api import Gradebook

    course_dir, book_dir = Path(course_dir), Path(book_dir)
    src = init(course_dir, book_dir, [name])[name]
    book_nb = nbformat.read(book_dir / name / src.name, as_version=4)
    _run_nbgrader(course_dir, "generate_assignment", name)
    release = nbformat.read(course_dir / "release" / name / src.name, as_version=4)
    source = nbformat.read(src, as_version=4)
    entry: dict = {"manual": [], "seconds": {}}
    for student, nb in {"solutions": fill_in_solutions(release, source), "released": release}.items():
        dest = course_dir / "submitted" / student / name
        dest.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / src.name)
        t0 = time.perf_counter()
        _run_nbgrader(course_dir, "autograde", name, "--student", student)
        entry["seconds"][student] = round(time.perf_counter() - t0, 1)
    with Gradebook(f"sqlite:///{(course_dir / 'gradebook.db').resolve()}") as gradebook:
        for student in ("solutions", "released"):
            grades = {}
            for notebook in gradebook.find_submission(name, student).notebooks:
                for grade in notebook.grades:
                    if grade.auto_score is None:   # a manually graded answer
                        if student == "solutions":
                            entry["manual"].append(grade.name)
                        continue
                    grades[grade.name] = (grade.auto_score, grade.max_score)
            entry[student] = grades
    graded = {s: nbformat.read(course_dir / "autograded" / s / name / src.name, as_version=4)
              for s in ("solutions", "released")}
    code = [c for c in graded["released"].cells if c.cell_type == "code"]
    entry["released_ran_to_end"] = bool(code) and all(c.get("execution_count") for c in code)
    entry["errors"] = {"solutions": _errors(graded["solutions"], skip_exercises=False),
                       "released": _errors(graded["released"], skip_exercises=True)}
    entry["output_mismatches"] = output_mismatches(book_nb, graded["solutions"])
    text = "\n".join(c.source + "".join(str(o) for o in c.get("outputs", [])) for c in release.cells)
    entry["leaked"] = [a for a in visible_answers(source) if a in text]
    return entry


def chapter_ok(entry: dict) -> list[str]:
    """What is wrong with a :func:`check_chapter` report (an empty list when the chapter passes)."""
    problems = []
    if not entry.get("solutions"):
        problems.append("no autograded cell")
    problems += [f"{gid} scored {s} of {m} with the solutions" for gid, (s, m) in entry.get("solutions", {}).items()
                 if not s == m > 0]
    problems += [f"{gid} scored {s} with nothing filled in" for gid, (s, _) in entry.get("released", {}).items()
                 if s != 0]
    if not entry.get("released_ran_to_end"):
        problems.append("the released notebook did not run to its end")
    problems += [f"with the solutions, {e}" for e in entry["errors"]["solutions"]]
    problems += [f"as released, outside the exercises, {e}" for e in entry["errors"]["released"]]
    problems += entry["output_mismatches"]
    problems += [f"the release shows an instructor answer: {a!r}" for a in entry["leaked"]]
    return problems


def selftest(course_dir: Path, book_dir: Path = Path("book"), chapters: list[str] | None = None) -> dict:
    """:func:`check_chapter` on every chapter with nbgrader exercises (or ``chapters``), in one course."""
    chosen = chapters or sorted(assignments(book_dir))
    return {name: check_chapter(course_dir, book_dir, name) for name in chosen}


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


def feedback_cases(nb) -> list[dict]:
    """The implement exercises whose feedback is tested both ways, from cell metadata.

    A solution cell may carry ``metadata.medtut.wrong_answers``: a list of ``{"what": ..., "source": ...,
    "message": ...}``, plausible wrong solutions (a sign error, a missing normalisation, a wrong axis) and
    a fragment of the feedback each must produce. Returns, per such cell, ``{"grade_id", "setup",
    "solution", "tests", "wrong_answers"}``: ``setup`` is the notebook's import cell (the first code cell
    that imports medtut, the Colab set-up cell aside) plus the cell's optional ``metadata.medtut.setup``; ``tests`` the next autograded
    test cell with its hidden tests. ``tests/test_coursework.py`` runs the reference solution (it must
    pass) and every wrong answer (it must fail, naming what differs) without executing the chapter.
    """
    imports = next((c.source for c in nb.cells if c.cell_type == "code" and "import medtut" in c.source
                    and "colab-install" not in c.get("metadata", {}).get("tags", []) and "%pip" not in c.source), "")
    found = []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("medtut", {})
        if cell.cell_type != "code" or not meta.get("wrong_answers"):
            continue
        test = next((c for c in nb.cells[i + 1:] if c.cell_type == "code" and _nbgrader(c).get("grade")), None)
        if test is None or not _nbgrader(cell).get("solution"):
            raise ValueError(f"cell {i}: wrong_answers belong on a solution cell followed by an autograded test cell")
        hidden = test.get("metadata", {}).get("medtut", {}).get("hidden_tests", "")
        found.append({"grade_id": _nbgrader(cell).get("grade_id"), "setup": imports + "\n" + meta.get("setup", ""),
                      "solution": cell.source, "tests": test.source + "\n" + hidden,
                      "wrong_answers": meta["wrong_answers"]})
    return found


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
    problems = {name: chapter_ok(entry) for name, entry in report.items()}
    for name, found in problems.items():
        print(f"{name}: " + ("ok" if not found else "; ".join(found)))
    return 0 if not any(problems.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
