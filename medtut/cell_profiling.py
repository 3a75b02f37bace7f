"""Chapter 6: contrastive learning of single-cell phenotypic profiles (SimCLR on a drug screen).

Reads top-down like the method and the evaluation of Perakis, Gorji, Jain, Chaitanya, Rizza, Konukoglu
(MLMI 2021, arXiv:2103.16670):

1. **Two views of a cell** (:func:`augment`, :data:`AUGMENTATIONS`): seeded, batched augmentation
   pipelines: the paper's (random-resized crop, flip, elastic deformation, colour jitter with hue, blur)
   and the book's default, which replaces hue/saturation jitter (it mixes stains) by a per-channel gain
   U(0.5, 1.5) and offset, with rot90, flip, a mild crop, blur and noise.
2. **Encoder and head** (:func:`build_encoder`, :class:`SimCLRNet`): a small 4-conv CNN on a CPU, or
   MONAI's 2-D ResNet-18/50 (ImageNet weights through torchvision when it is installed); a 2-layer
   projection head. Profiles use the backbone output ``h``, not the head's ``z``.
3. **The loss** (:func:`nt_xent`): normalised temperature-scaled cross-entropy over 2N views.
4. **Training** (:func:`train_simclr`): through :func:`medtut.train.fit`, every batch and every
   augmentation drawn from generators seeded by (seed, step), so a run is reproducible and resumable.
5. **Profiles** (:func:`embed`, :func:`handcrafted_features`, :func:`well_profiles`, :func:`tvn`,
   :func:`treatment_profiles`): cells -> mean per (plate, well) -> optional typical variation
   normalisation on the DMSO wells -> median per (compound, concentration), controls dropped.
6. **Evaluation** (:func:`nsc_nscb`): does each treatment's nearest neighbour (cosine) share its MoA,
   when the query's compound is excluded (NSC) and also every treatment sharing a batch with it (NSCB)?
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import resolve_device
from .data.cells import _check_bool, _check_int, _check_number
from .train import History, fit
from .train import TrainResult as _TrainResult

# ---------------------------------------------------------------------------------------------------
# 1. Two views of a cell: seeded, batched augmentations
# ---------------------------------------------------------------------------------------------------

#: the augmentation lists. Each entry switches one transform on (applied in the order of
#: :func:`augment`): ``crop`` (min area fraction of a random-resized crop), ``flip``, ``rot90``,
#: ``elastic`` (displacement std in px), ``channel_gain`` (per-channel gain U(1-g, 1+g)),
#: ``channel_offset`` (per-channel additive offset U(-o, o), in image units), ``color_jitter`` (brightness/contrast/saturation/hue strength, as in
#: torchvision's ColorJitter(0.2, 0.2, 0.2, 0.2)), ``blur`` (max Gaussian sigma in px), ``noise`` (max std).
AUGMENTATIONS: dict[str, dict] = {
    # the official code (albumentations): RandomResizedCrop(scale 0.08-1), HorizontalFlip, ElasticTransform,
    # ColorJitter(0.2, 0.2, 0.2, 0.2, p=0.8), GaussianBlur(sigma 0.1-2)
    "paper": {"crop": 0.08, "flip": True, "elastic": 1.0, "color_jitter": 0.2, "blur": 2.0},
    # the book's default: stains stay separate; per-channel gain and offset model plate effects
    "book": {"crop": 0.75, "flip": True, "rot90": True, "channel_gain": 0.5, "channel_offset": 0.1, "blur": 1.0,
             "noise": 0.05},
    # ablations of the book's list
    "book, no channel jitter": {"crop": 0.75, "flip": True, "rot90": True, "blur": 1.0, "noise": 0.05},
    "book, hue jitter instead": {"crop": 0.75, "flip": True, "rot90": True, "color_jitter": 0.2, "blur": 1.0,
                                 "noise": 0.05},
}
_AUG_KEYS = {"crop", "flip", "rot90", "elastic", "channel_gain", "channel_offset", "color_jitter", "blur", "noise"}


#: the allowed range of every numeric augmentation setting (low, high), both inclusive
_AUG_RANGES = {"crop": (0.01, 1.0), "elastic": (0.0, 10.0), "channel_gain": (0.0, 1.0), "channel_offset": (0.0, 1.0),
               "color_jitter": (0.0, 1.0), "blur": (0.0, 10.0), "noise": (0.0, 1.0)}


def _resolve_augmentation(kind: str | Mapping) -> dict:
    if isinstance(kind, str):
        if kind not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)} or a dict; got {kind!r}")
        return dict(AUGMENTATIONS[kind])
    if isinstance(kind, Mapping):
        unknown = set(kind) - _AUG_KEYS
        if unknown:
            raise ValueError(f"unknown augmentation keys {sorted(unknown)}; allowed: {sorted(_AUG_KEYS)}")
        for key, value in kind.items():
            if key in ("flip", "rot90"):
                _check_bool(f"augmentation[{key!r}]", value)
            elif value is not None and value is not False:
                low, high = _AUG_RANGES[key]
                _check_number(f"augmentation[{key!r}]", value, low, high=high)
        if kind.get("blur") and float(kind["blur"]) < 0.1:
            raise ValueError(f"augmentation['blur'] is the largest sigma of U(0.1, blur) px: use >= 0.1 or 0 (off); "
                             f"got {kind['blur']!r}")
        return dict(kind)
    raise ValueError(f"augmentation must be a name or a dict; got {type(kind).__name__}")


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with its own Gaussian sigma (B,) px (sigma 0: unchanged)."""
    B, C, H, W = x.shape
    radius = max(1, int(math.ceil(2 * float(sigma.max()))))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x).clamp_min(1e-3)[:, None]
    k1 = torch.exp(-t[None] ** 2 / (2 * s ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)                                      # (B, K)
    k1 = k1.repeat_interleave(C, 0)                                        # (B*C, K)
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k1[:, None, None, :], groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k1[:, None, :, None], groups=B * C)
    return y.reshape(B, C, H, W)


def augment(x: torch.Tensor, generator: torch.Generator, kind: str | Mapping = "book") -> torch.Tensor:
    """One random view of every image: (B, C, H, W) float -> (B, C, H, W), same device.

    All random numbers come from ``generator`` (a CPU ``torch.Generator``), so the same generator state
    gives the same views. Geometry (crop, flip, rot90, elastic) is one ``grid_sample`` per batch
    (bilinear, zeros outside); then intensity (channel gain/offset or colour jitter), blur and noise.
    Colour jitter treats the three stains as RGB: its saturation and hue terms *mix channels*.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B, C, H, W); got "
                         f"{tuple(x.shape) if hasattr(x, 'shape') else type(x).__name__}"
                         + (f" {x.dtype}" if hasattr(x, "dtype") else ""))
    if x.shape[0] == 0 or min(x.shape[2:]) < 2:
        raise ValueError(f"x must hold at least one image of at least 2 x 2 px; got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (views are drawn on the CPU, then moved); "
                         f"got one on {generator.device}")
    cfg = _resolve_augmentation(kind)
    if cfg.get("color_jitter") and x.shape[1] != 3:
        raise ValueError(f"color_jitter (hue) needs 3 channels; got C={x.shape[1]}")
    B, C, H, W = x.shape
    dev, g = x.device, generator
    # --- geometry: an affine map from output to input coordinates (normalised to [-1, 1])
    theta = torch.zeros(B, 2, 3)
    scale_x, scale_y = torch.ones(B), torch.ones(B)
    if cfg.get("crop") is not None:
        area = _u(B, float(cfg["crop"]), 1.0, g)
        log_r = _u(B, math.log(3 / 4), math.log(4 / 3), g)
        ratio = torch.exp(log_r)
        scale_x = torch.sqrt(area * ratio).clamp(max=1.0)
        scale_y = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - scale_x) * _u(B, -1.0, 1.0, g)
    ty = (1 - scale_y) * _u(B, -1.0, 1.0, g)
    angle = torch.zeros(B)
    if cfg.get("rot90"):
        angle = torch.randint(0, 4, (B,), generator=g).float() * (math.pi / 2)
    flip = torch.ones(B)
    if cfg.get("flip"):
        flip = torch.where(torch.rand(B, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle).round(decimals=6), torch.sin(angle).round(decimals=6)
    theta[:, 0, 0], theta[:, 0, 1] = cos * scale_x * flip, -sin * scale_y
    theta[:, 1, 0], theta[:, 1, 1] = sin * scale_x * flip, cos * scale_y
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, (B, C, H, W), align_corners=False)
    if cfg.get("elastic"):
        # a smooth random displacement field, std ``elastic`` px (albumentations' ElasticTransform idea)
        disp = torch.randn(B, 2, H, W, generator=g)
        disp = _gaussian_blur(disp, torch.full((B,), max(H, W) / 8))
        disp = disp / (disp.std(dim=(2, 3), keepdim=True) + 1e-8) * float(cfg["elastic"])
        grid = grid + disp.permute(0, 2, 3, 1) * torch.tensor([2.0 / W, 2.0 / H])
    y = F.grid_sample(x, grid.to(dev, x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    # --- intensity
    if cfg.get("channel_gain"):
        a = float(cfg["channel_gain"])
        y = y * _u(B * C, 1 - a, 1 + a, g).view(B, C, 1, 1).to(dev, x.dtype)
    if cfg.get("channel_offset"):
        o = float(cfg["channel_offset"])
        y = y + _u(B * C, -o, o, g).view(B, C, 1, 1).to(dev, x.dtype)
    if cfg.get("color_jitter"):
        s = float(cfg["color_jitter"])
        apply = (torch.rand(B, generator=g) < 0.8).float().view(B, 1, 1, 1).to(dev, x.dtype)
        b_ = _u(B, 1 - s, 1 + s, g).view(B, 1, 1, 1).to(dev, x.dtype)
        c_ = _u(B, 1 - s, 1 + s, g).view(B, 1, 1, 1).to(dev, x.dtype)
        s_ = _u(B, 1 - s, 1 + s, g).view(B, 1, 1, 1).to(dev, x.dtype)
        h_ = _u(B, -s, s, g) * 2 * math.pi                                  # hue angle (rad)
        j = y * b_
        grey = j.mean(dim=1, keepdim=True)
        j = (j - grey.mean(dim=(2, 3), keepdim=True)) * c_ + grey.mean(dim=(2, 3), keepdim=True)
        grey = j.mean(dim=1, keepdim=True)
        j = grey + (j - grey) * s_
        if C == 3:   # hue: rotate about the grey axis (1, 1, 1)/sqrt(3) (Rodrigues), mixes the channels
            k = torch.full((3,), 1 / math.sqrt(3))
            K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
            R = (torch.eye(3)[None] + torch.sin(h_)[:, None, None] * K[None]
                 + (1 - torch.cos(h_))[:, None, None] * (K @ K)[None]).to(dev, x.dtype)
            j = torch.einsum("bij,bjhw->bihw", R, j)
        y = apply * j + (1 - apply) * y
    if cfg.get("blur"):
        sigma = _u(B, 0.1, float(cfg["blur"]), g) * (torch.rand(B, generator=g) < 0.5).float()
        y = _gaussian_blur(y, sigma.to(dev))
    if cfg.get("noise"):
        std = _u(B, 0.0, float(cfg["noise"]), g).view(B, 1, 1, 1)
        y = y + (torch.randn(B, C, H, W, generator=g) * std).to(dev, x.dtype)
    return y


# ---------------------------------------------------------------------------------------------------
# 2. Encoder f and projection head g
# ---------------------------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """The CPU encoder: 4 x (3x3 conv -> BatchNorm -> ReLU), widths 32-64-128-128, 2x2 max-pooling after
    the first three, global average pooling. (B, C, H, W) -> h (B, 128)."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 128)):
        _check_int("in_channels", in_channels, 1)
        _check_widths(widths)
        super().__init__()
        self.in_channels = int(in_channels)
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def _check_widths(widths) -> tuple[int, ...]:
    if (isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) != 4
            or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths)):
        raise ValueError(f"widths must be 4 positive ints (the spec: 32, 64, 128, 128); got {widths!r}")
    return tuple(int(w) for w in widths)


ENCODERS = ("small_cnn", "resnet18", "resnet50", "resnet18_imagenet", "resnet50_imagenet")


def build_encoder(name: str = "small_cnn", in_channels: int = 3,
                  widths: Sequence[int] = (32, 64, 128, 128)) -> nn.Module:
    """The backbone f: ``(B, C, H, W) -> h (B, out_dim)``; ``out_dim`` is an attribute of the module.

    small_cnn: :class:`SmallCNN` (h: 128-d). resnet18 / resnet50: MONAI's 2-D ResNets from scratch
    (h: 512 / 2048-d). resnet18_imagenet / resnet50_imagenet: torchvision's ImageNet weights (the paper's
    start), only when torchvision is installed (Colab has it); the weights are downloaded by torchvision.
    widths: the small CNN's four conv widths.
    """
    if not isinstance(name, str) or name not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}; got {name!r}")
    _check_int("in_channels", in_channels, 1)
    if name == "small_cnn":
        return SmallCNN(in_channels, _check_widths(widths))
    if name.endswith("_imagenet"):
        if in_channels != 3:
            raise ValueError(f"ImageNet weights expect 3 input channels; got in_channels={in_channels}")
        try:
            import torchvision
        except ImportError:
            raise ValueError(f"encoder {name!r} needs torchvision (pip install torchvision); use "
                             f"{name.replace('_imagenet', '')!r} to train from scratch") from None
        arch = name.replace("_imagenet", "")
        weights = {"resnet18": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}[arch]
        net = getattr(torchvision.models, arch)(weights=weights)
        out_dim = net.fc.in_features
        net.fc = nn.Identity()
        net.out_dim = out_dim
        return net
    from monai.networks.nets import resnet18, resnet50

    net = {"resnet18": resnet18, "resnet50": resnet50}[name](spatial_dims=2, n_input_channels=in_channels,
                                                             num_classes=1)
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    net.out_dim = out_dim
    return net


class SimCLRNet(nn.Module):
    """Encoder f and projection head g (Linear -> ReLU -> Linear): ``forward(x) -> (h, z)``.

    x: (B, C, H, W); h = f(x): (B, d_h), the representation used for profiles; z = g(h): (B, proj_dim),
    the input of the loss. The paper: ResNet-50 (d_h = 2048), head 2048 -> 2048 -> 256.
    """

    def __init__(self, encoder: nn.Module, proj_dim: int = 256, hidden_dim: int | None = None):
        if not isinstance(encoder, nn.Module) or not isinstance(getattr(encoder, "out_dim", None), (int, np.integer)):
            raise ValueError("encoder must be an nn.Module with an int attribute out_dim (its feature width), "
                             f"e.g. build_encoder(...); got {type(encoder).__name__}")
        _check_int("proj_dim", proj_dim, 1)
        if hidden_dim is not None:
            _check_int("hidden_dim", hidden_dim, 1)
        super().__init__()
        d = int(encoder.out_dim)
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(d, hidden_dim or d), nn.ReLU(inplace=True),
                                  nn.Linear(hidden_dim or d, proj_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


# ---------------------------------------------------------------------------------------------------
# 3. The loss
# ---------------------------------------------------------------------------------------------------

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent, SimCLR's contrastive loss. Scalar tensor.

    z1, z2: (N, d), row i of each the two views of one cell (N >= 2). With z = the rows of
    ``cat(z1, z2)`` each divided by its L2 norm (2N rows) and s_ik = z_i . z_k / temperature:

        l(i, j) = -log[ exp(s_ij) / sum_{k != i} exp(s_ik) ],
        L = 1/(2N) sum_{i=1..N} [ l(i, i+N) + l(i+N, i) ]

    i.e. a (2N-1)-way cross-entropy for every view whose correct class is the other view of its cell,
    and whose 2N-2 wrong classes are the views of the other cells in the batch.
    """
    if not isinstance(z1, torch.Tensor) or not isinstance(z2, torch.Tensor):
        raise ValueError(f"z1 and z2 must be tensors (N, d); got {type(z1).__name__} and {type(z2).__name__}")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be (N, d) of the same shape; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs N >= 2 pairs (a batch of one has no negatives); got N={z1.shape[0]}")
    if z1.shape[1] < 1:
        raise ValueError(f"z1 and z2 need d >= 1 features; got shape {tuple(z1.shape)}")
    if not z1.is_floating_point() or not z2.is_floating_point() or z1.dtype != z2.dtype:
        raise ValueError(f"z1 and z2 must be real float tensors of one dtype; got {z1.dtype} and {z2.dtype}")
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2 must be on one device; got {z1.device} and {z2.device}")
    _check_number("temperature", temperature, 0.0, strict=True)
    if not bool(torch.isfinite(z1).all() & torch.isfinite(z2).all()):
        raise ValueError("z1 or z2 contains NaN or inf (a diverged network?)")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T / temperature                                          # (2N, 2N)
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))   # k != i
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)          # i <-> i+N
    return F.cross_entropy(s, target)


# ---------------------------------------------------------------------------------------------------
# 4. Training
# ---------------------------------------------------------------------------------------------------

@dataclass
class Config:
    """SimCLR settings. Defaults are the paper's (official config); the chapter's CPU run changes some.

    encoder: see :data:`ENCODERS` (paper: ImageNet ResNet-50); proj_dim / hidden_dim: the head (paper:
    2048 -> 2048 -> 256; ``hidden_dim=None`` means the encoder's width); temperature: tau (the shipped
    config: 0.1; the README: 0.5); batch_size (paper: 256, i.e. 510 negatives); lr, weight_decay: Adam
    (3e-4, 1e-5); num_epochs (paper: 600); augmentation: a key of :data:`AUGMENTATIONS` or a dict;
    cnn_widths: the four conv widths of the small CNN encoder (ignored by the ResNets).
    The learning rate is constant (the official cosine schedule, stepped per epoch with T_max = batches
    per epoch, was in effect constant too), so the weights after epoch 10 of a 30-epoch run are those
    of a 10-epoch run with the same seed.
    """
    encoder: str = "resnet50"
    proj_dim: int = 256
    hidden_dim: int | None = None
    temperature: float = 0.1
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-5
    num_epochs: int = 600
    augmentation: str | dict = "paper"
    cnn_widths: tuple[int, ...] = (32, 64, 128, 128)

    def __post_init__(self):
        if not isinstance(self.encoder, str) or self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}; got {self.encoder!r}")
        for name in ("proj_dim", "num_epochs"):
            _check_int(name, getattr(self, name), 1)
        if self.hidden_dim is not None:
            _check_int("hidden_dim", self.hidden_dim, 1)
        _check_int("batch_size", self.batch_size, 1)
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (NT-Xent needs negatives); got {self.batch_size}")
        _check_number("temperature", self.temperature, 0.0, strict=True)
        _check_number("lr", self.lr, 0.0, strict=True)
        _check_number("weight_decay", self.weight_decay, 0.0)
        _check_widths(self.cnn_widths)
        _resolve_augmentation(self.augmentation)


@dataclass
class SimCLRResult(_TrainResult):
    """One training run: the :class:`~medtut.train.History` (``loss`` per step), the wall time (s),
    the steps per epoch, and ``snapshots``: {epoch: state_dict} saved at the requested epochs."""
    history: History = field(repr=False)
    wall_time_s: float
    steps_per_epoch: int
    snapshots: dict = field(default_factory=dict, repr=False)
    snapshot_wall_s: dict = field(default_factory=dict)


def build_model(cfg: Config, in_channels: int = 3, seed: int = 0,
                device: torch.device | str | None = None) -> SimCLRNet:
    """The SimCLR network of ``cfg`` with weights drawn from ``seed`` (global random state untouched)."""
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a cell_profiling.Config; got {type(cfg).__name__}")
    _check_int("in_channels", in_channels, 1)
    _check_int("seed", seed, 0)
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SimCLRNet(build_encoder(cfg.encoder, in_channels, cfg.cnn_widths), cfg.proj_dim, cfg.hidden_dim)
    # channels-last memory layout: faster small convolutions on a CPU (same numbers up to rounding)
    return model.to(device, memory_format=torch.channels_last)


def _check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor (N, C, H, W); got {got}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or inf")
    return images


def train_simclr(images: torch.Tensor, cfg: Config, seed: int = 0, device: torch.device | str | None = None,
                 snapshot_epochs: Sequence[int] = (), progress: bool = True,
                 checkpoint=None) -> tuple[SimCLRNet, SimCLRResult]:
    """Train SimCLR on single-cell crops ``images`` (N, C, H, W) float (no labels) with ``cfg``.

    Step t: the batch is slice ``t mod S`` of a permutation drawn for epoch ``t // S`` (S = N //
    batch_size steps per epoch, the remainder dropped), two views by :func:`augment` from a generator
    seeded by (seed, t), loss :func:`nt_xent` of the head outputs, Adam. Returns ``(model, result)``;
    ``result.snapshots[e]`` holds a copy of the weights after epoch ``e`` for each ``e`` in
    ``snapshot_epochs`` (and ``result.snapshot_wall_s[e]`` the training time up to there).
    """
    _check_images(images)
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a cell_profiling.Config; got {type(cfg).__name__}")
    _check_int("seed", seed, 0)
    _check_bool("progress", progress)
    n = images.shape[0]
    if n < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {n} images; lower cfg.batch_size")
    if isinstance(snapshot_epochs, (str, bytes)) or not isinstance(snapshot_epochs, (Sequence, set, frozenset)):
        raise ValueError(f"snapshot_epochs must be a list of epoch numbers; got {snapshot_epochs!r}")
    bad = [e for e in snapshot_epochs
           if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or not 1 <= e <= cfg.num_epochs]
    if bad:
        raise ValueError(f"snapshot_epochs must be ints in [1, num_epochs={cfg.num_epochs}]; got {bad}")
    device = resolve_device(device)
    model = build_model(cfg, images.shape[1], seed, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    spe = n // cfg.batch_size
    data = images.to(device).contiguous(memory_format=torch.channels_last)
    state = {"perm": None, "epoch": -1, "t0": time.perf_counter()}
    snapshots, snap_wall = {}, {}

    def step(t):
        epoch = t // spe
        if state["epoch"] != epoch:
            state["perm"] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            state["epoch"] = epoch
        idx = state["perm"][(t % spe) * cfg.batch_size:(t % spe + 1) * cfg.batch_size]
        x = data[idx.to(device)]
        g = torch.Generator().manual_seed(seed * 1_000_003 + t)
        v1, v2 = augment(x, g, cfg.augmentation), augment(x, g, cfg.augmentation)
        _, z = model(torch.cat([v1, v2]))
        return {"loss": nt_xent(z[:len(idx)], z[len(idx):], cfg.temperature)}

    def eval_fn():
        epoch = len(history.records) // spe
        if epoch in snapshot_epochs and epoch not in snapshots:
            snapshots[epoch] = copy.deepcopy(model.state_dict())
            snap_wall[epoch] = time.perf_counter() - state["t0"]
        return {}

    history = History()
    t0 = time.perf_counter()
    state["t0"] = t0
    fit(step, opt, num_steps=cfg.num_epochs * spe, eval_fn=eval_fn if snapshot_epochs else None,
        eval_every=spe, models=model, checkpoint=checkpoint, checkpoint_every=spe * 5,
        desc=f"SimCLR seed {seed}", progress=progress, history=history)
    wall = time.perf_counter() - t0
    model.eval()
    return model, SimCLRResult(history, wall, spe, snapshots, snap_wall)


# ---------------------------------------------------------------------------------------------------
# 5. Profiles
# ---------------------------------------------------------------------------------------------------

@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
          device: torch.device | str | None = None) -> np.ndarray:
    """Backbone features h of every cell: (N, C, H, W) -> (N, d_h) float64 numpy, in eval mode.

    ``model`` is a :class:`SimCLRNet` (its encoder is used) or any encoder returning (B, d).
    device: where to run it (through :func:`medtut.resolve_device`); ``None`` keeps the model's own device."""
    _check_images(images)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a SimCLRNet or an encoder nn.Module; got {type(model).__name__}")
    _check_int("batch_size", batch_size, 1)
    encoder = model.encoder if isinstance(model, SimCLRNet) else model
    first_conv = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != images.shape[1]:
        raise ValueError(f"images have {images.shape[1]} channels but the encoder takes {first_conv.in_channels}")
    params = next(encoder.parameters(), None)
    if device is not None:
        device = resolve_device(device)
    else:
        device = params.device if params is not None else torch.device("cpu")
    was_training = encoder.training
    encoder.eval()
    out = [encoder(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    encoder.train(was_training)
    return torch.cat(out).double().numpy()


def handcrafted_features(images: torch.Tensor, standardize: bool = True) -> np.ndarray:
    """CellProfiler-like intensity statistics per channel: (N, C, H, W) -> (N, 9 C) float64.

    Per channel: mean, std, 10/25/50/75/90th percentiles, max, and the fraction of pixels above
    half the maximum. ``standardize``: z-score every feature over the cells (as CellProfiler profiles
    usually are), so that no feature dominates the cosine distance by its units.
    """
    _check_images(images)
    _check_bool("standardize", standardize)
    if images.shape[2] * images.shape[3] < 2:
        raise ValueError(f"images need at least 2 pixels for a standard deviation; got {tuple(images.shape)}")
    x = images.double().flatten(2)                                      # (N, C, P)
    q = torch.quantile(x, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=x.dtype), dim=2).permute(1, 2, 0)
    mx = x.max(dim=2).values
    feats = torch.cat([x.mean(2, keepdim=True), x.std(2, keepdim=True), q, mx[..., None],
                       (x > 0.5 * mx[..., None]).double().mean(2, keepdim=True)], dim=2)   # (N, C, 9)
    f = feats.flatten(1).numpy()
    if standardize:
        f = (f - f.mean(0)) / (f.std(0) + 1e-12)
    return f


def _check_profiles(profiles, name: str = "profiles") -> np.ndarray:
    if profiles is None or isinstance(profiles, (str, bytes, Mapping)):
        raise ValueError(f"{name} must be a 2-D array (n, d); got {type(profiles).__name__}")
    p = profiles.detach().cpu().numpy() if isinstance(profiles, torch.Tensor) else np.asarray(profiles)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, d); got shape {p.shape}")
    if np.iscomplexobj(p):
        raise ValueError(f"{name} must be real; got dtype {p.dtype}")
    if not np.issubdtype(p.dtype, np.number) or not np.isfinite(p).all():
        raise ValueError(f"{name} must be finite numbers; got dtype {p.dtype} with NaN/inf or non-numbers")
    return p.astype(np.float64)


def _check_meta(meta, n: int, keys: Sequence[str], name: str = "meta") -> dict:
    if not isinstance(meta, Mapping):
        raise ValueError(f"{name} must be a dict of arrays with keys {list(keys)}; got {type(meta).__name__}")
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ValueError(f"{name} lacks the keys {missing}; needs {list(keys)}")
    scalar = [k for k in keys if isinstance(meta[k], (str, bytes)) or np.ndim(meta[k]) == 0]
    if scalar:
        raise ValueError(f"{name} columns must be arrays with one entry per row; {scalar} are scalars")
    out = {k: np.asarray(meta[k]) if k != "batches" else list(meta[k]) for k in meta}
    bad = {k: len(out[k]) for k in keys if len(out[k]) != n}
    if bad:
        raise ValueError(f"{name} columns must have {n} entries (one per row of the features); got {bad}")
    if "is_control" in keys and out["is_control"].dtype != bool:
        raise ValueError(f"{name}['is_control'] must be a bool array; got dtype {out['is_control'].dtype}")
    return out


WELL_KEYS = ("plate", "well", "batch", "compound", "concentration", "moa", "is_control")


def well_profiles(features, meta: Mapping) -> tuple[np.ndarray, dict]:
    """Mean of the cells of each (plate, well): (N, d) features + per-cell meta -> (W, d), well meta.

    The well meta holds the same keys as the cell meta (one row per well, in order of first appearance)
    and ``n_cells``. The official code calls this level "site"; it is per well.
    """
    f = _check_profiles(features, "features")
    m = _check_meta(meta, len(f), WELL_KEYS)
    keys = list(zip(m["plate"].tolist(), m["well"].tolist()))
    order = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(order)}
    inv = np.array([index[k] for k in keys])
    counts = np.bincount(inv, minlength=len(order))
    sums = np.zeros((len(order), f.shape[1]))
    np.add.at(sums, inv, f)
    first = np.array([keys.index(k) for k in order])
    wm = {k: m[k][first] for k in WELL_KEYS}
    for k in WELL_KEYS:   # a well must have one compound, concentration, batch...
        if len(set(zip(inv.tolist(), m[k].tolist()))) != len(order):
            raise ValueError(f"meta[{k!r}] varies inside a (plate, well); every well needs one value")
    wm["n_cells"] = counts
    return sums / counts[:, None], wm


def tvn(profiles, is_control, lam: float = 1.0, batches=None) -> np.ndarray:
    """Typical variation normalisation: whiten all profiles on the controls' variation.

    profiles: (n, d); is_control: (n,) bool, at least 2 controls. With mu, the controls' mean, and
    C = V diag(s) V^T the eigendecomposition of their covariance (1/(n_c - 1) normalisation):

        x <- (x - mu) V diag(1 / sqrt(s + lam))          (no back-rotation; output (n, d))

    lam > 0 regularises the directions the few controls do not span (lam = 1 in the official code).
    batches: optional (n,) batch labels for CORAL per batch after whitening,
    x <- x (C_b + I)^(-1/2) (C_all + I)^(1/2), C_b / C_all the covariance of the batch's / all controls.
    """
    p = _check_profiles(profiles)
    ctrl = np.asarray(is_control)
    if ctrl.shape != (len(p),) or ctrl.dtype != bool:
        raise ValueError(f"is_control must be a bool array of shape ({len(p)},); got {ctrl.dtype} {ctrl.shape}")
    if ctrl.sum() < 2:
        raise ValueError(f"tvn needs at least 2 control profiles; got {int(ctrl.sum())}")
    lam = _check_number("lam", lam, 0.0)
    mu = p[ctrl].mean(0)
    s, V = np.linalg.eigh(np.cov(p[ctrl], rowvar=False).reshape(p.shape[1], p.shape[1]))
    s = np.clip(s, 0, None)
    if lam == 0 and (s <= 1e-12 * max(s.max(), 1e-300)).any():
        raise ValueError("lam = 0 needs a full-rank control covariance (more controls than dimensions); "
                         "use lam > 0")
    x = (p - mu) @ V / np.sqrt(s + lam)
    if batches is None:
        return x
    b = np.asarray(batches)
    if b.shape != (len(p),):
        raise ValueError(f"batches must have shape ({len(p)},), one batch label per profile; got {b.shape}")

    def msqrt(c, power):
        w, U = np.linalg.eigh(c)
        return (U * np.clip(w, 1e-12, None) ** power) @ U.T

    eye = np.eye(x.shape[1])
    c_all = np.cov(x[ctrl], rowvar=False) + eye
    out = x.copy()
    for label in np.unique(b):
        sel = b == label
        if (sel & ctrl).sum() < 2:
            raise ValueError(f"CORAL needs at least 2 controls in every batch; batch {str(label)!r} has "
                             f"{int((sel & ctrl).sum())}")
        c_b = np.cov(x[sel & ctrl], rowvar=False) + eye
        out[sel] = x[sel] @ msqrt(c_b, -0.5) @ msqrt(c_all, 0.5)
    return out


def treatment_profiles(profiles, well_meta: Mapping) -> tuple[np.ndarray, dict]:
    """Median of the wells of each (compound, concentration), controls dropped.

    profiles: (W, d) well profiles; well_meta: their meta (:func:`well_profiles`). Returns (T, d) and a
    dict with ``compound``, ``concentration``, ``moa`` (arrays) and ``batches`` (list of frozensets: all
    batches the treatment's wells come from), sorted by (compound, concentration).
    """
    p = _check_profiles(profiles)
    m = _check_meta(well_meta, len(p), ("compound", "concentration", "moa", "batch", "is_control"),
                    "well_meta")
    keep = ~m["is_control"].astype(bool)
    if not keep.any():
        raise ValueError("every well is a control: no treatment to profile")
    keys = sorted(set(zip(m["compound"][keep].tolist(), m["concentration"][keep].tolist())))
    rows, meta = [], {"compound": [], "concentration": [], "moa": [], "batches": []}
    for comp, conc in keys:
        sel = keep & (m["compound"] == comp) & (m["concentration"] == conc)
        moas = set(m["moa"][sel].tolist())
        if len(moas) != 1:
            raise ValueError(f"treatment ({comp}, {conc}) has several MoAs {sorted(moas)}")
        rows.append(np.median(p[sel], axis=0))
        meta["compound"].append(comp)
        meta["concentration"].append(conc)
        meta["moa"].append(moas.pop())
        meta["batches"].append(frozenset(m["batch"][sel].tolist()))
    return np.stack(rows), {"compound": np.array(meta["compound"]), "concentration": np.array(meta["concentration"]),
                            "moa": np.array(meta["moa"]), "batches": meta["batches"]}


# ---------------------------------------------------------------------------------------------------
# 6. Evaluation: NSC and NSCB
# ---------------------------------------------------------------------------------------------------

@dataclass
class NSCResult:
    """Nearest-neighbour MoA accuracy.

    nsc, nscb: accuracies in [0, 1]; drop = nsc - nscb; nsc_neighbour / nscb_neighbour: (T,) index of
    each query's neighbour (-1: not a query under that rule, e.g. an NSCB query whose MoA lives in one
    batch); nsc_correct / nscb_correct: (T,) bool (False where not a query); n_nsc / n_nscb: the number
    of queries.
    """
    nsc: float
    nscb: float
    nsc_neighbour: np.ndarray
    nscb_neighbour: np.ndarray
    nsc_correct: np.ndarray
    nscb_correct: np.ndarray
    n_nsc: int
    n_nscb: int

    @property
    def drop(self) -> float:
        return self.nsc - self.nscb


def _as_batch_set(b) -> frozenset:
    if isinstance(b, (set, frozenset, list, tuple)):
        return frozenset(str(x) for x in b)
    return frozenset([str(b)])


def cosine_similarity(profiles) -> np.ndarray:
    """(n, d) -> (n, n) cosine similarities (a zero row has similarity 0 to everything)."""
    p = _check_profiles(profiles)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    q = p / np.where(norm > 0, norm, 1.0)
    return q @ q.T


def _treatment_table(meta: Mapping, n: int) -> tuple[np.ndarray, np.ndarray, list[frozenset]]:
    m = _check_meta(meta, n, ("compound", "moa", "batches"))
    batches = [_as_batch_set(b) for b in m["batches"]]
    if any(not b for b in batches):
        raise ValueError("every treatment needs at least one batch label")
    return m["compound"].astype(str), m["moa"].astype(str), batches


def nscb_candidates(meta: Mapping) -> np.ndarray:
    """(T, T) bool: ``out[i, j]`` is True when treatment j may be treatment i's NSCB neighbour.

    meta: ``compound``, ``moa`` and ``batches`` (T,) as in :func:`nsc_nscb`. j is a candidate for i when
    it is another compound, shares **no** batch with i (set intersection), and both MoAs span more
    than one batch (MoAs confined to one batch are removed: their rows and columns are all False).
    """
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a dict with compound, moa and batches; got {type(meta).__name__}")
    n = len(meta["compound"]) if "compound" in meta and np.ndim(meta["compound"]) == 1 else 0
    comp, moa, batches = _treatment_table(meta, n)
    T = len(comp)
    share = np.array([[bool(batches[i] & batches[j]) for j in range(T)] for i in range(T)]).reshape(T, T)
    moa_batches: dict[str, set] = {}
    for mo, b in zip(moa, batches):
        moa_batches.setdefault(mo, set()).update(b)
    multi = np.array([len(moa_batches[mo]) > 1 for mo in moa], dtype=bool)
    return (comp[:, None] != comp[None, :]) & ~share & multi[:, None] & multi[None, :]


def nsc_nscb(profiles, meta: Mapping) -> NSCResult:
    """NSC and NSCB accuracy of cosine 1-NN MoA matching on treatment profiles.

    profiles: (T, d); meta: ``compound``, ``moa`` (T,) and ``batches`` (T,): each a batch label or a set
    of them (:func:`treatment_profiles` gives sets).

    * NSC: the neighbour of a query is searched among treatments of *other compounds*.
    * NSCB: additionally excluding every treatment that shares **any** batch with the query (set
      intersection; the official code compared comma-joined strings). MoAs all of whose treatments live
      in a single batch are removed first (queries and candidates), as the official evaluation
      code does (on BBBC021 this removes two MoAs). See :func:`nscb_candidates`.

    A query is correct when its neighbour has its MoA. Ties go to the lowest index. A query left
    without candidates raises ``ValueError``.
    """
    p = _check_profiles(profiles)
    comp, moa, batches = _treatment_table(meta, len(p))
    if len(set(comp.tolist())) < 2:
        raise ValueError("NSC needs treatments of at least two compounds")
    T = len(p)
    sim = cosine_similarity(p)
    nscb_ok_mask = nscb_candidates({"compound": comp, "moa": moa, "batches": batches})
    moa_batches: dict[str, set] = {}
    for mo, b in zip(moa, batches):
        moa_batches.setdefault(mo, set()).update(b)
    multi = np.array([len(moa_batches[mo]) > 1 for mo in moa], dtype=bool)

    def one_nn(candidates: np.ndarray, queries: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
        nb = np.full(T, -1)
        ok = np.zeros(T, dtype=bool)
        for i in np.nonzero(queries)[0]:
            if not candidates[i].any():
                raise ValueError(f"{rule}: treatment {i} ({comp[i]}) has no candidate neighbour left")
            s = np.where(candidates[i], sim[i], -np.inf)
            nb[i] = int(np.argmax(s))              # first maximum: ties go to the lowest index
            ok[i] = moa[nb[i]] == moa[i]
        return nb, ok

    nsc_nb, nsc_ok = one_nn(comp[:, None] != comp[None, :], np.ones(T, dtype=bool), "NSC")
    nscb_nb, nscb_ok = one_nn(nscb_ok_mask, multi, "NSCB")
    n_nscb = int(multi.sum())
    return NSCResult(float(nsc_ok.mean()), float(nscb_ok.sum() / n_nscb) if n_nscb else float("nan"),
                     nsc_nb, nscb_nb, nsc_ok, nscb_ok, T, n_nscb)


# ---------------------------------------------------------------------------------------------------
# The whole pipeline, from cell features to NSC / NSCB
# ---------------------------------------------------------------------------------------------------

def profile_and_score(features, meta: Mapping, use_tvn: bool = False, lam: float = 1.0,
                      coral: bool = False) -> tuple[NSCResult, np.ndarray, dict]:
    """Cell features (N, d) + cell meta -> well means -> [TVN on DMSO wells] -> treatment medians ->
    :func:`nsc_nscb`. Returns (result, treatment profiles (T, d'), treatment meta).

    coral (needs ``use_tvn=True``): per-batch CORAL after the whitening (see :func:`tvn`)."""
    _check_bool("use_tvn", use_tvn)
    _check_bool("coral", coral)
    _check_number("lam", lam, 0.0)
    if coral and not use_tvn:
        raise ValueError("coral=True is applied after TVN whitening: pass use_tvn=True as well")
    wp, wm = well_profiles(features, meta)
    if use_tvn:
        wp = tvn(wp, wm["is_control"].astype(bool), lam=lam, batches=wm["batch"] if coral else None)
    tp, tm = treatment_profiles(wp, wm)
    return nsc_nscb(tp, tm), tp, tm


__all__ = ["AUGMENTATIONS", "augment", "SmallCNN", "ENCODERS", "build_encoder", "SimCLRNet", "nt_xent",
           "Config", "SimCLRResult", "build_model", "train_simclr", "embed", "handcrafted_features",
           "well_profiles", "tvn", "treatment_profiles", "NSCResult", "cosine_similarity", "nscb_candidates", "nsc_nscb",
           "profile_and_score"]
