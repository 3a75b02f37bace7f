"""Chapter 2: cross-image pixel contrast for fully supervised semantic segmentation.

Wang, Zhou, Yu, Dai, Konukoglu, Van Gool, "Exploring Cross-Image Pixel Contrast for Semantic
Segmentation", ICCV 2021, arXiv:2101.11939 (official code: github.com/tfzhou/ContrastiveSeg).

The module reads like the paper's method section:

1. **Model** (:func:`make_model`). Chapter 1's small 2-D U-Net (:class:`medtut.local_contrastive.
   UNetWithProjection`): a segmentation head reads the decoder features F, and a projection head on the
   *same* F (1×1 conv + BN + ReLU → 1×1 conv, 32-d here, 256 in the paper) gives one embedding per pixel.
   The projection head is only used by the loss and is dropped at test time.
2. **Anchors** (:func:`sample_anchors`). Segmentation-aware sampling: per image, the classes with more
   than ``max_views`` pixels; per (image, class) ``n_view`` anchors, half *hard* (label c, predicted ≠ c)
   and half *easy* (predicted c). Anchors of all images of the batch form one set: the "cross-image" part.
3. **Loss** (:func:`pixel_contrast_loss`, :func:`contrast_terms`). A supervised InfoNCE in which each
   positive is contrasted with all negatives but *not* with the other positives.
4. **Memory** (:class:`PixelSegmentMemory`, :func:`memory_contrast_loss`). Per class, a FIFO queue of
   pixel embeddings and one of region-mean ("segment") embeddings from past batches.
5. **Training** (:class:`Config`, :func:`train`). L = CE + λ·L_pc with λ = 0.1, the contrastive weight 0
   during a warm-up; one step function handed to :func:`medtut.train.fit`.
6. **Evaluation and diagnostics** (:func:`evaluate`, :func:`embedding_diagnostics`,
   :func:`similarity_map`). mIoU / Dice on test images, and the structure of the embedding space on
   held-out pixels: intra- vs inter-class cosine and nearest-prototype accuracy.

Defects of the official code that this module does not reproduce: the pixel-queue pointer advanced by 1
instead of the number of entries written (issues #47/#55), a wrapped queue overwrote the newest entries
instead of the oldest (#31), the loss turned NaN when ``exp_logits + neg_logits`` underflowed (#68; here
the log-ratio is computed with ``logaddexp`` and needs no epsilon), the sampler crashed when a class had
too few hard *and* easy pixels, and ``.cuda()`` was hard-coded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import resolve_device
from .local_contrastive import UNetWithProjection
from .train import History, fit
from .train import TrainResult as _TrainResult

ANCHOR_SAMPLING = ("hard_easy", "random")
ARMS = ("ce", "contrast", "memory")


# ------------------------------------------------------------------------------------------------
# 0. input checks and small helpers
# ------------------------------------------------------------------------------------------------


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"shape {tuple(x.shape)} {x.dtype}"
    return type(x).__name__


def _check_embeddings(embeddings, name: str = "embeddings") -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 4 or not embeddings.is_floating_point():
        raise ValueError(f"{name} must be a float (B, D, h, w) tensor; got {_describe(embeddings)}")
    if embeddings.shape[0] < 1 or embeddings.shape[1] < 1 or embeddings.shape[2] < 1 or embeddings.shape[3] < 1:
        raise ValueError(f"{name} must have non-empty dimensions; got shape {tuple(embeddings.shape)}")
    if not torch.isfinite(embeddings.detach().sum()):     # one reduction: NaN/inf anywhere propagates
        raise ValueError(f"{name} must be finite; got NaN or inf")


def _check_label_map(y, name: str, batch: int, ignore_index: int) -> None:
    if not isinstance(y, torch.Tensor) or y.ndim != 3 or y.is_floating_point() or y.is_complex() \
            or y.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer (B, H, W) label map with B = {batch}; got {_describe(y)}")
    if y.shape[0] != batch:
        raise ValueError(f"{name} must hold B = {batch} label maps (one per embedding map); got shape "
                         f"{tuple(y.shape)}")
    bad = (y < 0) & (y != ignore_index)
    if bool(bad.any()):
        raise ValueError(f"{name} must hold class indices >= 0 or ignore_index={ignore_index}; got the value "
                         f"{int(y[bad][0])}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_int(name: str, value, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")


def _check_model(model) -> None:
    if not isinstance(model, UNetWithProjection):
        raise ValueError(f"model must be a UNetWithProjection (from make_model or train); got {type(model).__name__}")


def _check_images(images, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 3 or not images.is_floating_point():
        raise ValueError(f"{name} must be a float (N, H, W) tensor; got {_describe(images)}")
    if len(images) == 0:
        raise ValueError(f"{name} must hold at least one image; got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} must be finite; got NaN or inf")


def _check_temperatures(temperature, base_temperature) -> None:
    for name, t in (("temperature", temperature), ("base_temperature", base_temperature)):
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not np.isfinite(t) \
                or not t > 0:
            raise ValueError(f"{name} must be a positive number; got {t!r}")


def _check_sampler_args(max_samples, max_views, anchor_sampling) -> None:
    if max_samples is not None and (not _is_int(max_samples) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int, or None for every pixel; got {max_samples!r}")
    if not _is_int(max_views) or max_views < 0:
        raise ValueError(f"max_views must be an int >= 0; got {max_views!r}")
    if anchor_sampling not in ANCHOR_SAMPLING:
        raise ValueError(f"anchor_sampling must be one of {ANCHOR_SAMPLING}; got {anchor_sampling!r}")


def l2_normalize(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x / ||x||₂ along ``dim`` (a zero vector stays zero)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0:
        raise ValueError(f"x must be a float tensor with at least one dimension; got {_describe(x)}")
    if not _is_int(dim) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be an int in [{-x.ndim}, {x.ndim - 1}] for a {x.ndim}-d tensor; got {dim!r}")
    return x * torch.rsqrt((x * x).sum(dim, keepdim=True).clamp(min=1e-24))


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of integer label maps (B, H, W) → (B, *size), as the official code."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.is_floating_point() \
            or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer (B, H, W) label map; got {_describe(labels)}")
    if not isinstance(size, (tuple, list, torch.Size)) or len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size):
        raise ValueError(f"size must be (h, w), two positive ints; got {size!r}")
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].to(labels.dtype)


# ------------------------------------------------------------------------------------------------
# 1. the model
# ------------------------------------------------------------------------------------------------


def _check_features(features) -> None:
    if not isinstance(features, (tuple, list)) or len(features) < 2 or not all(_is_int(f) and f >= 1 for f in features):
        raise ValueError(f"features must be a tuple of >= 2 positive ints (channels per U-Net level); got {features!r}")


def make_model(num_classes: int, embed_dim: int = 32, features=(16, 32, 64, 128), in_channels: int = 1,
               seed: int = 0, device=None) -> UNetWithProjection:
    """Chapter 1's U-Net with a ``embed_dim``-d projection head on the classifier's features F.

    ``model(x)`` → logits (B, num_classes, H, W); ``model(x, embed=True)`` → (logits, embeddings
    (B, embed_dim, H, W), not yet normalised). Initialised from ``seed`` without touching the global RNG.
    """
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if not _is_int(embed_dim) or embed_dim < 1:
        raise ValueError(f"embed_dim must be a positive int; got {embed_dim!r}")
    _check_features(features)
    _check_int("in_channels", in_channels, 1)
    _check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNetWithProjection(num_classes=num_classes, in_channels=in_channels, features=tuple(features),
                                   embed_dim=embed_dim)
    return model.to(resolve_device(device))


# ------------------------------------------------------------------------------------------------
# 2. segmentation-aware anchor sampling
# ------------------------------------------------------------------------------------------------


@dataclass
class Anchors:
    """Sampled anchor pixels of a batch, at embedding resolution (h, w).

    index: (M,) int64 flat indices into the B·h·w pixels (``b·h·w + row·w + col``);
    labels: (M,) int64 classes; hard: (M,) bool, label ≠ prediction (all False in all-pixel mode);
    n_view: anchors per (image, class) (0 in all-pixel mode).
    """
    index: torch.Tensor
    labels: torch.Tensor
    hard: torch.Tensor
    n_view: int = 0

    def __len__(self) -> int:
        return int(self.index.numel())


def _draw(idx: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k of the indices ``idx`` at random, without replacement."""
    if k >= idx.numel():
        return idx
    return idx[torch.randperm(idx.numel(), generator=generator)[:k].to(idx.device)]


def sample_anchors(labels: torch.Tensor, predictions: torch.Tensor | None, max_samples: int | None = 1024,
                   max_views: int = 100, *, ignore_index: int = -1, anchor_sampling: str = "hard_easy",
                   generator: torch.Generator | None = None) -> Anchors:
    """The anchor set A of a batch: labels, predictions (B, h, w) int at the embedding resolution.

    ``max_samples=None``: every non-ignored pixel is an anchor and ``predictions`` is not read.
    Otherwise, per image, the classes with more than ``max_views`` pixels are kept; with P such
    (image, class) pairs in the batch, n_view = max(1, min(⌊max_samples / P⌋, max_views)) anchors are
    drawn per pair:

    * ``anchor_sampling="hard_easy"`` (the paper): ⌊n_view/2⌋ hard pixels (label c, prediction ≠ c) and
      the rest easy (prediction = c); when one set is short, all of it is taken and the other tops up;
    * ``anchor_sampling="random"`` (ablation): n_view pixels of label c, regardless of the prediction.

    Draws come from ``generator`` (a CPU ``torch.Generator``; None: a fresh one seeded with 0, so the
    same inputs give the same anchors).
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3:
        raise ValueError(f"labels must be an integer (B, h, w) label map; got {_describe(labels)}")
    if not _is_int(ignore_index):
        raise ValueError(f"ignore_index must be an int; got {ignore_index!r}")
    _check_label_map(labels, "labels", labels.shape[0], ignore_index)
    _check_sampler_args(max_samples, max_views, anchor_sampling)
    _check_generator(generator)
    device = labels.device
    flat = labels.reshape(-1)
    if max_samples is None:
        index = torch.nonzero(flat != ignore_index).flatten()
        return Anchors(index, flat[index], torch.zeros_like(index, dtype=torch.bool), 0)
    if predictions is None:
        raise ValueError("predictions is needed to sample anchors (pass max_samples=None for every pixel)")
    _check_label_map(predictions, "predictions", labels.shape[0], ignore_index)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions must have the labels' shape {tuple(labels.shape)}; got "
                         f"{tuple(predictions.shape)}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    b, h, w = labels.shape
    pairs = []
    for i in range(b):
        classes, counts = torch.unique(labels[i], return_counts=True)
        for c, n in zip(classes.tolist(), counts.tolist()):
            if c != ignore_index and n > max_views:
                pairs.append((i, c))
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if not pairs:
        return Anchors(empty, empty.clone(), torch.zeros(0, dtype=torch.bool, device=device), 0)
    n_view = max(1, min(int(max_samples) // len(pairs), int(max_views)))
    pred_flat = predictions.reshape(-1)
    chosen = []
    for i, c in pairs:
        offset = i * h * w
        lab_i, pred_i = flat[offset:offset + h * w], pred_flat[offset:offset + h * w]
        is_c = lab_i == c
        if anchor_sampling == "random":
            chosen.append(offset + _draw(torch.nonzero(is_c).flatten(), n_view, generator))
            continue
        hard = torch.nonzero(is_c & (pred_i != c)).flatten()
        easy = torch.nonzero(is_c & (pred_i == c)).flatten()
        n_hard = n_view // 2
        n_easy = n_view - n_hard
        if hard.numel() < n_hard:            # too few hard pixels: take them all, top up with easy ones
            n_hard, n_easy = hard.numel(), n_view - hard.numel()
        elif easy.numel() < n_easy:          # too few easy pixels: take them all, top up with hard ones
            n_easy, n_hard = easy.numel(), n_view - easy.numel()
        chosen.append(offset + torch.cat([_draw(hard, n_hard, generator), _draw(easy, n_easy, generator)]))
    index = torch.cat(chosen)
    return Anchors(index, flat[index], pred_flat[index] != flat[index], n_view)


# ------------------------------------------------------------------------------------------------
# 3. the loss
# ------------------------------------------------------------------------------------------------


def contrast_terms(z_anchor: torch.Tensor, y_anchor: torch.Tensor, z_contrast: torch.Tensor,
                   y_contrast: torch.Tensor, temperature: float = 0.1, base_temperature: float = 0.07,
                   exclude_self: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor losses L_i: z_anchor (M, D) and z_contrast (N, D) ℓ2-normalised, y_* their classes.

    With s_ij = z_i·z_j / τ, positives P_i = {j : y_j = y_i} (minus i itself when ``exclude_self``, i.e.
    when the contrast set *is* the anchor set, M = N) and negatives N_i = {k : y_k ≠ y_i}:

        L_i = −(τ/τ_b) · (1/|P_i|) Σ_{j∈P_i} log[ e^{s_ij} / (e^{s_ij} + Σ_{k∈N_i} e^{s_ik}) ]

    computed as −softplus(logsumexp_{k∈N_i} s_ik − s_ij), which is exact and never NaN.
    Returns (L (M,), has_positive (M,) bool); L_i = 0 where P_i is empty.
    """
    for name, z in (("z_anchor", z_anchor), ("z_contrast", z_contrast)):
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
            raise ValueError(f"{name} must be a float (rows, D) tensor; got {_describe(z)}")
    if z_anchor.shape[1] != z_contrast.shape[1]:
        raise ValueError(f"z_anchor and z_contrast must have the same D; got {z_anchor.shape[1]} and {z_contrast.shape[1]}")
    for name, y, z in (("y_anchor", y_anchor, z_anchor), ("y_contrast", y_contrast, z_contrast)):
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool \
                or tuple(y.shape) != (z.shape[0],):
            raise ValueError(f"{name} must be an integer ({z.shape[0]},) tensor, one class per row; got {_describe(y)}")
    _check_temperatures(temperature, base_temperature)
    if not isinstance(exclude_self, bool):
        raise ValueError(f"exclude_self must be a bool; got {exclude_self!r}")
    if exclude_self and z_anchor.shape[0] != z_contrast.shape[0]:
        raise ValueError(f"exclude_self=True needs the contrast set to be the anchor set (M = N); got M = "
                         f"{z_anchor.shape[0]}, N = {z_contrast.shape[0]}")
    logits = z_anchor @ z_contrast.T / temperature                                # (M, N)
    same = y_anchor[:, None] == y_contrast[None, :]
    positive = same.clone()
    if exclude_self:
        positive.fill_diagonal_(False)
    very_negative = torch.finfo(logits.dtype).min / 4       # no negatives: log_neg → -huge, ratio → 1
    log_neg = torch.logsumexp(logits.masked_fill(same, very_negative), dim=1, keepdim=True)   # (M, 1)
    # −log[e^s / (e^s + e^log_neg)] = softplus(log_neg − s): exact, stable, no epsilon needed
    neg_log_ratio = F.softplus(log_neg - logits)                                  # (M, N)
    pos = positive.to(logits.dtype)
    n_pos = pos.sum(1)
    mean_neg_log = (neg_log_ratio * pos).sum(1) / n_pos.clamp(min=1)
    return (temperature / base_temperature) * mean_neg_log, n_pos > 0


def _anchor_embeddings(embeddings: torch.Tensor, anchors: Anchors) -> torch.Tensor:
    """(B, D, h, w) → the anchors' ℓ2-normalised embeddings (M, D) (gathered first: no full-map copy)."""
    hw = embeddings.shape[2] * embeddings.shape[3]
    z = embeddings.flatten(2)[anchors.index // hw, :, anchors.index % hw]       # (M, D)
    return l2_normalize(z, 1)


def _prepare(embeddings, labels, predictions, temperature, base_temperature, max_samples, max_views,
             ignore_index, anchor_sampling, generator) -> tuple[torch.Tensor, Anchors]:
    _check_embeddings(embeddings)
    b, _, h, w = embeddings.shape
    if not _is_int(ignore_index):
        raise ValueError(f"ignore_index must be an int; got {ignore_index!r}")
    _check_generator(generator)
    _check_label_map(labels, "labels", b, ignore_index)
    _check_temperatures(temperature, base_temperature)
    _check_sampler_args(max_samples, max_views, anchor_sampling)
    labels = resize_labels(labels.to(embeddings.device), (h, w))
    if max_samples is not None:
        if predictions is None:
            raise ValueError("predictions (B, H, W) are needed for hard/easy anchors; pass max_samples=None "
                             "to use every pixel")
        _check_label_map(predictions, "predictions", b, ignore_index)
        predictions = resize_labels(predictions.to(embeddings.device), (h, w))
    anchors = sample_anchors(labels, predictions, max_samples, max_views, ignore_index=ignore_index,
                             anchor_sampling=anchor_sampling, generator=generator)
    return _anchor_embeddings(embeddings, anchors), anchors


def pixel_contrast_loss(embeddings: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor | None,
                        temperature: float = 0.1, base_temperature: float = 0.07, max_samples: int | None = 1024,
                        max_views: int = 100, *, ignore_index: int = -1, anchor_sampling: str = "hard_easy",
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The in-batch (cross-image) pixel contrast L_pc of the paper, a scalar.

    embeddings: (B, D, h, w) float, ℓ2-normalised along D here; labels, predictions: (B, H, W) int,
    resized to (h, w) by nearest neighbour (``predictions`` is the network's argmax, used only to split
    hard and easy anchors). The anchor set A is :func:`sample_anchors`'s, pooled over the batch. For
    i ∈ A with P_i = {j ∈ A, j ≠ i, y_j = y_i} and N_i = {k ∈ A, y_k ≠ y_i}:

        L_i = −(τ/τ_b) · (1/|P_i|) Σ_{j∈P_i} log[ e^{z_i·z_j/τ} / (e^{z_i·z_j/τ} + Σ_{k∈N_i} e^{z_i·z_k/τ}) ]

    with τ = ``temperature``, τ_b = ``base_temperature``. Other positives stay out of the denominator
    (unlike SupCon). Returns the mean of L_i over anchors with |P_i| ≥ 1, or a differentiable 0 if none.
    ``max_samples=None``: every non-ignored pixel is an anchor (quadratic cost; deterministic).
    """
    z, anchors = _prepare(embeddings, labels, predictions, temperature, base_temperature, max_samples,
                          max_views, ignore_index, anchor_sampling, generator)
    if len(anchors) == 0:
        return embeddings.sum() * 0.0
    losses, valid = contrast_terms(z, anchors.labels, z, anchors.labels, temperature, base_temperature, True)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    return losses[valid].mean()


# ------------------------------------------------------------------------------------------------
# 4. pixel and segment memory
# ------------------------------------------------------------------------------------------------


class PixelSegmentMemory:
    """Per-class FIFO queues of past embeddings (detached, ℓ2-normalised).

    pixel queue: (num_classes, pixel_size, dim), ``pixels_per_image`` random pixels per image and class;
    segment queue: (num_classes, segment_size, dim), one normalised region mean per image and class.
    Each queue has a write pointer and a fill count per class. A write of n entries goes to slots
    ptr, ptr+1, …, ptr+n−1 (mod size) and moves the pointer by n, so once full the *oldest* entries are
    overwritten (the official code moved the pixel pointer by 1 and overwrote the newest entries). Empty
    slots never join the contrast set.
    """

    def __init__(self, num_classes: int, dim: int, pixel_size: int, segment_size: int,
                 pixels_per_image: int = 10, device=None):
        for name, v, low in (("num_classes", num_classes, 2), ("dim", dim, 1), ("pixel_size", pixel_size, 0),
                             ("segment_size", segment_size, 0), ("pixels_per_image", pixels_per_image, 1)):
            _check_int(name, v, low)
        if pixel_size + segment_size < 1:
            raise ValueError(f"pixel_size + segment_size must be >= 1; got {pixel_size} + {segment_size}")
        device = resolve_device(device)
        self.num_classes, self.dim, self.pixels_per_image = int(num_classes), int(dim), int(pixels_per_image)
        self.pixel_queue = torch.zeros(num_classes, pixel_size, dim, device=device)
        self.segment_queue = torch.zeros(num_classes, segment_size, dim, device=device)
        self.pixel_ptr = torch.zeros(num_classes, dtype=torch.long)
        self.segment_ptr = torch.zeros(num_classes, dtype=torch.long)
        self.pixel_count = torch.zeros(num_classes, dtype=torch.long)
        self.segment_count = torch.zeros(num_classes, dtype=torch.long)

    @staticmethod
    def _write(queue: torch.Tensor, ptr: torch.Tensor, count: torch.Tensor, c: int, x: torch.Tensor) -> None:
        size = queue.shape[1]
        if size == 0:
            return
        x = x[-size:]                                 # more entries than slots: the newest win
        n = x.shape[0]
        slots = (int(ptr[c]) + torch.arange(n)) % size
        queue[c, slots.to(queue.device)] = x.to(queue.dtype)
        ptr[c] = (int(ptr[c]) + n) % size
        count[c] = min(int(count[c]) + n, size)

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -1,
                generator: torch.Generator | None = None) -> None:
        """Add a batch: embeddings (B, dim, h, w) (any scale; normalised here, detached), labels (B, H, W) int
        resized to (h, w). Per image and class present: the normalised mean embedding of the region (1
        segment entry) and min(pixels_per_image, #pixels) random pixel embeddings."""
        _check_embeddings(embeddings)
        b, d, h, w = embeddings.shape
        if d != self.dim:
            raise ValueError(f"embeddings must have dim = {self.dim} channels; got {d}")
        if not _is_int(ignore_index):
            raise ValueError(f"ignore_index must be an int; got {ignore_index!r}")
        _check_label_map(labels, "labels", b, ignore_index)
        _check_generator(generator)
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        z = l2_normalize(embeddings.detach(), 1)
        y = resize_labels(labels.to(z.device), (h, w))
        if int(y.max()) >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}] (or be ignore_index); got "
                             f"{int(y.max())}")
        for i in range(b):
            zi = z[i].reshape(d, -1).T                                     # (h·w, D)
            yi = y[i].reshape(-1)
            for c in torch.unique(yi).tolist():
                if c == ignore_index:
                    continue
                members = torch.nonzero(yi == c).flatten()
                feats = zi[members]
                self._write(self.segment_queue, self.segment_ptr, self.segment_count, c,
                            l2_normalize(feats.mean(0, keepdim=True), 1))
                self._write(self.pixel_queue, self.pixel_ptr, self.pixel_count, c,
                            feats[torch.randperm(len(members), generator=generator)[:self.pixels_per_image]
                                  .to(feats.device)])

    def contrast_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries of all queues: (z (N, dim), y (N,) int64), pixel entries first."""
        zs, ys = [], []
        for queue, count in ((self.pixel_queue, self.pixel_count), (self.segment_queue, self.segment_count)):
            for c in range(self.num_classes):
                n = int(count[c])
                zs.append(queue[c, :n])
                ys.append(torch.full((n,), c, dtype=torch.long, device=queue.device))
        return torch.cat(zs), torch.cat(ys)

    def __len__(self) -> int:
        return int(self.pixel_count.sum() + self.segment_count.sum())


def memory_contrast_loss(embeddings: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor | None,
                         memory: PixelSegmentMemory, temperature: float = 0.1, base_temperature: float = 0.07,
                         max_samples: int | None = 1024, max_views: int = 100, *, ignore_index: int = -1,
                         anchor_sampling: str = "hard_easy", generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """The same L_i as :func:`pixel_contrast_loss`, the anchors of this batch contrasted with the filled
    entries of ``memory`` (positives: entries of the anchor's class; negatives: all others). A
    differentiable 0 when the memory or the anchor set is empty or no anchor has a positive."""
    if not isinstance(memory, PixelSegmentMemory):
        raise ValueError(f"memory must be a PixelSegmentMemory; got {type(memory).__name__}")
    z, anchors = _prepare(embeddings, labels, predictions, temperature, base_temperature, max_samples,
                          max_views, ignore_index, anchor_sampling, generator)
    if embeddings.shape[1] != memory.dim:
        raise ValueError(f"embeddings must have the memory's dim = {memory.dim} channels; got {embeddings.shape[1]}")
    z_mem, y_mem = memory.contrast_set()
    if len(anchors) == 0 or len(y_mem) == 0:
        return embeddings.sum() * 0.0
    losses, valid = contrast_terms(z, anchors.labels, z_mem.to(z.device), y_mem.to(z.device), temperature,
                                   base_temperature, exclude_self=False)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    return losses[valid].mean()


# ------------------------------------------------------------------------------------------------
# 5. training
# ------------------------------------------------------------------------------------------------


@dataclass
class Config:
    """Settings of one run; defaults follow the official Cityscapes config where they fit a CPU.

    arm: ``"ce"`` (cross-entropy only), ``"contrast"`` (CE + λ·in-batch pixel contrast) or ``"memory"``
    (``"contrast"`` plus λ·the same loss against pixel/segment queues).
    num_steps, batch_size, lr: Adam steps (the paper: SGD, lr 0.01, poly decay, 40k iterations, batch 8).
    lam: λ (0.1); temperature, base_temperature: τ = 0.1, τ_b = 0.07; max_samples, max_views: 1024, 100.
    warmup_frac: fraction of the steps with contrast weight 0 (paper: 5000 of 40000 = 1/8; here 1/6).
    embed_dim: projection dimension (paper 256); features: U-Net channels per level (chapter 1's
    16-32-64-128). pixel_queue, segment_queue: queue sizes per class
    (paper 5000 each); pixels_per_image: pixels enqueued per image and class (10).
    anchor_sampling: ``"hard_easy"`` or ``"random"``.
    """
    arm: str = "contrast"
    num_steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    lam: float = 0.1
    temperature: float = 0.1
    base_temperature: float = 0.07
    max_samples: int = 1024
    max_views: int = 100
    anchor_sampling: str = "hard_easy"
    warmup_frac: float = 1 / 6
    embed_dim: int = 32
    features: tuple = (16, 32, 64, 128)
    pixel_queue: int = 500
    segment_queue: int = 200
    pixels_per_image: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}; got {self.arm!r}")
        if self.anchor_sampling not in ANCHOR_SAMPLING:
            raise ValueError(f"anchor_sampling must be one of {ANCHOR_SAMPLING}; got {self.anchor_sampling!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must lie in [0, 1); got {self.warmup_frac!r}")
        if isinstance(self.warmup_frac, bool) or not isinstance(self.warmup_frac, (int, float, np.floating)):
            raise ValueError(f"warmup_frac must be a number in [0, 1); got {self.warmup_frac!r}")
        for name in ("num_steps", "batch_size", "max_samples", "embed_dim", "pixels_per_image"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        for name in ("max_views", "pixel_queue", "segment_queue", "seed"):
            _check_int(name, getattr(self, name), 0)
        if self.arm == "memory" and self.pixel_queue + self.segment_queue < 1:
            raise ValueError(f"arm 'memory' needs pixel_queue + segment_queue >= 1; got {self.pixel_queue} + "
                             f"{self.segment_queue}")
        for name, low in (("lr", 0.0), ("lam", None)):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)
            if not ok or (v <= 0 if low is not None else v < 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if low is not None else '>= 0'}; got {v!r}")
        _check_features(self.features)
        _check_temperatures(self.temperature, self.base_temperature)

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_frac * self.num_steps))


@dataclass
class TrainResult(_TrainResult):
    """What :func:`train` returns beside the model: the fit history ("loss", "ce", "contrast", "weight"
    every step), the training wall time in seconds, the config, and the memory (arm ``"memory"``)."""
    history: History
    wall_time_s: float
    config: Config
    memory: PixelSegmentMemory | None = field(default=None, repr=False)


def _check_dataset(images, labels, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.ndim != 3 or not images.is_floating_point():
        raise ValueError(f"images must be a float (N, H, W) tensor; got {_describe(images)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape or labels.is_floating_point() \
            or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer (N, H, W) tensor of the images' shape "
                         f"{tuple(images.shape)}; got {_describe(labels)}")
    if len(images) == 0:
        raise ValueError("images is empty")
    if not torch.isfinite(images).all():
        raise ValueError("images must be finite; got NaN or inf")
    if int(labels.min()) < 0 or (num_classes is not None and int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1 if num_classes else 'num_classes-1'}]; got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return images.float(), labels.long()


def train(images: torch.Tensor, labels: torch.Tensor, cfg: Config, num_classes: int, device=None,
          progress: bool = True, desc: str | None = None) -> tuple[UNetWithProjection, TrainResult]:
    """Train a fresh :func:`make_model` on images (N, H, W) float, labels (N, H, W) int under ``cfg``.

    Each step draws ``batch_size`` images (with replacement, from a generator seeded by ``cfg.seed``) and
    minimises L = CE + w_t·λ·(L_pc [+ L_mem]) with w_t = 0 during the warm-up and 1 after. For the
    ``"memory"`` arm the batch is enqueued *after* the loss is computed (from the first step on, so the
    queues are full when the contrast starts). Anchors are split hard/easy by the current argmax.
    Returns ``(model, TrainResult)``; the model is in eval mode.
    """
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a pixel_contrast.Config; got {type(cfg).__name__}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"desc must be a str or None; got {type(desc).__name__}")
    images, labels = _check_dataset(images, labels, num_classes)
    device = resolve_device(device)
    model = make_model(num_classes, cfg.embed_dim, cfg.features, seed=cfg.seed, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    memory = (PixelSegmentMemory(num_classes, cfg.embed_dim, cfg.pixel_queue, cfg.segment_queue,
                                 cfg.pixels_per_image, device=device) if cfg.arm == "memory" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = dict(temperature=cfg.temperature, base_temperature=cfg.base_temperature,
                   max_samples=cfg.max_samples, max_views=cfg.max_views, anchor_sampling=cfg.anchor_sampling,
                   generator=gen)

    def step(t):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        x, y = images[idx, None].to(device), labels[idx].to(device)
        if cfg.arm == "ce":
            ce = F.cross_entropy(model(x), y)
            return {"loss": ce, "ce": ce.detach()}
        logits, emb = model(x, embed=True)
        ce = F.cross_entropy(logits, y)
        weight = 0.0 if t < cfg.warmup_steps else 1.0
        contrast = torch.zeros((), device=device)
        if weight > 0:
            pred = logits.detach().argmax(1)
            contrast = pixel_contrast_loss(emb, y, pred, **sampler)
            if memory is not None:
                contrast = contrast + memory_contrast_loss(emb, y, pred, memory, **sampler)
        if memory is not None:
            memory.enqueue(emb, y, generator=gen)
        return {"loss": ce + weight * cfg.lam * contrast, "ce": ce.detach(), "contrast": contrast.detach(),
                "weight": weight}

    start = time.perf_counter()
    history = fit(step, optimizer, num_steps=cfg.num_steps, models=model, progress=progress,
                  desc=desc or cfg.arm)
    wall = time.perf_counter() - start
    model.eval()
    return model, TrainResult(history, wall, cfg, memory)


# ------------------------------------------------------------------------------------------------
# 6. evaluation and embedding diagnostics
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 25) -> torch.Tensor:
    """Argmax labels (N, H, W) int64 of images (N, H, W), in eval mode (the projection head is unused)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    _check_images(images)
    _check_int("batch_size", batch_size, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.cat([model(images[i:i + batch_size, None].to(device)).argmax(1).cpu()
                     for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict:
    """mIoU (the Cityscapes protocol: one confusion matrix over the whole test set, IoU per class, mean
    over all classes), per-class IoU (num_classes,), and mean Dice (per image, classes 1…K−1, NaN-safe,
    via :func:`medtut.metrics.dice`)."""
    from .metrics import dice

    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    for name, t in (("pred", pred), ("target", target)):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer (N, H, W) label map; got {_describe(t)}")
    pred, target = pred.long(), target.long()
    if pred.shape != target.shape or pred.ndim != 3 or pred.numel() == 0:
        raise ValueError(f"pred and target must be (N, H, W) label maps of the same shape; got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if int(pred.min()) < 0 or int(target.min()) < 0 or max(int(pred.max()), int(target.max())) >= num_classes:
        raise ValueError(f"pred and target must lie in [0, {num_classes - 1}]; got [{min(int(pred.min()), int(target.min()))}, "
                         f"{max(int(pred.max()), int(target.max()))}]")
    conf = torch.bincount(target.flatten() * num_classes + pred.flatten(),
                          minlength=num_classes ** 2).reshape(num_classes, num_classes).double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan"))).numpy()
    return {"mIoU": float(np.nanmean(iou)), "IoU": iou,
            "Dice": float(np.nanmean(dice(pred, target, num_classes)))}


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """:func:`segmentation_scores` of the model's predictions on a test set."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    images, labels = _check_dataset(images, labels, num_classes)
    return segmentation_scores(predict(model, images), labels, num_classes)


@torch.no_grad()
def pixel_embeddings(model: UNetWithProjection, images: torch.Tensor, space: str = "features",
                     batch_size: int = 25) -> torch.Tensor:
    """Per-pixel ℓ2-normalised vectors (N, D, H, W) in eval mode: ``space="features"`` is the decoder
    output F that the classifier reads (D = 16, comparable across all arms), ``"projection"`` the
    projection head's output (D = embed_dim; untrained in a CE-only model)."""
    _check_model(model)
    if space not in ("features", "projection"):
        raise ValueError(f"space must be 'features' or 'projection'; got {space!r}")
    _check_images(images)
    _check_int("batch_size", batch_size, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(images), batch_size):
        f = model.features(images[i:i + batch_size, None].to(device))
        outs.append(l2_normalize(f if space == "features" else model.proj_head(f), 1).cpu())
    model.train(was_training)
    return torch.cat(outs)


def sample_pixels(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Flat indices into the N·H·W pixels of labels (N, H, W): ``per_class`` random pixels of each class
    present (fewer if a class has fewer), drawn from a generator seeded with ``seed``."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.is_floating_point() \
            or labels.is_complex() or labels.dtype == torch.bool or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty integer (N, H, W) tensor; got {_describe(labels)}")
    if not _is_int(per_class) or per_class < 1:
        raise ValueError(f"per_class must be a positive int; got {per_class!r}")
    _check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed)
    flat = labels.reshape(-1)
    return torch.cat([_draw(torch.nonzero(flat == c).flatten(), per_class, gen)
                      for c in torch.unique(flat).tolist()])


def gather_pixels(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W) per-pixel vectors → (M, D) at flat pixel indices ``index``."""
    if not isinstance(z, torch.Tensor) or z.ndim != 4:
        raise ValueError(f"z must be a (N, D, H, W) tensor; got {_describe(z)}")
    n_pixels = z.shape[0] * z.shape[2] * z.shape[3]
    if not isinstance(index, torch.Tensor) or index.ndim != 1 or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"index must be a 1-d integer tensor of flat pixel indices; got {_describe(index)}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n_pixels):
        raise ValueError(f"index must lie in [0, {n_pixels - 1}] (N·H·W pixels); got "
                         f"[{int(index.min())}, {int(index.max())}]")
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])[index]


def embedding_diagnostics(z: torch.Tensor, y: torch.Tensor, num_classes: int, z_ref: torch.Tensor,
                          y_ref: torch.Tensor) -> dict:
    """Structure of ℓ2-normalised pixel embeddings z (M, D) with classes y (M,) (held-out pixels).

    * ``intra``: mean cosine between two different pixels of the same class (macro over classes);
    * ``inter``: mean cosine between pixels of different classes (macro over class pairs);
    * ``ratio``: (1 − inter) / (1 − intra), the mean inter-class cosine *distance* over the mean
      intra-class one (> 1: classes are tighter than they are apart; a ratio of similarities breaks when
      the inter-class cosine is near 0 or negative);
    * ``prototype_acc``: balanced accuracy of assigning each pixel to the nearest (cosine) class
      prototype, the normalised class mean of the reference set (z_ref, y_ref), e.g. training pixels.
    """
    for name, a, b in (("z", z, y), ("z_ref", z_ref, y_ref)):
        if not isinstance(a, torch.Tensor) or a.ndim != 2 or not isinstance(b, torch.Tensor) or b.shape != a.shape[:1]:
            raise ValueError(f"{name} must be (M, D) with one class per row; got {_describe(a)} and {_describe(b)}")
        if not a.is_floating_point() or a.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty float (M, D) tensor; got {_describe(a)}")
        if b.is_floating_point() or b.is_complex() or b.dtype == torch.bool:
            raise ValueError(f"the classes of {name} must be integers; got {_describe(b)}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if z.shape[1] != z_ref.shape[1]:
        raise ValueError(f"z and z_ref must have the same D; got {z.shape[1]} and {z_ref.shape[1]}")
    for name, b in (("y", y), ("y_ref", y_ref)):
        if int(b.min()) < 0 or int(b.max()) >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}]; got [{int(b.min())}, {int(b.max())}]")
    z, z_ref = z.double(), z_ref.double()
    onehot = F.one_hot(y.long(), num_classes).double()                 # (M, K)
    n = onehot.sum(0)
    sums = onehot.T @ z                                                # (K, D)
    gram = sums @ sums.T                                               # Σ_{i∈a, j∈b} z_i·z_j
    present = n > 1
    intra = ((gram.diag() - n) / (n * (n - 1)).clamp(min=1))[present].mean()
    pair = torch.outer(n, n)
    off = ~torch.eye(num_classes, dtype=torch.bool) & (pair > 0)
    inter = (gram / pair.clamp(min=1))[off].mean()
    protos = l2_normalize(F.one_hot(y_ref.long(), num_classes).double().T @ z_ref, 1)
    nearest = (z @ protos.T).argmax(1)
    correct = (nearest == y.long()).double()
    per_class = (onehot.T @ correct) / n.clamp(min=1)
    return {"intra": float(intra), "inter": float(inter), "ratio": float((1 - inter) / (1 - intra)),
            "prototype_acc": float(per_class[n > 0].mean())}


def diagnose(model: UNetWithProjection, train_images: torch.Tensor, train_labels: torch.Tensor,
             test_images: torch.Tensor, test_labels: torch.Tensor, num_classes: int, per_class: int = 400,
             space: str = "features", seed: int = 0) -> dict:
    """:func:`embedding_diagnostics` of ``per_class`` random held-out pixels per class (test set), with the
    prototypes taken from ``per_class`` random training pixels per class. Same seed, same pixels."""
    _check_model(model)
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if space not in ("features", "projection"):
        raise ValueError(f"space must be 'features' or 'projection'; got {space!r}")
    train_images, train_labels = _check_dataset(train_images, train_labels, num_classes)
    test_images, test_labels = _check_dataset(test_images, test_labels, num_classes)
    idx_tr = sample_pixels(train_labels, per_class, seed)
    idx_te = sample_pixels(test_labels, per_class, seed + 1)
    z_tr = gather_pixels(pixel_embeddings(model, train_images, space), idx_tr)
    z_te = gather_pixels(pixel_embeddings(model, test_images, space), idx_te)
    return embedding_diagnostics(z_te, test_labels.reshape(-1)[idx_te], num_classes, z_tr,
                                 train_labels.reshape(-1)[idx_tr])


@torch.no_grad()
def similarity_map(model: UNetWithProjection, image: torch.Tensor, row: int, col: int,
                   space: str = "features") -> torch.Tensor:
    """Cosine similarity (H, W) of every pixel's vector with that of pixel (row, col), image (H, W)."""
    _check_model(model)
    if not isinstance(image, torch.Tensor) or image.ndim != 2 or not image.is_floating_point():
        raise ValueError(f"image must be a float (H, W) tensor; got {_describe(image)}")
    h, w = image.shape
    if not (_is_int(row) and _is_int(col) and 0 <= row < h and 0 <= col < w):
        raise ValueError(f"(row, col) must lie inside the {h}×{w} image; got ({row}, {col})")
    z = pixel_embeddings(model, image[None].float(), space)[0]        # (D, H, W)
    return torch.einsum("dhw,d->hw", z, z[:, row, col])


__all__ = ["ANCHOR_SAMPLING", "ARMS", "l2_normalize", "resize_labels", "make_model", "Anchors", "sample_anchors",
           "contrast_terms", "pixel_contrast_loss", "PixelSegmentMemory", "memory_contrast_loss", "Config",
           "TrainResult", "train", "predict", "segmentation_scores", "evaluate", "pixel_embeddings",
           "sample_pixels", "gather_pixels", "embedding_diagnostics", "diagnose", "similarity_map"]
