"""A Colab canary, on this machine: install medtut as a Colab reader's first cell does, and start chapter 0.

The environment stands in for a Colab runtime as closely as the package index here allows: a fresh
virtual environment (Python of this interpreter, 3.11; Colab runs 3.12) holding the stack Colab ships
before any install (torch, here 2.13.0 CPU where Colab has a CUDA build; numpy, scipy, matplotlib,
scikit-learn, scikit-image, ipywidgets, IPython, tqdm, h5py), and a stand-in ``google.colab`` module. The
install cell runs verbatim in an IPython shell (once per distinct text: every notebook has the same one,
which test_release checks, and the driver confirms it per notebook) (``%pip`` is the real magic) with the
repository address replaced by this repository through a ``git+file://`` URL at the current commit, so
what gets installed is the committed code, with medtut's own requirements resolved by pip. Then the first
code cells of chapter 0 run in quick mode. A ref that does not exist must make the install fail.
"""
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("colab_canary_driver.py")
# What Colab has installed before the reader's first cell (its own builds; ours from the package index).
COLAB_STACK = ["numpy", "scipy", "matplotlib", "scikit-learn", "scikit-image", "ipywidgets", "ipython", "tqdm",
               "h5py"]


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("the canary installs from this git repository; no git checkout here")
    import torch

    env_dir = tmp_path_factory.mktemp("colab") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    torch_spec = f"torch=={torch.__version__.split('+')[0]}"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", torch_spec,
                    *COLAB_STACK], check=True, timeout=900)
    # the committed code: a clone at HEAD (uncommitted changes are not what a reader would install)
    # file://localhost/...: the PEP 508 parser of the pip that ships with Python 3.11 rejects file:/// here
    return python, f"file://localhost{ROOT}", _git("rev-parse", "HEAD")


def _run(python, *args, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MEDTUT_DATA", "VIRTUAL_ENV"))}
    env["MEDTUT_DATA"] = str(Path(python).parents[1] / "data")
    return subprocess.run([str(python), str(DRIVER), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT / "book" / "00_getting_started")


def test_install_cells_and_first_cells_of_chapter_0(colab_env):
    python, repo, commit = colab_env
    from medtut.release import notebooks as book_notebooks

    notebooks = [str(p) for p in book_notebooks(ROOT)]          # the book's notebooks, as in _toc.yml
    first = str(ROOT / "book/00_getting_started/getting_started.ipynb")
    out = _run(python, repo, commit, first, *[p for p in notebooks if p != first], "--first-cells", "4")
    assert out.returncode == 0 and "canary: ok" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert "No GPU attached" in out.stdout and "medtut 0.1.0" in out.stdout


def test_install_fails_for_a_ref_that_does_not_exist(colab_env):
    python, repo, _ = colab_env
    out = _run(python, repo, "no-such-ref-anywhere", str(ROOT / "book/00_getting_started/getting_started.ipynb"))
    assert out.returncode != 0 and "canary: ok" not in out.stdout
