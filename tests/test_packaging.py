"""pyproject.toml and environment.yml list the same dependencies; the README gives the two commands."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda names that differ from the PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in ("test", "book"):
        names |= {_name(r) for r in project["optional-dependencies"][extra]}
    return names


def _environment_names():
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().endswith(":"):
            names.add(CONDA_TO_PYPI.get(m.group(1).lower(), m.group(1).lower()))
    return names - {"python", "pip"}


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_names(), _environment_names()
    assert py == env, f"only in pyproject.toml: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


def test_required_packages_are_declared():
    names = _pyproject_names()
    for pkg in ("torch", "numpy", "scipy", "matplotlib", "ipywidgets", "monai", "torchdiffeq", "tqdm",
                "scikit-image", "scikit-learn", "pytest", "nbval", "pytest-xdist", "jupyter-book",
                "sphinx-exercise", "sphinxcontrib-bibtex"):
        assert pkg in names, f"{pkg} missing from pyproject.toml"


def test_no_hard_pins_on_colab_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert "==" not in req and "<" not in req, f"{req}: use lower bounds only (Colab ships its own)"


def test_jupyter_book_pinned_below_2():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    jb = [r for r in project["optional-dependencies"]["book"] if _name(r) == "jupyter-book"]
    assert jb and "<2" in jb[0].replace(" ", "")


def test_declared_python_range_is_the_tested_one():
    """pyproject.toml and environment.yml declare the same lowest Python, and it is the one CI runs on
    (3.11: these tests use ``tomllib``, and CPU torch for CI ships for 3.11), so the range is true."""
    import sys

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    env = re.search(r"-\s*python\s*>=\s*([0-9.]+)", (ROOT / "environment.yml").read_text())
    assert declared.replace(" ", "") == ">=3.11" and env and env.group(1) == "3.11"
    assert sys.version_info >= (3, 11)


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[book]" && jupyter-book build .' in readme
    assert 'pip install -e ".[test]" && pytest' in readme
