"""Chapter 4: image-specific neural architecture search for Deep Image Prior (ISNAS-DIP).

Reads top-down like the method (Arican, Kara et al., CVPR 2022, arXiv:2111.15362):

1. **The search space** (:class:`Arch`, :func:`build_model`, :func:`sample_architectures`): an
   encoder-decoder whose upsampling cell (spatial primitive x conv op x kernel x activation) and
   cross-scale skip pattern are searched; every architecture has a compact name and ``build_model(name)``
   rebuilds it.
2. **Deep Image Prior** (:func:`fit_dip`): fit a randomly initialised CNN ``f_theta(eta)`` to the corrupted
   image ``x0`` by ``min_theta ||A(f_theta(eta)) - x0||^2`` with Adam, a fresh jitter on the input code at
   every step and an exponential moving average (EMA) of the outputs. PSNR is tracked per step; we report
   it at a fixed iteration and, labelled as such, at the oracle best iteration (which needs the ground
   truth and is therefore not available in practice).
3. **Image-specific metrics** (:func:`psd`, :func:`psd_db_mse`, :func:`strip_mse`,
   :func:`strip_wasserstein`, :func:`bandwidth_99`, :func:`score_architecture`): compare the power
   spectrum of an *untrained* network's random output with that of the corrupted image. No training.
4. **Cohort and consensus pick** (:func:`select_cohort`, :func:`consensus_pick`): train only the ``k``
   best-scored architectures, average their outputs with rank weights, and pick the member closest to
   that consensus; the pick is re-instantiated from its *name* (the official code retrained whatever
   model object was left in a variable, not the selected one).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import resolve_device
from .data.dip_images import DIPProblem
from .metrics import batch_psnr, psnr
from .train import History, _check_count, fit

# ---------------------------------------------------------------------------------------------------
# Argument checks shared by the public functions (issue 24: bad input gets a clear error)
# ---------------------------------------------------------------------------------------------------


def _check_int(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low`` (bool and float refused), else a ValueError naming ``name``."""
    _check_count(name, value, low)
    return int(value)


def _check_real(name: str, value, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the stated interval, else a ValueError naming ``name``."""
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    rng = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (lo or hi) else ""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number{rng}; got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or (
            high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be a finite number{rng}; got {value!r}")
    return v


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int; got {type(seed).__name__} {seed!r}")
    return int(seed)


def _check_names(name: str, names) -> list[str]:
    """A non-empty list of distinct architecture-name strings (a single string is refused: it would be
    read character by character)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ValueError(f"{name} must be a list of architecture names; got {type(names).__name__} {names!r}")
    names = list(names)
    bad = [n for n in names if not isinstance(n, str)]
    if not names or bad:
        raise ValueError(f"{name} must be a non-empty list of architecture-name strings; got {names!r}"[:300])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{name} must not repeat an architecture; {dup} appear more than once")
    return names


def _check_scores(name: str, scores) -> dict[str, float]:
    """``{architecture: finite real score}``, non-empty; NaN would otherwise sort first."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"{name} must be a non-empty dict {{architecture name: score}}; got "
                         f"{type(scores).__name__} {scores!r}"[:300])
    out = {}
    for n, v in scores.items():
        try:
            out[n] = _check_real(f"{name}[{n!r}]", v)
        except ValueError as err:
            raise ValueError(f"{err} (every score must be a finite number: a NaN score would rank first "
                             "or last arbitrarily; drop that architecture or rescore it)") from None
    return out

# ---------------------------------------------------------------------------------------------------
# 1. The search space
# ---------------------------------------------------------------------------------------------------

PRIMITIVES = ("bilinear", "bicubic", "nearest", "pixelshuffle", "transposed")
CONV_OPS = ("conv", "separable", "depthwise", "identity")
KERNELS = (1, 3, 5)
ACTIVATIONS = ("none", "relu", "lrelu")


@dataclass(frozen=True)
class Arch:
    """One member of the search space.

    primitive, conv_op, kernel, activation: the upsampling cell, shared by every decoder level;
    skip: (L, L) tuple of 0/1, ``skip[k][j] = 1`` adds encoder features of level ``j`` (resolution
    H / 2^j) to the input of decoder level ``k`` (resolution H / 2^k). L = number of levels.
    """
    primitive: str
    conv_op: str
    kernel: int
    activation: str
    skip: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if self.primitive not in PRIMITIVES:
            raise ValueError(f"primitive must be one of {PRIMITIVES}; got {self.primitive!r}")
        if self.conv_op not in CONV_OPS:
            raise ValueError(f"conv_op must be one of {CONV_OPS}; got {self.conv_op!r}")
        if isinstance(self.kernel, (bool, np.bool_)) or self.kernel not in (1, 3, 5, 7):
            raise ValueError(f"kernel must be 1, 3, 5 or 7; got {self.kernel!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {self.activation!r}")
        try:
            rows = [tuple(r) for r in self.skip]
        except TypeError:
            rows = None
        L = 0 if rows is None else len(rows)
        if rows is None or L < 1 or any(len(r) != L for r in rows) or any(
                isinstance(b, (bool, np.bool_)) or b not in (0, 1) for r in rows for b in r):
            raise ValueError(f"skip must be a square (L, L) tuple of tuples of 0/1 with L >= 1; got {self.skip!r}")

    @property
    def levels(self) -> int:
        return len(self.skip)

    @property
    def name(self) -> str:
        """Compact name, e.g. ``bilinear-conv-k3-lrelu-s100010001`` (skip bits row by row)."""
        bits = "".join(str(b) for row in self.skip for b in row)
        return f"{self.primitive}-{self.conv_op}-k{self.kernel}-{self.activation}-s{bits}"

    @classmethod
    def from_name(cls, name: str) -> "Arch":
        """Inverse of :attr:`name`. A bad name gets an error that names the part at fault
        (``primitive-convop-k<kernel>-activation-s<L*L skip bits>``)."""
        if not isinstance(name, str):
            raise ValueError(f"an architecture name must be a string like 'bilinear-conv-k3-lrelu-s100010001'; "
                             f"got {type(name).__name__} {name!r}")
        parts = name.split("-")
        if len(parts) != 5:
            raise ValueError(f"an architecture name looks like 'bilinear-conv-k3-lrelu-s100010001' (five parts "
                             f"joined by '-'); got {name!r} with {len(parts)} part(s)")
        prim, op, kpart, act, spart = parts
        where = f" in architecture name {name!r}"
        if prim not in PRIMITIVES:
            raise ValueError(f"primitive (part 1) must be one of {PRIMITIVES}; got {prim!r}{where}")
        if op not in CONV_OPS:
            raise ValueError(f"conv_op (part 2) must be one of {CONV_OPS}; got {op!r}{where}")
        if not (kpart.startswith("k") and kpart[1:].isdigit()):
            raise ValueError(f"the kernel part (part 3) must be 'k' and an int, e.g. 'k3'; got {kpart!r}{where}")
        if act not in ACTIVATIONS:
            raise ValueError(f"activation (part 4) must be one of {ACTIVATIONS}; got {act!r}{where}")
        bits = spart[1:]
        L = int(round(len(bits) ** 0.5))
        if not spart.startswith("s") or not bits or L * L != len(bits) or set(bits) - {"0", "1"}:
            raise ValueError(f"the skip part (part 5) must be 's' and L*L bits of 0/1 (e.g. 's100010001' for "
                             f"L = 3); got {spart!r}{where}")
        skip = tuple(tuple(int(b) for b in bits[r * L:(r + 1) * L]) for r in range(L))
        return cls(prim, op, int(kpart[1:]), act, skip)


def default_dip_arch(levels: int) -> Arch:
    """DIP's own ``skip`` net in this family: plain bilinear upsampling, same-scale skips only."""
    levels = _check_int("levels", levels, 1)
    skip = tuple(tuple(int(i == j) for j in range(levels)) for i in range(levels))
    return Arch("bilinear", "identity", 1, "none", skip)


@dataclass(frozen=True)
class SearchSpace:
    """Which cells and how many levels :func:`sample_architectures` draws from."""
    levels: int = 3
    primitives: tuple[str, ...] = PRIMITIVES
    conv_ops: tuple[str, ...] = CONV_OPS
    kernels: tuple[int, ...] = KERNELS
    activations: tuple[str, ...] = ACTIVATIONS

    def __post_init__(self):
        _check_int("levels", self.levels, 1)
        for field_name, allowed in (("primitives", PRIMITIVES), ("conv_ops", CONV_OPS), ("kernels", (1, 3, 5, 7)),
                                    ("activations", ACTIVATIONS)):
            value = getattr(self, field_name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise ValueError(f"{field_name} must be a tuple of options from {allowed}; got {value!r}")
            value = tuple(value)
            bad = [v for v in value if isinstance(v, (bool, np.bool_)) or v not in allowed]
            if not value or bad or len(set(value)) != len(value):
                raise ValueError(f"{field_name} must be a non-empty tuple of distinct options from {allowed}; "
                                 f"got {value!r}")
            object.__setattr__(self, field_name, value)

    def contains(self, arch: "Arch") -> bool:
        """Whether ``arch`` is a member of this space."""
        return (arch.levels == self.levels and arch.primitive in self.primitives and arch.conv_op in self.conv_ops
                and arch.activation in self.activations
                and (arch.kernel == 1 if arch.conv_op == "identity" else arch.kernel in self.kernels))

    @property
    def num_cells(self) -> int:
        # an identity conv op has no kernel: it counts once
        with_kernel = len([o for o in self.conv_ops if o != "identity"]) * len(self.kernels)
        without = int("identity" in self.conv_ops)
        return len(self.primitives) * (with_kernel + without) * len(self.activations)

    @property
    def size(self) -> int:
        return self.num_cells * 2 ** (self.levels ** 2)


def sample_architectures(n: int, space: SearchSpace = SearchSpace(), seed: int = 0,
                         exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct architecture names drawn uniformly (cell and each skip bit) with a fixed seed.

    ``exclude``: names never returned (e.g. the default network). Raises if the space minus ``exclude``
    holds fewer than ``n`` architectures; the draw loop is bounded (it raises rather than spin).
    """
    n = _check_int("n", n, 1)
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space must be a medtut.dip_nas.SearchSpace; got {type(space).__name__}")
    seed = _check_seed(seed)
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise ValueError(f"exclude must be a list of architecture names (a single name goes in a list: "
                         f"exclude=[name]); got {type(exclude).__name__} {exclude!r}")
    seen = set()
    for e in exclude:
        arch = e if isinstance(e, Arch) else Arch.from_name(e)
        seen.add(arch.name)
    excluded_in_space = sum(space.contains(Arch.from_name(e)) for e in seen)
    available = space.size - excluded_in_space
    if n > available:
        raise ValueError(f"cannot draw {n} distinct architectures: the space holds {space.size:,}, of which "
                         f"{excluded_in_space} are excluded, leaving {available:,}; ask for n <= {available:,} "
                         "or widen the space")
    # coupon-collector bound: with p_min the smallest probability of one name, drawing every name of the
    # space takes more than (ln(size) + 12) / p_min draws with probability below 1e-5
    inv_p_min = (len(space.primitives) * len(space.conv_ops) * len(space.kernels) * len(space.activations)
                 * 2 ** (space.levels ** 2))
    max_draws = int(inv_p_min * (math.log(space.size) + 12)) + 1000
    rng = np.random.default_rng(seed)
    names: list[str] = []
    draws = 0
    while len(names) < n:
        draws += 1
        if draws > max_draws:
            raise RuntimeError(f"drew {max_draws:,} architectures without finding {n} distinct new ones "
                               f"(found {len(names)}); ask for fewer")
        op = str(rng.choice(space.conv_ops))
        kernel = 1 if op == "identity" else int(rng.choice(space.kernels))
        skip = rng.integers(0, 2, size=(space.levels, space.levels))
        arch = Arch(str(rng.choice(space.primitives)), op, kernel, str(rng.choice(space.activations)),
                    tuple(tuple(int(b) for b in row) for row in skip))
        if arch.name not in seen:
            seen.add(arch.name)
            names.append(arch.name)
    return names


def _act(name: str) -> nn.Module:
    return {"none": nn.Identity(), "relu": nn.ReLU(), "lrelu": nn.LeakyReLU(0.2)}[name]


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """k x k convolution with reflection padding (as in DIP)."""
    pad = nn.ReflectionPad2d(k // 2) if k > 1 else nn.Identity()
    return nn.Sequential(pad, nn.Conv2d(cin, cout, k, stride=stride, groups=groups))


def _block(cin: int, cout: int, k: int = 3, stride: int = 1, copies: int = 1) -> nn.Module:
    """conv → BN → LReLU on ``copies`` independent channel groups of ``cin`` → ``cout`` channels each."""
    return nn.Sequential(_conv(cin * copies, cout * copies, k, stride, groups=copies),
                         nn.BatchNorm2d(cout * copies, track_running_stats=False), nn.LeakyReLU(0.2))


class UpCell(nn.Module):
    """The searched upsampling cell: x2 spatial primitive, then conv op (+ BN) and activation.

    (B, copies * C, h, w) → (B, copies * C, 2h, 2w); ``copies`` independent networks live side by side
    as channel groups (see :class:`SearchableNet`).
    """

    def __init__(self, arch: Arch, channels: int, copies: int = 1):
        super().__init__()
        if not isinstance(arch, Arch):
            raise ValueError(f"arch must be a medtut.dip_nas.Arch (Arch.from_name(name) parses a name); got "
                             f"{type(arch).__name__} {arch!r}")
        _check_int("channels", channels, 1)
        _check_int("copies", copies, 1)
        self.primitive = arch.primitive
        c, k, g = channels, arch.kernel, copies
        if arch.primitive == "pixelshuffle":
            # a grouped 1x1 conv keeps each copy's 4c channels contiguous, which is what PixelShuffle reads
            self.spatial = nn.Sequential(nn.Conv2d(g * c, g * 4 * c, 1, groups=g), nn.PixelShuffle(2))
        elif arch.primitive == "transposed":
            self.spatial = nn.ConvTranspose2d(g * c, g * c, 4, stride=2, padding=1, groups=g)
        else:
            self.spatial = None
        if arch.conv_op == "conv":
            op = _conv(g * c, g * c, k, groups=g)
        elif arch.conv_op == "separable":
            op = nn.Sequential(_conv(g * c, g * c, k, groups=g * c), nn.Conv2d(g * c, g * c, 1, groups=g))
        elif arch.conv_op == "depthwise":
            op = _conv(g * c, g * c, k, groups=g * c)
        else:
            op = None
        self.op = nn.Identity() if op is None else nn.Sequential(op, nn.BatchNorm2d(g * c, track_running_stats=False))
        self.act = _act(arch.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is None:
            kw = {} if self.primitive == "nearest" else {"align_corners": False}
            x = F.interpolate(x, scale_factor=2, mode=self.primitive, **kw)
        else:
            x = self.spatial(x)
        return self.act(self.op(x))


class SearchableNet(nn.Module):
    """Encoder-decoder of the search space (a small cousin of NAS-DIP's 5-level, 128-channel backbone).

    Encoder: a stem block at full resolution gives ``s_0``; level ``j = 1..L`` is stride-2 conv → BN →
    LReLU → conv → BN → LReLU, giving ``s_j`` at H / 2^j. Decoder level ``k = L-1..0``:
    ``u_k = Dec_k(Up(u_{k+1}) + sum_j skip[k][j] * Link_kj(s_j))`` with ``u_L = s_L``; a link resizes
    ``s_j`` to H / 2^k (average pooling down, bilinear up) and mixes it with a 1 x 1 conv block.
    Output: 1 x 1 conv + sigmoid. Input (B, in_channels, H, W) → (B, out_channels, H, W), H and W
    divisible by 2^L.

    ``copies > 1`` holds that many *independent* networks of the same architecture as channel groups:
    every convolution is grouped, and BatchNorm, padding, resampling and activations act per channel, so
    (B, copies * in_channels, H, W) → (B, copies * out_channels, H, W) where copy ``i`` sees only its own
    channels. DIP uses this to fit one network per image in a single pass (one set of small kernels
    instead of ``copies`` sets: on a CPU a step costs about what one network's step costs).
    """

    def __init__(self, arch: Arch, in_channels: int = 8, out_channels: int = 1, width: int = 16,
                 copies: int = 1):
        super().__init__()
        if not isinstance(arch, Arch):
            raise ValueError(f"arch must be a medtut.dip_nas.Arch (Arch.from_name(name) parses a name); got "
                             f"{type(arch).__name__} {arch!r}")
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                           ("copies", copies)):
            _check_int(arg, value, 1)
        self.arch, self.name, self.copies = arch, arch.name, copies
        self.in_channels, self.out_channels = in_channels, out_channels
        L, c, g = arch.levels, width, copies
        self.stem = _block(in_channels, c, copies=g)
        self.down = nn.ModuleList([nn.Sequential(_block(c, c, 3, stride=2, copies=g), _block(c, c, copies=g))
                                   for _ in range(L)])
        self.up = nn.ModuleList([UpCell(arch, c, g) for _ in range(L)])
        self.links = nn.ModuleDict({f"{k}_{j}": _block(c, c, k=1, copies=g) for k in range(L) for j in range(L)
                                    if arch.skip[k][j]})
        self.dec = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(g * c, track_running_stats=False),
                                                _block(c, c, copies=g)) for _ in range(L)])
        self.head = nn.Conv2d(g * c, g * out_channels, 1, groups=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = self.arch.levels
        if x.ndim != 4 or x.shape[-1] % 2 ** L or x.shape[-2] % 2 ** L:
            raise ValueError(f"input must be (B, C, H, W) with H, W divisible by 2^{L}; got {tuple(x.shape)}")
        if x.shape[1] != self.copies * self.in_channels:
            raise ValueError(f"expected {self.copies} x {self.in_channels} input channels; got {x.shape[1]}")
        feats = [self.stem(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        u = feats[L]
        for k in range(L - 1, -1, -1):
            z = self.up[k](u)
            for j in range(L):
                if self.arch.skip[k][j]:
                    s = feats[j]
                    if j < k:
                        s = F.avg_pool2d(s, 2 ** (k - j))
                    elif j > k:
                        s = F.interpolate(s, scale_factor=2 ** (j - k), mode="bilinear", align_corners=False)
                    z = z + self.links[f"{k}_{j}"](s)
            u = self.dec[k](z)
        return torch.sigmoid(self.head(u))


def build_model(name: str | Arch, in_channels: int = 8, out_channels: int = 1, width: int = 16,
                seed: int | None = None, device: torch.device | str | None = None,
                copies: int = 1) -> SearchableNet:
    """Instantiate an architecture from its name (weights drawn from ``seed`` without touching the
    global random state when a seed is given).

    With ``copies > 1`` every copy starts from the weights the single network would get: every
    parameter of the grouped model is the single model's parameter repeated along its first dimension.
    """
    device = resolve_device(device)
    arch = name if isinstance(name, Arch) else Arch.from_name(name)
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                       ("copies", copies)):
        _check_int(arg, value, 1)
    if seed is not None:
        _check_seed(seed)
    if seed is None:
        model = SearchableNet(arch, in_channels, out_channels, width)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SearchableNet(arch, in_channels, out_channels, width)
    if copies > 1:
        grouped = SearchableNet(arch, in_channels, out_channels, width, copies=copies)
        single = model.state_dict()
        grouped.load_state_dict({k: torch.cat([single[k]] * copies) for k in grouped.state_dict()})
        model = grouped
    return model.to(device)


def input_code(shape: Sequence[int], seed: int, scale: float = 0.1) -> torch.Tensor:
    """DIP's fixed input code ``eta ~ U(0, scale)`` of ``shape`` (B, C, H, W), from ``seed`` (CPU)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
        raise ValueError(f"shape must be (B, C, H, W) positive ints; got {shape!r}")
    shape = tuple(shape)
    if len(shape) != 4 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1
                              for v in shape):
        raise ValueError(f"shape must be (B, C, H, W) positive ints; got {shape!r}")
    _check_seed(seed)
    _check_real("scale", scale, 0, low_open=True)
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed)) * scale


# ---------------------------------------------------------------------------------------------------
# 2. Deep Image Prior fitting
# ---------------------------------------------------------------------------------------------------

@dataclass
class DIPResult:
    """One DIP run. ``psnr`` / ``psnr_ema``: (num_steps,) PSNR vs the ground truth of the raw output and
    of its EMA, per step. ``output``: the EMA output (1, H, W) at the last step."""
    name: str
    task: str
    psnr: np.ndarray
    psnr_ema: np.ndarray
    output: torch.Tensor
    history: History = field(repr=False)
    wall_time_s: float = 0.0

    @property
    def final_psnr(self) -> float:
        """PSNR of the EMA output at the fixed last iteration (the honest number)."""
        return float(self.psnr_ema[-1])

    @property
    def oracle_psnr(self) -> float:
        """Best EMA PSNR over iterations: needs the ground truth, so it is an *oracle* number."""
        return float(np.max(self.psnr_ema))

    @property
    def oracle_step(self) -> int:
        return int(np.argmax(self.psnr_ema)) + 1


def _problem_list(problems) -> tuple[bool, list[DIPProblem], tuple[int, int, int]]:
    """(was a single problem, the problems as a list, their shared (C, H, W)); clear errors otherwise."""
    single = isinstance(problems, DIPProblem)
    if not single and (isinstance(problems, (str, bytes)) or not isinstance(problems, Iterable)):
        raise ValueError("problems must be a DIPProblem or a non-empty list of them "
                         f"(see medtut.data.dip_images.make_problem); got {type(problems).__name__}")
    probs = [problems] if single else list(problems)
    if not probs or not all(isinstance(p, DIPProblem) for p in probs):
        raise ValueError("problems must be a DIPProblem or a non-empty list of them "
                         "(see medtut.data.dip_images.make_problem)")
    shapes = {tuple(p.clean.shape) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"all problems must share the image shape (C, H, W); got {sorted(shapes)}")
    return single, probs, shapes.pop()


def fit_dip(name: str | Arch, problems: DIPProblem | Sequence[DIPProblem], num_steps: int, *,
            lr: float = 0.01, jitter: float = 1 / 30, ema: float = 0.99, in_channels: int = 8,
            width: int = 16, seed: int = 0, device: torch.device | str | None = None,
            progress: bool = False) -> DIPResult | list[DIPResult]:
    """Fit Deep Image Prior with architecture ``name`` to each problem, through :func:`medtut.train.fit`.

    Loss (the DIP objective), per problem: ``L(theta) = mean((A(f_theta(eta + n_t)) - x0)^2)`` with ``A``
    = ``problem.degrade`` (identity / mask / x4 downsampling), ``x0 = problem.observed``, the fixed code
    ``eta ~ U(0, 0.1)`` of shape (1, in_channels, H, W), input jitter ``n_t ~ N(0, jitter^2)`` drawn
    afresh each step, and Adam(lr). The EMA output is ``y_t = ema * y_{t-1} + (1 - ema) * f_t``
    (``y_1 = f_1``); PSNR of ``f_t`` and ``y_t`` against the ground truth is recorded at every step.

    A list of problems (same H x W) trains one independent copy of the network per problem *at once*:
    the copies are channel groups of one grouped network (``build_model(..., copies=P)``), each starting
    from the same seeded weights and seeing the same code and jitter; the summed loss gives each copy the
    gradient of its own loss and Adam acts element-wise, so this equals separate runs with the same seed
    (up to float rounding) at about the cost of one run on a CPU. Same seed, same result.
    Returns one :class:`DIPResult` per problem (a single one for a single problem).
    """
    device = resolve_device(device)
    num_steps = _check_int("num_steps", num_steps, 1)
    _check_real("lr", lr, 0, low_open=True)
    _check_real("jitter", jitter, 0)
    _check_real("ema", ema, 0, 1, high_open=True)
    _check_int("in_channels", in_channels, 1)
    _check_int("width", width, 1)
    _check_seed(seed)
    single, probs, (C, H, W) = _problem_list(problems)
    arch = name if isinstance(name, Arch) else Arch.from_name(name)
    if H % 2 ** arch.levels or W % 2 ** arch.levels:
        raise ValueError(f"a {arch.levels}-level network needs image sides divisible by 2^{arch.levels} = "
                         f"{2 ** arch.levels}; the problems are {H}x{W}: resize the images or use fewer levels")
    P = len(probs)
    model = build_model(name, in_channels, C, width, seed=seed, device=device, copies=P)
    arch_name = model.name
    eta = input_code((1, in_channels, H, W), seed=seed + 1).to(device).repeat(1, P, 1, 1)   # same code per copy
    clean = torch.stack([p.clean for p in probs]).to(device)                     # (P, C, H, W)
    observed = [p.observed[None].to(device) for p in probs]
    ops = [DIPProblem(p.task, p.name, p.clean, p.observed, None if p.mask is None else p.mask.to(device),
                      p.sigma, p.keep, p.factor).degrade for p in probs]
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    curves = torch.zeros(num_steps, P, 2, device=device)                         # PSNR raw / EMA
    state: dict = {"ema": None, "t": 0}
    # foreach: one fused update over all tensors (on a CPU the per-tensor loop is a quarter of a step)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)

    def step(_):
        noise = torch.randn((1, in_channels, H, W), generator=gen, device=device) * jitter
        out = model(eta + noise.repeat(1, P, 1, 1)).view(P, 1, C, H, W)           # copy i = problem i
        losses = torch.stack([F.mse_loss(op(out[i]), x0) for i, (op, x0) in enumerate(zip(ops, observed))])
        with torch.no_grad():
            d = out.detach()[:, 0]
            state["ema"] = d.clone() if state["ema"] is None else state["ema"].mul_(ema).add_(d, alpha=1 - ema)
            for j, y in enumerate((d, state["ema"])):
                curves[state["t"], :, j] = batch_psnr(y, clean)
            state["t"] += 1
        return {"loss": losses.sum()}

    t0 = time.perf_counter()
    model.train()  # DIP runs BatchNorm on the current image's statistics throughout
    history = fit(step, optimizer, num_steps=num_steps, desc=f"DIP {arch_name}", progress=progress)
    wall = time.perf_counter() - t0
    curves_np = curves.cpu().numpy().astype(np.float64)
    results = [DIPResult(arch_name, p.task, curves_np[:, i, 0], curves_np[:, i, 1], state["ema"][i].cpu(),
                         history, wall / P) for i, p in enumerate(probs)]
    return results[0] if single else results


# ---------------------------------------------------------------------------------------------------
# 3. Power spectra and the image-specific metrics
# ---------------------------------------------------------------------------------------------------

STRIP = (0.05, 0.10)


def _as_chw(image, name: str = "image") -> np.ndarray:
    x = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or min(x.shape[-2:]) < 2:
        raise ValueError(f"{name} must be (H, W) or (C, H, W) with H, W >= 2; got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{name} must be a real-valued array; got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def psd(image) -> np.ndarray:
    """Centred power spectral density per channel: ``fftshift(|FFT2(u) / N|^2)``.

    image: (H, W) or (C, H, W) (numpy or tensor). Returns (C, H, W) float64. By Parseval,
    ``psd(u).sum(axis=(-2, -1)) == (u ** 2).mean(axis=(-2, -1))``.
    """
    x = _as_chw(image)
    spectrum = np.fft.fft2(x, norm="forward")
    return np.fft.fftshift(np.abs(spectrum) ** 2, axes=(-2, -1))


def frequency_radius(h: int, w: int) -> np.ndarray:
    """(h, w) radial frequency |f| in cycles/pixel, centred like :func:`psd` (0 at the centre)."""
    _check_int("h", h, 1)
    _check_int("w", w, 1)
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def strip_mask(h: int, w: int, low: float = STRIP[0], high: float = STRIP[1]) -> np.ndarray:
    """(h, w) bool mask of the frequency annulus ``low <= |f| < high`` (cycles/pixel)."""
    _check_real("low", low)
    _check_real("high", high)
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high; got low={low}, high={high}")
    r = frequency_radius(h, w)
    return (r >= low) & (r < high)


def db(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Power in decibels, ``10 log10(p + eps)`` (the official code uses ln: a constant factor)."""
    _check_real("eps", eps, 0, low_open=True)
    p = np.asarray(p)
    if not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
        raise ValueError(f"p must be real powers (e.g. psd(image)); got dtype {p.dtype}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0):
        raise ValueError("p must hold finite powers >= 0 (a power spectrum); got NaN, inf or negative values")
    return 10.0 * np.log10(p + eps)


def _check_strip(strip) -> tuple[float, float]:
    if isinstance(strip, (str, bytes)) or not isinstance(strip, Iterable) or len(tuple(strip)) != 2:
        raise ValueError(f"strip must be (low, high) in cycles/pixel with 0 <= low < high; got {strip!r}")
    return tuple(strip)


def _pair(c, g) -> tuple[np.ndarray, np.ndarray]:
    pc, pg = psd(_as_chw(c, "corrupted image")), psd(_as_chw(g, "network output"))
    if pc.shape != pg.shape:
        raise ValueError(f"the two images must have the same (C, H, W); got {pc.shape} and {pg.shape}")
    return pc, pg


def psd_db_mse(corrupted, output) -> float:
    """Mean over all frequencies and channels of ``(dB PSD(c) - dB PSD(g))^2``."""
    pc, pg = _pair(corrupted, output)
    return float(np.mean((db(pc) - db(pg)) ** 2))


def strip_mse(corrupted, output, strip: tuple[float, float] = STRIP) -> float:
    """:func:`psd_db_mse` restricted to the frequency strip (ISNAS main metric #1)."""
    pc, pg = _pair(corrupted, output)
    m = strip_mask(*pc.shape[-2:], *_check_strip(strip))
    if not m.any():
        raise ValueError(f"the strip {strip} holds no frequency of a {pc.shape[-2]}x{pc.shape[-1]} image")
    return float(np.mean((db(pc)[:, m] - db(pg)[:, m]) ** 2))


def strip_wasserstein(corrupted, output, strip: tuple[float, float] = STRIP) -> float:
    """1-Wasserstein distance (dB) between the distributions of dB PSD values in the strip.

    The principled version of ISNAS main metric #2: the official code histogrammed each image with its
    own bin edges and then fed the two vectors of bin *heights* to ``wasserstein_distance`` as if they
    were samples, which is not an earth mover's distance between the spectra.
    """
    from scipy.stats import wasserstein_distance

    pc, pg = _pair(corrupted, output)
    m = strip_mask(*pc.shape[-2:], *_check_strip(strip))
    if not m.any():
        raise ValueError(f"the strip {strip} holds no frequency of a {pc.shape[-2]}x{pc.shape[-1]} image")
    return float(wasserstein_distance(db(pc)[:, m].ravel(), db(pg)[:, m].ravel()))


def bandwidth_99(output, fraction: float = 0.99, num_discs: int = 100) -> float:
    """Normalised radius holding ``fraction`` of the (channel-averaged) spectral energy, in [0, 1].

    Discs of diameter ``linspace(0, sqrt(2), num_discs)`` (in cycles/pixel) around the centre; returns the
    interpolated index of the first disc holding ``fraction`` of the energy, divided by
    ``num_discs - 1``. Image-independent: small = the network is a low-pass prior.
    """
    _check_real("fraction", fraction, 0, 1, low_open=True)
    _check_int("num_discs", num_discs, 2)
    p = psd(output).mean(axis=0)
    r = frequency_radius(*p.shape)
    radii = np.linspace(0, np.sqrt(2), num_discs) / 2
    total = p.sum()
    if total <= 0:
        raise ValueError("the image has zero energy: its bandwidth is undefined")
    energy = np.array([p[r <= rad].sum() for rad in radii]) / total
    i = int(np.argmax(energy >= fraction - 1e-12))
    if i == 0:
        return 0.0
    e0, e1 = energy[i - 1], energy[i]
    frac = 0.0 if e1 == e0 else (fraction - e0) / (e1 - e0)
    return float((i - 1 + frac) / (num_discs - 1))


METRICS = {
    "psd db mse": lambda c, g: psd_db_mse(c, g),
    "strip mse": lambda c, g: strip_mse(c, g),
    "strip wasserstein": lambda c, g: strip_wasserstein(c, g),
    "bandwidth 99%": lambda c, g: bandwidth_99(g),
}


def psd_scores(corrupted, outputs: Sequence, metrics: Sequence[str] = tuple(METRICS), strip=STRIP,
               fraction: float = 0.99, num_discs: int = 100) -> list[dict[str, float]]:
    """Every metric of :data:`METRICS` between one corrupted image and each of several outputs, with
    the values of :func:`psd_db_mse`, :func:`strip_mse`, :func:`strip_wasserstein` and
    :func:`bandwidth_99` (equal to round-off), the shared work done once.

    corrupted: (H, W) or (C, H, W); outputs: a list of arrays of the same shape. The corrupted image's
    dB PSD, the strip mask and each frequency's disc index are computed once per call, each output's PSD
    once (not once per metric), and the 99 % bandwidth comes from one cumulative radial sum
    (``bincount`` + ``cumsum``) instead of ``num_discs`` masked sums. Returns one ``{metric: value}``
    per output. :func:`score_architecture` scores through this.
    """
    metrics = _check_metric_names(metrics)
    strip = _check_strip(strip)
    fraction = _check_real("fraction", fraction, 0, 1, low_open=True)
    num_discs = _check_int("num_discs", num_discs, 2)
    if isinstance(outputs, (str, bytes, np.ndarray, torch.Tensor)) or not isinstance(outputs, Iterable):
        raise ValueError(f"outputs must be a list of images (C, H, W); got {type(outputs).__name__}")
    c = _as_chw(corrupted, "corrupted image")
    h, w = c.shape[-2:]
    c_db = db(psd(c))
    need_strip = "strip mse" in metrics or "strip wasserstein" in metrics
    m = strip_mask(h, w, *strip)
    if need_strip and not m.any():
        raise ValueError(f"the strip {strip} holds no frequency of a {h}x{w} image")
    if "strip wasserstein" in metrics:
        from scipy.stats import wasserstein_distance
    if "bandwidth 99%" in metrics:
        radii = np.linspace(0, np.sqrt(2), num_discs) / 2
        # r <= radii[k]  <=>  k >= disc: the energy inside disc k is a cumulative sum over disc indices
        disc = np.searchsorted(radii, frequency_radius(h, w).ravel(), side="left")
    out = []
    for k, g in enumerate(outputs):
        g = _as_chw(g, f"outputs[{k}]")
        if g.shape != c.shape:
            raise ValueError(f"outputs[{k}] must have the corrupted image's (C, H, W) {c.shape}; got {g.shape}")
        pg = psd(g)
        g_db = db(pg)
        vals = {}
        for name in metrics:
            if name == "psd db mse":
                vals[name] = float(np.mean((c_db - g_db) ** 2))
            elif name == "strip mse":
                vals[name] = float(np.mean((c_db[:, m] - g_db[:, m]) ** 2))
            elif name == "strip wasserstein":
                vals[name] = float(wasserstein_distance(c_db[:, m].ravel(), g_db[:, m].ravel()))
            else:
                p = pg.mean(axis=0).ravel()
                total = p.sum()
                if total <= 0:
                    raise ValueError(f"outputs[{k}] has zero energy: its bandwidth is undefined")
                energy = np.cumsum(np.bincount(disc, weights=p, minlength=num_discs)[:num_discs]) / total
                i = int(np.argmax(energy >= fraction - 1e-12))
                if i == 0:
                    vals[name] = 0.0
                else:
                    e0, e1 = energy[i - 1], energy[i]
                    frac = 0.0 if e1 == e0 else (fraction - e0) / (e1 - e0)
                    vals[name] = float((i - 1 + frac) / (num_discs - 1))
        out.append(vals)
    return out


def _check_metric_names(metrics) -> tuple[str, ...]:
    if isinstance(metrics, (str, bytes)) or not isinstance(metrics, Iterable):
        raise ValueError(f"metrics must be a list of metric names from {list(METRICS)} (a single one in a "
                         f"list); got {metrics!r}")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise ValueError(f"metrics must be a non-empty list of names from {list(METRICS)}; got {list(metrics)}")
    return metrics


def _check_problem(problem) -> DIPProblem:
    if not isinstance(problem, DIPProblem):
        raise ValueError(f"problem must be a DIPProblem (see medtut.data.dip_images.make_problem); got "
                         f"{type(problem).__name__}")
    return problem


@torch.no_grad()
def random_output(name: str | Arch, problem: DIPProblem, seed: int = 0, in_channels: int = 8,
                  width: int = 16, device: torch.device | str | None = None) -> torch.Tensor:
    """The untrained network's output for the input code, as the metric sees it: (C, h, w) on CPU.

    For SR the (H, W) output goes through the downsampler, so it is compared at the observed size.
    """
    _check_problem(problem)
    _check_seed(seed)
    out = _untrained_output(name, tuple(problem.clean.shape), seed, in_channels, width, device)
    return _as_seen_by(problem, out)


@torch.no_grad()
def _untrained_output(name: str | Arch, image_shape: tuple[int, int, int], seed: int, in_channels: int,
                      width: int, device) -> torch.Tensor:
    """(1, C, H, W) output of the network drawn with ``seed`` for its input code (seed + 1)."""
    C, H, W = image_shape
    model = build_model(name, in_channels, C, width, seed=seed, device=device)
    model.train()  # DIP always runs its BatchNorm layers in training mode
    eta = input_code((1, in_channels, H, W), seed=seed + 1).to(next(model.parameters()).device)
    return model(eta)


def _as_seen_by(problem: DIPProblem, out: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) network output → (C, h, w) on CPU at the size of the problem's observation."""
    if problem.task == "sr":
        from .data.dip_images import downsample
        out = downsample(out, problem.factor)
    return out[0].cpu()


def score_architecture(name: str | Arch, problem: DIPProblem | Sequence[DIPProblem], num_inits: int = 3,
                       seed: int = 0, metrics: Sequence[str] = tuple(METRICS), in_channels: int = 8,
                       width: int = 16, device: torch.device | str | None = None
                       ) -> dict[str, float] | list[dict[str, float]]:
    """Each metric between the corrupted image and the random output, averaged over ``num_inits``
    random initialisations (seeds ``seed, seed + 1000, ...``). Lower = predicted better.

    Given a list of problems (same image size), each initialisation's random output is computed once and
    compared with every problem's observation; returns one dict per problem.
    """
    device = resolve_device(device)
    num_inits = _check_int("num_inits", num_inits, 1)
    metrics = _check_metric_names(metrics)
    seed = _check_seed(seed)
    single, probs, (C, H, W) = _problem_list(problem)
    seen = [[] for _ in probs]                   # per problem: the random output of each initialisation
    for i in range(num_inits):
        out = _untrained_output(name, (C, H, W), seed + 1000 * i, in_channels, width, device)
        for p, g in zip(probs, seen):
            g.append(_as_seen_by(p, out))
    result = []
    for p, gs in zip(probs, seen):
        per_init = psd_scores(p.observed, gs, metrics)            # shares the spectra (see psd_scores)
        result.append({m: float(np.mean([v[m] for v in per_init])) for m in metrics})
    return result[0] if single else result


# ---------------------------------------------------------------------------------------------------
# 4. Cohort and consensus pick
# ---------------------------------------------------------------------------------------------------

def select_cohort(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` architectures with the lowest scores (ties broken by name), best first."""
    scores = _check_scores("scores", scores)
    k = _check_int("k", k, 1)
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in [1, {len(scores)}]; got {k}")
    return [n for n, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))[:k]]


def rank_weights(scores: Sequence[float]) -> np.ndarray:
    """ISNAS weights ``w_i = (m_max - m_i) / (m_max - m_min)``: 1 for the best score, 0 for the worst
    (all ones when every score is equal)."""
    m = np.asarray(scores, dtype=float)
    if m.ndim != 1 or m.size == 0 or not np.isfinite(m).all():
        raise ValueError(f"scores must be a non-empty 1-D array of finite numbers; got {m}")
    spread = m.max() - m.min()
    return np.ones_like(m) if spread == 0 else (m.max() - m) / spread


def consensus_pick(outputs: Mapping[str, torch.Tensor], scores: Mapping[str, float]) -> tuple[str, torch.Tensor]:
    """Pick the cohort member closest (highest PSNR) to the rank-weighted average of the outputs.

    outputs: ``{name: (C, H, W) output}`` of the trained cohort; scores: ``{name: metric}`` (lower
    better). Returns (chosen name, consensus image (C, H, W)). Uses no ground truth.
    """
    if not isinstance(outputs, Mapping):
        raise ValueError(f"outputs must be a dict {{architecture name: (C, H, W) output}}; got "
                         f"{type(outputs).__name__}")
    names = list(outputs)
    if not names:
        raise ValueError("consensus_pick needs at least one trained output")
    scores = _check_scores("scores", scores)
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"no score for {missing}")
    shapes = {}
    for n in names:
        o = outputs[n]
        t = torch.as_tensor(o) if isinstance(o, (torch.Tensor, np.ndarray)) else None
        if t is None or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"outputs[{n!r}] must be a real tensor (C, H, W); got {type(o).__name__}"
                             + ("" if t is None else f" of dtype {t.dtype}"))
        if t.ndim != 3 or not torch.isfinite(t).all():
            raise ValueError(f"outputs[{n!r}] must be a finite (C, H, W) image; got shape {tuple(t.shape)}"
                             + ("" if t.ndim != 3 else " with NaN or inf"))
        shapes[n] = tuple(t.shape)
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all outputs must share one (C, H, W); got {shapes}")
    w = torch.as_tensor(rank_weights([scores[n] for n in names]), dtype=torch.float32)
    if float(w.sum()) == 0:  # a cohort of two with distinct scores: only the best counts
        w = torch.ones_like(w)
    stack = torch.stack([torch.as_tensor(outputs[n]).float().cpu() for n in names])
    consensus = (w.view(-1, *[1] * (stack.ndim - 1)) * stack).sum(0) / w.sum()
    closeness = [psnr(stack[i], consensus, data_range=1.0) for i in range(len(names))]
    return names[int(np.argmax(closeness))], consensus


def isnas_pick(pool_scores: Mapping[str, float], pool_outputs: Mapping[str, torch.Tensor], k: int) -> str:
    """Cohort = the ``k`` best-scored; return the consensus pick's name."""
    cohort = select_cohort(pool_scores, k)
    if not isinstance(pool_outputs, Mapping):
        raise ValueError(f"pool_outputs must be a dict {{architecture name: (C, H, W) output}}; got "
                         f"{type(pool_outputs).__name__}")
    missing = [n for n in cohort if n not in pool_outputs]
    if missing:
        raise ValueError(f"pool_outputs has no trained output for the cohort members {missing}: train them "
                         "first (every scored architecture that can enter the cohort needs an output)")
    name, _ = consensus_pick({n: pool_outputs[n] for n in cohort}, {n: pool_scores[n] for n in cohort})
    return name


def random_cohort_psnrs(pool_psnr: Mapping[str, float], pool_outputs: Mapping[str, torch.Tensor], k: int,
                        num_resamples: int = 200, seed: int = 0) -> np.ndarray:
    """The random-cohort baseline: draw ``k`` architectures of the trained pool at random, give them
    random scores (the official "random" metric), make the same consensus pick, read its PSNR.
    Returns (num_resamples,) PSNRs; no training."""
    pool_psnr = _check_scores("pool_psnr", pool_psnr)
    if not isinstance(pool_outputs, Mapping):
        raise ValueError(f"pool_outputs must be a dict {{architecture name: (C, H, W) output}}; got "
                         f"{type(pool_outputs).__name__}")
    missing = [n for n in pool_psnr if n not in pool_outputs]
    if missing:
        raise ValueError(f"pool_outputs has no output for {missing}; pool_psnr and pool_outputs must cover "
                         "the same architectures")
    k = _check_int("k", k, 1)
    if k > len(pool_psnr):
        raise ValueError(f"k must be in [1, {len(pool_psnr)}] (the pool size); got {k}")
    num_resamples = _check_int("num_resamples", num_resamples, 1)
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    names = list(pool_psnr)
    out = []
    for _ in range(num_resamples):
        cohort = [names[i] for i in rng.choice(len(names), size=k, replace=False)]
        scores = dict(zip(cohort, rng.random(k)))
        pick, _ = consensus_pick({n: pool_outputs[n] for n in cohort}, scores)
        out.append(pool_psnr[pick])
    return np.array(out)


def train_pool(names: Sequence[str], problems: Sequence[DIPProblem], num_steps: int, *, seed: int = 0,
               desc: str = "training the pool", **kwargs) -> dict[str, list[DIPResult]]:
    """DIP-fit every architecture of ``names`` on every problem (same seed for all), with a progress bar
    over architectures. Returns ``{name: [DIPResult per problem]}``."""
    from tqdm.auto import tqdm

    names = _check_names("names", names)
    for n in names:
        Arch.from_name(n)
    _problem_list(problems)
    _check_int("num_steps", num_steps, 1)
    _check_seed(seed)
    results = {}
    for name in tqdm(names, desc=desc, leave=True):
        results[name] = fit_dip(name, list(problems), num_steps, seed=seed, **kwargs)
    return results


def kendall_tau(metric_values: Sequence[float], psnrs: Sequence[float]) -> float:
    """Kendall's tau-b between a metric and the PSNR over a pool (scipy); negative = metric works."""
    from scipy.stats import kendalltau

    try:
        a, b = np.asarray(metric_values, float), np.asarray(psnrs, float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metric_values and psnrs must be 1-D sequences of real numbers; {err}") from None
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two 1-D sequences of the same length >= 2; got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("metric_values and psnrs must be finite; got NaN or inf (drop those architectures)")
    return float(kendalltau(a, b).statistic)


def spanning_subset(scores: Mapping[str, float], n: int, include: Sequence[str] = ()) -> list[str]:
    """``n`` architectures that span the range of ``scores``: ``include`` first (e.g. the default network
    and the ISNAS pick, which need not be scored), then the architectures at evenly spaced ranks of the
    score (best, ..., worst), skipping those already included; returned in that order."""
    scores = _check_scores("scores", scores)
    n = _check_int("n", n, 1)
    include = [] if not include else _check_names("include", include)
    if len(include) > n:
        raise ValueError(f"include holds {len(include)} architectures, more than n = {n}")
    order = [a for a in select_cohort(scores, len(scores)) if a not in include]
    need = n - len(include)
    if need > len(order):
        raise ValueError(f"n = {n} needs {need} scored architectures besides include; scores has {len(order)}")
    if need == 0:
        return list(include)
    ranks = np.unique(np.round(np.linspace(0, len(order) - 1, need)).astype(int))
    return list(include) + [order[r] for r in ranks]


__all__ = ["PRIMITIVES", "CONV_OPS", "KERNELS", "ACTIVATIONS", "Arch", "SearchSpace", "default_dip_arch",
           "sample_architectures", "UpCell", "SearchableNet", "build_model", "input_code",
           "DIPResult", "fit_dip", "STRIP", "psd", "frequency_radius", "strip_mask", "db", "psd_db_mse",
           "strip_mse", "strip_wasserstein", "bandwidth_99", "METRICS", "psd_scores", "random_output",
           "score_architecture", "select_cohort", "rank_weights", "consensus_pick", "isnas_pick",
           "random_cohort_psnrs", "train_pool", "kendall_tau", "spanning_subset"]
