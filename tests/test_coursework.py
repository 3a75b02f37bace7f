"""medtut.coursework: the chapters are nbgrader source notebooks; releases hide every answer and autograde.

The end-to-end test is the instructor's workflow on every chapter that has nbgrader exercises: build the
course folder, `nbgrader generate_assignment`, then `nbgrader autograde` on two submissions made from the
release: the solutions filled back in (full marks on every autograded cell) and the release as it is (zero
on the exercise cells, and the notebook still runs to its end in quick mode).
"""
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


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    pytest.importorskip("nbgrader")
    course_dir = tmp_path_factory.mktemp("course")
    return course_dir, cw.selftest(course_dir, BOOK)


def test_autograde_gives_full_marks_with_solutions_and_zero_as_released(course):
    _, report = course
    for name, entry in report.items():
        assert entry["solutions"], f"{name}: no autograded cell"
        for gid, (score, max_score) in entry["solutions"].items():
            assert score == max_score > 0, f"{name}: {gid} scored {score} of {max_score} with the solutions"
        for gid, (score, _) in entry["released"].items():
            assert score == 0, f"{name}: {gid} scored {score} with nothing filled in"
        assert entry["released_ran_to_end"], f"{name}: the released notebook did not run to its end"


def test_no_visible_cell_of_a_release_holds_an_instructor_answer(course):
    course_dir, report = course
    for name in report:
        src_path = next((course_dir / "source" / name).glob("*.ipynb"))
        answers = cw.visible_answers(nbformat.read(src_path, as_version=4))
        release = nbformat.read(course_dir / "release" / name / src_path.name, as_version=4)
        text = "\n".join(c.source + "".join(str(o) for o in c.get("outputs", [])) for c in release.cells)
        leaked = [a for a in answers if a in text]
        assert not leaked, f"{name}: the release shows instructor answers: {leaked[:3]}"
