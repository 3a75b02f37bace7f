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
from .train import History, fit

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
        if self.kernel not in (1, 3, 5, 7):
            raise ValueError(f"kernel must be 1, 3, 5 or 7; got {self.kernel!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {self.activation!r}")
        L = len(self.skip)
        if L < 1 or any(len(row) != L for row in self.skip) or any(b not in (0, 1) for r in self.skip for b in r):
            raise ValueError(f"skip must be a square (L, L) matrix of 0/1; got {self.skip!r}")

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
        """Inverse of :attr:`name`."""
        parts = str(name).split("-")
        if len(parts) != 5 or not parts[2].startswith("k") or not parts[4].startswith("s"):
            raise ValueError(f"an architecture name looks like 'bilinear-conv-k3-lrelu-s100010001'; got {name!r}")
        bits = parts[4][1:]
        L = int(round(len(bits) ** 0.5))
        if L * L != len(bits) or set(bits) - {"0", "1"} or not parts[2][1:].isdigit():
            raise ValueError(f"bad architecture name {name!r}: the skip part must be L*L bits of 0/1")
        skip = tuple(tuple(int(b) for b in bits[r * L:(r + 1) * L]) for r in range(L))
        return cls(parts[0], parts[1], int(parts[2][1:]), parts[3], skip)


def default_dip_arch(levels: int) -> Arch:
    """DIP's own ``skip`` net in this family: plain bilinear upsampling, same-scale skips only."""
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
    """``n`` distinct architecture names drawn uniformly (cell and each skip bit) with a fixed seed."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if n > space.size:
        raise ValueError(f"cannot draw {n} distinct architectures from a space of {space.size}")
    rng = np.random.default_rng(seed)
    names: list[str] = []
    seen = set(exclude)
    while len(names) < n:
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
        if copies < 1:
            raise ValueError(f"copies must be >= 1; got {copies}")
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
    arch = name if isinstance(name, Arch) else Arch.from_name(name)
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
    elif copies < 1:
        raise ValueError(f"copies must be >= 1; got {copies}")
    return model.to(resolve_device(device))


def input_code(shape: Sequence[int], seed: int, scale: float = 0.1) -> torch.Tensor:
    """DIP's fixed input code ``eta ~ U(0, scale)`` of ``shape`` (B, C, H, W), from ``seed`` (CPU)."""
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
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    if not 0 <= ema < 1:
        raise ValueError(f"ema must be in [0, 1); got {ema}")
    single, probs, (C, H, W) = _problem_list(problems)
    device = resolve_device(device)
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
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def strip_mask(h: int, w: int, low: float = STRIP[0], high: float = STRIP[1]) -> np.ndarray:
    """(h, w) bool mask of the frequency annulus ``low <= |f| < high`` (cycles/pixel)."""
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high; got low={low}, high={high}")
    r = frequency_radius(h, w)
    return (r >= low) & (r < high)


def db(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Power in decibels, ``10 log10(p + eps)`` (the official code uses ln: a constant factor)."""
    return 10.0 * np.log10(np.asarray(p) + eps)


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
    m = strip_mask(*pc.shape[-2:], *strip)
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
    m = strip_mask(*pc.shape[-2:], *strip)
    if not m.any():
        raise ValueError(f"the strip {strip} holds no frequency of a {pc.shape[-2]}x{pc.shape[-1]} image")
    return float(wasserstein_distance(db(pc)[:, m].ravel(), db(pg)[:, m].ravel()))


def bandwidth_99(output, fraction: float = 0.99, num_discs: int = 100) -> float:
    """Normalised radius holding ``fraction`` of the (channel-averaged) spectral energy, in [0, 1].

    Discs of diameter ``linspace(0, sqrt(2), num_discs)`` (in cycles/pixel) around the centre; returns the
    interpolated index of the first disc holding ``fraction`` of the energy, divided by
    ``num_discs - 1``. Image-independent: small = the network is a low-pass prior.
    """
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


@torch.no_grad()
def random_output(name: str | Arch, problem: DIPProblem, seed: int = 0, in_channels: int = 8,
                  width: int = 16, device: torch.device | str | None = None) -> torch.Tensor:
    """The untrained network's output for the input code, as the metric sees it: (C, h, w) on CPU.

    For SR the (H, W) output goes through the downsampler, so it is compared at the observed size.
    """
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
    if num_inits < 1:
        raise ValueError(f"num_inits must be >= 1; got {num_inits}")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; available: {list(METRICS)}")
    single, probs, (C, H, W) = _problem_list(problem)
    values = [{m: [] for m in metrics} for _ in probs]
    for i in range(num_inits):
        out = _untrained_output(name, (C, H, W), seed + 1000 * i, in_channels, width, device)
        for p, vals in zip(probs, values):
            g = _as_seen_by(p, out)
            for m in metrics:
                vals[m].append(METRICS[m](p.observed, g))
    result = [{m: float(np.mean(v)) for m, v in vals.items()} for vals in values]
    return result[0] if single else result


# ---------------------------------------------------------------------------------------------------
# 4. Cohort and consensus pick
# ---------------------------------------------------------------------------------------------------

def select_cohort(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` architectures with the lowest scores (ties broken by name), best first."""
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
    names = list(outputs)
    if not names:
        raise ValueError("consensus_pick needs at least one trained output")
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"no score for {missing}")
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
    name, _ = consensus_pick({n: pool_outputs[n] for n in cohort}, {n: pool_scores[n] for n in cohort})
    return name


def random_cohort_psnrs(pool_psnr: Mapping[str, float], pool_outputs: Mapping[str, torch.Tensor], k: int,
                        num_resamples: int = 200, seed: int = 0) -> np.ndarray:
    """The random-cohort baseline: draw ``k`` architectures of the trained pool at random, give them
    random scores (the official "random" metric), make the same consensus pick, read its PSNR.
    Returns (num_resamples,) PSNRs; no training."""
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

    results = {}
    for name in tqdm(list(names), desc=desc, leave=True):
        results[name] = fit_dip(name, list(problems), num_steps, seed=seed, **kwargs)
    return results


def kendall_tau(metric_values: Sequence[float], psnrs: Sequence[float]) -> float:
    """Kendall's tau-b between a metric and the PSNR over a pool (scipy); negative = metric works."""
    from scipy.stats import kendalltau

    a, b = np.asarray(metric_values, float), np.asarray(psnrs, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two 1-D sequences of the same length >= 2; got {a.shape} and {b.shape}")
    return float(kendalltau(a, b).statistic)


__all__ = ["PRIMITIVES", "CONV_OPS", "KERNELS", "ACTIVATIONS", "Arch", "SearchSpace", "default_dip_arch",
           "sample_architectures", "UpCell", "SearchableNet", "build_model", "input_code",
           "DIPResult", "fit_dip", "STRIP", "psd", "frequency_radius", "strip_mask", "db", "psd_db_mse",
           "strip_mse", "strip_wasserstein", "bandwidth_99", "METRICS", "random_output",
           "score_architecture", "select_cohort", "rank_weights", "consensus_pick", "isnas_pick",
           "random_cohort_psnrs", "train_pool", "kendall_tau"]
