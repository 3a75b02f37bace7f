"""The exercise autograder (defined in chapter 0).

An exercise asks the reader to write a function; :func:`check` runs it beside the book's reference
implementation on several inputs and reports the first difference in words a student can act on
(wrong shape, wrong value at an index, wrong gradient). In the instructor's book the solution is filled
in, so every check runs, and must pass, in CI.

>>> check(my_dice, medtut.metrics.dice, inputs=[(pred, target, 4)])
✓ my_dice matches the reference on 1 input(s)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch


class CheckFailed(AssertionError):
    """Raised when a student's answer does not match; the message says where it differs."""


@dataclass
class CheckResult:
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def _ipython_display_(self) -> None:
        # check() has already printed the message; showing the result again would repeat it.
        pass


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape}, dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def _diagnose(g: np.ndarray, w: np.ndarray, bad: np.ndarray, atol: float, rtol: float) -> str:
    """Name the kind of difference (sign, scale, offset, axis, NaN) without giving the expected values."""
    def close(a, b):
        return a.shape == b.shape and bool(np.isclose(a, b, atol=atol, rtol=rtol, equal_nan=True).all())

    if (np.isnan(g) != np.isnan(w)).any():
        return ("NaN in different places: yours has NaN at "
                f"{int(np.isnan(g).sum())} position(s), the reference at {int(np.isnan(w).sum())}")
    if np.iscomplexobj(g) or np.iscomplexobj(w):
        if close(np.conj(g), w):
            return "complex conjugated: check the sign of the imaginary part"
        return "complex values differ"
    finite = np.isfinite(w) & np.isfinite(g)
    if close(-g, w) and np.abs(w[finite]).max(initial=0) > atol:
        return "the sign is flipped"
    nz = finite & (np.abs(w) > atol)
    if nz.any():
        ratio = g[nz] / w[nz]
        if np.allclose(ratio, ratio.mean(), rtol=1e-3) and not np.isclose(ratio.mean(), 1.0, rtol=rtol):
            return "right up to a constant factor: check a normalisation (a mean vs a sum, a missing 2 or 1/N)"
    if finite.all() and g.size > 1 and np.allclose(g - w, (g - w).mean(), atol=max(atol, 1e-9), rtol=0):
        return "right up to a constant offset: check an added or missing constant"
    if g.ndim >= 2 and g.shape == w.shape[::-1] and close(g.T, w):
        return "transposed: check which axis is which"
    for axis in range(g.ndim):
        if g.shape[axis] > 1 and close(np.flip(g, axis), w):
            return f"reversed along axis {axis}"
    return "the values differ"


def _compare(got: Any, want: Any, atol: float, rtol: float, where: str = "output") -> str | None:
    """None when equal within tolerance, else a sentence saying where and how they differ.

    The sentence never contains an expected *value* (exercises must not give their answers away); it
    names the shape, the positions that differ, and the kind of difference (sign, scale, offset, axis).
    """
    if isinstance(want, (torch.Tensor, np.ndarray)) or (isinstance(got, (torch.Tensor, np.ndarray))
                                                        and isinstance(want, (int, float))):
        if not isinstance(got, (torch.Tensor, np.ndarray, int, float, np.number)):
            return f"{where}: expected {_describe(want)}, got {_describe(got)}"
        g = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
        w = want.detach().cpu().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
        if g.shape != w.shape:
            return f"{where}: expected shape {w.shape}, got shape {g.shape}"
        if g.dtype == bool or w.dtype == bool or np.issubdtype(w.dtype, np.integer):
            bad = g != w
            kind = "the values differ"
        else:
            g64 = g.astype(np.complex128 if np.iscomplexobj(g) or np.iscomplexobj(w) else np.float64)
            w64 = w.astype(g64.dtype)
            bad = ~np.isclose(g64, w64, atol=atol, rtol=rtol, equal_nan=True)
            kind = _diagnose(g64, w64, bad, atol, rtol) if bad.any() else ""
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f"; first at index {idx}" if idx else ""
            return f"{where}: {kind} ({int(bad.sum())} of {bad.size} values{at})"
        return None
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"{where}: expected a sequence of {len(want)} items, got {_describe(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            msg = _compare(g, w, atol, rtol, f"{where}[{i}]")
            if msg:
                return msg
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return f"{where}: expected a dict with keys {sorted(want)}, got {_describe(got)}"
        for k in want:
            msg = _compare(got[k], want[k], atol, rtol, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    if isinstance(want, (float, np.floating)) or isinstance(got, (float, np.floating)):
        try:
            g, w = float(got), float(want)
        except (TypeError, ValueError):
            return f"{where}: expected a number, got {_describe(got)}"
        if np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True):
            return None
        if np.isnan(g) or np.isnan(w):
            return f"{where}: {'NaN where a number was expected' if np.isnan(g) else 'a number where NaN was expected'}"
        if w != 0 and np.sign(g) == -np.sign(w) and np.isclose(-g, w, atol=atol, rtol=rtol):
            return f"{where}: the sign is flipped"
        return f"{where}: {g:.6g} is too {'large' if g > w else 'small'}"
    if (isinstance(want, (int, np.integer)) and isinstance(got, (int, np.integer))
            and not isinstance(want, bool) and not isinstance(got, bool)):
        return None if got == want else f"{where}: {got} is too {'large' if got > want else 'small'}"
    return None if got == want else f"{where}: {_describe(got)} is not the expected answer"


def _call(fn: Callable, case: Any) -> Any:
    case = copy.deepcopy(case)  # a student's in-place edit must not leak into the reference's inputs
    if isinstance(case, dict):
        return fn(**case)
    if isinstance(case, tuple):
        return fn(*case)
    return fn(case)


def _float_tensors(case: Any) -> list[torch.Tensor]:
    items = case.values() if isinstance(case, dict) else (case if isinstance(case, tuple) else (case,))
    return [t for t in items if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _grads(fn: Callable, case: Any) -> list[torch.Tensor]:
    case = copy.deepcopy(case)
    leaves = _float_tensors(case)
    for t in leaves:
        t.requires_grad_(True)
    out = fn(**case) if isinstance(case, dict) else fn(*case) if isinstance(case, tuple) else fn(case)
    outs = out if isinstance(out, (tuple, list)) else [out]
    total = 0.0
    gen = torch.Generator().manual_seed(0)
    for o in outs:
        if isinstance(o, torch.Tensor) and o.is_floating_point():
            total = total + (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
    if not isinstance(total, torch.Tensor) or not total.requires_grad:
        return [torch.zeros_like(t) for t in leaves]
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]


def check(fn: Callable, reference: Callable, inputs: Iterable | Callable[[np.random.Generator], Any],
          *, n_cases: int = 5, atol: float = 1e-5, rtol: float = 1e-4, grad: bool = False,
          name: str | None = None, raise_on_fail: bool = True) -> CheckResult:
    """Compare ``fn`` with ``reference`` on each input case.

    inputs: a list of cases (a tuple of positional arguments, a dict of keyword arguments, or a single
    argument), or a function ``make_case(rng) -> case`` called ``n_cases`` times with a seeded rng.
    grad: also compare the gradients with respect to every floating-point tensor argument.

    Prints ``✓ …`` and returns a truthy result on success. On a mismatch prints ``✗ …`` naming the case
    and the first difference, and raises :class:`CheckFailed` (unless ``raise_on_fail=False``).
    """
    label = name or getattr(fn, "__name__", "your function")
    if callable(inputs):
        rng = np.random.default_rng(0)
        cases = [inputs(rng) for _ in range(n_cases)]
    else:
        cases = list(inputs)
    if not cases:
        raise ValueError("check needs at least one input case")

    def fail(msg: str) -> CheckResult:
        result = CheckResult(False, f"✗ {label}: {msg}")
        print(result.message)
        if raise_on_fail:
            raise CheckFailed(result.message)
        return result

    for i, case in enumerate(cases):
        want = _call(reference, case)
        try:
            got = _call(fn, case)
        except NotImplementedError:
            return fail("not implemented yet: replace the `raise NotImplementedError` with your code")
        except Exception as err:  # report the student's error in context rather than a bare traceback
            return fail(f"raised {type(err).__name__}: {err} on case {i} ({_describe(case)})")
        msg = _compare(got, want, atol, rtol)
        if msg:
            return fail(f"case {i}: {msg}")
        if grad:
            g_got, g_want = _grads(fn, case), _grads(reference, case)
            msg = _compare(g_got, g_want, max(atol, 1e-4), max(rtol, 1e-3), "gradient")
            if msg:
                return fail(f"case {i}: {msg} (the forward values match, so look at detach()/in-place ops)")
    result = CheckResult(True, f"✓ {label} matches the reference on {len(cases)} input(s)"
                         + (" (values and gradients)" if grad else ""))
    print(result.message)
    return result


def check_cases(fn: Callable, cases: Sequence[tuple[str, Any, Any]], *, atol: float = 1e-5, rtol: float = 1e-4,
                name: str | None = None, raise_on_fail: bool = True) -> CheckResult:
    """Check ``fn`` on hand-built cases whose answers the text already states.

    cases: ``(description, arguments, expected)`` triples, e.g. ``("identical maps give 1", (a, a, 2),
    torch.ones(1))``; the arguments are a tuple of positional arguments, a dict of keyword arguments or a
    single argument. On a mismatch the message names the case's description and what differs (never the
    expected value). For an exercise, these are the *visible* checks; tests on inputs the text never shows
    go in the instructor's hidden tests.
    """
    label = name or getattr(fn, "__name__", "your function")
    if not cases:
        raise ValueError("check_cases needs at least one (description, arguments, expected) case")
    for description, args, want in cases:
        try:
            got = _call(fn, args)
        except NotImplementedError:
            msg = "not implemented yet: replace the `raise NotImplementedError` with your code"
        except Exception as err:  # report the student's error in context rather than a bare traceback
            msg = f"{description}: raised {type(err).__name__}: {err}"
        else:
            diff = _compare(got, want, atol, rtol)
            msg = f"{description}: {diff}" if diff else None
        if msg:
            result = CheckResult(False, f"✗ {label}: {msg}")
            print(result.message)
            if raise_on_fail:
                raise CheckFailed(result.message)
            return result
    result = CheckResult(True, f"✓ {label} passes the {len(cases)} stated case(s)")
    print(result.message)
    return result


def check_value(value: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4, name: str = "answer",
                raise_on_fail: bool = True) -> CheckResult:
    """Compare a computed value (number, array, tensor, tuple) with the expected one."""
    msg = _compare(value, expected, atol, rtol, name)
    result = CheckResult(msg is None, f"✓ {name} is correct" if msg is None else f"✗ {msg}")
    print(result.message)
    if msg and raise_on_fail:
        raise CheckFailed(result.message)
    return result


def check_choice(answer: str, correct: str | Sequence[str], *, explanation: str = "",
                 raise_on_fail: bool = True) -> CheckResult:
    """Grade a multiple-choice answer (case-insensitive letter or phrase)."""
    options = [correct] if isinstance(correct, str) else list(correct)
    ok = str(answer).strip().lower() in {o.strip().lower() for o in options}
    msg = "✓ correct" if ok else f"✗ {answer!r} is not right; think again"
    if ok and explanation:
        msg += f": {explanation}"
    print(msg)
    if not ok and raise_on_fail:
        raise CheckFailed(msg)
    return CheckResult(ok, msg)


__all__ = ["check", "check_cases", "check_value", "check_choice", "CheckFailed", "CheckResult"]
