"""medtut.student: solution cells become stubs that the autograder reports as not implemented."""
import nbformat
import pytest
import torch

from medtut.checks import CheckFailed, check
from medtut.student import make_student_notebook, stub_source

SOLUTION = '''import torch

def double(x: torch.Tensor) -> torch.Tensor:
    """Twice x."""
    y = x * 2
    return y

answer = "b"
'''


def test_stub_keeps_signature_and_docstring():
    stub = stub_source(SOLUTION)
    assert 'def double(x: torch.Tensor) -> torch.Tensor:' in stub and '"""Twice x."""' in stub
    assert "x * 2" not in stub and "NotImplementedError" in stub and "answer = None" in stub
    namespace: dict = {}
    exec(stub, namespace)
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check(namespace["double"], lambda x: 2 * x, inputs=[(torch.ones(2),)])


def test_student_notebook_clears_outputs_and_stubs_solutions(tmp_path):
    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_code_cell(SOLUTION, metadata={"tags": ["solution"]})
    sol.outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells = [nbformat.v4.new_code_cell("print(1)"), sol]
    nb.metadata["medtut"] = {"quick": False}
    src, dst = tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb"
    nbformat.write(nb, src)
    assert make_student_notebook(src, dst) == 1
    out = nbformat.read(dst, as_version=4)
    assert "NotImplementedError" in out.cells[1].source and out.cells[1].outputs == []
    assert out.cells[0].source == "print(1)" and "medtut" not in out.metadata
