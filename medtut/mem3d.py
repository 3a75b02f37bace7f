"""Chapter 3: interactive volumetric segmentation with a quality-aware memory network (Mem3D).

Zhou et al., "Quality-Aware Memory Network for Interactive Volumetric Image Segmentation" (MICCAI 2021,
arXiv:2106.10686). A user annotates one slice; a 2-D *interaction network* f_In turns the interaction
(clicks, extreme points, a box, scribbles) into a mask; a *memory network* f_Mem propagates that mask
through the volume, slice by slice, by reading from a memory of already segmented slices; a *quality
head* predicts how good each propagated slice is, so the system can ask the user for the worst slice
next. Repeat.

Sections, in the order of the paper's method:

1. The memory read: :func:`memory_read` (the attention over every memory location).
2. The networks: :class:`MemoryNetwork` (query/memory encoders, key/value convs, decoder, quality head)
   and :func:`make_interaction_net` (f_In, chapter 1's small U-Net on [image, positive, negative]).
3. The losses: :func:`soft_iou`, :func:`segmentation_loss`, :func:`quality_loss`.
4. Training: :func:`train_memory_network` (5-slice recurrent sequences, skip 1-4) and
   :func:`train_interaction_network` (also the automatic 2-D baseline with ``interactive=False``).
5. Simulated users: :class:`SimulatedUser` (clicks, extreme points, boxes, scribbles).
6. Propagation and the session: :func:`propagate`, :class:`InteractiveSession` (the controller the
   widget and the simulated user both drive: Segment / Propagate / Suggest next / Undo),
   :func:`select_next_slice`, :func:`run_session`, :func:`noi`.
7. Baselines and metrics: :func:`copy_propagate`, :func:`segment_2d`, :func:`slice_dice`, :func:`dice_3d`.
8. The interactive tool: :class:`SessionTool` (the reader's actions on a session; mouse position → voxel:
   :func:`pixel_from_event`, :func:`pixel_from_dom`; drag → scribble: :func:`stroke_pixels`), its widgets
   :func:`interactive_tool` (ipympl, ipyevents or sliders) and :func:`draw_session` (the static twin).

Departures from the paper and from the official code (every one of them; all said again in the notebook):

* **Scale.** Small encoders (3 levels, strides 1-2-4, 16/32/64 channels; keys 16 + 16, values 32 + 1
  channels) trained from scratch on 64² or 96² slices, instead of ResNet-50s to stride 16 pretrained on
  ImageNet / YouTube-VOS at 512² (keys 128, values 512 channels); the decoder ends at stride 2, not 4.
* **Coordinate channels.** Both encoders get two extra input channels, the pixel's y and x in [-1, 1].
* **Positional key code** (:func:`position_code`, ``MemoryNetwork._with_position``): the learned part of
  every key is scaled to norm √key_dim and followed by 16 channels of cos / sin of the coordinates,
  weighted by a learned scale, so that k_q · k_j also says *where* (look-alike objects make what-only keys
  ambiguous). Not in the paper or the official code.
* **Pooled mask in the values** (:meth:`MemoryNetwork.encode_memory`): each memory value carries its
  slice's mask average-pooled to stride 4 as one extra channel, so one channel of the read is the
  attention-weighted memory mask; the decoder sees it mapped to [-1, 1] beside group-normalised feature
  maps. Not in the paper or the official code.
* **Leaky ReLUs, no normalisation layers** (``_conv``): LeakyReLU(0.1) everywhere in f_Mem's encoders
  and decoder (plain ReLUs of the memory encoder died in our runs without batch norm); the quality head's
  input features are group-normalised (unit scale, keeps its sigmoid out of saturation).
* **Quality head**: a small conv + mean/max-pool + MLP on [detached stride-4 features, pooled binarised
  mask, pooled max(p, 1 − p)]; quality loss weight 1 (the paper's MSE(100 q̂, 100 IoU)/1000 amounts to 10,
  with which the sigmoid saturated at our learning rate); target the soft IoU with +1 smoothing
  (:func:`soft_iou`).
* **Training**: 5-slice recurrent sequences with skips 1-4 (paper: 3-slice samples, max skip 3 → 5),
  Adam lr 1e-3 (paper 1e-5), BCE + Dice instead of BCE + Lovász, rotation / flip augmentation.
* **Propagation**: each side of an annotated slice separately (the official code interleaves both sides
  in one sequence, so its "previous slice" is the mirror slice); every slice keeps the prediction of its
  nearest annotated slice; slices predicted empty get q̂ = 1 (never suggested), as in the official code.
* **f_In**: one MONAI U-Net for all interaction kinds on [image, positive, negative] maps (the paper trains
  one network per kind); boxes are encoded as a negative map outside the box.
* **Selection**: the quality pick (argmin q̂) is what we evaluate; the official evaluation script selects by
  the ground truth (our ``"oracle"``, an upper bound) with the quality choice commented out.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from .config import isolated_rng, resolve_device
from .train import History, fit
from .train import TrainResult as _TrainResult

USER_KINDS = ("click", "extreme", "box", "scribble")
STRATEGIES = ("quality", "random", "oracle", "uniform")
MEMORY_CONTENTS = ("annotated", "every", "previous")


# ------------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------------
def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")


def _check_volume(volume) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(volume, dict) or "image" not in volume:
        raise ValueError(f"volume must be a dict with 'image' (D, H, W) and 'label' (D, H, W); "
                         f"got {type(volume).__name__}")
    image = np.asarray(volume["image"], dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"volume['image'] must be (D, H, W); got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("volume['image'] holds NaN or inf values")
    label = volume.get("label")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape:
            raise ValueError(f"volume['label'] must have the image's shape {image.shape}; got {label.shape}")
        if label.size and (label.min() < 0 or label.max() > 1):
            raise ValueError(f"volume['label'] must be binary (0/1); got values in [{label.min()}, {label.max()}]")
        label = label.astype(bool)
    return image, label


def _check_mask2d(name, mask, shape=None) -> np.ndarray:
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) mask; got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {m.shape}")
    if m.dtype != bool:
        if not np.isfinite(m.astype(float)).all() or m.min() < 0 or m.max() > 1:
            raise ValueError(f"{name} must be binary (bool or 0/1); got values in [{m.min()}, {m.max()}]")
        m = m > 0.5
    return m


# ------------------------------------------------------------------------------------------------
# 1. the memory read
# ------------------------------------------------------------------------------------------------
def memory_read(mem_keys: torch.Tensor, mem_values: torch.Tensor, query_key: torch.Tensor,
                return_weights: bool = False):
    """Read the memory at every query location (the paper's Eq. for the space-time memory read).

    mem_keys: (B, T, Dk, H, W), mem_values: (B, T, Dv, H, W): T memory slices; query_key: (B, Dk, H, W).
    For query location q and all N = T·H·W memory locations j::

        w_j(q) = exp(k_j·k_q / √Dk) / Σ_j′ exp(k_j′·k_q / √Dk),     r(q) = Σ_j w_j(q) v_j

    Returns r: (B, Dv, H, W); with ``return_weights`` also w: (B, H·W, T·H·W) (rows sum to 1; memory
    locations ordered t, then y, then x). The decoder input is [r(q); v_q].
    """
    for name, t, nd in (("mem_keys", mem_keys, 5), ("mem_values", mem_values, 5), ("query_key", query_key, 4)):
        if not isinstance(t, torch.Tensor) or t.ndim != nd or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor with {nd} dims; got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    b, n_t, dk, h, w = mem_keys.shape
    if mem_values.shape[:2] != (b, n_t) or mem_values.shape[3:] != (h, w):
        raise ValueError(f"mem_values must be (B, T, Dv, H, W) = ({b}, {n_t}, Dv, {h}, {w}); "
                         f"got {tuple(mem_values.shape)}")
    if query_key.shape != (b, dk, h, w):
        raise ValueError(f"query_key must be (B, Dk, H, W) = {(b, dk, h, w)}; got {tuple(query_key.shape)}")
    if n_t == 0:
        raise ValueError("the memory is empty (T = 0): annotate a slice first")
    k_mem = mem_keys.permute(0, 2, 1, 3, 4).reshape(b, dk, n_t * h * w)          # (B, Dk, N)
    k_q = query_key.reshape(b, dk, h * w)                                          # (B, Dk, HW)
    logits = torch.einsum("bdq,bdn->bqn", k_q, k_mem) / math.sqrt(dk)              # (B, HW, N)
    weights = torch.softmax(logits, dim=-1)
    dv = mem_values.shape[2]
    v_mem = mem_values.permute(0, 2, 1, 3, 4).reshape(b, dv, n_t * h * w)          # (B, Dv, N)
    read = torch.einsum("bqn,bdn->bdq", weights, v_mem).reshape(b, dv, h, w)
    return (read, weights) if return_weights else read


# ------------------------------------------------------------------------------------------------
# 2. the networks
# ------------------------------------------------------------------------------------------------
def _coords(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) y and x coordinates in [-1, 1] for a (B, C, H, W) input."""
    b, _, h, w = x.shape
    yy = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    xx = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([yy, xx], 1)


def _conv(c_in, c_out, stride=1):
    # leaky: without normalisation layers, plain ReLUs of the memory encoder died in our runs, and a dead
    # memory encoder makes every value the same, so the decoder learns to ignore the read
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


class _Encoder(nn.Module):
    """3 levels (stride 1, 2, 4) on [input channels, y, x]; returns the feature maps of each level.
    One conv at full resolution and two at the lower ones keep it cheap on a CPU."""

    def __init__(self, in_channels: int, features: Sequence[int]):
        super().__init__()
        f1, f2, f4 = features
        self.l1 = _conv(in_channels + 2, f1)
        self.l2 = nn.Sequential(_conv(f1, f2, 2), _conv(f2, f2))
        self.l4 = nn.Sequential(_conv(f2, f4, 2), _conv(f4, f4))

    def forward(self, x):
        s1 = self.l1(torch.cat([x, _coords(x)], 1))
        s2 = self.l2(s1)
        return s1, s2, self.l4(s2)


def position_code(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(16, h, w): cos and sin of 4 frequencies (π/2 · 1, 2, 4, 8) of the y and x coordinates in [-1, 1].

    Appended to every key, it adds s² Σ_i [cos(ω_i (y_q − y_j)) + cos(ω_i (x_q − x_j))] to k_q · k_j: a term
    that peaks where query and memory location coincide, so the read can follow an object that moved
    little since the memory slice (the keys' learned part still decides *what* matches)."""
    freqs = (math.pi / 2) * torch.tensor([1.0, 2.0, 4.0, 8.0], device=device, dtype=dtype)
    yy = torch.linspace(-1, 1, h, device=device, dtype=dtype)[:, None] * freqs        # (h, 4)
    xx = torch.linspace(-1, 1, w, device=device, dtype=dtype)[:, None] * freqs        # (w, 4)
    y = torch.cat([yy.cos(), yy.sin()], 1).T[:, :, None].expand(8, h, w)
    x = torch.cat([xx.cos(), xx.sin()], 1).T[:, None, :].expand(8, h, w)
    return torch.cat([y, x], 0)


class QualityHead(nn.Module):
    """q̂ = σ(MLP(pool(conv([features, binarised mask, confidence])))) at stride 4.

    Inputs (all detached by the caller): features (B, C, h, w), mask (B, 1, h, w) the binarised prediction
    and confidence (B, 1, h, w) = max(p, 1 − p), both average-pooled to stride 4. Output (B,) in (0, 1).
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels + 2, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(inplace=True), nn.Linear(width, 1))

    def forward(self, features, mask, confidence):
        features = F.group_norm(features, 1)          # unit scale: keeps the sigmoid out of saturation
        h = self.conv(torch.cat([features, mask, confidence], 1))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return torch.sigmoid(self.mlp(pooled))[:, 0]


class MemoryNetwork(nn.Module):
    """f_Mem: segment a query slice by reading a memory of (slice, mask) pairs, and score the result.

    * memory encoder on [image, mask, background = 1 − mask] (+ y, x), query encoder on [image] (+ y, x):
      ``features`` channels at strides 1, 2, 4 (paper: ResNet-50 to stride 16);
    * key / value 3×3 convs at stride 4: ``key_dim`` and ``value_dim`` channels (paper: 128 / 512); memory
      values also carry the memory slice's mask pooled to stride 4 (Dv = ``value_dim`` + 1);
    * :func:`memory_read`, then a decoder on [r; v_q] with the query's stride-2 skip, whose stride-2 logits
      are upsampled ×2 (the paper's decoder ends at stride 4 and upsamples ×4);
    * :class:`QualityHead` on the detached stride-4 query features, the binarised mask and max(p, 1 − p).

    * each key is [3×3 conv of the features scaled to norm √key_dim (``key_dim``); s · :func:`position_code`
      (16)], s learned
      (initial s² = 6): our addition, so that keys also say *where* (look-alike objects make what-only keys
      ambiguous). Keys therefore have Dk = ``key_dim`` + 16 channels.

    ``encode_memory(image, mask)``: image, mask (B, 1, H, W) → keys (B, Dk, H/4, W/4), values (B, Dv, H/4, W/4).
    The query's value has ``value_dim`` channels; the decoder reads [r; v_q].
    ``forward(image, mem_keys, mem_values)``: image (B, 1, H, W), memory (B, T, D·, H/4, W/4) →
    logits (B, 1, H, W), q̂ (B,). H and W must be multiples of 4.
    """

    def __init__(self, features: Sequence[int] = (16, 32, 64), key_dim: int = 16, value_dim: int = 32):
        super().__init__()
        f1, f2, f4 = features
        self.key_dim, self.value_dim = key_dim, value_dim
        self.mem_encoder, self.query_encoder = _Encoder(3, features), _Encoder(1, features)
        self.mem_key, self.mem_value = nn.Conv2d(f4, key_dim, 3, padding=1), nn.Conv2d(f4, value_dim, 3, padding=1)
        self.q_key, self.q_value = nn.Conv2d(f4, key_dim, 3, padding=1), nn.Conv2d(f4, value_dim, 3, padding=1)
        self.pos_scale = nn.Parameter(torch.tensor(math.sqrt(6.0)))
        self.dec4 = nn.Sequential(_conv(2 * value_dim + 1, f4), _conv(f4, f2))
        self.dec2 = _conv(2 * f2, f2)
        self.out = nn.Conv2d(f2, 1, 1)
        self.quality = QualityHead(f4)

    @staticmethod
    def _check(image):
        if image.ndim != 4 or image.shape[1] != 1 or image.shape[-1] % 4 or image.shape[-2] % 4:
            raise ValueError(f"image must be (B, 1, H, W) with H, W multiples of 4; got {tuple(image.shape)}")

    def encode_memory(self, image, mask):
        self._check(image)
        if mask.shape != image.shape:
            raise ValueError(f"mask must have the image's shape {tuple(image.shape)}; got {tuple(mask.shape)}")
        _, _, f4 = self.mem_encoder(torch.cat([image, mask, 1 - mask], 1))
        # the value also carries the mask itself (pooled to stride 4): the read of that channel is the
        # attention-weighted mask of the memory, a soft "where was the object" the decoder cannot ignore
        pooled = F.adaptive_avg_pool2d(mask, f4.shape[-2:])
        return self._with_position(self.mem_key(f4)), torch.cat([self.mem_value(f4), pooled], 1)

    def _with_position(self, k):
        # the learned part is scaled to norm √key_dim at every location, so neither an annotated (hard)
        # mask nor a soft prediction can make one memory slice's keys dominate by their size alone
        k = F.normalize(k, dim=1) * math.sqrt(self.key_dim)
        pos = position_code(k.shape[-2], k.shape[-1], k.device, k.dtype)
        return torch.cat([k, self.pos_scale * pos.expand(k.shape[0], -1, -1, -1)], 1)

    def encode_query(self, image):
        self._check(image)
        s1, s2, f4 = self.query_encoder(image)
        return self._with_position(self.q_key(f4)), self.q_value(f4), (s1, s2, f4)

    def decode(self, read, v_q, skips):
        s1, s2, _ = skips
        # unit-scale feature maps, and the read mask channel mapped to [-1, 1]: without this the one mask
        # channel is drowned by 64 unnormalised feature channels and the decoder learns to ignore it
        mask_read = 2 * read[:, -1:] - 1
        h = self.dec4(torch.cat([F.group_norm(read[:, :-1], 1), mask_read, F.group_norm(v_q, 1)], 1))
        h = self.dec2(torch.cat([F.interpolate(h, size=s2.shape[-2:], mode="bilinear", align_corners=False), s2], 1))
        return F.interpolate(self.out(h), size=s1.shape[-2:], mode="bilinear", align_corners=False)

    def score(self, logits, f4):
        """q̂ (B,) from the logits (B, 1, H, W) and the query's stride-4 features, all detached."""
        p = torch.sigmoid(logits.detach())
        size = f4.shape[-2:]
        mask = F.adaptive_avg_pool2d((p > 0.5).float(), size)
        conf = F.adaptive_avg_pool2d(torch.maximum(p, 1 - p), size)
        return self.quality(f4.detach(), mask, conf)

    def forward(self, image, mem_keys, mem_values, return_weights: bool = False):
        k_q, v_q, skips = self.encode_query(image)
        out = memory_read(mem_keys, mem_values, k_q, return_weights=return_weights)
        read, weights = out if return_weights else (out, None)
        logits = self.decode(read, v_q, skips)
        q_hat = self.score(logits, skips[2])
        return (logits, q_hat, weights) if return_weights else (logits, q_hat)


def make_interaction_net(in_channels: int = 3, features: Sequence[int] = (16, 32, 64, 64)) -> nn.Module:
    """f_In: a small 2-D U-Net (MONAI ``UNet``, ``features`` channels per level) with one output, the mask
    logit. Input (B, in_channels, H, W): [image, positive map, negative map] (``in_channels = 1``: the
    automatic 2-D baseline on the image alone). H, W multiples of 2**(len(features) - 1)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=tuple(features),
                strides=(2,) * (len(features) - 1), num_res_units=1, norm="batch")


# ------------------------------------------------------------------------------------------------
# 3. the losses
# ------------------------------------------------------------------------------------------------
def soft_iou(p: torch.Tensor, g: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft IoU, the quality head's target: (Σ min(p, g) + eps) / (Σ max(p, g) + eps) per sample.

    p: (B, H, W) or (B, 1, H, W) probabilities in [0, 1]; g: the same shape, the binary ground truth.
    eps (pixels) keeps an empty slice predicted empty at 1 rather than 0/0. Returns (B,).
    """
    if not isinstance(p, torch.Tensor) or not isinstance(g, torch.Tensor) or p.shape != g.shape or p.ndim < 2:
        raise ValueError(f"p and g must be tensors of the same shape (B, ...); got "
                         f"{getattr(p, 'shape', type(p).__name__)} and {getattr(g, 'shape', type(g).__name__)}")
    if torch.isnan(p).any() or p.min() < 0 or p.max() > 1:
        raise ValueError("p must hold probabilities in [0, 1] (no NaN)")
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps}")
    g = g.to(p.dtype)
    dims = tuple(range(1, p.ndim))
    return (torch.minimum(p, g).sum(dims) + eps) / (torch.maximum(p, g).sum(dims) + eps)


def segmentation_loss(logits: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice (1 − (2Σpg + 1)/(Σp + Σg + 1), per sample, averaged). logits, g: (B, 1, H, W)."""
    g = g.to(logits.dtype)
    p = torch.sigmoid(logits)
    dice = (2 * (p * g).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + g.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, g) + (1 - dice).mean()


def quality_loss(q_hat: torch.Tensor, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """MSE(q̂, soft IoU(p, g)) with the target detached. q_hat: (B,); p, g: (B, 1, H, W)."""
    return F.mse_loss(q_hat, soft_iou(p.detach(), g).detach())


# ------------------------------------------------------------------------------------------------
# 4. training
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """f_Mem's settings. Paper (512², ResNet-50, pretrained): Adam lr 1e-5, batch 2, 3-slice samples,
    max skip 3 → 5, BCE + Lovász, quality loss MSE(100 q̂, 100 IoU)/1000 = 10 · MSE. Ours (from scratch,
    64²-96²): lr 1e-3, 5-slice recurrent sequences with skip 1-4 (the reference pilot: the quality head
    learns no ranking from 3-slice / skip ≤ 3 sequences), BCE + Dice, quality weight 1 (with 10 and lr 1e-3
    the head's sigmoid saturated in our runs)."""
    num_steps: int = 2500
    batch_size: int = 2
    lr: float = 1e-3
    seq_len: int = 5
    max_skip: int = 4
    features: tuple = (16, 32, 64)
    key_dim: int = 16
    value_dim: int = 32
    quality_weight: float = 1.0
    augment: bool = True

    def __post_init__(self):
        _check_int("num_steps", self.num_steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seq_len", self.seq_len, 2)
        _check_int("max_skip", self.max_skip, 1)
        if not (self.lr > 0):
            raise ValueError(f"lr must be > 0; got {self.lr}")


@dataclass(frozen=True)
class InteractionConfig:
    """f_In's settings: steps, batch, lr, whether the interaction maps are given (``False``: the automatic
    2-D baseline), the interaction kinds mixed during training, and the pool of pre-drawn samples."""
    num_steps: int = 1500
    batch_size: int = 8
    lr: float = 3e-3
    interactive: bool = True
    kinds: tuple = USER_KINDS
    pool_size: int = 1500

    def __post_init__(self):
        _check_int("num_steps", self.num_steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("pool_size", self.pool_size, 1)
        bad = [k for k in self.kinds if k not in USER_KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {USER_KINDS}; got {self.kinds!r}")


@dataclass
class MemoryTrainResult(_TrainResult):
    """``history`` holds ``loss``, ``seg_loss``, ``quality_loss``, ``soft_iou`` (mean over the sequence)."""
    config: Config | None = None


def _check_volumes(volumes) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(volumes, (list, tuple)) or not volumes:
        raise ValueError(f"volumes must be a non-empty list of volume dicts; got {type(volumes).__name__}")
    out = []
    for v in volumes:
        image, label = _check_volume(v)
        if label is None or not label.any():
            raise ValueError("every training volume needs a non-empty 'label'")
        out.append((image, label))
    return out


def _sample_sequences(vols, rng: np.random.Generator, batch_size: int, seq_len: int, max_skip: int):
    """B sequences of seq_len slice indices (start on the object, skips 1..max_skip, either direction)."""
    images, labels = [], []
    for _ in range(batch_size):
        image, label = vols[int(rng.integers(len(vols)))]
        d = len(image)
        zs = np.flatnonzero(label.any(axis=(1, 2)))
        while True:
            direction = 1 if rng.random() < 0.5 else -1
            skips = rng.integers(1, max_skip + 1, size=seq_len - 1)
            start = int(rng.choice(zs))
            idx = start + direction * np.concatenate([[0], np.cumsum(skips)])
            if idx.min() >= 0 and idx.max() < d:
                break
        images.append(image[idx])
        labels.append(label[idx])
    return (torch.from_numpy(np.stack(images)).float()[:, :, None],
            torch.from_numpy(np.stack(labels)).float()[:, :, None])


def _augment(x, y, rng):
    k = int(rng.integers(4))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    return x, y


def sequence_loss(model: MemoryNetwork, x: torch.Tensor, y: torch.Tensor, quality_weight: float = 10.0) -> dict:
    """One recurrent pass over a batch of slice sequences (the training step of f_Mem).

    x, y: (B, S, 1, H, W) images and masks. Frame 0 enters the memory with its true mask; each later frame
    is segmented from the memory of all earlier frames, and then enters the memory with its *predicted*
    (detached) probabilities, as at inference. Loss = mean over frames 1..S−1 of
    BCE + Dice + quality_weight · MSE(q̂, soft IoU).
    """
    keys, values = model.encode_memory(x[:, 0], y[:, 0])
    keys, values = [keys], [values]
    seg, qual, ious = 0.0, 0.0, []
    n = x.shape[1] - 1
    for t in range(1, x.shape[1]):
        logits, q_hat = model(x[:, t], torch.stack(keys, 1), torch.stack(values, 1))
        p = torch.sigmoid(logits)
        seg = seg + segmentation_loss(logits, y[:, t])
        qual = qual + quality_loss(q_hat, p, y[:, t])
        ious.append(soft_iou(p.detach(), y[:, t]).mean())
        k, v = model.encode_memory(x[:, t], p.detach())
        keys.append(k)
        values.append(v)
    loss = (seg + quality_weight * qual) / n
    return {"loss": loss, "seg_loss": seg.detach() / n, "quality_loss": qual.detach() / n,
            "soft_iou": torch.stack(ious).mean()}


def train_memory_network(volumes, cfg: Config | None = None, *, seed: int = 0, device=None, progress: bool = True,
                         desc: str = "f_Mem", **changes) -> tuple[MemoryNetwork, MemoryTrainResult]:
    """Train f_Mem on random slice sequences of ``volumes`` (list of volume dicts).

    Returns ``(model, MemoryTrainResult)``; the model is in eval mode on ``device``. Keyword ``changes``
    replace fields of ``cfg`` for this call (``train_memory_network(vols, num_steps=100)``).
    """
    cfg = replace(cfg or Config(), **changes)
    vols = _check_volumes(volumes)
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    with isolated_rng(seed, device):
        model = MemoryNetwork(cfg.features, cfg.key_dim, cfg.value_dim).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        def step(_):
            x, y = _sample_sequences(vols, rng, cfg.batch_size, cfg.seq_len, cfg.max_skip)
            if cfg.augment:
                x, y = _augment(x, y, rng)
            return sequence_loss(model, x.to(device), y.to(device), cfg.quality_weight)

        history = fit(step, opt, num_steps=cfg.num_steps, models=model, desc=desc, progress=progress)
    model.eval()
    return model, MemoryTrainResult(history=history, wall_time_s=history.wall_time_s, config=cfg)


def _interaction_pool(vols, cfg: InteractionConfig, rng: np.random.Generator):
    """Pre-drawn (image, maps, mask) training samples for f_In: a random slice holding the target, a random
    interaction kind; half of them also get 1-2 corrective interactions against a perturbed mask."""
    images, maps, masks = [], [], []
    users = {k: SimulatedUser(k, seed=int(rng.integers(2**31))) for k in cfg.kinds}
    for _ in range(cfg.pool_size):
        image, label = vols[int(rng.integers(len(vols)))]
        zs = np.flatnonzero(label.sum(axis=(1, 2)) >= 4)
        z = int(rng.choice(zs))
        gt = label[z]
        m = np.zeros((2, *gt.shape), np.float32)
        if cfg.interactive:
            user = users[cfg.kinds[int(rng.integers(len(cfg.kinds)))]]
            m = user.initial(gt).numpy()
            if rng.random() < 0.5:
                wrong = _perturb(gt, rng)
                for _ in range(int(rng.integers(1, 3))):
                    if (wrong != gt).any():
                        m = np.maximum(m, user.correct(wrong, gt).numpy())
        images.append(image[z])
        maps.append(m)
        masks.append(gt)
    return (torch.from_numpy(np.stack(images))[:, None].float(), torch.from_numpy(np.stack(maps)).float(),
            torch.from_numpy(np.stack(masks))[:, None].float())


def _perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong mask: the target eroded, dilated or shifted by a few pixels."""
    r = int(rng.integers(2, 5))
    kind = int(rng.integers(3))
    if kind == 0:
        return ndimage.binary_erosion(gt, iterations=r)
    if kind == 1:
        return ndimage.binary_dilation(gt, iterations=r)
    return np.roll(gt, (int(rng.integers(-r, r + 1)), int(rng.integers(-r, r + 1))), axis=(0, 1))


def train_interaction_network(volumes, cfg: InteractionConfig | None = None, *, seed: int = 0, device=None,
                              progress: bool = True, desc: str = "f_In", **changes):
    """Train f_In (``cfg.interactive``) or the automatic 2-D baseline (``interactive=False``: image only)
    on slices of ``volumes`` that hold the target. Loss: BCE + Dice. Returns ``(model, TrainResult)``."""
    cfg = replace(cfg or InteractionConfig(), **changes)
    vols = _check_volumes(volumes)
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    x_pool, m_pool, y_pool = _interaction_pool(vols, cfg, rng)
    with isolated_rng(seed, device):
        net = make_interaction_net(3 if cfg.interactive else 1).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

        def step(_):
            idx = torch.from_numpy(rng.integers(len(x_pool), size=cfg.batch_size))
            x, m, y = x_pool[idx], m_pool[idx], y_pool[idx]
            k = int(rng.integers(4))
            inp = torch.cat([x, m], 1) if cfg.interactive else x
            inp, y = torch.rot90(inp, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
            return segmentation_loss(net(inp.to(device)), y.to(device))

        history = fit(step, opt, num_steps=cfg.num_steps, models=net, desc=desc, progress=progress)
    net.eval()
    return net, _TrainResult(history=history, wall_time_s=history.wall_time_s)


# ------------------------------------------------------------------------------------------------
# 5. simulated users
# ------------------------------------------------------------------------------------------------
def _gaussian_map(shape, points, sigma) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = np.zeros(shape, np.float32)
    for (py, px) in points:
        out = np.maximum(out, np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * sigma ** 2)).astype(np.float32))
    return out


def _dt_peak(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest from its border (the image edge counts as border)."""
    dt = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return tuple(int(i) for i in np.unravel_index(np.argmax(dt), dt.shape))


def _largest_component(region: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(region)
    if n == 0:
        return region
    sizes = ndimage.sum(region, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


class SimulatedUser:
    """A simulated annotator, by the reference protocols.

    kind: ``"click"`` (first click at the distance-transform peak of the mask), ``"extreme"`` (its
    left/right/top/bottom pixels, ties at random, ±``jitter`` px), ``"box"`` (the tight box padded by
    0-10 %; the negative map is 1 outside it), ``"scribble"`` (a random connected 30-60 % of the skeleton
    of the eroded mask, dilated by 1 px; a negative arc in the ring 5-15 px outside).
    ``.initial(gt)`` and ``.correct(pred, gt)`` return interaction maps (2, H, W) float32 in [0, 1]:
    channel 0 positive, 1 negative. Corrections: a click (a scribble for ``"scribble"``) at the
    distance-transform peak (the skeleton) of the largest error region, positive on a false negative,
    negative on a false positive. Clicks are Gaussians of std ``sigma`` px (default H/32).
    """

    def __init__(self, kind: str = "click", seed: int = 0, sigma: float | None = None, jitter: int = 3):
        if kind not in USER_KINDS:
            raise ValueError(f"kind must be one of {USER_KINDS}; got {kind!r}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0 or None; got {sigma!r}")
        self.kind, self.seed, self.sigma, self.jitter = kind, seed, sigma, jitter
        self.rng = np.random.default_rng(seed)
        self.last_points: list[tuple[int, int, int]] = []     # (y, x, +1/-1) of the last call's clicks

    def _sig(self, shape):
        return self.sigma if self.sigma is not None else shape[0] / 32

    def initial(self, gt) -> torch.Tensor:
        gt = _check_mask2d("gt", gt)
        if not gt.any():
            raise ValueError("gt is empty: the user can only annotate a slice that holds the object")
        shape, maps = gt.shape, np.zeros((2, *gt.shape), np.float32)
        if self.kind == "click":
            p = _dt_peak(gt)
            maps[0] = _gaussian_map(shape, [p], self._sig(shape))
            self.last_points = [(*p, 1)]
        elif self.kind == "extreme":
            ys, xs = np.nonzero(gt)
            pts = []
            for coord, pick in ((xs, np.min), (xs, np.max), (ys, np.min), (ys, np.max)):
                cand = np.flatnonzero(coord == pick(coord))
                i = int(self.rng.choice(cand))
                y = int(np.clip(ys[i] + self.rng.integers(-self.jitter, self.jitter + 1), 0, shape[0] - 1))
                x = int(np.clip(xs[i] + self.rng.integers(-self.jitter, self.jitter + 1), 0, shape[1] - 1))
                pts.append((y, x))
            maps[0] = _gaussian_map(shape, pts, self._sig(shape))
            self.last_points = [(y, x, 1) for y, x in pts]
        elif self.kind == "box":
            ys, xs = np.nonzero(gt)
            y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
            py = int(round(self.rng.uniform(0, 0.1) * (y1 - y0 + 1)))
            px = int(round(self.rng.uniform(0, 0.1) * (x1 - x0 + 1)))
            y0, y1 = max(0, y0 - py), min(shape[0] - 1, y1 + py)
            x0, x1 = max(0, x0 - px), min(shape[1] - 1, x1 + px)
            maps[1] = 1.0
            maps[1, y0:y1 + 1, x0:x1 + 1] = 0.0
            self.last_points = [(int(y0), int(x0), 0), (int(y1), int(x1), 0)]
        else:
            maps[0] = self._positive_scribble(gt)
            maps[1] = self._negative_scribble(gt)
            self.last_points = []
        return torch.from_numpy(maps)

    def _positive_scribble(self, region: np.ndarray) -> np.ndarray:
        from skimage.morphology import skeletonize

        core = ndimage.binary_erosion(region, iterations=2)
        if core.sum() < 3:
            core = region
        skel = skeletonize(core)
        if not skel.any():
            skel = np.zeros_like(region)
            skel[_dt_peak(region)] = True
        pts = np.argwhere(skel)
        start = tuple(pts[int(self.rng.integers(len(pts)))])
        keep = max(1, int(round(self.rng.uniform(0.3, 0.6) * len(pts))))
        # a connected sub-path: breadth-first along the skeleton from a random start pixel
        seen, order, queue = {start}, [], [start]
        while queue and len(order) < keep:
            p = queue.pop(0)
            order.append(p)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (p[0] + dy, p[1] + dx)
                    if q not in seen and 0 <= q[0] < skel.shape[0] and 0 <= q[1] < skel.shape[1] and skel[q]:
                        seen.add(q)
                        queue.append(q)
        out = np.zeros(region.shape, bool)
        out[tuple(np.array(order).T)] = True
        out = ndimage.binary_dilation(out) & region
        return out.astype(np.float32)

    def _negative_scribble(self, gt: np.ndarray) -> np.ndarray:
        dist = ndimage.distance_transform_edt(~gt)
        ring = (dist >= 8) & (dist <= 10)
        if not ring.any():
            return np.zeros(gt.shape, np.float32)
        cy, cx = np.argwhere(gt).mean(0)
        yy, xx = np.mgrid[0:gt.shape[0], 0:gt.shape[1]]
        ang = np.arctan2(yy - cy, xx - cx)
        a0 = self.rng.uniform(-np.pi, np.pi)
        arc = ring & (np.angle(np.exp(1j * (ang - a0))) % (2 * np.pi) < np.pi / 3)
        if not arc.any():
            arc = ring
        return arc.astype(np.float32)

    def correct(self, pred, gt) -> torch.Tensor:
        gt = _check_mask2d("gt", gt)
        pred = _check_mask2d("pred", pred, gt.shape)
        maps = np.zeros((2, *gt.shape), np.float32)
        error = pred != gt
        if not error.any():
            self.last_points = []
            return torch.from_numpy(maps)
        region = _largest_component(error)
        channel = 0 if gt[region].mean() >= 0.5 else 1       # false negative → positive
        if self.kind == "scribble":
            maps[channel] = self._positive_scribble(region)
            self.last_points = []
        else:
            p = _dt_peak(region)
            maps[channel] = _gaussian_map(gt.shape, [p], self._sig(gt.shape))
            self.last_points = [(*p, 1 if channel == 0 else -1)]
        return torch.from_numpy(maps)


# ------------------------------------------------------------------------------------------------
# 6. propagation and the session
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def segment_slice(f_in: nn.Module, image: np.ndarray, maps) -> np.ndarray:
    """f_In on one slice: image (H, W), maps (2, H, W) → probabilities (H, W) float32."""
    dev = next(f_in.parameters()).device
    x = torch.from_numpy(np.asarray(image, np.float32))[None, None]
    m = torch.as_tensor(maps, dtype=torch.float32)
    if m.shape != (2, *x.shape[-2:]):
        raise ValueError(f"maps must be (2, H, W) = (2, {x.shape[-2]}, {x.shape[-1]}); got {tuple(m.shape)}")
    return torch.sigmoid(f_in(torch.cat([x, m[None]], 1).to(dev)))[0, 0].cpu().numpy()


def _check_memory(memory) -> tuple[str, ...]:
    memory = (memory,) if isinstance(memory, str) else tuple(memory)
    bad = [m for m in memory if m not in MEMORY_CONTENTS]
    if bad or "annotated" not in memory:
        raise ValueError(f"memory must hold 'annotated' and any of 'every', 'previous' "
                         f"(from {MEMORY_CONTENTS}); got {memory!r}")
    return memory


@torch.no_grad()
def propagate(f_mem: MemoryNetwork, image: np.ndarray, annotations: dict, source: int, direction: int,
              stop: int, *, memory: Sequence[str] = MEMORY_CONTENTS, mem_every: int = 5) -> dict:
    """Propagate from the annotated slice ``source`` towards ``direction`` (+1 / −1), up to (not including)
    slice ``stop``. One side at a time (the official code interleaves both sides in one sequence, so its
    "previous" slice is the mirror slice on the other side).

    image: (D, H, W); annotations: {z: mask (H, W) bool} (every annotated slice is in the memory).
    memory: what the memory holds beside the annotated slices: ``"every"`` every ``mem_every``-th
    processed slice, ``"previous"`` the previous slice (a temporary entry, replaced at each step).
    Returns {z: (probabilities (H, W) float32, q̂ float)} for the processed slices.
    """
    memory = _check_memory(memory)
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1; got {direction!r}")
    if source not in annotations:
        raise ValueError(f"source slice {source} is not annotated (annotated: {sorted(annotations)})")
    dev = next(f_mem.parameters()).device
    img = torch.from_numpy(np.asarray(image, np.float32))[:, None].to(dev)       # (D, 1, H, W)

    def enc(z, mask):
        return f_mem.encode_memory(img[z:z + 1], torch.as_tensor(mask, dtype=torch.float32, device=dev)[None, None])

    fixed = [enc(z, m) for z, m in sorted(annotations.items())]
    prev = None                  # the temporary entry: the previous processed slice (none before the first)
    out, processed = {}, 0
    for z in range(source + direction, stop, direction):
        entries = list(fixed) + (["prev"] if prev is not None and "previous" in memory else [])
        keys = torch.stack([prev[0] if e == "prev" else e[0] for e in entries], 1)
        vals = torch.stack([prev[1] if e == "prev" else e[1] for e in entries], 1)
        logits, q_hat = f_mem(img[z:z + 1], keys, vals)
        p = torch.sigmoid(logits)[0, 0]
        out[z] = (p.cpu().numpy(), float(q_hat[0]))
        processed += 1
        if "previous" in memory or ("every" in memory and processed % mem_every == 0):
            entry = enc(z, p)
            if "every" in memory and processed % mem_every == 0:
                fixed.append(entry)
                prev = None      # already in the memory
            else:
                prev = entry
    return out


def select_next_slice(strategy: str, q_hat, annotated, *, gt=None, rng=None, candidates=None) -> int:
    """The slice the user should annotate next.

    strategy: ``"quality"`` argmin q̂; ``"random"`` uniformly at random (``rng``: a numpy Generator or a
    seed); ``"oracle"`` the worst true score ``gt`` (per-slice Dice, (D,): what the official evaluation
    does); ``"uniform"`` the candidate farthest from every annotated slice. q_hat: (D,) predicted quality;
    annotated: (D,) bool; candidates: (D,) bool, the slices of the predicted object's z-range (default: all).
    Never returns an annotated slice. Ties go to the lowest index.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    q_hat = np.asarray(q_hat, dtype=float)
    annotated = np.asarray(annotated, dtype=bool)
    if q_hat.ndim != 1 or annotated.shape != q_hat.shape:
        raise ValueError(f"q_hat and annotated must be (D,) arrays of one length; got {q_hat.shape} and "
                         f"{annotated.shape}")
    if np.isnan(q_hat).any():
        raise ValueError("q_hat holds NaN")
    cand = np.ones_like(annotated) if candidates is None else np.asarray(candidates, dtype=bool)
    if cand.shape != annotated.shape:
        raise ValueError(f"candidates must be (D,) = {annotated.shape}; got {cand.shape}")
    cand = cand & ~annotated
    if not cand.any():
        cand = ~annotated
    if not cand.any():
        raise ValueError("every slice is annotated: nothing left to select")
    idx = np.flatnonzero(cand)
    if strategy == "quality":
        return int(idx[np.argmin(q_hat[idx])])
    if strategy == "random":
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return int(gen.choice(idx))
    if strategy == "oracle":
        if gt is None:
            raise ValueError("strategy 'oracle' needs gt: the true per-slice score (D,) (it selects by ground truth)")
        score = np.asarray(gt, dtype=float)
        if score.shape != q_hat.shape:
            raise ValueError(f"gt must be (D,) = {q_hat.shape}; got {score.shape}")
        return int(idx[np.argmin(score[idx])])
    ann = np.flatnonzero(annotated)
    if len(ann) == 0:
        return int(idx[len(idx) // 2])
    dist = np.abs(idx[:, None] - ann[None, :]).min(1)
    return int(idx[np.argmax(dist)])


def slice_dice(pred, gt) -> np.ndarray:
    """Per-slice Dice of (D, H, W) binary volumes; 1 where both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must be (D, H, W) of one shape; got {pred.shape} and {gt.shape}")
    inter = (pred & gt).sum((1, 2))
    total = pred.sum((1, 2)) + gt.sum((1, 2))
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def slice_iou(pred, gt) -> np.ndarray:
    """Per-slice IoU of (D, H, W) binary volumes; 1 where both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    inter, union = (pred & gt).sum((1, 2)), (pred | gt).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def dice_3d(pred, gt) -> float:
    """Dice of two (D, H, W) binary volumes (1 if both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have one shape; got {pred.shape} and {gt.shape}")
    total = pred.sum() + gt.sum()
    return float(2 * (pred & gt).sum() / total) if total else 1.0


class InteractiveSession:
    """The controller of an interactive session: pure Python state, driven by the widget or by a simulated
    user (:func:`run_session`), so both give the same result.

    State: ``probs`` (D, H, W) the current probabilities, ``q_hat`` (D,) predicted quality (1 on annotated
    slices and on slices predicted empty, which are never suggested), ``annotations`` {z: mask},
    ``maps`` {z: (2, H, W)} the interactions given on each slice.
    Actions: :meth:`interact` (add a click / box / scribble map to a slice), :meth:`segment` (f_In on a
    slice → it becomes annotated), :meth:`propagate` (from a slice to its annotated neighbours),
    :meth:`suggest_next`, :meth:`undo`.
    """

    def __init__(self, image, f_in: nn.Module, f_mem: MemoryNetwork, *, memory: Sequence[str] = MEMORY_CONTENTS,
                 mem_every: int = 5, threshold: float = 0.5, min_area: int = 4):
        image, _ = _check_volume({"image": image})
        self.image, self.f_in, self.f_mem = image, f_in, f_mem
        self.memory, self.mem_every = _check_memory(memory), mem_every
        self.threshold, self.min_area = threshold, min_area
        d = len(image)
        self.probs = np.zeros(image.shape, np.float32)
        self.q_hat = np.ones(d)
        self.owner = np.full(d, -1)
        self.annotations: dict[int, np.ndarray] = {}
        self.maps: dict[int, np.ndarray] = {}
        self._undo: list[dict] = []

    # -- state ------------------------------------------------------------------------------------
    def _snapshot(self):
        self._undo.append(copy.deepcopy({k: getattr(self, k) for k in ("probs", "q_hat", "owner", "annotations", "maps")}))

    def undo(self) -> bool:
        """Revert the last action; False when there is nothing to undo."""
        if not self._undo:
            return False
        for k, v in self._undo.pop().items():
            setattr(self, k, v)
        return True

    @property
    def mask(self) -> np.ndarray:
        """The current segmentation (D, H, W) bool."""
        return self.probs > self.threshold

    @property
    def annotated(self) -> np.ndarray:
        a = np.zeros(len(self.image), bool)
        a[list(self.annotations)] = True
        return a

    def candidates(self) -> np.ndarray:
        """Slices inside the predicted object's z-range (first to last slice with >= min_area pixels)."""
        area = self.mask.sum((1, 2))
        zs = np.flatnonzero((area >= self.min_area) | self.annotated)
        c = np.zeros(len(self.image), bool)
        if len(zs):
            c[zs[0]:zs[-1] + 1] = True
        return c

    # -- actions ----------------------------------------------------------------------------------
    def interact(self, z: int, maps) -> None:
        """Add interaction maps (2, H, W) to slice z (kept with the maps already given there)."""
        self._check_z(z)
        m = np.asarray(maps, np.float32)
        if m.shape != (2, *self.image.shape[1:]):
            raise ValueError(f"maps must be (2, H, W) = (2, {self.image.shape[1]}, {self.image.shape[2]}); got {m.shape}")
        self._snapshot()
        self.maps[z] = np.maximum(self.maps.get(z, np.zeros_like(m)), m)

    def segment(self, z: int) -> np.ndarray:
        """Run f_In on slice z with its interactions; the slice becomes annotated. Returns its mask."""
        self._check_z(z)
        if z not in self.maps:
            raise ValueError(f"slice {z} has no interaction yet: call interact(z, maps) first")
        self._snapshot()
        p = segment_slice(self.f_in, self.image[z], self.maps[z])
        self.probs[z] = p
        self.annotations[z] = p > self.threshold
        self.q_hat[z] = 1.0
        self.owner[z] = z
        return self.annotations[z]

    def mark_background(self, z: int) -> None:
        """Annotate slice z as empty (the object is not there): it joins the memory with an empty mask."""
        self._check_z(z)
        self._snapshot()
        self.annotations[z] = np.zeros(self.image.shape[1:], bool)
        self.probs[z] = 0.0
        self.q_hat[z], self.owner[z] = 1.0, z

    def propagate(self, z: int | None = None) -> None:
        """Propagate from annotated slice z towards both sides, up to its annotated neighbours (beyond the
        outermost annotation: to the volume's end). A slice keeps the prediction of its nearest annotated
        slice (ties: the newer one). z=None: from every annotated slice."""
        if not self.annotations:
            raise ValueError("nothing is annotated yet: segment a slice first")
        sources = sorted(self.annotations) if z is None else [z]
        if z is not None and z not in self.annotations:
            raise ValueError(f"slice {z} is not annotated (annotated: {sorted(self.annotations)})")
        self._snapshot()
        ann = np.array(sorted(self.annotations))
        d = len(self.image)
        for src in sources:
            for direction in (1, -1):
                beyond = ann[ann > src] if direction == 1 else ann[ann < src]
                stop = (beyond.min() if direction == 1 else beyond.max()) if len(beyond) else (d if direction == 1 else -1)
                out = propagate(self.f_mem, self.image, self.annotations, src, direction, int(stop),
                                memory=self.memory, mem_every=self.mem_every)
                for k, (p, q) in out.items():
                    old = self.owner[k]
                    if old < 0 or abs(k - src) <= abs(k - old) or old not in self.annotations:
                        self.probs[k] = p
                        area = (p > self.threshold).sum()
                        self.q_hat[k] = q if area >= self.min_area else 1.0
                        self.owner[k] = src

    def suggest_next(self, strategy: str = "quality", *, gt=None, rng=None) -> int:
        """The slice to annotate next (see :func:`select_next_slice`); ``gt``: the true (D, H, W) mask for
        the oracle."""
        score = None
        cand = self.candidates()
        if gt is not None:
            gt = np.asarray(gt, bool)
            score = slice_dice(self.mask, gt)
            cand = cand | gt.any((1, 2))
        return select_next_slice(strategy, self.q_hat, self.annotated, gt=score, rng=rng, candidates=cand)

    def _check_z(self, z):
        if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or not 0 <= z < len(self.image):
            raise ValueError(f"z must be a slice index in [0, {len(self.image) - 1}]; got {z!r}")


@dataclass
class SessionResult:
    """What :func:`run_session` returns. dice: (rounds,) 3-D Dice after each round; slices: the annotated
    slice of each round; q_hat, true_iou, slice_dice: (rounds, D) per slice after each round (q̂ is 1 on
    annotated and predicted-empty slices); worst5: (rounds,) mean Dice of the 5 worst slices of the object's
    z-range; mask: the final (D, H, W) segmentation."""
    dice: np.ndarray
    slices: list
    q_hat: np.ndarray
    true_iou: np.ndarray
    slice_dice: np.ndarray
    worst5: np.ndarray
    mask: np.ndarray = field(repr=False)
    wall_time_s: float = 0.0


def run_session(volume: dict, f_in: nn.Module, f_mem: MemoryNetwork, user: SimulatedUser, strategy: str,
                rounds: int = 6, *, corrections: int = 1, memory: Sequence[str] = MEMORY_CONTENTS,
                mem_every: int = 5, seed: int = 0, start: int | None = None) -> SessionResult:
    """A simulated interactive session on one volume (``volume['label']`` plays the user's intent).

    Round 1 annotates the object's middle slice (``start`` overrides it); every round the user interacts
    on the slice (``user.initial``, then ``corrections`` corrective interactions, each followed by f_In),
    the slice joins the memory and f_Mem re-propagates up to its annotated neighbours. Rounds 2.. choose
    the slice by ``strategy`` (``rng`` of "random" seeded by ``seed``).
    """
    image, gt = _check_volume(volume)
    if gt is None or not gt.any():
        raise ValueError("volume needs a non-empty 'label': the simulated user annotates it")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    if not isinstance(user, SimulatedUser):
        raise ValueError(f"user must be a SimulatedUser; got {type(user).__name__}")
    _check_int("rounds", rounds, 1)
    _check_int("corrections", corrections, 0)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    session = InteractiveSession(image, f_in, f_mem, memory=memory, mem_every=mem_every)
    zs = np.flatnonzero(gt.any((1, 2)))
    z = int(zs[len(zs) // 2]) if start is None else int(start)
    dice, slices, qs, ious, sds, worst = [], [], [], [], [], []
    for r in range(rounds):
        if r > 0:
            z = session.suggest_next(strategy, gt=gt if strategy == "oracle" else None, rng=rng)
        if gt[z].any():
            session.interact(z, user.initial(gt[z]))
            session.segment(z)
            for _ in range(corrections):
                pred = session.annotations[z]
                if (pred == gt[z]).all():
                    break
                session.interact(z, user.correct(pred, gt[z]))
                session.segment(z)
        else:   # the suggested slice is empty: the user marks it as background
            session.mark_background(z)
        session.propagate(z)
        mask = session.mask
        sd = slice_dice(mask, gt)
        dice.append(dice_3d(mask, gt))
        slices.append(z)
        qs.append(session.q_hat.copy())
        ious.append(slice_iou(mask, gt))
        sds.append(sd)
        worst.append(float(np.sort(sd[zs])[:5].mean()))
    return SessionResult(np.array(dice), slices, np.array(qs), np.array(ious), np.array(sds), np.array(worst),
                         session.mask, time.perf_counter() - t0)


def noi(dice_per_round, threshold: float = 0.9) -> float:
    """Number of interactions (rounds) needed to reach ``threshold`` Dice: the first 1-based round with
    Dice >= threshold, ``inf`` if never."""
    d = np.asarray(dice_per_round, dtype=float)
    if d.ndim != 1 or d.size == 0 or np.isnan(d).any():
        raise ValueError(f"dice_per_round must be a non-empty 1-D sequence without NaN; got shape {d.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    hit = np.flatnonzero(d >= threshold)
    return float(hit[0] + 1) if len(hit) else math.inf


# ------------------------------------------------------------------------------------------------
# 7. baselines
# ------------------------------------------------------------------------------------------------
def copy_propagate(annotations: dict, depth: int) -> np.ndarray:
    """The "copy the mask" baseline: every slice gets the mask of its nearest annotated slice (ties: the
    lower one). annotations: {z: (H, W) bool}. Returns (depth, H, W) bool."""
    if not annotations:
        raise ValueError("annotations is empty: copy needs at least one annotated slice")
    ann = np.array(sorted(annotations))
    first = next(iter(annotations.values()))
    out = np.zeros((depth, *np.shape(first)), bool)
    for z in range(depth):
        out[z] = annotations[int(ann[np.argmin(np.abs(ann - z))])]
    return out


@torch.no_grad()
def segment_2d(net: nn.Module, image) -> np.ndarray:
    """The automatic 2-D baseline on every slice: image (D, H, W) → probabilities (D, H, W)."""
    image, _ = _check_volume({"image": image})
    dev = next(net.parameters()).device
    return torch.sigmoid(net(torch.from_numpy(image)[:, None].to(dev)))[:, 0].cpu().numpy()


# ------------------------------------------------------------------------------------------------
# 8. the interactive tool and its static twin
# ------------------------------------------------------------------------------------------------
#: what a press on the slice does: a Gaussian click (positive / negative), one corner of a box (two presses),
#: or the start of a scribble drawn by press-drag-release (positive / negative)
TOOLS = ("positive click", "negative click", "box", "positive scribble", "negative scribble")
WIDGET_BACKENDS = ("auto", "ipympl", "ipyevents", "sliders")


def _check_shape2(shape) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ValueError(f"shape must be (H, W), two positive ints; got {shape!r}")
    return int(shape[0]), int(shape[1])


def _finite_number(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def pixel_from_data(xdata, ydata, shape) -> tuple[int, int] | None:
    """ipympl / matplotlib: the (row, col) under data position (xdata, ydata) of an ``imshow`` axes.

    ``imshow`` with its default extent puts pixel (r, c) on [c − ½, c + ½) × [r − ½, r + ½) of the data
    coordinates (x = column, y = row, y pointing down), so row = ⌊y + ½⌋, col = ⌊x + ½⌋. shape: (H, W).
    Returns None outside the picture or when the event carries no data position (``None``: outside any
    axes)."""
    h, w = _check_shape2(shape)
    if xdata is None or ydata is None:
        return None
    x, y = _finite_number("xdata", xdata), _finite_number("ydata", ydata)
    row, col = math.floor(y + 0.5), math.floor(x + 0.5)
    return (row, col) if 0 <= row < h and 0 <= col < w else None


def pixel_from_event(event, ax, shape) -> tuple[int, int] | None:
    """A matplotlib mouse event (what ipympl's ``mpl_connect`` callbacks receive) → (row, col) of the
    picture drawn by ``imshow`` in ``ax``; None when the event is in another axes or outside the picture."""
    if getattr(event, "inaxes", None) is not ax:
        return None
    return pixel_from_data(event.xdata, event.ydata, shape)


def pixel_from_dom(relative_x, relative_y, width, height, shape) -> tuple[int, int] | None:
    """ipyevents: the (row, col) under a mouse event at (``relativeX``, ``relativeY``) screen pixels from the
    top-left corner of a picture shown ``width`` × ``height`` screen pixels (``boundingRectWidth`` /
    ``Height``) that holds exactly the (H, W) slice: col = ⌊x · W / width⌋, row = ⌊y · H / height⌋.
    None outside the picture."""
    h, w = _check_shape2(shape)
    x, y = _finite_number("relative_x", relative_x), _finite_number("relative_y", relative_y)
    width, height = _finite_number("width", width), _finite_number("height", height)
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be > 0 screen pixels; got {width} and {height}")
    row, col = math.floor(y * h / height), math.floor(x * w / width)
    return (row, col) if 0 <= row < h and 0 <= col < w else None


def stroke_pixels(points, shape) -> np.ndarray:
    """The pixels of a drag: consecutive (row, col) points joined by straight lines → (H, W) bool."""
    from skimage.draw import line

    h, w = _check_shape2(shape)
    pts = [tuple(int(v) for v in p) for p in points]
    if not pts or any(len(p) != 2 or not (0 <= p[0] < h and 0 <= p[1] < w) for p in pts):
        raise ValueError(f"points must be a non-empty list of (row, col) inside the {h}×{w} slice; got {points!r}")
    out = np.zeros((h, w), bool)
    out[pts[0]] = True
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(r0, c0, r1, c1)
        out[rr, cc] = True
    return out


def interaction_maps(tool: str, points, shape, sigma: float | None = None) -> np.ndarray:
    """The (2, H, W) float32 interaction maps (channel 0 positive, 1 negative) of one reader action, encoded
    as :class:`SimulatedUser` encodes its own: a click is a Gaussian of std ``sigma`` px (default H/32) at
    its one point; a box (two corner points) sets the negative map to 1 outside it; a scribble is the
    drag's stroke (:func:`stroke_pixels`) dilated by 1 px."""
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}; got {tool!r}")
    h, w = _check_shape2(shape)
    pts = [tuple(int(v) for v in p) for p in points]
    need = {"box": 2}.get(tool, 1 if "click" in tool else None)
    if (need is not None and len(pts) != need) or not pts:
        raise ValueError(f"tool {tool!r} needs {need or 'at least 1'} (row, col) point(s); got {len(pts)}")
    if any(not (0 <= r < h and 0 <= c < w) for r, c in pts):
        raise ValueError(f"points must lie inside the {h}×{w} slice; got {pts}")
    maps = np.zeros((2, h, w), np.float32)
    channel = 1 if tool.startswith("negative") else 0
    if "click" in tool:
        maps[channel] = _gaussian_map((h, w), pts, sigma if sigma is not None else h / 32)
    elif tool == "box":
        (y0, x0), (y1, x1) = pts
        maps[1] = 1.0
        maps[1, min(y0, y1):max(y0, y1) + 1, min(x0, x1):max(x0, x1) + 1] = 0.0
    else:
        maps[channel] = ndimage.binary_dilation(stroke_pixels(pts, (h, w))).astype(np.float32)
    return maps


def _draw_slice(ax, session: InteractiveSession, z: int, gt=None, pending=()):
    ax.imshow(session.image[z], cmap="gray", vmin=0, vmax=1)
    m = np.ma.masked_where(~session.mask[z], session.mask[z])
    ax.imshow(m, cmap="autumn", alpha=0.45, vmin=0, vmax=1)
    if gt is not None and np.asarray(gt)[z].any():
        ax.contour(np.asarray(gt)[z], [0.5], colors="#56B4E9", linewidths=1.2)
    if z in session.maps:
        mp = session.maps[z]
        for k, colour in ((0, "#009E73"), (1, "#CC79A7")):
            if mp[k].max() > 0.5:
                ax.contour(mp[k], [0.5], colors=colour, linewidths=1)
    if len(pending):
        p = np.array(pending)
        ax.plot(p[:, 1], p[:, 0], "-+", color="#F0E442", lw=1.5, ms=6)
    ax.set_xlim(-0.5, session.image.shape[2] - 0.5)
    ax.set_ylim(session.image.shape[1] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_quality(bx, session: InteractiveSession, z: int | None = None, suggested: int | None = None):
    d = len(session.image)
    colors = np.where(session.annotated, "#999999", "#0072B2").astype(object)
    if suggested is not None:
        colors[suggested] = "#D55E00"
    bx.bar(np.arange(d), session.q_hat, color=list(colors))
    if z is not None:
        bx.axvline(z, color="k", lw=0.8, ls=":")
    bx.set_xlabel("slice z")
    bx.set_ylabel("predicted quality q̂")
    bx.set_ylim(0, 1.05)
    bx.set_title("q̂ per slice (grey: annotated" + (", orange: suggested)" if suggested is not None else ")"))


def draw_session(session: InteractiveSession, z: int, gt=None, suggested: int | None = None, title: str = "",
                 fig=None):
    """Slice z with the current mask (and the ground truth's contour, the interactions given on it), and the
    q̂ bar chart with the annotated slices and the suggested one marked. ``fig``: a Figure to draw into
    (cleared; the live ipympl canvas), default a new pyplot figure. Returns the Figure."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 3.6))
    fig.clear()
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    _draw_slice(ax, session, z, gt)
    ax.set_title(title or f"slice {z}" + (" (annotated)" if z in session.annotations else ""))
    _draw_quality(bx, session, None, suggested)
    fig.tight_layout()
    return fig


class SessionTool:
    """The interactive tool without its widgets: what the reader does becomes calls on an
    :class:`InteractiveSession`, so a live frontend (ipympl canvas, ipyevents picture or sliders) and the
    headless simulated-user twin drive the same controller.

    The reader's actions: :meth:`set_slice`, :meth:`set_tool` (one of ``TOOLS``), mouse
    :meth:`press` / :meth:`move` / :meth:`release` at a (row, col) of the slice (a click acts on press;
    a box takes two presses; a scribble is press-drag-release), and the buttons :meth:`segment`,
    :meth:`propagate`, :meth:`suggest_next`, :meth:`undo`. Every finished interaction is added to the
    slice's maps and f_In re-segments the slice (``auto_segment``), as the simulated user's rounds do.
    ``on_change`` (set by a frontend) is called after every change; ``widget`` is the ipywidgets
    container (None headless); ``backend`` the frontend in use.
    """

    def __init__(self, session: InteractiveSession, gt=None, z: int | None = None, auto_segment: bool = True):
        if not isinstance(session, InteractiveSession):
            raise ValueError(f"session must be an InteractiveSession; got {type(session).__name__}")
        if gt is not None:
            gt = np.asarray(gt).astype(bool)
            if gt.shape != session.image.shape:
                raise ValueError(f"gt must have the volume's shape {session.image.shape}; got {gt.shape}")
        self.session, self.gt, self.auto_segment = session, gt, auto_segment
        self.shape = session.image.shape[1:]
        self.z = len(session.image) // 2 if z is None else z
        session._check_z(self.z)
        self.tool, self.suggested = TOOLS[0], None
        self.pending: list[tuple[int, int]] = []      # box corner or scribble points not yet finished
        self._dragging = False
        self.on_change = None
        self.widget, self.backend = None, None
        self.message = ""

    # -- reader actions ---------------------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        self.session._check_z(z)
        self.z, self.pending, self._dragging = int(z), [], False
        self._changed()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}; got {tool!r}")
        self.tool, self.pending, self._dragging = tool, [], False
        self._changed()

    def _pixel(self, row, col) -> tuple[int, int]:
        h, w = self.shape
        if isinstance(row, bool) or isinstance(col, bool) or not isinstance(row, (int, np.integer)) \
                or not isinstance(col, (int, np.integer)) or not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"(row, col) must be integer pixel indices inside the {h}×{w} slice; got ({row!r}, {col!r})")
        return int(row), int(col)

    def press(self, row: int, col: int) -> bool:
        """Mouse button down on pixel (row, col). Returns True when it completed an interaction."""
        p = self._pixel(row, col)
        if "click" in self.tool:
            return self._add(interaction_maps(self.tool, [p], self.shape))
        if self.tool == "box":
            self.pending.append(p)
            if len(self.pending) == 2:
                corners, self.pending = self.pending, []
                return self._add(interaction_maps("box", corners, self.shape))
            self.message = "box: press the opposite corner"
            self._changed()
            return False
        self.pending, self._dragging = [p], True
        self._changed()
        return False

    def move(self, row: int, col: int) -> None:
        """Mouse moved to (row, col) with the button held: extends a scribble being drawn."""
        p = self._pixel(row, col)
        if self._dragging and p != self.pending[-1]:
            self.pending.append(p)

    def release(self, row: int | None = None, col: int | None = None) -> bool:
        """Mouse button up (at (row, col), or outside the slice: None). Finishes a scribble."""
        if not self._dragging:
            return False
        if row is not None and col is not None:
            self.move(row, col)
        points, self.pending, self._dragging = self.pending, [], False
        return self._add(interaction_maps(self.tool, points, self.shape))

    def add_maps(self, maps) -> bool:
        """Add ready-made interaction maps (2, H, W) on the current slice (e.g. a :class:`SimulatedUser`'s)."""
        return self._add(np.asarray(maps, np.float32))

    def _add(self, maps) -> bool:
        self.session.interact(self.z, maps)
        if self.auto_segment:
            self.session.segment(self.z)
        self.message = f"{self.tool} on slice {self.z}"
        self._changed()
        return True

    # -- buttons ----------------------------------------------------------------------------------
    def segment(self) -> None:
        """Segment: f_In on the current slice with its interactions (the slice becomes annotated)."""
        if self.z not in self.session.maps:
            self.message = f"slice {self.z} has no interaction yet: click on it first"
        else:
            self.session.segment(self.z)
            self.message = f"segmented slice {self.z}"
        self._changed()

    def propagate(self) -> None:
        """Propagate from the current slice if it is annotated, else from every annotated slice."""
        if not self.session.annotations:
            self.message = "nothing is annotated yet: segment a slice first"
        else:
            self.session.propagate(self.z if self.z in self.session.annotations else None)
            self.message = "propagated"
        self._changed()

    def suggest_next(self, strategy: str = "quality") -> int | None:
        """Suggest next: the slice to annotate (argmin q̂), which becomes the current slice."""
        if not self.session.annotations:
            self.message = "nothing is annotated yet: segment a slice first"
            self._changed()
            return None
        self.suggested = self.session.suggest_next(strategy)
        self.set_slice(self.suggested)
        return self.suggested

    def undo(self) -> bool:
        self.pending, self._dragging = [], False
        done = self.session.undo()
        self.message = "undone" if done else "nothing to undo"
        self._changed()
        return done

    # -- drawing ----------------------------------------------------------------------------------
    def status(self) -> str:
        msg = f"slice {self.z} · tool: {self.tool} · annotated: {sorted(self.session.annotations)}"
        if self.gt is not None and self.session.annotations:
            msg += f" · 3-D Dice {dice_3d(self.session.mask, self.gt):.3f}"
        return msg + (f" · {self.message}" if self.message else "")

    def draw(self, fig=None, title: str = ""):
        """The slice (with the stroke being drawn) and the q̂ bar chart into ``fig`` (default a new pyplot
        figure); the axes are ``self.slice_ax`` and ``self.quality_ax``. Returns the Figure."""
        fig = draw_session(self.session, self.z, self.gt, self.suggested, title, fig=fig)
        self.slice_ax, self.quality_ax = fig.axes[:2]
        if self.pending:
            p = np.array(self.pending)
            self.slice_ax.plot(p[:, 1], p[:, 0], "-+", color="#F0E442", lw=1.5, ms=6)
        return fig

    def _changed(self):
        if self.on_change is not None:
            self.on_change()

    # -- frontends: mouse events → (row, col) ------------------------------------------------------
    def handle_mpl_event(self, event) -> None:
        """An ipympl / matplotlib mouse event (``button_press_event``, ``motion_notify_event``,
        ``button_release_event``): on the slice it becomes press / move / release; a press on the q̂ bar
        chart selects that slice."""
        name = getattr(event, "name", None)
        ax_s, ax_q = getattr(self, "slice_ax", None), getattr(self, "quality_ax", None)
        if name == "button_press_event" and ax_q is not None and event.inaxes is ax_q and event.xdata is not None:
            z = int(round(event.xdata))
            if 0 <= z < len(self.session.image):
                self.set_slice(z)
            return
        pixel = pixel_from_event(event, ax_s, self.shape)
        if name == "button_press_event" and pixel is not None:
            self.press(*pixel)
        elif name == "motion_notify_event" and pixel is not None:
            self.move(*pixel)
        elif name == "button_release_event":
            self.release(*(pixel if pixel is not None else (None, None)))

    def handle_dom_event(self, event) -> None:
        """An ipyevents mouse event dict on the slice picture (``mousedown`` / ``mousemove`` / ``mouseup``
        with ``relativeX``/``relativeY`` and ``boundingRectWidth``/``Height``)."""
        if not isinstance(event, dict) or "type" not in event:
            raise ValueError(f"event must be an ipyevents dict with a 'type'; got {event!r}")
        pixel = None
        if {"relativeX", "relativeY", "boundingRectWidth", "boundingRectHeight"} <= set(event):
            pixel = pixel_from_dom(event["relativeX"], event["relativeY"], event["boundingRectWidth"],
                                   event["boundingRectHeight"], self.shape)
        kind = event["type"]
        if kind == "mousedown" and pixel is not None:
            self.press(*pixel)
        elif kind == "mousemove" and pixel is not None:
            self.move(*pixel)
        elif kind in ("mouseup", "mouseleave"):
            self.release(*(pixel if pixel is not None else (None, None)))


def _slice_png(tool: SessionTool, zoom: int) -> bytes:
    """The current slice alone (no axes, no margin) as a PNG of exactly (H·zoom, W·zoom) pixels, so that
    :func:`pixel_from_dom` maps screen positions on it exactly."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = tool.shape
    fig = Figure(figsize=(w * zoom / 100, h * zoom / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    _draw_slice(ax, tool.session, tool.z, tool.gt, tool.pending)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _figure_png(draw, figsize) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=80)
    FigureCanvasAgg(fig)
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def interactive_tool(session: InteractiveSession, gt=None, start: int | None = None, *, backend: str = "auto",
                     live: bool | None = None, zoom: int = 6) -> SessionTool:
    """The interactive tool on ``session``: a slice slider, the tool toggle (``TOOLS``), buttons
    Segment / Propagate / Suggest next / Undo, the slice to click and draw on, and the q̂ bar chart.

    backend: ``"ipympl"`` (a live matplotlib canvas, the ``%matplotlib widget`` backend, whose
    ``mpl_connect`` press / motion / release events reach :meth:`SessionTool.handle_mpl_event`; a press on
    the q̂ chart selects a slice), ``"ipyevents"`` (a PNG of the slice, ``zoom`` screen pixels per pixel,
    whose DOM mouse events reach :meth:`SessionTool.handle_dom_event`), ``"sliders"`` (row / col sliders and
    "press" / "end stroke" buttons), or ``"auto"``: the first of these that is installed.
    live: build the widgets (default: only inside a live Jupyter kernel). Returns the :class:`SessionTool`;
    its ``widget`` is the ipywidgets box to display (None when not live: draw ``tool.draw()`` instead).
    """
    if backend not in WIDGET_BACKENDS:
        raise ValueError(f"backend must be one of {WIDGET_BACKENDS}; got {backend!r}")
    _check_int("zoom", zoom, 1)
    tool = SessionTool(session, gt, start)
    if live is None:
        from .widgets import has_live_kernel

        live = has_live_kernel()
    if not live:
        return tool
    import ipywidgets as w

    if backend == "auto":
        from importlib.util import find_spec

        backend = next((c for c in ("ipympl", "ipyevents") if find_spec(c) is not None), "sliders")
    tool.backend = backend
    d, h, wd = session.image.shape
    slider = w.IntSlider(value=tool.z, min=0, max=d - 1, description="slice", continuous_update=False)
    toggle = w.ToggleButtons(options=list(TOOLS), value=tool.tool, description="tool")
    buttons = {n: w.Button(description=n) for n in ("Segment", "Propagate", "Suggest next", "Undo")}
    status = w.HTML()
    rows = [w.HBox([slider]), toggle, w.HBox(list(buttons.values()))]

    if backend == "ipympl":
        import matplotlib
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure

        before = matplotlib.get_backend()
        from ipympl.backend_nbagg import new_figure_manager_given_figure

        fig = Figure(figsize=(10, 3.8))
        canvas = new_figure_manager_given_figure(id(fig), fig).canvas
        if matplotlib.get_backend() != before:
            # importing ipympl makes it pyplot's backend; put the notebook's back, so that later plt.show()
            # calls still draw static pictures (only this tool's own figure lives on the ipympl canvas)
            from IPython import get_ipython

            ip = get_ipython()
            if "inline" in before and ip is not None:
                ip.run_line_magic("matplotlib", "inline")       # also restores the PNG display of figures
            else:
                plt.switch_backend(before)
        canvas.header_visible = False
        for name in ("button_press_event", "motion_notify_event", "button_release_event"):
            canvas.mpl_connect(name, tool.handle_mpl_event)

        def render():
            tool.draw(fig)
            canvas.draw_idle()

        view = [canvas]
    elif backend == "ipyevents":
        from ipyevents import Event

        picture = w.Image(format="png", width=wd * zoom, height=h * zoom)
        chart = w.Image(format="png")
        tool._event = Event(source=picture, watched_events=["mousedown", "mousemove", "mouseup", "mouseleave"],
                            prevent_default_action=True, wait=40, throttle_or_debounce="throttle")
        tool._event.on_dom_event(tool.handle_dom_event)

        def render():
            picture.value = _slice_png(tool, zoom)
            chart.value = _figure_png(lambda f: _draw_quality(f.add_subplot(), session, tool.z, tool.suggested),
                                      (6, 3))

        view = [w.HBox([picture, chart])]
    else:
        row_s = w.IntSlider(value=h // 2, min=0, max=h - 1, description="row", continuous_update=False)
        col_s = w.IntSlider(value=wd // 2, min=0, max=wd - 1, description="col", continuous_update=False)
        press_b, end_b = w.Button(description="press at (row, col)"), w.Button(description="end stroke")

        def on_press(_):
            if tool._dragging:
                tool.move(row_s.value, col_s.value)
                tool._changed()
            else:
                tool.press(row_s.value, col_s.value)

        press_b.on_click(on_press)
        end_b.on_click(lambda _: tool.release())
        chart = w.Image(format="png")

        def render():
            chart.value = _figure_png(lambda f: tool.draw(f), (10, 3.6))

        view = [w.HTML("(install <code>ipympl</code> or <code>ipyevents</code> to click on the slice)"),
                w.HBox([row_s, col_s, press_b, end_b]), chart]

    def on_change():
        if slider.value != tool.z:
            slider.value = tool.z
        if toggle.value != tool.tool:
            toggle.value = tool.tool
        render()
        status.value = tool.status()

    tool.on_change = on_change
    slider.observe(lambda ch: tool.set_slice(ch["new"]) if ch["new"] != tool.z else None, names="value")
    toggle.observe(lambda ch: tool.set_tool(ch["new"]) if ch["new"] != tool.tool else None, names="value")
    for name, fn in (("Segment", tool.segment), ("Propagate", tool.propagate), ("Suggest next", tool.suggest_next),
                     ("Undo", tool.undo)):
        buttons[name].on_click(lambda _, fn=fn: fn())
    tool.widget = w.VBox(rows + view + [status])
    on_change()
    return tool


__all__ = ["memory_read", "MemoryNetwork", "QualityHead", "make_interaction_net", "soft_iou", "segmentation_loss",
           "quality_loss", "sequence_loss", "Config", "InteractionConfig", "MemoryTrainResult",
           "train_memory_network", "train_interaction_network", "SimulatedUser", "segment_slice", "propagate",
           "select_next_slice", "position_code", "InteractiveSession", "SessionResult", "run_session", "noi", "copy_propagate",
           "segment_2d", "slice_dice", "slice_iou", "dice_3d", "draw_session", "interactive_tool", "SessionTool",
           "pixel_from_data", "pixel_from_event", "pixel_from_dom", "stroke_pixels", "interaction_maps", "TOOLS",
           "USER_KINDS", "STRATEGIES", "MEMORY_CONTENTS"]
