"""medtut.coursework: the chapters are nbgrader source notebooks; releases hide every answer and autograde.

These are the unit tests of the conversion and of the report. The end-to-end test is the instructor's
workflow, run once per chapter as that notebook's test item (conftest.py): build the course folder,
`nbgrader generate_assignment`, then `nbgrader autograde` on two submissions made from the release: the
solutions filled back in (full marks on every autograded cell) and the release as it is (zero on the
exercise cells, and the notebook still runs to its end in quick mode), plus the scan of the release for
instructor answers.
"""
import copy
from pathlib import Path

import nbformat
import pytest

from medtut import coursework as cw

BOOK = Path(__file__).resolve().parents[1] / "book"


def _cell(kind, source, nbgrader=None, **meta):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "locked": False, "grade": False, "solution": False,
                                     **nbgrader}
    cell.metadata.update(meta)
    return cell


def test_solution_markers_keep_signature_and_docstring():
    src = 'def f(x):\n    """Twice x."""\n    y = 2 * x\n    return y\n\n\ndef g():\n    return 1\n'
    marked = cw.mark_solution(src)
    assert marked.splitlines()[:3] == ["def f(x):", '    """Twice x."""', f"    {cw.BEGIN_SOLUTION}"]
    assert marked.count(cw.BEGIN_SOLUTION) == 2 and marked.count(cw.END_SOLUTION) == 2
    assert "def g():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION" in marked


def test_script_solution_is_wrapped_whole_and_markers_are_idempotent():
    src = "answer = {}\nfor k in range(3):\n    answer[k] = k\n"
    marked = cw.mark_solution(src)
    assert marked.startswith(cw.BEGIN_SOLUTION) and marked.rstrip().endswith(cw.END_SOLUTION)
    assert cw.mark_solution(marked) == marked
    with pytest.raises(ValueError, match="no body to hide"):
        cw.mark_solution('def f():\n    """only a docstring"""\n')


def test_source_notebook_strips_fences_appends_hidden_tests_and_clears_exercise_outputs():
    nb = nbformat.v4.new_notebook()
    shown = _cell("code", "print(1)")
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    solution = _cell("code", "def f(x):\n    return 2 * x\n", {"solution": True, "grade_id": "f-sol"})
    solution.outputs = [nbformat.v4.new_output("stream", name="stdout", text="leak\n")]
    tests = _cell("code", "assert f(0) == 0", {"grade": True, "locked": True, "points": 1, "grade_id": "f-test"},
                  medtut={"hidden_tests": "assert f(3) == 6"})
    nb.cells = [shown, _cell("markdown", "```{solution-start} ex\n:class: dropdown\n```\n"), solution,
                _cell("markdown", "```{solution-end}\n```\n"), tests]
    nb.metadata["medtut"] = {"code_sha256": "x"}
    out = cw.to_nbgrader_source(nb)
    assert len(out.cells) == 3, "the bare fence cells are dropped"
    assert out.cells[0].outputs and not out.cells[1].outputs and not out.cells[2].outputs
    assert f"{cw.BEGIN_HIDDEN}\nassert f(3) == 6\n{cw.END_HIDDEN}" in out.cells[2].source
    assert "medtut" not in out.metadata and "medtut" not in out.cells[2].metadata
    assert cw.visible_answers(out) == ["return 2 * x", "assert f(3) == 6"]
    nb.cells[4].metadata["nbgrader"]["grade_id"] = "f-sol"
    with pytest.raises(ValueError, match="unique grade_id"):
        cw.to_nbgrader_source(nb)


def test_init_refuses_a_missing_book(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        cw.init(tmp_path / "course", tmp_path / "no_book")


def test_every_exercise_cell_of_the_book_is_well_formed():
    chapters = cw.assignments(BOOK)
    assert "00_getting_started" in chapters
    for name, path in chapters.items():
        nb = nbformat.read(path, as_version=4)
        source = cw.to_nbgrader_source(nb)   # raises on duplicate or missing grade ids
        graded = [c for c in cw.exercise_cells(nb) if c.metadata["nbgrader"].get("grade")]
        assert graded and all(c.metadata["nbgrader"].get("points", 0) > 0 for c in graded), name
        assert cw.visible_answers(source), f"{name}: no solution region found"


def _executed(nb, outputs_by_cell):
    out = nbformat.v4.new_notebook()
    out.cells = [copy.deepcopy(c) for c in nb.cells]
    for i, outputs in outputs_by_cell.items():
        out.cells[i].outputs = outputs
    return out


def test_output_comparison_is_nbvals_on_marked_cells_only():
    stdout = lambda text: nbformat.v4.new_output("stream", name="stdout", text=text)
    figure = lambda data: nbformat.v4.new_output("display_data", data={"image/png": data, "text/plain": "<Figure>"})
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("code", "# NBVAL_CHECK_OUTPUT\nprint(True)"), _cell("markdown", "text"),
                _cell("code", "print(time.time())"), _cell("code", "# NBVAL_CHECK_OUTPUT\nplt.plot()")]
    nb.cells[0].outputs, nb.cells[2].outputs = [stdout("True\n")], [stdout("12.5\n")]
    nb.cells[3].outputs = [figure("AAAA")]
    same = _executed(nb, {2: [stdout("13.1\n")], 3: [figure("BBBB")]})   # unmarked text, figure bytes
    assert cw.output_mismatches(nb, same) == []
    changed = _executed(nb, {0: [stdout("False\n")]})
    assert cw.output_mismatches(nb, changed) == ["code cell 0 ('# NBVAL_CHECK_OUTPUT'...): outputs differ from the book's"]
    fewer = nbformat.v4.new_notebook()
    fewer.cells = nb.cells[:2]
    assert "code cells" in cw.output_mismatches(nb, fewer)[0]


def test_errors_and_chapter_report():
    error = nbformat.v4.new_output("error", ename="NameError", evalue="x", traceback=[])
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("code", "x"), _cell("code", "raise NotImplementedError()", {"solution": True, "grade_id": "s"})]
    nb.cells[0].outputs, nb.cells[1].outputs = [error], [error]
    assert len(cw._errors(nb, skip_exercises=False)) == 2
    assert cw._errors(nb, skip_exercises=True) == ["cell 0: NameError: x"]
    good = {"solutions": {"t": (2.0, 2.0)}, "released": {"t": (0.0, 2.0)}, "released_ran_to_end": True,
            "errors": {"solutions": [], "released": []}, "output_mismatches": [], "leaked": []}
    assert cw.chapter_ok(good) == []
    bad = {**good, "solutions": {"t": (1.0, 2.0)}, "released": {"t": (2.0, 2.0)}, "leaked": ["return 2 * x"]}
    problems = cw.chapter_ok(bad)
    assert any("1.0 of 2.0 with the solutions" in p for p in problems)
    assert any("with nothing filled in" in p for p in problems)
    assert any("instructor answer" in p for p in problems)


# The end-to-end check (generate_assignment, autograde with the solutions and as released, nbval's output
# comparison, the leak scan) runs once per chapter as the notebook's own test item: see conftest.py.


def _feedback_params():
    params = []
    for name, path in sorted(cw.assignments(BOOK).items()):
        for case in cw.feedback_cases(nbformat.read(path, as_version=4)):
            params.append(pytest.param(case, id=f"{name}:{case['grade_id']}"))
    return params


def _run(setup, solution, tests):
    namespace = {"__name__": "__exercise__", "display": print}
    exec(compile(setup, "<setup>", "exec"), namespace)
    exec(compile(solution, "<solution>", "exec"), namespace)
    exec(compile(tests, "<tests>", "exec"), namespace)


@pytest.mark.parametrize("case", _feedback_params())
def test_feedback_passes_the_reference_and_names_what_a_wrong_answer_gets_wrong(case, capsys):
    """medtut.checks both ways, per implement exercise: the reference solution passes the visible and
    hidden tests; each plausible wrong answer fails with feedback that names what differs."""
    from medtut.checks import CheckFailed

    _run(case["setup"], case["solution"], case["tests"])
    for wrong in case["wrong_answers"]:
        with pytest.raises(CheckFailed) as failure:
            _run(case["setup"], wrong["source"], case["tests"])
        assert wrong["message"] in str(failure.value), (
            f"{wrong['what']}: the feedback {str(failure.value)!r} does not say {wrong['message']!r}")


def test_every_chapter_is_a_course_with_three_graded_exercises():
    import re

    chapters = cw.assignments(BOOK)
    assert len(chapters) == len(list(BOOK.glob("*/*.ipynb"))), "every chapter is an nbgrader source"
    kinds_seen, letters = {}, []
    for name, path in chapters.items():
        nb = nbformat.read(path, as_version=4)
        titles = re.findall(r":::\{exercise\}[^\n]*\((implement|experiment|open question), about (\d+) minutes, "
                            r"(\d+) points?\)", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
        kinds = [t[0] for t in titles]
        assert len(titles) >= 3 and {"implement", "experiment", "open question"} <= set(kinds), (name, kinds)
        kinds_seen[name] = kinds
        manual = [c for c in cw.exercise_cells(nb) if c.cell_type == "markdown"]
        assert manual and all("Rubric" in c.source for c in manual), f"{name}: a manual answer without a rubric"
        hidden = [c for c in cw.exercise_cells(nb) if c.metadata.get("medtut", {}).get("hidden_tests")]
        assert hidden, f"{name}: no hidden tests"
        letters += re.findall(r"check_choice\(\s*\w+\s*,\s*\"([a-dA-D])\"",
                              "\n".join(c.metadata.get("medtut", {}).get("hidden_tests", "") for c in nb.cells))
    assert len({letter.lower() for letter in letters}) >= min(3, len(letters)), f"choice answers {letters}"


def test_stream_chunks_compare_as_one_text():
    chunk = lambda text: nbformat.v4.new_output("stream", name="stdout", text=text)
    assert cw._flatten_outputs([chunk("a\n"), chunk("b\n")]) == cw._flatten_outputs([chunk("a\nb\n")])
    assert cw._flatten_outputs([chunk("a\n")]) != cw._flatten_outputs([chunk("b\n")])
