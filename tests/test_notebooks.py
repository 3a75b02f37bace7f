"""The notebook contract: every chapter notebook is listed, switchable, device-agnostic, and carries
the outputs of a full run of its current code (checked through the stamp of `python -m medtut.execute`)."""
import json
import re
from pathlib import Path

import pytest

from medtut.execute import STAMP_KEY, code_hash

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
TOC = (ROOT / "_toc.yml").read_text()


def _load(path):
    return json.loads(path.read_text())


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _src(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def test_book_has_notebooks():
    assert NOTEBOOKS, "no notebooks under book/"


def test_every_toc_entry_exists():
    for entry in re.findall(r"file:\s*(\S+)", TOC):
        candidates = [ROOT / f"{entry}{ext}" for ext in (".ipynb", ".md")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
class TestNotebookContract:
    def test_listed_in_toc(self, path):
        assert str(path.relative_to(ROOT).with_suffix("")) in TOC, f"{path.name} is not listed in _toc.yml"

    def test_has_parameters_cell_using_budget(self, path):
        cells = [c for c in _code_cells(_load(path)) if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, "exactly one code cell must be tagged 'parameters'"
        assert "medtut.budget(" in _src(cells[0]) or "budget(" in _src(cells[0])

    def test_no_hard_coded_cuda_or_env_parsing(self, path):
        src = "\n".join(_src(c) for c in _code_cells(_load(path)))
        assert not re.search(r"['\"]cuda(:\d)?['\"]", src), "hard-coded 'cuda': use medtut.get_device()"
        assert "MEDTUT_QUICK" not in src, "read the quick flag through medtut.is_quick()/budget() only"

    def test_kernelspec_is_python3(self, path):
        assert _load(path)["metadata"].get("kernelspec", {}).get("name") == "python3"

    def test_committed_with_full_run_outputs_of_current_code(self, path):
        nb = _load(path)
        stamp = nb["metadata"].get(STAMP_KEY)
        assert stamp, "no execution stamp: run `python -m medtut.execute` on this notebook"
        assert stamp["quick"] is False, "committed outputs come from a quick-mode run; rerun in full mode"
        assert stamp["code_sha256"] == code_hash(nb), \
            "code cells changed after the notebook was executed (stale outputs): rerun `python -m medtut.execute`"
        code = _code_cells(nb)
        assert all(c.get("execution_count") for c in code), "some code cells were never executed"
        assert any(c.get("outputs") for c in code), "no outputs"
        for c in code:
            assert not any(o.get("output_type") == "error" for o in c.get("outputs", [])), "error output committed"

    def test_has_exercises_with_hidden_solutions_and_checks(self, path):
        nb = _load(path)
        text = "\n".join(_src(c) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "{exercise}" in text and "{solution-start}" in text and ":class: dropdown" in text
        code = "\n".join(_src(c) for c in _code_cells(nb))
        assert re.search(r"\bcheck(_value|_choice)?\(", code), "exercises need an autograded check"
