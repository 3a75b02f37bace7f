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
    with pytest.raises(CheckFailed, match="0.4 is too small"):
        check_value(0.4, 0.5)
    assert check_choice(" B ", "b")
    with pytest.raises(CheckFailed):
        check_choice("a", ["b", "c"])


# Feedback names what differs (shape, sign, scale, offset, axis, NaN) but never prints the expected value,
# so a visible check cannot give an exercise's answer away (issue 21).
WANT = torch.tensor([[0.3125, -1.75, 2.5], [4.125, 0.0625, -3.375]])


@pytest.mark.parametrize("wrong, words", [
    (lambda x: -x, "sign is flipped"),
    (lambda x: x / 6, "constant factor"),
    (lambda x: x + 0.5, "constant offset"),
    (lambda x: x.flip(1), "reversed along axis 1"),
    (lambda x: torch.where(x > 4, torch.nan, x), "NaN in different places"),
    (lambda x: x.T, r"expected shape \(2, 3\), got shape \(3, 2\)"),
    (lambda x: x + torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]), r"the values differ \(1 of 6 values; first at index \(0, 2\)\)"),
])
def test_feedback_names_the_difference_without_the_answer(wrong, words):
    result = check(wrong, lambda x: x, inputs=[(WANT.clone(),)], raise_on_fail=False, name="f")
    assert not result
    assert __import__("re").search(words, result.message), result.message
    for value in WANT.flatten().tolist():   # no expected value appears in the message
        assert f"{value:g}" not in result.message.replace("(2, 3)", "").replace("(3, 2)", "")


def test_transposed_square_output_is_named():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    result = check(lambda a: a.T, lambda a: a, inputs=[(x,)], raise_on_fail=False)
    assert "transposed" in result.message


@pytest.mark.parametrize("got, want, words", [
    (0.47, 0.52, "0.47 is too small"),
    (-0.52, 0.52, "sign is flipped"),
    (float("nan"), 0.52, "NaN where a number was expected"),
    (7, 5, "7 is too large"),
    ("c", "b", "'c'"),
])
def test_check_value_does_not_print_the_expected_value(got, want, words, capsys):
    result = check_value(got, want, raise_on_fail=False)
    assert not result and words in result.message
    assert str(want) not in result.message.replace(str(got), "")
    assert str(want) not in capsys.readouterr().out.replace(str(got), "")
