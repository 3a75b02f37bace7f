"""The code on the page (issue 19): the API reference part of the book, names in notebook code linked to it,
and each chapter's method shown inline from the package source.

The static tests read the page sources, ``_toc.yml``, ``_config.yml`` and the notebooks (well under a
second). The ``html`` tests read a built book: the one at ``$MEDTUT_BOOK_HTML`` when that is set
(CI can point it at the ``_build/html`` of its full ``jupyter-book build``), otherwise a small book (chapter
1 and the whole API part, the real ``_config.yml``) built once per test session into a temporary folder,
about 45 s of one CPU core. All of them live in this module so that pytest-xdist's ``loadscope`` runs them
in one worker, with one build.
"""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api"
PACKAGE = ROOT / "medtut"
CHAPTER_1 = "book/01_local_contrastive/local_contrastive"


# ----------------------------------------------------------------------------------------------------------
# which modules exist, and which page documents each
# ----------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _modules() -> dict[str, Path]:
    """``{"medtut.x": path}`` for every module of the package (``medtut`` and ``medtut.data`` included)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _chapter_number(path: Path) -> int | None:
    m = re.match(r"Chapter (\d+):", _docstring(path))
    return int(m.group(1)) if m else None


def _chapter_modules() -> dict[str, int]:
    return {name: num for name, path in _modules().items()
            if name.count(".") == 1 and (num := _chapter_number(path)) is not None}


def _automodule_pages() -> dict[str, list[Path]]:
    pages: dict[str, list[Path]] = {}
    for page in sorted(API.rglob("*.md")):
        for mod in re.findall(r"^\.\. automodule:: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M):
            pages.setdefault(mod, []).append(page)
    return pages


def test_every_module_has_exactly_one_api_page():
    pages = _automodule_pages()
    missing = [m for m in _modules() if m not in pages]
    assert not missing, (
        f"no API page for {missing}: add book/api/<core|data|chapters>/<name>.md holding\n"
        "# `medtut.<name>`\n\n```{eval-rst}\n.. automodule:: medtut.<name>\n```\n"
        "(a chapter module: book/api/chapters/NN_<name>.md, titled 'Chapter N: `medtut.<name>`')")
    twice = {m: [str(p.relative_to(ROOT)) for p in ps] for m, ps in pages.items() if len(ps) > 1}
    assert not twice, f"modules documented on more than one page (duplicate object descriptions): {twice}"
    unknown = [m for m in pages if m not in _modules()]
    assert not unknown, f"API pages for modules that do not exist: {unknown}"


def test_pages_are_grouped_core_data_chapters():
    pages = _automodule_pages()
    chapters = _chapter_modules()
    for mod, (page,) in pages.items():
        rel = page.relative_to(API).as_posix()
        if mod in ("medtut", "medtut.data"):
            assert rel == {"medtut": "core.md", "medtut.data": "data.md"}[mod], (mod, rel)
        elif mod.startswith("medtut.data."):
            assert rel == f"data/{mod.rsplit('.', 1)[1]}.md", (mod, rel)
        elif mod in chapters:
            assert rel == f"chapters/{chapters[mod]:02d}_{mod.split('.')[1]}.md", (mod, rel)
            assert page.read_text(encoding="utf-8").startswith(f"# Chapter {chapters[mod]}: `{mod}`")
        else:
            assert rel == f"core/{mod.split('.')[1]}.md", (mod, rel)


def test_api_pages_use_autodoc_through_eval_rst():
    # autodoc emits reStructuredText: in a MyST page it must sit in an eval-rst block, or its directives are
    # printed as text (the build does not warn about that)
    for page in API.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "{automodule}" not in text and "{autofunction}" not in text, page
        for block in re.findall(r"```\{eval-rst\}\n(.*?)```", text, re.S):
            assert block.startswith(".. automodule:: "), page


def test_toc_lists_the_api_part_by_glob():
    yaml = pytest.importorskip("yaml")

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    part = [p for p in toc["parts"] if p.get("caption") == "API reference"]
    assert len(part) == 1, "the API reference is one part of _toc.yml"
    entries = part[0]["chapters"]
    files = [e.get("file") for e in entries]
    assert files == ["book/api/index", "book/api/core", "book/api/data", "book/api/chapters"]
    globs = [s.get("glob") for e in entries[1:] for s in e.get("sections", [])]
    assert globs == ["book/api/core/*", "book/api/data/*", "book/api/chapters/*"]


def test_config_builds_the_reference_offline():
    yaml = pytest.importorskip("yaml")

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = config["sphinx"]
    extensions = sphinx["extra_extensions"]
    for ext in ("sphinx.ext.autodoc", "sphinx.ext.viewcode", "sphinx_codeautolink"):
        assert ext in extensions, ext
    assert "sphinx.ext.intersphinx" not in extensions, "the book builds offline: no inventories to fetch"
    assert sphinx["config"]["codeautolink_concat_default"] is True
    assert (ROOT / sphinx["local_extensions"]["medtut_sphinx"] / "medtut_sphinx.py").is_file()
    # references to medtut names are never silenced: only other libraries' types are ignored
    for _, pattern in sphinx["config"]["nitpick_ignore_regex"]:
        assert not re.fullmatch(pattern, "medtut.train.fit"), pattern


# ----------------------------------------------------------------------------------------------------------
# each chapter shows its method's core inline, from the package source
# ----------------------------------------------------------------------------------------------------------

def _notebooks() -> list[Path]:
    return sorted(ROOT.glob("book/[0-9][0-9]_*/*.ipynb"))


def _defines(path: Path, dotted: str) -> bool:
    """Whether ``path`` defines the function/class ``dotted`` (``name`` or ``Class.method``)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for part in dotted.split("."):
        found = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            return False
        body = found[0].body
    return True


def _includes(nb_path: Path) -> list[tuple[Path, str | None]]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for target, options in re.findall(r"```\{literalinclude\}\s+(\S+)\n((?::[^\n]*\n)*)```", text):
            obj = re.search(r"^:pyobject:\s*(\S+)", options, re.M)
            out.append(((nb_path.parent / target).resolve(), obj.group(1) if obj else None))
    return out


@pytest.mark.parametrize("nb_path", [p for p in _notebooks() if not p.parent.name.startswith("00_")],
                         ids=lambda p: p.parent.name)
def test_each_chapter_shows_its_core_from_the_package_source(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    includes = _includes(nb_path)
    assert includes or "getsource(" in code, (
        f"{nb_path.name} shows none of its method's functions inline: add a markdown cell with "
        "```{literalinclude} ../../medtut/<module>.py\\n:pyobject: <function>\\n``` where the prose derives "
        "it (chapter 1 shows how), followed by the check against the equation")
    for target, obj in includes:
        assert target.is_file() and target.is_relative_to(PACKAGE), f"{nb_path.name}: {target} is not in medtut/"
        assert obj, f"{nb_path.name}: include {target.name} with :pyobject:, not the whole file"
        assert _defines(target, obj), f"{nb_path.name}: {target.name} defines no {obj}"


# ----------------------------------------------------------------------------------------------------------
# the built HTML
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    given = os.environ.get("MEDTUT_BOOK_HTML")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"MEDTUT_BOOK_HTML={given} holds no built book"
        return path
    pytest.importorskip("jupyter_book", reason="the book extra is not installed")
    pytest.importorskip("sphinx_codeautolink", reason="the book extra is not installed")
    yaml = pytest.importorskip("yaml")

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    api_part = [p for p in toc["parts"] if p.get("caption") == "API reference"]
    out = tmp_path_factory.mktemp("book")
    small = {"format": "jb-book", "root": CHAPTER_1, "parts": api_part}
    (out / "_toc.yml").write_text(yaml.safe_dump(small, sort_keys=False))
    exe = shutil.which("jupyter-book")
    cmd = [exe] if exe else [sys.executable, "-m", "jupyter_book.cli.main"]
    proc = subprocess.run(cmd + ["build", str(ROOT), "--toc", str(out / "_toc.yml"), "--path-output", str(out)],
                          capture_output=True, text=True, timeout=900)
    built = out / "_build" / "html"
    assert proc.returncode == 0 and (built / f"{CHAPTER_1}.html").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return built


@functools.lru_cache(maxsize=4)
def _soup(path: Path):
    bs4 = pytest.importorskip("bs4")
    return bs4.BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _ids(path: Path) -> set[str]:
    """The ids of the object descriptions (``<dt id="medtut.x.y">``) of a page, without parsing it."""
    return set(re.findall(r'<dt[^>]*?\bid="([^"]+)"', path.read_text(encoding="utf-8")))


def _follow(page: Path, href: str) -> tuple[Path, str]:
    parts = urlsplit(href)
    return (page.parent / unquote(parts.path)).resolve(), parts.fragment


def _public_definitions(path: Path) -> list[str]:
    """Functions and classes a module defines at top level and exports (``__all__``, else no underscore)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    exported = None
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(x, ast.Name) and x.id == "__all__" for x in targets):
                exported = ast.literal_eval(node.value)
    return [n for n in defined if (n in exported if exported is not None else not n.startswith("_"))]


def test_public_definitions_reader():
    path = PACKAGE / "local_contrastive.py"
    names = _public_definitions(path)
    assert "local_contrastive_loss" in names and "UNetWithProjection" in names
    assert not [n for n in names if n.startswith("_")]


def test_every_public_function_of_every_chapter_module_is_in_the_reference(html):
    missing = {}
    modules = _modules()
    for mod, num in _chapter_modules().items():
        page = html / "book" / "api" / "chapters" / f"{num:02d}_{mod.split('.')[1]}.html"
        assert page.is_file(), f"{mod}: no page {page.relative_to(html)}"
        ids = _ids(page)
        absent = [n for n in _public_definitions(modules[mod]) if f"{mod}.{n}" not in ids]
        if absent:
            missing[mod] = absent
    assert not missing, f"public functions missing from the API reference: {missing}"


def test_chapter_1_code_links_to_the_reference_which_links_to_the_source(html):
    page = html / f"{CHAPTER_1}.html"
    soup = _soup(page)
    links = [a for cell in soup.select("div.cell_input") for a in cell.select("a")
             if a.get_text().split(".")[-1] == "local_contrastive_loss"]
    assert links, "no link on local_contrastive_loss in the code cells of chapter 1"
    target = "medtut.local_contrastive.local_contrastive_loss"
    for a in links:
        ref_page, fragment = _follow(page, a["href"])
        assert fragment == target and ref_page == (html / "book/api/chapters/01_local_contrastive.html").resolve()
    entry = _soup(ref_page).find("dt", id=target)
    assert entry is not None, "the reference page has no entry for local_contrastive_loss"
    source = [a for a in entry.select("a") if a.select_one(".viewcode-link")]
    assert len(source) == 1, "the entry has no [source] link"
    src_page, src_fragment = _follow(ref_page, source[0]["href"])
    assert src_page == (html / "_modules/medtut/local_contrastive.html").resolve() and src_page.is_file()
    src = src_page.read_text(encoding="utf-8")
    at = src.find(f'id="{src_fragment}"')
    assert at >= 0, f"the source page has no block {src_fragment!r}"
    assert "local_contrastive_loss" in re.sub(r"<[^>]+>", "", src[at:at + 2000]), "the block is not the function"
    # and the docstring's equation is rendered as maths, not printed as text
    body = entry.find_next_sibling("dd")
    assert body.select("div.math") and ".. math::" not in body.get_text()


def test_api_pages_render_docstrings_not_directives(html):
    for page in sorted((html / "book" / "api").rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        article = text[text.find("<article"):text.rfind("</article>")]
        for raw in (".. py:", ".. math::", ".. automodule::", ":module: medtut"):
            assert raw not in article, f"{page.relative_to(html)} shows raw reStructuredText {raw!r}"


def test_chapter_1_figures_have_alt_text_in_the_html(html):
    images = _soup(html / f"{CHAPTER_1}.html").select("article img")
    assert images
    # without alt text docutils writes the image's own path into alt: that is no description
    bare = [img["src"] for img in images if not img.get("alt", "").strip() or img.get("alt") == img.get("src")
            or "_images/" in img.get("alt", "")]
    assert not bare, f"images of chapter 1 without alt text: {bare}"
