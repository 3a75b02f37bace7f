"""One setting for the published address and release: `python -m medtut.release` writes it everywhere."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from medtut import release
from medtut.execute import code_hash

ROOT = Path(__file__).resolve().parents[1]


def test_every_place_names_the_release_of_config_yml():
    problems = release.disagreements(ROOT)
    assert not problems, ("run `python -m medtut.release --repo URL --ref TAG` (README, 'Publishing a release'): "
                          + "; ".join(problems))


def test_install_cell_installs_the_package_only_pinned_to_the_release():
    url, ref = release.read_setting(ROOT)
    src = release.install_cell_source(url, ref)
    assert f'"medtut @ git+{url}@{ref}"' in src and "[book]" not in src and "torch" not in src
    assert ref != "main", "the install cell must pin a release (a tag or commit), not a moving branch"


@pytest.fixture
def book_copy(tmp_path):
    for name in ("_config.yml", "_toc.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for path in release.notebooks(ROOT):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return tmp_path


def test_release_rewrites_a_copy_consistently_and_is_idempotent(book_copy):
    hashes = {p.name: code_hash(nbformat.read(p, as_version=4)) for p in release.notebooks(book_copy)}
    out = subprocess.run([sys.executable, "-m", "medtut.release", "--root", str(book_copy), "--repo",
                          "https://github.com/someone/medtut-fork", "--ref", "v9.9.9"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert release.read_setting(book_copy) == ("https://github.com/someone/medtut-fork", "v9.9.9")
    assert release.disagreements(book_copy) == []
    readme = (book_copy / "README.md").read_text()
    assert "https://colab.research.google.com/github/someone/medtut-fork/blob/v9.9.9/book/" in readme
    for p in release.notebooks(book_copy):
        nb = nbformat.read(p, as_version=4)
        assert "git+https://github.com/someone/medtut-fork@v9.9.9" in "".join(c.source for c in nb.cells)
        assert code_hash(nb) == hashes[p.name], "publishing must not invalidate the stamped outputs"
    assert release.apply(book_copy, "https://github.com/someone/medtut-fork", "v9.9.9") == []   # idempotent
    check = subprocess.run([sys.executable, "-m", "medtut.release", "--root", str(book_copy), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0


def test_check_reports_a_disagreement(book_copy):
    release.apply(book_copy, "https://github.com/someone/medtut-fork", "v1.0.0")
    path = release.notebooks(book_copy)[0]
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "colab-install" in c.metadata.get("tags", []))
    cell.source = cell.source.replace("@v1.0.0", "@main")
    nbformat.write(nb, path)
    assert any("install cell does not install" in p for p in release.disagreements(book_copy))


@pytest.mark.parametrize("url, ref, message", [
    ("github.com/x/y", "v1", "--repo must be a repository address"),
    ("https://github.com/x/y", "v1 && rm -rf /", "--ref must be a tag, branch or commit"),
    ("https://github.com/x/y", "../etc", "--ref must be a tag, branch or commit"),
])
def test_bad_arguments(book_copy, url, ref, message):
    with pytest.raises(ValueError, match=message):
        release.apply(book_copy, url, ref)
