"""The notebook contract: every chapter notebook is listed, switchable, device-agnostic, and carries
the outputs of a full run of its current code (checked through the stamp of `python -m medtut.execute`)."""
import json
import re
from pathlib import Path

import pytest

from medtut.execute import STAMP_KEY, code_hash, staleness

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
        assert stamp.get("source_sha256"), "the stamp has no hash of the medtut source: rerun `python -m medtut.execute`"
        changed = staleness(path, nb)["module"]
        assert not changed, (f"{changed} changed after the notebook was executed (stale outputs): rerun "
                             "`python -m medtut.execute`; `python -m medtut.execute --stale` lists every such notebook")
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


# ---------------------------------------------------------------------------------------------------
# Checked cells print only machine-independent text
# ---------------------------------------------------------------------------------------------------
# nbval compares the output of cells marked `# NBVAL_CHECK_OUTPUT` with the committed text, on the reader's
# machine. Round-off (a residual such as 5.9e-16, or the 8th digit of a float32 result) depends on the
# CPU's instruction set, the BLAS build, memory alignment and the thread count, so such a cell must print
# booleans, integers, shapes or values rounded far above round-off. These limits are generous for float64
# and tight enough to catch the usual slips.
MAX_SIGNIFICANT_DIGITS = 6          # float32 carries about 7; a computed value is good to fewer
SMALLEST_PRINTED_MAGNITUDE = 1e-6   # anything smaller (and non-zero) is round-off in this book
_NUMBER = re.compile(r"(?<![\w.])[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?(?![\w.])")


def noise_level_numbers(text: str) -> list[str]:
    """The numbers in ``text`` that only floating-point noise could produce reproducibly: an exponent of -7
    or below, a non-zero magnitude under 1e-6, or more than 6 significant digits after a decimal point.
    A tolerance counts too ("below 1e-12: True"): a reader comparing outputs cannot tell a threshold from a
    residual, so checked cells print the verdict and keep the tolerance in a comment."""
    bad = []
    for match in _NUMBER.finditer(text):
        token, mantissa, exponent = match.group(0), match.group(1), match.group(2)
        value = float(token)
        if exponent and int(exponent[1:]) <= -7:
            bad.append(token)
        elif value != 0 and abs(value) < SMALLEST_PRINTED_MAGNITUDE:
            bad.append(token)
        elif "." in mantissa and len(mantissa.replace(".", "").lstrip("0")) > MAX_SIGNIFICANT_DIGITS:
            bad.append(token)
    return bad


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"] if isinstance(out["text"], str) else "".join(out["text"]))
        for mime in ("text/plain", "text/markdown", "text/html"):
            data = out.get("data", {}).get(mime)
            if data is not None:
                parts.append(data if isinstance(data, str) else "".join(data))
    return "\n".join(parts)


@pytest.mark.parametrize("text, bad", [
    ("1 coil: |<Ex, y> - <x, E^H y>| / |<Ex, y>| = 4.0e-16 < 1e-12: True", ["4.0e-16", "1e-12"]),  # ch. 10, before
    ("4 coils: residual = 1.4e-15", ["1.4e-15"]),
    ("tiny: 0.00000031", ["0.00000031"]),
    ("loss 2.754633903503418", ["2.754633903503418"]),
    ("l(p) by hand: 1.07782   library: 1.07782", []),
    ("input (2, 1, 64, 64) -> logits (2, 4, 64, 64); 123,164 parameters; agree: True; 0.0", []),
    ("read matches the loop (below 1e-10): True", ["1e-10"]),          # a printed tolerance, chapter 3 before
    ("Parseval ||F x|| / ||x|| = 1.0; per-sample losses: [0.746  0.7006 0.6794 0.6551]", []),
    ("ImbalancedSplit(... seed 0 ...); test positives: 73 of 719; cell-2 pair-1e3", []),
])
def test_noise_level_guard_on_examples(text, bad):
    assert noise_level_numbers(text) == bad


def test_noise_level_guard_rejects_the_old_chapter_10_cell():
    old_output = ("Parseval ||F x|| / ||x|| = 1.0\n1 coil: |<Ex, y> - <x, E^H y>| / |<Ex, y>| = 5.9e-16 < 1e-12: True\n"
                  "4 coils: |<Ex, y> - <x, E^H y>| / |<Ex, y>| = 1.4e-15 < 1e-12: True\n")
    assert noise_level_numbers(old_output) == ["5.9e-16", "1e-12", "1.4e-15", "1e-12"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_checked_cells_print_no_floating_point_noise(path):
    problems = []
    for index, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in _src(cell):
            bad = noise_level_numbers(_output_text(cell))
            if bad:
                problems.append(f"cell {index}: {bad}")
    assert not problems, (f"{path.relative_to(ROOT)}: checked cells print numbers at floating-point-noise "
                          f"level, which differ between machines: {problems}. Print a verdict "
                          "(e.g. 'agree: True', with the tolerance in a comment) or round far above round-off")


def test_stale_detection_follows_the_chapter_module(monkeypatch):
    """A stamp made now is fresh; editing the notebook's chapter module makes it stale, a core edit is only
    reported, and another chapter's module does not count."""
    import nbformat

    from medtut import execute

    nb = nbformat.read(ROOT / "book/07_auc_alm/auc_alm.ipynb", as_version=4)
    hashes = execute.source_hashes()
    nb["metadata"][STAMP_KEY] = {"code_sha256": code_hash(nb), "source_sha256": dict(hashes)}
    assert staleness(None, nb) == {"code": [], "module": [], "core": []}
    for edited, kind in [("medtut/auc_alm.py", "module"), ("medtut/data/imbalanced.py", "module"),
                         ("medtut/train.py", "core"), ("medtut/dip_nas.py", None)]:
        monkeypatch.setattr(execute, "source_hashes", lambda e=edited: {**hashes, e: "0" * 64})
        reasons = staleness(None, nb)
        assert reasons == {"code": [], "module": [], "core": [], **({kind: [edited]} if kind else {})}
    nb["cells"][-1]["source"] += "\n# edited"
    nb["cells"].append(nbformat.v4.new_code_cell("x = 1"))
    monkeypatch.setattr(execute, "source_hashes", lambda: hashes)
    assert staleness(None, nb)["code"] == ["code cells changed"]
