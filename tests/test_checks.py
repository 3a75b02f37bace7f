"""medtut.checks: wrong answers are reported, right ones pass."""
import pytest
import torch

from medtut.checks import CheckFailed, check, check_choice, check_value


def reference(x):
    return torch.tanh(x) * 2


def test_right_function_passes(capsys):
    result = check(lambda x: 2 * torch.tanh(x), reference, inputs=[(torch.randn(3, 4),)], grad=True,
                   name="double_tanh")
    assert result and "✓ double_tanh" in capsys.readouterr().out


def test_wrong_value_is_reported_with_index(capsys):
    with pytest.raises(CheckFailed, match=r"first at index"):
        check(lambda x: torch.tanh(x), reference, inputs=lambda rng: (torch.tensor(rng.normal(size=3)),))
    assert "✗" in capsys.readouterr().out


def test_wrong_shape_is_reported():
    result = check(lambda x: reference(x).sum(), reference, inputs=[(torch.ones(2, 2),)], raise_on_fail=False)
    assert not result and "expected shape (2, 2), got shape ()" in result.message


def test_wrong_gradient_is_reported():
    def detached(x):  # same values, but blocks the gradient
        return reference(x.detach())
    with pytest.raises(CheckFailed, match="gradient"):
        check(detached, reference, inputs=[(torch.randn(4),)], grad=True)


def test_not_implemented_and_crashing_students():
    def stub(x):
        raise NotImplementedError
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check(stub, reference, inputs=[(torch.ones(1),)])
    with pytest.raises(CheckFailed, match="raised IndexError"):
        check(lambda x: x[5], reference, inputs=[(torch.ones(1),)])


def test_student_cannot_corrupt_reference_inputs():
    def in_place(x):
        x.mul_(0)
        return reference(x)
    with pytest.raises(CheckFailed):
        check(in_place, reference, inputs=[(torch.ones(3),)])


def test_check_value_and_choice():
    assert check_value(0.5, 0.5 + 1e-9, name="half")
    with pytest.raises(CheckFailed, match="expected 0.5"):
        check_value(0.4, 0.5)
    assert check_choice(" B ", "b")
    with pytest.raises(CheckFailed):
        check_choice("a", ["b", "c"])
