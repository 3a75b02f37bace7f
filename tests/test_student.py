"""medtut.student: the student HTML build hides every solution (student notebooks: medtut.coursework)."""
from pathlib import Path

import pytest

from medtut.student import student_config

ROOT = Path(__file__).resolve().parents[1]


def test_student_config_hides_solutions(tmp_path):
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    text = student_config(tmp_path).read_text()
    assert "hide_solutions: true" in text and "hide_solutions: false" not in text


def test_student_config_refuses_a_config_without_the_switch(tmp_path):
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(ValueError, match="hide_solutions: false"):
        student_config(tmp_path)
