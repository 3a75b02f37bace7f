"""Chapter 8: hyperspectral super-resolution with Spectral Mixup, an auxiliary RGB task and LR-only data.

Reads top-down like the method (Li, Dai, Konukoglu, Van Gool, WACV 2022, arXiv:2101.07589):

1. **Spectral Mixup** (:func:`spectral_mixup`): a random per-pixel linear remix of the spectrum, applied
   with *one* matrix to the LR input, its bicubic upsampling and the HR target. The degradation is
   spatial and band-wise linear, so the remixed LR/HR pair is exactly consistent: virtual training pairs
   with new spectra.
2. **Band groups and the shared network** (:func:`band_groups`, :func:`merge_groups`, :class:`GroupNet`,
   :class:`DeepShare`): the 31 bands are cut into overlapping groups of 8; one group sub-network (8 bands
   in, x4, 8 out) serves every group and also the RGB task, whose images are expanded to 8 pseudo-bands;
   each task has its own trunk. For the paper's motivating failure (a network that learns which spectra
   exist and bends unseen ones), ``Config(residual=False)`` drops our global residual ``x_up + ...`` (SSPSR's
   trunk), and :class:`PlainSR` (``Config(arch="plain")``) is a plain residual CNN on ``x_up`` without groups.
3. **Losses** (:func:`hybrid_loss`, :func:`semi_supervised_loss`): L1 + spatial and spectral gradient
   penalties; for LR-only HSIs, "super-resolve then project to RGB" must agree with "project to RGB, then
   super-resolve with the RGB branch".
4. **Training** (:class:`Config`, :func:`train`): the official alternation, one optimiser step per task
   term (labelled -> mixup -> RGB -> unlabelled), each part switchable, through :func:`medtut.train.fit`.
5. **Whole-image metrics** (:func:`mpsnr`, :func:`sam`, :func:`ergas`, :func:`evaluate`).

Scaled down for a CPU: 16-32 features instead of 256, one spatial-spectral block per stage instead of
three; everything else follows the official code (defects listed in the chapter are fixed).

Every public function and constructor checks its arguments where they arrive (issue 24): shapes and their
agreement, real floating dtypes, NaN/inf, value ranges, option types and devices (through
:func:`medtut.resolve_device`), with a ``ValueError`` naming the argument, what was expected and what arrived.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from .config import resolve_device
from .data.hyperspectral import _check_float, _check_images, _check_int, _check_unit_range
from .data.hyperspectral import degrade, projection_matrix, rgb_to_8_matrix
from .metrics import psnr as _core_psnr
from .train import History, fit
from .train import TrainResult as _TrainResult


_check_bchw = _check_images          # (B, C, H, W), real float, non-empty, finite (shared with the data module)


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be None or a torch.Generator (torch.Generator().manual_seed(0)); "
                         f"got {type(generator).__name__}")


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_matrix(name: str, M, shape: tuple[int, ...]) -> None:
    """``M`` must be a real, finite tensor of ``shape`` (a ``-1`` in ``shape`` matches any size)."""
    if not isinstance(M, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor of shape {shape}; got {type(M).__name__}")
    if M.ndim != len(shape) or any(w != -1 and g != w for g, w in zip(M.shape, shape)):
        raise ValueError(f"{name} must be a {shape} tensor; got shape {tuple(M.shape)}")
    if M.is_complex() or M.dtype == torch.bool:
        raise ValueError(f"{name} must be real; got dtype {M.dtype}")
    if not torch.isfinite(M).all():
        raise ValueError(f"{name} contains NaN or inf")


# ---------------------------------------------------------------------------------------------------
# 1. Spectral Mixup
# ---------------------------------------------------------------------------------------------------

def mixup_matrix(C: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random normalised mixing matrix M~ (C, C) float32 on the CPU: ``M_ab ~ U(0, 1)`` divided by
    its mean column sum ``(1/C) sum_ab M_ab``, so the mean column sum of M~ is exactly 1."""
    if isinstance(C, (bool, np.bool_)) or not isinstance(C, (int, np.integer)) or C < 1:
        raise ValueError(f"C must be a positive int; got {C!r}")
    _check_generator(generator)
    M = torch.rand(int(C), int(C), generator=generator)
    return M / (M.sum() / C)


def spectral_mixup(*tensors: torch.Tensor, M: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Spectral Mixup of (B, C, H, W) tensors with one shared matrix.

    Every pixel spectrum ``s`` (a row vector of C values) becomes ``s' = 1/2 (s + s M~)``, with
    ``M~ = M / ((1/C) sum_ab M_ab)`` and ``M_ab ~ U(0, 1)`` drawn from ``generator`` unless ``M`` is given
    (a given M is normalised the same way; ``M = I`` gives the identity map). Pass the LR input ``x``,
    its upsampling ``x_up`` and the HR target ``y`` together: since the degradation D is band-wise linear
    and spatial, ``D(y) = x`` implies ``D(y') = x'``.

    Returns ``(*mixed_tensors, M~)``.
    """
    if not tensors:
        raise ValueError("spectral_mixup needs at least one tensor (B, C, H, W)")
    for i, t in enumerate(tensors):
        _check_bchw(t, f"tensors[{i}]")
    C = tensors[0].shape[1]
    if any(t.shape[1] != C for t in tensors):
        raise ValueError(f"all tensors must have the same number of bands; got {[t.shape[1] for t in tensors]}")
    if any(t.shape[0] != tensors[0].shape[0] for t in tensors):
        raise ValueError(f"all tensors must have the same batch size B (one LR/HR pair per item); got "
                         f"{[t.shape[0] for t in tensors]}")
    _check_generator(generator)
    if M is None:
        Mn = mixup_matrix(C, generator)
    else:
        if generator is not None:
            raise ValueError("give M or generator, not both: a given M is used as it is (after normalisation)")
        if not isinstance(M, torch.Tensor) or tuple(M.shape) != (C, C):
            raise ValueError(f"M must be a ({C}, {C}) tensor; got "
                             f"{tuple(M.shape) if isinstance(M, torch.Tensor) else type(M).__name__}")
        _check_matrix("M", M, (C, C))
        total = float(M.sum())
        if not math.isfinite(total) or total <= 0:
            raise ValueError(f"M must have finite entries with a positive sum; got sum {total}")
        Mn = M.float() / (total / C)
    out = []
    for t in tensors:
        Mt = Mn.to(device=t.device, dtype=t.dtype)
        out.append(0.5 * (t + torch.einsum("bahw,ac->bchw", t, Mt)))
    return (*out, Mn)


# ---------------------------------------------------------------------------------------------------
# 2. Band groups and the network
# ---------------------------------------------------------------------------------------------------

def band_groups(C: int, size: int = 8, overlap: int = 2) -> list[tuple[int, int]]:
    """Overlapping band groups ``[(start, end), ...]`` (end exclusive).

    ``G = ceil((C - overlap) / (size - overlap))`` groups at stride ``size - overlap``; the last one is
    shifted to end at band C. ``band_groups(31)`` starts at 0, 6, 12, 18, 23.
    """
    for name, v in (("C", C), ("size", size), ("overlap", overlap)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int; got {v!r}")
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size; got size={size}, overlap={overlap}")
    if C < size:
        raise ValueError(f"C must be >= size={size}; got C={C}")
    stride = size - overlap
    G = max(1, math.ceil((C - overlap) / stride))
    starts = [g * stride for g in range(G)]
    starts[-1] = C - size
    return [(s, s + size) for s in starts]


def _check_groups(groups, C: int) -> int:
    """``groups`` must be a non-empty list of (start, end) int pairs of one size, inside [0, C]; the size."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(f"groups must be a non-empty list of (start, end) pairs, e.g. band_groups({C}); "
                         f"got {groups!r}")
    ok = all(isinstance(g, (tuple, list)) and len(g) == 2
             and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in g)
             and 0 <= g[0] < g[1] <= C for g in groups)
    if not ok:
        raise ValueError(f"groups must be (start, end) int pairs with 0 <= start < end <= C={C}; got {list(groups)}")
    sizes = {int(e) - int(s) for s, e in groups}
    if len(sizes) != 1:
        raise ValueError(f"all groups must have the same size (one shared sub-network); got sizes {sorted(sizes)}")
    return sizes.pop()


def split_groups(x: torch.Tensor, groups: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(B, C, H, W) -> (G * B, size, H, W): the groups stacked along the batch (group-major)."""
    _check_bchw(x, "x")
    _check_groups(groups, x.shape[1])
    return torch.cat([x[:, s:e] for s, e in groups], dim=0)


def merge_groups(parts: torch.Tensor, groups: Sequence[tuple[int, int]], C: int) -> torch.Tensor:
    """Inverse of :func:`split_groups`: (G * B, size, H, W) -> (B, C, H, W), averaging the bands where
    groups overlap (sum of the contributions divided by each band's group count)."""
    C = _check_int("C", C, 1)
    size = _check_groups(groups, C)
    if not isinstance(parts, torch.Tensor) or not parts.is_floating_point():
        raise ValueError(f"parts must be a real float tensor (G * B, size, H, W); got {type(parts).__name__}"
                         + (f" {parts.dtype}" if isinstance(parts, torch.Tensor) else ""))
    G = len(groups)
    if parts.ndim != 4 or parts.shape[0] % G or parts.shape[0] == 0:
        raise ValueError(f"parts must be (G * B, size, H, W) with G={G}; got shape {tuple(parts.shape)}")
    if parts.shape[1] != size:
        raise ValueError(f"parts must have {size} bands per group (the groups' size); got {parts.shape[1]}")
    B = parts.shape[0] // G
    out = parts.new_zeros((B, C, *parts.shape[-2:]))
    count = parts.new_zeros((1, C, 1, 1))
    for g, (s, e) in enumerate(groups):
        out[:, s:e] += parts[g * B:(g + 1) * B]
        count[:, s:e] += 1
    if (count == 0).any():
        raise ValueError(f"the groups {list(groups)} do not cover all {C} bands")
    return out / count


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: (B, F, H, W) scaled per channel by sigmoid(MLP(global average))."""

    def __init__(self, feats: int, reduction: int = 4):
        _check_int("feats", feats, 1)
        _check_int("reduction", reduction, 1)
        super().__init__()
        hidden = max(1, feats // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(feats, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, feats, 1),
                                 nn.Sigmoid())

    def forward(self, x):
        return x * self.mlp(x.mean(dim=(-2, -1), keepdim=True))


class SpatialSpectralBlock(nn.Module):
    """A spatial residual block (3x3 convs) then a spectral one (1x1 convs + channel attention), both
    scaled by ``res_scale`` (0.1 in the paper). Shape-preserving (B, F, H, W)."""

    def __init__(self, feats: int, res_scale: float = 0.1):
        _check_int("feats", feats, 1)
        _check_float("res_scale", res_scale)
        super().__init__()
        self.res_scale = res_scale
        self.spatial = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(feats, feats, 3, padding=1))
        self.spectral = nn.Sequential(nn.Conv2d(feats, feats, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(feats, feats, 1), ChannelAttention(feats))

    def forward(self, x):
        x = x + self.res_scale * self.spatial(x)
        return x + self.res_scale * self.spectral(x)


def _sspn(feats: int, blocks: int, res_scale: float) -> nn.Module:
    """SSPN: ``blocks`` spatial-spectral blocks with a global residual."""
    body = nn.Sequential(*[SpatialSpectralBlock(feats, res_scale) for _ in range(blocks)])

    class _Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    return _Residual()


def _check_net_sizes(res_scale: float, **counts: int) -> None:
    for name, value in counts.items():
        _check_int(name, value, 1)
    _check_float("res_scale", res_scale)


def _upsampler(feats: int) -> nn.Module:
    """x2: conv F -> 4F, PixelShuffle(2)."""
    return nn.Sequential(nn.Conv2d(feats, 4 * feats, 3, padding=1), nn.PixelShuffle(2))


class GroupNet(nn.Module):
    """The shared group sub-network: (N, size, h, w) -> (N, size, 4h, 4w).

    branch 1: conv size -> F, SSPN, x2; branch 2: conv F -> F, SSPN, x2, conv F -> size.
    """

    def __init__(self, size: int = 8, feats: int = 32, blocks: int = 1, res_scale: float = 0.1):
        _check_net_sizes(size=size, feats=feats, blocks=blocks, res_scale=res_scale)
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(size, feats, 3, padding=1), _sspn(feats, blocks, res_scale),
                                     _upsampler(feats))
        self.branch2 = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), _sspn(feats, blocks, res_scale),
                                     _upsampler(feats), nn.Conv2d(feats, size, 3, padding=1))

    def forward(self, x):
        return self.branch2(self.branch1(x))


class Trunk(nn.Module):
    """Task-specific trunk at HR: ``x_up + final(SSPN(conv(z)) + skip(x_up))``, (B, C, H, W) -> (B, C, H, W).

    The global residual ``x_up +`` and the zero-initialised final convolution are ours (SSPSR has only the
    skip convolution): the untrained network is exactly bicubic upsampling, where a network of this size
    trained for a few minutes would otherwise spend its budget learning to reproduce it. ``residual=False``
    gives SSPSR's trunk, ``final(SSPN(conv(z)) + skip(x_up))`` with PyTorch's default initialisation.
    """

    def __init__(self, C: int, feats: int = 32, blocks: int = 1, res_scale: float = 0.1, residual: bool = True):
        _check_net_sizes(C=C, feats=feats, blocks=blocks, res_scale=res_scale)
        residual = _check_bool("residual", residual)
        super().__init__()
        self.residual = residual
        self.head = nn.Conv2d(C, feats, 3, padding=1)
        self.body = _sspn(feats, blocks, res_scale)
        self.skip = nn.Conv2d(C, feats, 3, padding=1)
        self.final = nn.Conv2d(feats, C, 3, padding=1)
        if self.residual:
            nn.init.zeros_(self.final.weight)   # an untrained network returns x_up exactly (bicubic)
            nn.init.zeros_(self.final.bias)

    def forward(self, z, x_up):
        out = self.final(self.body(self.head(z)) + self.skip(x_up))
        return x_up + out if self.residual else out


def _check_pair_input(x, x_up, C: int, w: torch.Tensor) -> None:
    """x (B, C, h, w) and x_up (B, C, 4h, 4w), real, finite, with the dtype and device of the weight ``w``."""
    _check_bchw(x, "x", C)
    _check_bchw(x_up, "x_up", C)
    for name, t in (("x", x), ("x_up", x_up)):
        if t.dtype != w.dtype or t.device != w.device:
            raise ValueError(f"{name} must be {w.dtype} on {w.device} like the model's weights; got {t.dtype} on "
                             f"{t.device} (use .to(model_device, torch.float32) or model.to(...))")
    if tuple(x_up.shape[-2:]) != (4 * x.shape[-2], 4 * x.shape[-1]) or x_up.shape[0] != x.shape[0]:
        raise ValueError(f"x_up must be (B, C, 4h, 4w) for x (B, C, h, w); got {tuple(x_up.shape)} "
                         f"for {tuple(x.shape)}")


class DeepShare(nn.Module):
    """HSI x4 SR with a group sub-network shared by every band group and by the RGB task.

    ``model(x, x_up)``: x (B, C, h, w), x_up (B, C, 4h, 4w) -> (B, C, 4h, 4w).
    ``model.forward_rgb(x8, x8_up)``: 8 pseudo-bands (B, 8, h, w), (B, 8, 4h, 4w) -> (B, 8, 4h, 4w).
    """

    def __init__(self, C: int = 31, group_size: int = 8, overlap: int = 2, feats: int = 32, blocks: int = 1,
                 res_scale: float = 0.1, factor: int = 4, residual: bool = True):
        if _check_int("factor", factor, 1) != 4:
            raise ValueError(f"factor must be 4 (the network upsamples by 2 x 2); got factor={factor!r}")
        _check_net_sizes(C=C, group_size=group_size, feats=feats, blocks=blocks, res_scale=res_scale)
        band_groups(C, group_size, overlap)              # C against the band groups: raises if they do not fit
        super().__init__()
        self.C, self.groups, self.group_size = C, band_groups(C, group_size, overlap), group_size
        self.group_net = GroupNet(group_size, feats, blocks, res_scale)
        self.hsi_trunk = Trunk(C, feats, blocks, res_scale, residual)
        self.rgb_trunk = Trunk(group_size, feats, blocks, res_scale, residual)

    def _check(self, x, x_up, C):
        _check_pair_input(x, x_up, C, self.hsi_trunk.final.weight)

    def forward(self, x, x_up):
        self._check(x, x_up, self.C)
        z = merge_groups(self.group_net(split_groups(x, self.groups)), self.groups, self.C)
        return self.hsi_trunk(z, x_up)

    def forward_rgb(self, x8, x8_up):
        self._check(x8, x8_up, self.group_size)
        return self.rgb_trunk(self.group_net(x8), x8_up)


class PlainSR(nn.Module):
    """The "plain SR" network of the paper's motivation: a residual CNN on the bicubic upsampling, with no
    band groups and no auxiliary task, in which every 3x3 convolution mixes all C bands (so it can learn
    which spectra exist).

    ``model(x, x_up)``: x (B, C, h, w) (checked, not used), x_up (B, C, 4h, 4w) -> (B, C, 4h, 4w) =
    ``x_up + tail(blocks(head(x_up)))`` (``residual=True``) or ``tail(blocks(head(x_up)))``. head: conv
    C -> F with no activation (as in EDSR: a ReLU there can die for good early in training at lr 1e-3, and
    then no signal reaches the tail, so the network stays at bicubic); ``blocks`` residual blocks (3x3 conv,
    ReLU, 3x3 conv, identity added); tail: conv F -> C. PyTorch's default initialisation everywhere, so even
    with the residual the untrained network is not exactly bicubic.
    """

    def __init__(self, C: int = 31, feats: int = 32, blocks: int = 3, residual: bool = True):
        _check_net_sizes(C=C, feats=feats, blocks=blocks, res_scale=1.0)
        residual = _check_bool("residual", residual)
        super().__init__()
        self.C, self.residual = C, residual
        self.head = nn.Conv2d(C, feats, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.ReLU(inplace=True),
                                                   nn.Conv2d(feats, feats, 3, padding=1)) for _ in range(blocks)])
        self.tail = nn.Conv2d(feats, C, 3, padding=1)

    def forward(self, x, x_up):
        _check_pair_input(x, x_up, self.C, self.tail.weight)
        h = self.head(x_up)
        for block in self.blocks:
            h = h + block(h)
        out = self.tail(h)
        return x_up + out if self.residual else out


def rgb_to_8(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) linear RGB -> (B, 8, H, W) pseudo-bands by the fixed 3 -> 8 expansion."""
    _check_bchw(rgb, "rgb", 3)
    E = torch.as_tensor(rgb_to_8_matrix(), dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("bchw,ck->bkhw", rgb, E)


def project(hsi: torch.Tensor, P: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, 8, H, W) by the 31 -> 8 camera-like projection ``P`` (default
    :func:`medtut.data.hyperspectral.projection_matrix`): ``out_k = sum_c hsi_c P_ck``."""
    _check_bchw(hsi, "hsi")
    if P is not None:
        if not isinstance(P, (torch.Tensor, np.ndarray)):
            raise ValueError(f"P must be None or a ({hsi.shape[1]}, K) tensor or array; got {type(P).__name__}")
        if np.iscomplexobj(P) if isinstance(P, np.ndarray) else P.is_complex():
            raise ValueError(f"P must be real; got dtype {P.dtype}")
    P = torch.as_tensor(projection_matrix() if P is None else P, dtype=hsi.dtype, device=hsi.device)
    if P.ndim != 2 or P.shape[0] != hsi.shape[1] or P.shape[1] < 1:
        raise ValueError(f"P must be ({hsi.shape[1]}, K); got {tuple(P.shape)}")
    if not torch.isfinite(P).all():
        raise ValueError("P contains NaN or inf")
    return torch.einsum("bchw,ck->bkhw", hsi, P)


# ---------------------------------------------------------------------------------------------------
# 3. Losses
# ---------------------------------------------------------------------------------------------------

def hybrid_loss(pred: torch.Tensor, y: torch.Tensor, spatial_weight: float = 1e-3,
                spectral_weight: float = 2e-3) -> torch.Tensor:
    """The HybridLoss of the official code, a scalar:

    ``L(y_hat, y) = mean|y_hat - y| + spatial_weight * [mean((d_h y_hat)^2) + mean((d_w y_hat)^2)]
    + spectral_weight * mean((d_lambda y_hat)^2)``

    with ``y_hat = pred`` and ``y`` (B, C, H, W), ``d_h``, ``d_w`` forward differences along H and W and
    ``d_lambda`` the difference of adjacent bands. The gradient terms act on the prediction only (a
    smoothness prior, as in the official code).
    """
    _check_bchw(pred, "pred")
    _check_bchw(y, "y")
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape; got {tuple(pred.shape)} and {tuple(y.shape)}")
    _check_float("spatial_weight", spatial_weight, 0.0)
    _check_float("spectral_weight", spectral_weight, 0.0)
    l1 = (pred - y).abs().mean()
    dh = (pred[:, :, 1:] - pred[:, :, :-1]).pow(2).mean()
    dw = (pred[..., 1:] - pred[..., :-1]).pow(2).mean()
    loss = l1 + spatial_weight * (dh + dw)
    if pred.shape[1] > 1:
        loss = loss + spectral_weight * (pred[:, 1:] - pred[:, :-1]).pow(2).mean()
    return loss


def semi_supervised_loss(model: DeepShare, x: torch.Tensor, x_up: torch.Tensor,
                         P: torch.Tensor | None = None) -> torch.Tensor:
    """Consistency on LR-only HSIs: ``L_u = hybrid_loss(P f_HSI(x, x_up), f_RGB(P x, P x_up))``.

    x (B, C, h, w), x_up (B, C, 4h, 4w); P the fixed (C, 8) projection. No stop-gradient: both the HSI
    path and the RGB path receive gradients, as in the official code.
    """
    if not isinstance(model, DeepShare):
        raise ValueError(f"model must be a DeepShare network (build_model); got {type(model).__name__}")
    _check_bchw(x, "x", model.C)
    if P is not None:
        _check_matrix("P", torch.as_tensor(P), (model.C, model.group_size))
    return hybrid_loss(project(model(x, x_up), P), model.forward_rgb(project(x, P), project(x_up, P)))


# ---------------------------------------------------------------------------------------------------
# 4. Training
# ---------------------------------------------------------------------------------------------------

ARCHS = ("deepshare", "plain")


@dataclass
class Config:
    """Settings of one training run. Paper values in comments; defaults are the book's CPU scale."""
    num_steps: int = 1500            # iterations (one labelled batch each); paper: 10 epochs of CAVE patches
    batch_size: int = 8              # paper: 8
    crop: int = 32                   # HR crop (pixels); paper: 64 with stride 32
    lr: float = 1e-3                 # paper: 1e-4 with 256 features; x0.3 at half and for the last 10 %
    feats: int = 16                  # paper: 256
    blocks: int = 1                  # spatial-spectral blocks per SSPN; paper: 3
    res_scale: float = 0.1
    group_size: int = 8
    overlap: int = 2
    factor: int = 4
    mixup: bool = False              # one Spectral Mixup step per labelled step (paper: theta_mix = 1)
    rgb: bool = False                # auxiliary RGB SR steps
    rgb_steps: int = 1               # RGB batches per labelled batch (paper: 3)
    semi: bool = False               # consistency steps on LR-only HSIs
    semi_steps: int = 1              # unlabelled batches per labelled batch (paper: 3)
    semi_fraction: float = 0.5       # used during the first half of training only
    arch: str = "deepshare"          # "deepshare" (the paper's network) or "plain" (PlainSR: the motivating failure)
    residual: bool = True            # ours: output = x_up + network; False: the network alone (SSPSR, plain CNN)

    def __post_init__(self):
        for name in ("num_steps", "batch_size", "crop", "feats", "blocks", "group_size", "rgb_steps", "semi_steps"):
            _check_int(f"Config.{name}", getattr(self, name), 1)
        _check_int("Config.overlap", self.overlap, 0)
        if self.overlap >= self.group_size:
            raise ValueError(f"Config.overlap must be < group_size={self.group_size}; got {self.overlap}")
        if _check_int("Config.factor", self.factor, 1) != 4:
            raise ValueError(f"Config.factor must be 4 (the network upsamples by 2 x 2); got {self.factor}")
        if self.crop % self.factor or self.crop < 2 * self.factor:
            raise ValueError(f"crop must be a multiple of factor={self.factor} and >= {2 * self.factor}; "
                             f"got {self.crop}")
        _check_float("Config.lr", self.lr, 0.0, strict=True)
        _check_float("Config.res_scale", self.res_scale)
        for name in ("mixup", "rgb", "semi", "residual"):
            _check_bool(f"Config.{name}", getattr(self, name))
        if not isinstance(self.arch, str) or self.arch not in ARCHS:
            raise ValueError(f"Config.arch must be one of {ARCHS}; got {self.arch!r}")
        if self.arch == "plain" and (self.rgb or self.semi):
            raise ValueError("Config.arch='plain' has no shared group sub-network, so rgb and semi must be False; "
                             f"got rgb={self.rgb}, semi={self.semi} (use arch='deepshare')")
        _check_float("Config.semi_fraction", self.semi_fraction, 0.0)
        if not 0 <= self.semi_fraction <= 1:
            raise ValueError(f"semi_fraction must be in [0, 1]; got {self.semi_fraction}")

    @property
    def name(self) -> str:
        first = "baseline" if self.arch == "deepshare" else "plain SR"
        if not self.residual:
            first += " (no x_up residual)"
        parts = [first] + [p for p, on in (("RGB", self.rgb), ("semi", self.semi), ("mixup", self.mixup)) if on]
        return " + ".join(parts)


def optimizer_steps(config: Config, num_steps: int | None = None) -> int:
    """Adam steps that :func:`train` takes with ``config`` for ``num_steps`` iterations (default
    ``config.num_steps``): one labelled step per iteration, plus one mixup step, ``rgb_steps`` RGB steps,
    and ``semi_steps`` unlabelled steps in the iterations ``t < semi_fraction * num_steps``."""
    _check_config(config)
    T = config.num_steps if num_steps is None else _check_int("num_steps", num_steps, 1)
    per_iter = 1 + int(config.mixup) + (config.rgb_steps if config.rgb else 0)
    return T * per_iter + (_semi_iterations(T, config.semi_fraction) * config.semi_steps if config.semi else 0)


def _semi_iterations(T: int, fraction: float) -> int:
    """How many t in 0..T-1 satisfy ``t / T < fraction`` (the test :func:`train` applies), in O(1)."""
    n = min(T, max(0, math.ceil(fraction * T)))
    while n > 0 and (n - 1) / T >= fraction:       # guard the float rounding of fraction * T
        n -= 1
    while n < T and n / T < fraction:
        n += 1
    return n


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise ValueError(f"config must be a medtut.hsi_sr.Config; got {type(config).__name__}")


def iterations_for(config: Config, budget: int) -> int:
    """The number of iterations whose :func:`optimizer_steps` is closest to ``budget`` (ties: fewer), so
    that arms with more task terms per iteration can be compared at an equal number of Adam steps."""
    _check_config(config)
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be an int >= 1 optimiser step; got {budget!r}")
    # optimizer_steps grows with T, so the scan can stop at the first T that overshoots the budget
    best, best_key = 1, None
    for T in range(1, int(budget) + 1):
        steps = optimizer_steps(config, T)
        key = (abs(steps - budget), T)
        if best_key is None or key < best_key:
            best, best_key = T, key
        if steps >= budget:
            break
    return best


@dataclass
class TrainResult(_TrainResult):
    """What :func:`train` returns beside the model: the history (losses per step), wall time, the
    config, and the counts that a fair comparison needs (optimiser steps and images seen per task)."""
    history: History = field(repr=False)
    wall_time_s: float
    config: Config
    optimizer_steps: int
    images_seen: dict


class CropSampler:
    """Aligned random crops of (LR, x_up, HR) triples with one of the 8 flips/rotations, drawn from its
    own generator (so two runs with the same seed see the same crops whatever else they do)."""

    def __init__(self, y: torch.Tensor, crop: int, factor: int, batch_size: int, seed: int,
                 lr_only: bool = False):
        _check_bchw(y, "images")
        _check_int("factor", factor, 1)
        _check_int("crop", crop, factor)
        if crop % factor:
            raise ValueError(f"crop must be a multiple of factor={factor}; got {crop}")
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        _check_bool("lr_only", lr_only)
        if min(y.shape[-2:]) < crop:
            raise ValueError(f"images ({tuple(y.shape[-2:])}) are smaller than the crop {crop}")
        if y.shape[-1] % factor or y.shape[-2] % factor:
            raise ValueError(f"images' H and W must be divisible by factor={factor}; got {tuple(y.shape[-2:])}")
        self.y = y
        self.x, self.x_up = degrade(y, factor)
        self.crop, self.factor, self.batch_size, self.lr_only = crop, factor, batch_size, lr_only
        self.rng = np.random.default_rng(seed)

    def sample(self):
        N, _, H, W = self.y.shape
        f, c = self.factor, self.crop
        xs, us, ys = [], [], []
        for _ in range(self.batch_size):
            n = int(self.rng.integers(N))
            i = int(self.rng.integers(0, (H - c) // f + 1)) * f
            j = int(self.rng.integers(0, (W - c) // f + 1)) * f
            k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            trip = [self.x[n, :, i // f:(i + c) // f, j // f:(j + c) // f], self.x_up[n, :, i:i + c, j:j + c],
                    self.y[n, :, i:i + c, j:j + c]]
            trip = [torch.rot90(t, k, dims=(-2, -1)) for t in trip]
            if flip:
                trip = [t.flip(-1) for t in trip]
            xs.append(trip[0]), us.append(trip[1]), ys.append(trip[2])
        x, u, y = torch.stack(xs), torch.stack(us), torch.stack(ys)
        return (x, u) if self.lr_only else (x, u, y)


def build_model(config: Config = Config(), C: int = 31, seed: int = 0,
                device: torch.device | str | None = None) -> DeepShare | PlainSR:
    """The network ``config.arch`` names (:class:`DeepShare` or :class:`PlainSR`, with ``config.feats``,
    ``config.blocks`` and ``config.residual``), weights drawn from ``seed`` (global RNG untouched)."""
    _check_config(config)
    _check_int("C", C, config.group_size if config.arch == "deepshare" else 1)
    _check_int("seed", seed, 0)
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.arch == "plain":
            model = PlainSR(C, config.feats, config.blocks, config.residual)
        else:
            model = DeepShare(C, config.group_size, config.overlap, config.feats, config.blocks, config.res_scale,
                              config.factor, config.residual)
    return model.to(device)


def train(train_y: torch.Tensor, config: Config = Config(), *, rgb_images: torch.Tensor | None = None,
          unlabelled_y: torch.Tensor | None = None, seed: int = 0, device: torch.device | str | None = None,
          progress: bool = True, desc: str | None = None) -> tuple[DeepShare | PlainSR, TrainResult]:
    """Train DeepShare (or, with ``config.arch = "plain"``, :class:`PlainSR`) with the official alternation,
    one Adam step per task term, through :func:`medtut.train.fit`.

    train_y: (N, C, H, W) labelled HR HSIs in [0, 1] (LR/x_up are made by the x4 degradation).
    rgb_images: (M, 3, H, W) linear RGB for the auxiliary task (needed if ``config.rgb``).
    unlabelled_y: (K, C, H, W) HSIs of which only the LR version is used (needed if ``config.semi``).

    Per iteration: (1) a labelled batch, ``hybrid_loss(f(x, x_up), y)``; (2) if ``mixup``, the same batch
    remixed with a fresh M~; (3) if ``rgb``, ``rgb_steps`` RGB batches; (4) if ``semi`` and within the
    first ``semi_fraction`` of training, ``semi_steps`` unlabelled batches (:func:`semi_supervised_loss`).
    Learning rate ``lr``, x0.3 from half of training and x0.09 for the last 10 % (the paper's step decay
    in shape). Crops, mixup matrices and model weights come from generators seeded by ``seed``, one per
    stream, so the labelled crops are identical across arms with the same seed.
    """
    _check_config(config)
    _check_bchw(train_y, "train_y")
    _check_unit_range(train_y, "train_y")
    if config.arch == "deepshare" and train_y.shape[1] < config.group_size:
        raise ValueError(f"train_y must have at least group_size={config.group_size} bands; got {train_y.shape[1]}")
    if config.rgb:
        if rgb_images is None:
            raise ValueError("config.rgb=True needs rgb_images (M, 3, H, W)")
        _check_bchw(rgb_images, "rgb_images", 3)
        _check_unit_range(rgb_images, "rgb_images")
    if config.semi:
        if unlabelled_y is None:
            raise ValueError("config.semi=True needs unlabelled_y (K, C, H, W) (only its LR version is used)")
        _check_bchw(unlabelled_y, "unlabelled_y", train_y.shape[1])
        _check_unit_range(unlabelled_y, "unlabelled_y")
    _check_int("seed", seed, 0)
    _check_bool("progress", progress)
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"desc must be None or a string; got {type(desc).__name__}")
    device = resolve_device(device)
    C = train_y.shape[1]
    model = build_model(config, C, seed, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    labelled = CropSampler(train_y, config.crop, config.factor, config.batch_size, seed)
    rgb = CropSampler(rgb_images, config.crop, config.factor, config.batch_size, seed + 1) if config.rgb else None
    unl = (CropSampler(unlabelled_y, config.crop, config.factor, config.batch_size, seed + 2, lr_only=True)
           if config.semi else None)
    mix_gen = torch.Generator().manual_seed(seed + 3)
    P = torch.as_tensor(projection_matrix(), device=device)
    counts = {"optimizer_steps": 0, "labelled": 0, "mixup": 0, "rgb": 0, "unlabelled": 0}

    def update(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        counts["optimizer_steps"] += 1
        return float(loss.detach())

    def step(t):
        frac = t / config.num_steps
        for g in optimizer.param_groups:
            g["lr"] = config.lr * (0.09 if frac >= 0.9 else 0.3 if frac >= 0.5 else 1.0)
        x, u, y = (a.to(device) for a in labelled.sample())
        logs = {"loss": update(hybrid_loss(model(x, u), y))}
        counts["labelled"] += len(x)
        if config.mixup:
            xm, um, ym, _ = spectral_mixup(x, u, y, generator=mix_gen)
            logs["mixup loss"] = update(hybrid_loss(model(xm, um), ym))
            counts["mixup"] += len(x)
        if config.rgb:
            for _ in range(config.rgb_steps):
                xr, ur, yr = (rgb_to_8(a.to(device)) for a in rgb.sample())
                logs["rgb loss"] = update(hybrid_loss(model.forward_rgb(xr, ur), yr))
                counts["rgb"] += len(xr)
        if config.semi and frac < config.semi_fraction:
            for _ in range(config.semi_steps):
                xu, uu = (a.to(device) for a in unl.sample())
                logs["semi loss"] = update(semi_supervised_loss(model, xu, uu, P))
                counts["unlabelled"] += len(xu)
        return logs

    model.train()
    t0 = time.perf_counter()
    history = fit(step, None, num_steps=config.num_steps, desc=desc or config.name, progress=progress)
    wall = time.perf_counter() - t0
    model.eval()
    seen = {k: v for k, v in counts.items() if k != "optimizer_steps"}
    return model, TrainResult(history, wall, config, counts["optimizer_steps"], seen)


# ---------------------------------------------------------------------------------------------------
# 5. Whole-image metrics and evaluation
# ---------------------------------------------------------------------------------------------------

def _pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """Two (C, H, W) images (tensors or arrays, a leading batch of 1 allowed) as float64 arrays."""
    out = []
    for name, a in (("pred", pred), ("ref", ref)):
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3 or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name} must be a real float image (C, H, W); got shape {a.shape} {a.dtype}")
        if a.size == 0:
            raise ValueError(f"{name} must be non-empty (C, H, W); got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
        out.append(a.astype(np.float64))
    if out[0].shape != out[1].shape:
        raise ValueError(f"pred and ref must have the same shape (C, H, W); got {out[0].shape} and {out[1].shape}")
    return out[0], out[1]


def mpsnr(pred, ref, data_range: float = 1.0) -> float:
    """Mean over bands of the per-band PSNR (dB), data range 1; via :func:`medtut.metrics.psnr`."""
    p, r = _pair(pred, ref)
    _check_float("data_range", data_range, 0.0, strict=True)
    return float(np.mean([_core_psnr(p[b], r[b], data_range=data_range) for b in range(len(p))]))


def sam(pred, ref, eps: float = 1e-12) -> float:
    """Spectral angle mapper: mean over pixels of ``arccos(<p, r> / (|p| |r|))`` in degrees.

    Scale-invariant per pixel (``sam(x, 2 x) = 0``); pixels where either spectrum is zero are skipped.
    """
    p, r = _pair(pred, ref)
    _check_float("eps", eps, 0.0)
    dot = (p * r).sum(0)
    norm = np.linalg.norm(p, axis=0) * np.linalg.norm(r, axis=0)
    valid = norm > eps
    if not valid.any():
        raise ValueError("every pixel of pred or ref is zero: the spectral angle is undefined")
    cos = np.clip(dot[valid] / norm[valid], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def ergas(pred, ref, ratio: int = 4, eps: float = 1e-12) -> float:
    """ERGAS = (100 / r) sqrt((1/C) sum_b RMSE_b^2 / mu_b^2), r = ``ratio``, mu_b the mean of reference
    band b (bands with mu_b = 0 are rejected)."""
    p, r = _pair(pred, ref)
    _check_float("ratio", ratio, 0.0, strict=True)
    _check_float("eps", eps, 0.0)
    mu = r.mean(axis=(1, 2))
    if (np.abs(mu) < eps).any():
        raise ValueError("a reference band has zero mean: ERGAS is undefined")
    rmse2 = ((p - r) ** 2).mean(axis=(1, 2))
    return float(100.0 / ratio * np.sqrt(np.mean(rmse2 / mu ** 2)))


METRICS = {"MPSNR": mpsnr, "SAM": sam, "ERGAS": ergas}


@torch.no_grad()
def super_resolve(model: DeepShare | PlainSR | None, y: torch.Tensor, factor: int = 4, batch_size: int = 8,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """SR of the x4-degraded ``y`` (N, C, H, W) -> (N, C, H, W) on the CPU; ``model=None`` gives bicubic.

    The model runs where its parameters are, or on ``device`` (checked by :func:`medtut.resolve_device`)."""
    _check_bchw(y, "y")
    _check_int("factor", factor, 1)
    _check_int("batch_size", batch_size, 1)
    if model is not None:
        if not isinstance(model, (DeepShare, PlainSR)):
            raise ValueError(f"model must be None (bicubic), a DeepShare or a PlainSR network; got {type(model).__name__}")
        if factor != 4:
            raise ValueError(f"factor must be 4 for a {type(model).__name__} model (trained for x4); got {factor}")
        if y.shape[1] != model.C:
            raise ValueError(f"y must have the model's {model.C} bands; got {y.shape[1]} (shape {tuple(y.shape)})")
        device = resolve_device(device) if device is not None else next(model.parameters()).device
    x, u = degrade(y, factor)
    if model is None:
        return u
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(device), u[i:i + batch_size].to(device)).cpu()
                     for i in range(0, len(y), batch_size)])
    model.train(was_training)
    return out


def evaluate(model: DeepShare | PlainSR | None, y: torch.Tensor, factor: int = 4) -> dict[str, np.ndarray]:
    """Per-image MPSNR / SAM / ERGAS of the model (or bicubic, ``model=None``) on test images ``y``
    (N, C, H, W). Returns ``{metric: (N,) array}``; average them for a table."""
    pred = super_resolve(model, y, factor)
    fns = {**METRICS, "ERGAS": lambda p, r: ergas(p, r, ratio=factor)}
    return {m: np.array([fn(pred[i], y[i]) for i in range(len(y))]) for m, fn in fns.items()}


__all__ = ["mixup_matrix", "spectral_mixup", "band_groups", "split_groups", "merge_groups", "ChannelAttention",
           "SpatialSpectralBlock", "GroupNet", "Trunk", "DeepShare", "PlainSR", "ARCHS", "rgb_to_8", "project", "hybrid_loss",
           "semi_supervised_loss", "Config", "optimizer_steps", "iterations_for", "TrainResult", "CropSampler",
           "build_model", "train", "mpsnr", "sam", "ergas", "METRICS", "super_resolve", "evaluate"]
