"""medtut.execute: the code hash sees code changes and ignores outputs and prose."""
import nbformat

from medtut.execute import code_hash


def test_code_hash_tracks_code_only():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("x = 1")]
    h = code_hash(nb)
    nb.cells[0].source = "# another title"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    assert code_hash(nb) == h
    nb.cells[1].source = "x = 2"
    assert code_hash(nb) != h
