"""Accessibility basics of the book (issue 19): every figure has alt text or a caption, and every colour map a
figure uses is colour-blind safe (the list and the reasons are in ``medtut.viz``). Reads notebook JSON and
source files only: well under a second.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medtut import viz
from medtut.execute import code_hash

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("book/[0-9][0-9]_*/*.ipynb"))
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _description(cell) -> str:
    """The alt text (``mystnb.image.alt``) or caption (``mystnb.figure.caption``) myst-nb renders."""
    meta = cell.get("metadata", {}).get("mystnb", {})
    return (meta.get("image", {}).get("alt") or meta.get("figure", {}).get("caption") or "").strip()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_every_figure_has_alt_text_or_a_caption(path):
    missing = []
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        draws = any(k in out.get("data", {}) for out in cell.get("outputs", []) for k in IMAGE_TYPES)
        if draws and len(_description(cell)) < 30:
            missing.append(f"cell {i}: {_src(cell).strip().splitlines()[0][:70]!r}")
    assert not missing, (
        f"{path.name}: figure cells without alt text (set metadata mystnb.image.alt to a sentence saying what "
        "the figure shows): "
        + "; ".join(missing))


def test_alt_text_is_metadata_and_leaves_the_stamp_alone():
    # the claim the alt text relies on: medtut.execute hashes code cell sources only, not their metadata
    nb = {"cells": [{"cell_type": "code", "source": "plt.plot([1, 2])", "metadata": {}, "outputs": []},
                    {"cell_type": "markdown", "source": "text", "metadata": {}}]}
    before = code_hash(nb)
    nb["cells"][0]["metadata"]["mystnb"] = {"image": {"alt": "A line rising from 1 to 2."}}
    nb["cells"].insert(1, {"cell_type": "markdown", "source": "```{literalinclude} x.py\n```", "metadata": {}})
    assert code_hash(nb) == before
    nb["cells"][0]["source"] = "plt.plot([1, 3])"          # while a code change is seen
    assert code_hash(nb) != before


_CMAP_USES = [
    re.compile(r"""cmap\s*=\s*["']([\w.]+)["']"""),                 # imshow(..., cmap="viridis")
    re.compile(r"""get_cmap\(\s*["']([\w.]+)["']"""),              # plt.get_cmap("viridis")
    re.compile(r"""colormaps\[\s*["']([\w.]+)["']\s*\]"""),        # matplotlib.colormaps["viridis"]
    re.compile(r"""\bplt\.cm\.([A-Za-z]\w*)\b(?!\s*\.)(?!Scalar)"""),  # plt.cm.viridis
]


def _colour_maps(code: str) -> set[str]:
    names = set()
    for pattern in _CMAP_USES:
        names |= set(pattern.findall(code))
    return {n for n in names if n not in {"ScalarMappable", "get_cmap"}}


def test_colour_map_scanner_finds_what_it_should():
    code = 'ax.imshow(x, cmap="jet")\ncmap = plt.get_cmap("viridis")\nsm = plt.cm.ScalarMappable(cmap=cmap)\n'
    assert _colour_maps(code) == {"jet", "viridis"}
    assert "jet" not in viz.CVD_SAFE_CMAPS and "viridis" in viz.CVD_SAFE_CMAPS


def test_colour_maps_are_colour_blind_safe():
    sources = {p.relative_to(ROOT).as_posix(): "\n".join(_src(c) for c in _load(p)["cells"] if c["cell_type"] == "code")
               for p in NOTEBOOKS}
    sources |= {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
                for p in sorted((ROOT / "medtut").rglob("*.py"))}
    unsafe = {where: sorted(_colour_maps(code) - viz.CVD_SAFE_CMAPS) for where, code in sources.items()}
    unsafe = {k: v for k, v in unsafe.items() if v}
    assert not unsafe, f"colour maps that are not colour-blind safe (see medtut.viz.CVD_SAFE_CMAPS): {unsafe}"


def test_book_wide_maps_are_in_the_safe_list():
    import matplotlib

    for name in (viz.SEQUENTIAL_CMAP, viz.ERROR_CMAP, viz.DIVERGING_CMAP):
        assert name in viz.CVD_SAFE_CMAPS
    assert all(name in matplotlib.colormaps for name in viz.CVD_SAFE_CMAPS)
