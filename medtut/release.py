"""One setting for where the book is published: the repository address and the release (a tag or commit).

    python -m medtut.release --repo https://github.com/OWNER/REPO --ref v0.1.0   # write it everywhere
    python -m medtut.release --check                                             # do they all agree?

The setting lives in ``_config.yml`` (``repository.url`` and ``repository.branch``; Jupyter Book's launch
buttons open ``<url>/blob/<branch>/<notebook>`` in Colab, so the branch field *is* the release ref). The
command writes it to every place that names it:

* ``_config.yml`` itself;
* every notebook's Colab install cell (tagged ``colab-install``): ``%pip install "medtut @ git+<url>@<ref>"``,
  the package and nothing more, pinned to the release, leaving Colab's own torch alone; then
  :func:`medtut.colab.setup`. The install cell is left out of the stamp's code hash
  (:func:`medtut.execute.code_hash`), so publishing under a new address re-runs nothing;
* the README's table of Colab links, between ``<!-- colab-links:start -->`` and ``<!-- colab-links:end -->``.

It is idempotent, and ``tests/test_release.py`` fails when any of these places disagree.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .execute import INSTALL_TAG, is_install_cell

LINKS_START, LINKS_END = "<!-- colab-links:start -->", "<!-- colab-links:end -->"
COLAB = "https://colab.research.google.com/github"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def install_cell_source(url: str, ref: str) -> str:
    """The Colab install cell for ``url`` at ``ref`` (its first line marks it; see medtut.execute)."""
    return ("# Colab set-up: installs medtut when this notebook runs on Google Colab (does nothing elsewhere).\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install -q \"medtut @ git+{url}@{ref}\"\n"
            "    import medtut.colab\n"
            "    medtut.colab.setup()   # GPU or not, versions; setup(drive=True) keeps downloads on Drive")


def read_setting(root: str | Path = ".") -> tuple[str, str]:
    """``(repository url, release ref)`` from ``_config.yml``."""
    text = (Path(root) / "_config.yml").read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not block:
        raise ValueError("_config.yml has no 'repository:' block")
    url = re.search(r"^\s+url:\s*(\S+)", block.group(1), re.M)
    ref = re.search(r"^\s+branch:\s*(\S+)", block.group(1), re.M)
    if not url or not ref:
        raise ValueError("_config.yml's repository block needs 'url:' and 'branch:' (the release ref)")
    return url.group(1), ref.group(1)


def _github_path(url: str) -> str | None:
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def _check_args(url: str, ref: str) -> None:
    if not re.match(r"^(https://|file://|ssh://|git@)\S+$", url):
        raise ValueError(f"--repo must be a repository address such as https://github.com/OWNER/REPO; got {url!r}")
    if not _REF.match(ref) or ".." in ref:
        raise ValueError(f"--ref must be a tag, branch or commit (letters, digits, . _ / -); got {ref!r}")


def notebooks(root: str | Path = ".") -> list[Path]:
    """The notebooks of the book, in the order of ``_toc.yml``."""
    root = Path(root)
    entries = re.findall(r"file:\s*(\S+)", (root / "_toc.yml").read_text())
    return [root / f"{e}.ipynb" for e in entries if (root / f"{e}.ipynb").exists()]


def _title(nb) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(cell["source"]), re.M)
            if m:
                return m.group(1).strip()
    return "untitled"


def colab_links(root: str | Path, url: str, ref: str) -> str:
    """The README block: one row per chapter notebook with its Colab badge (GitHub addresses only)."""
    import nbformat

    root = Path(root)
    gh = _github_path(url)
    rows = [LINKS_START, "", "| chapter | open in Colab |", "|---|---|"]
    for path in notebooks(root):
        rel = path.relative_to(root).as_posix()
        title = _title(nbformat.read(path, as_version=4))
        link = (f"[![Open In Colab]({BADGE})]({COLAB}/{gh}/blob/{ref}/{rel})" if gh
                else "(Colab opens GitHub repositories only)")
        rows.append(f"| {title} | {link} |")
    rows += ["", f"Release: `{ref}` of {url}.", "", LINKS_END]
    return "\n".join(rows)


def apply(root: str | Path, url: str, ref: str) -> list[str]:
    """Write ``url`` and ``ref`` everywhere; returns the files changed (empty when all agreed already)."""
    import nbformat

    _check_args(url, ref)
    root = Path(root)
    changed = []
    cfg_path = root / "_config.yml"
    text = cfg_path.read_text()
    new = re.sub(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:\s*)\S+", lambda m: m.group(1) + url, text, count=1,
                 flags=re.M)
    new = re.sub(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+branch:\s*)\S+", lambda m: m.group(1) + ref, new, count=1,
                 flags=re.M)
    if new != text:
        cfg_path.write_text(new)
        changed.append("_config.yml")
    cell_source = install_cell_source(url, ref)
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if is_install_cell(c)]
        if len(cells) != 1:
            raise ValueError(f"{path.relative_to(root)} must have exactly one Colab install cell (first line "
                             f"'# Colab set-up', tag {INSTALL_TAG!r}); found {len(cells)}")
        cell = cells[0]
        tags = cell.metadata.setdefault("tags", [])
        if cell.source != cell_source or INSTALL_TAG not in tags:
            cell.source = cell_source
            if INSTALL_TAG not in tags:
                tags.append(INSTALL_TAG)
            nbformat.write(nb, path)
            changed.append(path.relative_to(root).as_posix())
    readme = root / "README.md"
    text = readme.read_text()
    block = colab_links(root, url, ref)
    if LINKS_START in text and LINKS_END in text:
        new = text[:text.index(LINKS_START)] + block + text[text.index(LINKS_END) + len(LINKS_END):]
    else:
        raise ValueError(f"README.md needs the markers {LINKS_START} and {LINKS_END} around the Colab links")
    if new != text:
        readme.write_text(new)
        changed.append("README.md")
    return changed


def disagreements(root: str | Path = ".") -> list[str]:
    """Every place that does not name the release of ``_config.yml`` (empty when all agree)."""
    import nbformat

    root = Path(root)
    url, ref = read_setting(root)
    problems = []
    cell_source = install_cell_source(url, ref)
    for path in notebooks(root):
        cells = [c for c in nbformat.read(path, as_version=4).cells if is_install_cell(c)]
        if len(cells) != 1:
            problems.append(f"{path.relative_to(root)}: {len(cells)} Colab install cells (expected 1)")
        elif cells[0].source != cell_source:
            problems.append(f"{path.relative_to(root)}: install cell does not install {url}@{ref}")
        elif INSTALL_TAG not in cells[0].metadata.get("tags", []):
            problems.append(f"{path.relative_to(root)}: install cell lacks the tag {INSTALL_TAG!r}")
    text = (root / "README.md").read_text()
    if LINKS_START not in text or LINKS_END not in text:
        problems.append("README.md: no Colab links block")
    elif text[text.index(LINKS_START):text.index(LINKS_END) + len(LINKS_END)] != colab_links(root, url, ref):
        problems.append(f"README.md: the Colab links do not point at {url} at {ref}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="repository address, e.g. https://github.com/OWNER/REPO")
    parser.add_argument("--ref", help="the release: a tag (v0.1.0), branch or commit")
    parser.add_argument("--root", default=".", help="the repository's folder (default: here)")
    parser.add_argument("--check", action="store_true", help="only report places that disagree")
    args = parser.parse_args(argv)
    if args.check:
        problems = disagreements(args.root)
        print("\n".join(problems) if problems else "every install cell, launch button and Colab link agrees")
        return 1 if problems else 0
    if not args.repo or not args.ref:
        current = read_setting(args.root)
        parser.error(f"give --repo and --ref (now: {current[0]} at {current[1]}), or --check")
    changed = apply(args.root, args.repo, args.ref)
    print(f"{args.repo} at {args.ref}: " + (f"updated {', '.join(changed)}" if changed else "already everywhere"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
