"""Chapter 1: semi-supervised segmentation with pseudo-labels and a label-aware local contrastive loss.

Chaitanya, Erdil, Karani, Konukoglu, "Local contrastive loss with pseudo-label based self-training for
semi-supervised medical image segmentation", Medical Image Analysis 87:102792 (2023), arXiv:2112.09645.

The module reads like the paper's method section:

1. **Data assumptions.** Volumes are segmented slice by slice. A few volumes are labelled (X_L), many
   are not (X_U); a small labelled validation set picks checkpoints; test volumes are scored in 3-D.
2. **Model** (:class:`UNetWithProjection`). A 2-D U-Net built from MONAI blocks; on its full-resolution
   decoder features F sit a segmentation head g (→ class logits) and a small projection head h
   (→ a D-dimensional embedding per pixel, D = 16 as in the paper).
3. **Loss** (:func:`local_contrastive_loss`). For a pair of images with (pseudo-)labels, pixels of
   class c are pulled towards the mean embedding ("prototype") of class c in *both* images and pushed
   from the prototypes of the other foreground classes.
4. **Pseudo-labels** (:func:`pseudo_label`). The current network's argmax on the unlabelled volumes,
   cleaned by keeping the largest 3-D connected component of each class (MONAI's
   ``KeepLargestConnectedComponent``), in place of the paper's dense CRF.
5. **Pairs** (:func:`make_pairs`): same slice under two intensity augmentations, labelled–unlabelled,
   unlabelled–unlabelled and labelled–labelled.
6. **Training** (:func:`train_baseline`, :func:`train_semi_supervised`): the baseline on X_L with a
   Dice+CE loss; then L = L_seg(X_L) + λ·L_lc(X_L ∪ X_U) in rounds, refreshing the pseudo-labels after
   each round and keeping either the best-validation checkpoint (the paper) or the last weights
   (``Config.select``). Controls at equal steps: labelled-only continuation and self-training
   (pseudo-labels inside L_seg); diagnostics: true labels in place of pseudo-labels.
7. **Evaluation** (:func:`predict_volumes`, :func:`evaluate_dice`): 3-D Dice per structure.

Every training loop goes through :func:`medtut.train.fit`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import isolated_rng, resolve_device
from .metrics import dice
from .train import History, TrainResult, fit, predict

# ------------------------------------------------------------------------------------------------
# 1. data assumptions: volumes are lists of (D, H, W) tensors, or one (N, D, H, W) tensor
# ------------------------------------------------------------------------------------------------


def as_volumes(x, name: str = "volumes", integer: bool = False) -> list[torch.Tensor]:
    """A list of (D, H, W) tensors from a (N, D, H, W) tensor/array or a list of (D, H, W) ones."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(x)
        if x.ndim != 4:
            raise ValueError(f"{name} must be (N, D, H, W) or a list of (D, H, W) volumes; got shape "
                             f"{tuple(x.shape)}")
        vols = list(x.unbind(0))
    else:
        vols = [torch.as_tensor(v) for v in x]
    if not vols:
        raise ValueError(f"{name} is empty")
    for v in vols:
        if v.ndim != 3:
            raise ValueError(f"each of {name} must be a (D, H, W) volume; got shape {tuple(v.shape)}")
        if integer and (v.is_floating_point() or v.dtype == torch.bool):
            raise ValueError(f"{name} must hold integer labels; got dtype {v.dtype}")
    return vols


def slices_of(volumes) -> torch.Tensor:
    """Concatenate volumes along depth: (sum D, H, W)."""
    return torch.cat(as_volumes(volumes), dim=0)


@dataclass
class Split:
    """One labelled-subject draw of a data set (all fields are lists of (D, H, W) tensors).

    ``unlabelled_labels`` are kept only to *measure* pseudo-label quality; training never reads them.
    """
    labelled_images: list
    labelled_labels: list
    unlabelled_images: list
    unlabelled_labels: list
    val_images: list
    val_labels: list
    test_images: list
    test_labels: list
    labelled_ids: list = field(default_factory=list)


def make_split(images, labels, n_labelled: int, n_val: int, n_test: int, draw: int = 0,
               n_unlabelled: int | None = None) -> Split:
    """Split subjects: the last ``n_test`` are the fixed test set, the ``n_val`` before them the fixed
    validation set; from the rest, ``n_labelled`` subjects chosen by ``draw`` are labelled and the
    others (or ``n_unlabelled`` of them) unlabelled. Different ``draw`` → different labelled subjects.
    """
    imgs, labs = as_volumes(images, "images"), as_volumes(labels, "labels", integer=True)
    if isinstance(draw, bool) or not isinstance(draw, (int, np.integer)) or draw < 0:
        raise ValueError(f"draw must be an int >= 0; got {draw!r}")
    if len(imgs) != len(labs):
        raise ValueError(f"images and labels must hold the same number of subjects; got {len(imgs)} "
                         f"and {len(labs)}")
    pool = len(imgs) - n_val - n_test
    if min(n_labelled, n_val, n_test) < 1 or pool < n_labelled + 1:
        raise ValueError(f"need n_labelled, n_val, n_test >= 1 and at least one unlabelled subject; got "
                         f"{len(imgs)} subjects for n_labelled={n_labelled}, n_val={n_val}, n_test={n_test}")
    order = np.random.default_rng(1000 + draw).permutation(pool)
    lab_ids = sorted(int(i) for i in order[:n_labelled])
    unl_ids = [int(i) for i in order[n_labelled:]]
    if n_unlabelled is not None:
        unl_ids = unl_ids[:n_unlabelled]
    val_ids = range(pool, pool + n_val)
    test_ids = range(pool + n_val, len(imgs))
    pick = lambda vols, ids: [vols[i] for i in ids]  # noqa: E731
    return Split(pick(imgs, lab_ids), pick(labs, lab_ids), pick(imgs, unl_ids), pick(labs, unl_ids),
                 pick(imgs, val_ids), pick(labs, val_ids), pick(imgs, test_ids), pick(labs, test_ids),
                 lab_ids)


# ------------------------------------------------------------------------------------------------
# 2. the model
# ------------------------------------------------------------------------------------------------


class UNetWithProjection(nn.Module):
    """2-D U-Net (MONAI ``TwoConv``/``Down``/``UpCat`` blocks) with two heads on the decoder output F.

    Input x: (B, 1, H, W), H and W divisible by 2**(len(features)-1).
    ``forward(x)`` → logits (B, num_classes, H, W); ``forward(x, embed=True)`` → (logits, z) with
    z: (B, embed_dim, H, W), the projection head's output (not normalised; the loss uses cosines).

    * encoder/decoder: ``features`` channels per level (paper: 16-32-64-128-128-128 at 192²; we use
      16-32-64-128 at 64²); the last decoder level has ``features[0]`` channels at full resolution: F.
    * segmentation head g: 3×3 conv + norm + ReLU → 1×1 conv to ``num_classes``.
    * projection head h: 1×1 conv + BN + ReLU → 1×1 conv to ``embed_dim`` (paper: 16).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128),
                 embed_dim: int = 16, norm: str = "batch"):
        super().__init__()
        from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

        if len(features) < 2 or any(int(f) < 1 for f in features):
            raise ValueError(f"features must list >= 2 positive channel counts; got {features}")
        if num_classes < 2 or embed_dim < 1 or in_channels < 1:
            raise ValueError(f"need num_classes >= 2 (background + a class), embed_dim >= 1 and in_channels >= 1; "
                             f"got {num_classes}, {embed_dim}, {in_channels}")
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance'; got {norm!r}")
        act = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
        nrm = (norm, {"affine": True}) if norm == "instance" else norm
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.stem = TwoConv(2, in_channels, features[0], act, nrm, bias=False)
        self.downs = nn.ModuleList(Down(2, features[i], features[i + 1], act, nrm, bias=False)
                                   for i in range(len(features) - 1))
        ups = []
        for i in range(len(features) - 1, 0, -1):
            ups.append(UpCat(2, features[i], features[i - 1], features[i - 1], act, nrm, bias=False,
                             upsample="nontrainable", interp_mode="nearest", align_corners=None,
                             halves=False))
        self.ups = nn.ModuleList(ups)
        f0 = features[0]
        self.seg_head = nn.Sequential(nn.Conv2d(f0, f0, 3, padding=1, bias=False), _norm(norm, f0),
                                      nn.ReLU(inplace=True), nn.Conv2d(f0, num_classes, 1))
        self.proj_head = nn.Sequential(nn.Conv2d(f0, f0, 1, bias=False), nn.BatchNorm2d(f0),
                                       nn.ReLU(inplace=True), nn.Conv2d(f0, embed_dim, 1))
        self._factor = 2 ** (len(features) - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution decoder features F: (B, features[0], H, W)."""
        if x.ndim != 4 or x.shape[-1] % self._factor or x.shape[-2] % self._factor:
            raise ValueError(f"x must be (B, C, H, W) with H, W divisible by {self._factor}; got "
                             f"{tuple(x.shape)}")
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        return h

    def forward(self, x: torch.Tensor, embed: bool = False):
        feats = self.features(x)
        logits = self.seg_head(feats)
        if embed:
            return logits, self.proj_head(feats)
        return logits


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.BatchNorm2d(channels)


# ------------------------------------------------------------------------------------------------
# 3. the loss
# ------------------------------------------------------------------------------------------------


def _check_loss_inputs(z_a, z_b, y_a, y_b, temperature, n_anchors):
    if not (isinstance(z_a, torch.Tensor) and isinstance(z_b, torch.Tensor)):
        raise ValueError("z_a and z_b must be torch tensors")
    if z_a.ndim != 4 or z_a.shape != z_b.shape or not z_a.is_floating_point():
        raise ValueError(f"z_a and z_b must be float (B, D, H, W) embeddings of the same shape; got "
                         f"{tuple(z_a.shape)} {z_a.dtype} and {tuple(z_b.shape)} {z_b.dtype}")
    b, _, h, w = z_a.shape
    for name, y in (("y_a", y_a), ("y_b", y_b)):
        if not isinstance(y, torch.Tensor) or y.shape != (b, h, w) or y.is_floating_point() \
                or y.dtype == torch.bool:
            got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"{name} must be a (B, H, W) = ({b}, {h}, {w}) integer label map; got {got}")
        if y.numel() and int(y.min()) < 0:
            raise ValueError(f"{name} must hold non-negative class indices; got min {int(y.min())}")
    if not torch.isfinite(z_a).all() or not torch.isfinite(z_b).all():
        raise ValueError("z_a and z_b must be finite; got NaN or inf")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    if n_anchors is not None and (isinstance(n_anchors, bool) or not isinstance(n_anchors, (int, np.integer))
                                  or n_anchors < 1):
        raise ValueError(f"n_anchors must be a positive int or None (all pixels); got {n_anchors!r}")


def _l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / ||x|| along ``dim`` (zero vectors stay zero); twice as fast as F.normalize on CPU here."""
    return x * torch.rsqrt((x * x).sum(dim, keepdim=True).clamp(min=1e-24))


def class_prototypes(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding of each class, μ^c = mean of z(p) over pixels p with y(p) = c.

    z: (B, D, H, W) float (normalise first for cosine prototypes); y: (B, H, W) int in [0, num_classes).
    Returns (prototypes (B, num_classes, D), counts (B, num_classes)); absent classes get a zero vector.
    """
    if not isinstance(z, torch.Tensor) or z.ndim != 4 or not z.is_floating_point():
        got = f"{tuple(z.shape)} {z.dtype}" if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a float (B, D, H, W) tensor; got {got}")
    if not isinstance(y, torch.Tensor) or y.shape != (z.shape[0], *z.shape[2:]) or y.is_floating_point():
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be an integer (B, H, W) = {(z.shape[0], *z.shape[2:])} label map; got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y must hold classes in [0, num_classes={num_classes}); got labels in "
                         f"[{int(y.min())}, {int(y.max())}]")
    onehot = F.one_hot(y.flatten(1), num_classes).to(z.dtype)           # (B, N, K)
    counts = onehot.sum(1)                                               # (B, K)
    sums = torch.einsum("bdn,bnk->bkd", z.flatten(2), onehot)            # (B, K, D)
    return sums / counts.clamp(min=1).unsqueeze(-1), counts


def _anchors(y: torch.Tensor, shared: torch.Tensor, num_classes: int, n_anchors: int | None,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor pixels and weights: (idx (B, M), w (B, M)) with Σ_m w_m ℓ(idx_m) = mean over c ∈ C_ab of
    the mean of ℓ over the anchors of class c. ``n_anchors=None``: every pixel (M = H·W)."""
    b = y.shape[0]
    y = y.flatten(1)
    n = y.shape[1]
    onehot = F.one_hot(y, num_classes).float() * shared.unsqueeze(1).float()   # (B, N, K) only C_ab
    n_shared = shared.float().sum(1).clamp(min=1).unsqueeze(1)                 # (B, 1)
    if n_anchors is None:
        counts = onehot.sum(1).clamp(min=1)                                    # (B, K)
        weights = (onehot / counts.unsqueeze(1)).sum(-1) / n_shared
        return torch.arange(n, device=y.device).expand(b, n), weights
    # n_anchors random pixels per class, without replacement: the top-P of uniform keys within the class
    keys = torch.rand(y.shape, generator=generator).to(y.device)               # (B, N)
    member = onehot.transpose(1, 2) > 0                                        # (B, K, N)
    scores = torch.where(member, keys.unsqueeze(1), torch.full_like(keys, -1.0).unsqueeze(1))
    top, idx = scores.topk(min(int(n_anchors), n), dim=-1)                     # (B, K, P)
    chosen = (top >= 0).float()
    weights = chosen / chosen.sum(-1, keepdim=True).clamp(min=1) / n_shared.unsqueeze(-1)
    return idx.flatten(1), weights.flatten(1)


def anchor_terms(z_self: torch.Tensor, mu_self: torch.Tensor, mu_other: torch.Tensor, y_self: torch.Tensor,
                 valid: torch.Tensor, temperature: float = 0.1, variant: str = "inter") -> torch.Tensor:
    """ℓ(p) for anchor pixels p of one image of each pair, given their class c = y(p) ∈ C_ab.

    z_self: (B, D, M) L2-normalised embeddings of M anchors; mu_self, mu_other: (B, K, D) normalised
    prototypes of the anchor's own image and of the other image; y_self: (B, M) int classes;
    valid: (B, K) bool, the shared foreground classes C_ab. Returns (B, M). ``variant="intra"``
    drops the other image's prototypes. (Entries whose class is not in C_ab are meaningless.)
    """
    b, d, m = z_self.shape if z_self.ndim == 3 else (None, None, None)
    if b is None or mu_self.ndim != 3 or mu_self.shape != mu_other.shape or mu_self.shape[0] != b \
            or mu_self.shape[2] != d or y_self.shape != (b, m) or valid.shape != mu_self.shape[:2]:
        raise ValueError(f"expected z_self (B, D, M), mu_self and mu_other (B, K, D), y_self (B, M), valid (B, K); "
                         f"got {tuple(z_self.shape)}, {tuple(mu_self.shape)}, {tuple(mu_other.shape)}, "
                         f"{tuple(y_self.shape)}, {tuple(valid.shape)}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    if variant not in ("inter", "intra"):
        raise ValueError(f"variant must be 'inter' or 'intra'; got {variant!r}")
    neg = torch.finfo(z_self.dtype).min / 4
    s_self = torch.einsum("bdn,bkd->bnk", z_self, mu_self) / temperature          # (B, N, K)
    s_other = torch.einsum("bdn,bkd->bnk", z_self, mu_other) / temperature
    mask = valid.unsqueeze(1)                                                      # (B, 1, K)
    s_self_m = s_self.masked_fill(~mask, neg)
    s_other_m = s_other.masked_fill(~mask, neg)
    own = y_self.unsqueeze(-1)
    pos_self = s_self.gather(-1, own).squeeze(-1)                                  # s(z_p, μ_self^c)
    if variant == "intra":
        log_z = torch.logsumexp(s_self_m, dim=-1)
        return log_z - pos_self
    log_z = torch.logsumexp(torch.cat([s_self_m, s_other_m], dim=-1), dim=-1)       # log Z_p
    pos_other = s_other.gather(-1, own).squeeze(-1)
    return 0.5 * ((log_z - pos_self) + (log_z - pos_other))


def local_contrastive_loss(z_a: torch.Tensor, z_b: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                           temperature: float = 0.1, n_anchors: int | None = 3, background: int = 0,
                           variant: str = "inter", generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The label-aware local contrastive loss of Chaitanya et al. (2023), with the intended mean.

    z_a, z_b: (B, D, H, W) float embeddings, paired row by row (pair i = (z_a[i], z_b[i])).
    y_a, y_b: (B, H, W) int labels or pseudo-labels of the same pixels; class ``background`` is never
    an anchor nor a prototype.

    With s(u, v) = cos(u, v)/τ (τ = ``temperature``), μ_a^c the mean of z_a over the pixels of class c
    in image a, and C_ab the foreground classes present in both images of the pair, an anchor pixel p
    of class c in image a contributes

    .. math::
        Z_p = \sum_{c' \in C_{ab}} \left[e^{s(z_p, \mu_a^{c'})} + e^{s(z_p, \mu_b^{c'})}\right], \qquad
        \ell(p) = \tfrac12\left[-\log\frac{e^{s(z_p, \mu_a^{c})}}{Z_p}
                                -\log\frac{e^{s(z_p, \mu_b^{c})}}{Z_p}\right].

    L_a = mean over c ∈ C_ab of the mean of ℓ(p) over the anchors of class c in a: ``n_anchors``
    pixels drawn at random (without replacement; all of them if the class is smaller), or all pixels
    of the class when ``n_anchors=None`` (deterministic). L_b is the same with a and b swapped, and a
    pair's loss is L_a + L_b. The batch loss is the mean over the pairs that share at least one
    foreground class; 0 (still attached to the graph) when none does.

    ``variant="intra"`` keeps only image a's own prototypes: Z_p = Σ_{c'∈C_ab} exp s(z_p, μ_a^{c'}) and
    ℓ(p) = −log(exp s(z_p, μ_a^c)/Z_p) (and symmetrically for b).

    The official code divides by 2·P·(C−1) inside its loop over pairs, so in effect only the last pair
    of each batch counts; here every valid pair counts equally.
    """
    _check_loss_inputs(z_a, z_b, y_a, y_b, temperature, n_anchors)
    if isinstance(background, bool) or not isinstance(background, (int, np.integer)) or background < 0:
        raise ValueError(f"background must be a class index >= 0 (a negative index would make the real "
                         f"background an anchor class); got {background!r}")
    if variant not in {"inter", "intra"}:
        raise ValueError(f"variant must be 'inter' or 'intra'; got {variant!r}")
    num_classes = int(max(int(y_a.max()), int(y_b.max()), background)) + 1
    za = _l2_normalize(z_a, 1).flatten(2)                                          # (B, D, N)
    zb = _l2_normalize(z_b, 1).flatten(2)
    mu_a, n_a = class_prototypes(za.unflatten(2, z_a.shape[2:]), y_a, num_classes)
    mu_b, n_b = class_prototypes(zb.unflatten(2, z_b.shape[2:]), y_b, num_classes)
    mu_a, mu_b = _l2_normalize(mu_a, -1), _l2_normalize(mu_b, -1)
    shared = (n_a > 0) & (n_b > 0)
    shared[:, background] = False                                                  # C_ab (B, K)
    ya, yb = y_a.flatten(1), y_b.flatten(1)
    idx_a, w_a = _anchors(y_a, shared, num_classes, n_anchors, generator)          # (B, M)
    idx_b, w_b = _anchors(y_b, shared, num_classes, n_anchors, generator)
    anc_a = za.gather(2, idx_a.unsqueeze(1).expand(-1, za.shape[1], -1))          # (B, D, M)
    anc_b = zb.gather(2, idx_b.unsqueeze(1).expand(-1, zb.shape[1], -1))
    loss_a = anchor_terms(anc_a, mu_a, mu_b, ya.gather(1, idx_a), shared, temperature, variant)
    loss_b = anchor_terms(anc_b, mu_b, mu_a, yb.gather(1, idx_b), shared, temperature, variant)
    per_pair = (w_a * loss_a).sum(1) + (w_b * loss_b).sum(1)                       # L_a + L_b, (B,)
    valid = shared.any(1).to(per_pair.dtype)
    return (per_pair * valid).sum() / valid.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------------
# 4. pseudo-labels
# ------------------------------------------------------------------------------------------------


def predict_volumes(model: nn.Module, volumes, batch_size: int = 64, device: torch.device | str | None = None
                    ) -> list[torch.Tensor]:
    """Slice-wise argmax of ``model`` on each (D, H, W) volume → list of (D, H, W) int64 label maps (CPU)."""
    return [predict(model, v[:, None].float(), batch_size=batch_size, device=device).argmax(1)
            for v in as_volumes(volumes)]


def largest_component(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Keep the largest 3-D connected component of each foreground class of a (D, H, W) label map.

    Uses ``monai.transforms.KeepLargestConnectedComponent``; the paper uses a dense CRF instead.
    """
    from monai.transforms import KeepLargestConnectedComponent

    keep = KeepLargestConnectedComponent(applied_labels=list(range(1, num_classes)), is_onehot=False,
                                         independent=True)
    return torch.as_tensor(keep(labels[None]))[0].long()


def pseudo_label(model: nn.Module, volumes, num_classes: int, postprocess: bool = True) -> list[torch.Tensor]:
    """Pseudo-labels of unlabelled volumes: the model's argmax, then (optionally) the largest connected
    component per class. Returns a list of (D, H, W) int64."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background + a class); got {num_classes!r}")
    preds = predict_volumes(model, volumes)
    if postprocess:
        preds = [largest_component(p, num_classes) for p in preds]
    return preds


# ------------------------------------------------------------------------------------------------
# 5. augmentation and pairs
# ------------------------------------------------------------------------------------------------


def spatial_augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                    max_rotation: float = 15.0, scale: tuple[float, float] = (0.9, 1.1)) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random rotation/scale/left-right flip per slice for images x (B, 1, H, W) and labels
    y (B, H, W) (bilinear for x, nearest for y)."""
    if x.ndim != 4 or x.shape[1] != 1 or y.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"expected images x (B, 1, H, W) and labels y (B, H, W) of the same B, H, W; got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if not (0 <= max_rotation <= 180 and 0 < scale[0] <= scale[1]):
        raise ValueError(f"need 0 <= max_rotation <= 180 (degrees) and 0 < scale[0] <= scale[1]; got "
                         f"{max_rotation}, {scale}")
    b = x.shape[0]
    r = torch.rand(b, 3, generator=generator)
    theta = (r[:, 0] * 2 - 1) * math.radians(max_rotation)
    s = scale[0] + (scale[1] - scale[0]) * r[:, 1]
    flip = torch.where(r[:, 2] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
    mat = torch.zeros(b, 2, 3)
    mat[:, 0, 0], mat[:, 0, 1] = cos * flip, -sin
    mat[:, 1, 0], mat[:, 1, 1] = sin * flip, cos
    grid = F.affine_grid(mat.to(x.device), list(x.shape), align_corners=False)
    x_out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y_out = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0].long()
    return x_out, y_out


def intensity_augment(x: torch.Tensor, generator: torch.Generator, brightness: float = 0.3,
                      contrast: tuple[float, float] = (0.7, 1.3)) -> torch.Tensor:
    """Per-slice random brightness shift (± ``brightness``) then contrast scaling, as the paper's pairs."""
    if x.ndim != 4:
        raise ValueError(f"x must be a (B, C, H, W) batch; got shape {tuple(x.shape)}")
    if not (brightness >= 0 and 0 < contrast[0] <= contrast[1]):
        raise ValueError(f"need brightness >= 0 and 0 < contrast[0] <= contrast[1]; got {brightness}, {contrast}")
    r = torch.rand(x.shape[0], 2, generator=generator).to(x.device)
    shift = ((r[:, 0] * 2 - 1) * brightness).view(-1, 1, 1, 1)
    gain = (contrast[0] + (contrast[1] - contrast[0]) * r[:, 1]).view(-1, 1, 1, 1)
    return (x + shift) * gain


def make_pairs(n_labelled: int, n_unlabelled: int, n_same: int = 2) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Row indices (idx_a, idx_b) into a batch laid out as
    ``[labelled (n_labelled), unlabelled (n_unlabelled), second views of the first n_same labelled,
    second views of the first n_same unlabelled]``, and a dict counting the pairs of each kind:

    * same slice, two intensity augmentations: n_same labelled + n_same unlabelled;
    * labelled–unlabelled: (l_i, u_i) for i < min(n_labelled, n_unlabelled);
    * unlabelled–unlabelled: (u_i, u_{i+h}), h = n_unlabelled // 2;
    * labelled–labelled: (l_i, l_{i+h}), h = n_labelled // 2.
    """
    if n_labelled < 1 or n_unlabelled < 2 or not 0 <= n_same <= min(n_labelled, n_unlabelled):
        raise ValueError(f"need n_labelled >= 1, n_unlabelled >= 2 and 0 <= n_same <= both; got "
                         f"{n_labelled}, {n_unlabelled}, {n_same}")
    lab = torch.arange(n_labelled)
    unl = n_labelled + torch.arange(n_unlabelled)
    lab2 = n_labelled + n_unlabelled + torch.arange(n_same)
    unl2 = n_labelled + n_unlabelled + n_same + torch.arange(n_same)
    m = min(n_labelled, n_unlabelled)
    hu, hl = n_unlabelled // 2, n_labelled // 2
    kinds = {
        "same slice": (torch.cat([lab[:n_same], unl[:n_same]]), torch.cat([lab2, unl2])),
        "labelled-unlabelled": (lab[:m], unl[:m]),
        "unlabelled-unlabelled": (unl[:hu], unl[hu:2 * hu]),
        "labelled-labelled": (lab[:hl], lab[hl:2 * hl]),
    }
    idx_a = torch.cat([a for a, _ in kinds.values()])
    idx_b = torch.cat([b for _, b in kinds.values()])
    return idx_a, idx_b, {k: len(a) for k, (a, _) in kinds.items()}


# ------------------------------------------------------------------------------------------------
# 6. training
# ------------------------------------------------------------------------------------------------


@dataclass
class Config:
    """Hyper-parameters of one training run (defaults: the paper's where they fit a CPU budget).

    method: ``"labelled-only"``, ``"self-training"`` or ``"local contrastive"``.
    rounds: number of rounds; after each, the pseudo-labels are refreshed with the current model
    (``rounds=1``: pseudo-labels stay those of the baseline).
    select: which weights a run keeps: ``"best-val"`` (the paper's rule: the checkpoint with the best
    validation Dice, evaluated every ``eval_every`` steps and restored after each round) or ``"last"``
    (the final weights; the validation Dice is still recorded).
    oracle_pseudo_labels: a diagnostic, not the method: use the unlabelled volumes' true labels in place
    of pseudo-labels, to measure what perfect pseudo-labels would give.
    """
    method: str = "local contrastive"
    num_steps: int = 300
    rounds: int = 1
    batch_labelled: int = 8
    batch_unlabelled: int = 8
    n_same: int = 2
    lam: float = 0.1
    temperature: float = 0.1
    n_anchors: int | None = 3
    variant: str = "inter"
    lr: float = 1e-3
    eval_every: int = 25
    postprocess: bool = True
    select: str = "best-val"
    oracle_pseudo_labels: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}; got {self.select!r}")
        if self.variant not in ("inter", "intra"):
            raise ValueError(f"variant must be 'inter' or 'intra'; got {self.variant!r}")
        for name in ("num_steps", "rounds", "batch_labelled", "batch_unlabelled", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.num_steps < self.rounds:
            raise ValueError(f"num_steps must be >= rounds (each round needs a step); got num_steps="
                             f"{self.num_steps}, rounds={self.rounds}")
        if self.method == "local contrastive" and self.batch_unlabelled < 2:
            raise ValueError(f"the local contrastive arm pairs unlabelled slices: batch_unlabelled must be >= 2; "
                             f"got {self.batch_unlabelled}")
        if not 0 <= self.n_same <= min(self.batch_labelled, self.batch_unlabelled):
            raise ValueError(f"n_same must be in [0, min(batch_labelled, batch_unlabelled)]; got {self.n_same}")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0; got {self.lam!r}")
        if self.n_anchors is not None and (isinstance(self.n_anchors, bool) or
                                           not isinstance(self.n_anchors, (int, np.integer)) or self.n_anchors < 1):
            raise ValueError(f"n_anchors must be a positive int or None (all pixels); got {self.n_anchors!r}")

    @property
    def slices_per_step(self) -> int:
        """Distinct slices one step reads (augmented second views of a slice do not count twice)."""
        return self.batch_labelled + (0 if self.method == "labelled-only" else self.batch_unlabelled)


METHODS = ("labelled-only", "self-training", "local contrastive")
SELECTIONS = ("best-val", "last")


def seg_loss_fn(num_classes: int):
    """Dice + cross-entropy on softmax logits (MONAI ``DiceCELoss``), including background as the paper."""
    from monai.losses import DiceCELoss

    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)
    return lambda logits, y: loss(logits, y[:, None])


def mean_dice(model: nn.Module, images, labels, num_classes: int) -> float:
    """Mean over subjects and foreground classes of the 3-D Dice (NaN-safe)."""
    return float(np.nanmean(evaluate_dice(model, images, labels, num_classes)))


def _checkpoint_tracker(model, split: Split, num_classes: int, select: str, monitor_test: bool):
    # best-val: the starting weights are a candidate too, so a continuation never ends worse on validation
    state = {"best": mean_dice(model, split.val_images, split.val_labels, num_classes),
             "weights": copy.deepcopy(model.state_dict()) if select == "best-val" else None}

    def eval_fn():
        score = mean_dice(model, split.val_images, split.val_labels, num_classes)
        if select == "best-val" and score > state["best"]:
            state["best"], state["weights"] = score, copy.deepcopy(model.state_dict())
        record = {"val_dice": score}
        if monitor_test:   # reported only, never used to choose anything
            record["test_dice"] = mean_dice(model, split.test_images, split.test_labels, num_classes)
        return record
    return state, eval_fn


@dataclass
class SemiSupervisedResult(TrainResult):
    """:class:`medtut.train.TrainResult` plus the final pseudo-labels of the unlabelled volumes (a list of
    (D, H, W) int64 maps; empty for ``labelled-only``) and ``slices_seen``, the number of distinct
    training slices read (steps × slices per step; labelled and unlabelled)."""
    pseudo_labels: list = field(default_factory=list)
    slices_seen: int = 0


def train_baseline(model: nn.Module, split: Split, num_steps: int, batch_size: int = 8, lr: float = 1e-3,
                   eval_every: int = 25, seed: int = 0, progress: bool = True,
                   device: torch.device | str | None = None, select: str = "best-val"
                   ) -> tuple[nn.Module, TrainResult]:
    """Step 1 of the schedule: the U-Net on the labelled slices only (Dice+CE, spatial augmentation).

    Evaluates the validation Dice every ``eval_every`` steps and leaves ``model`` holding the best
    validation weights (``select="last"``: the final ones). Returns ``(model, TrainResult)``.
    """
    _check_model(model)
    cfg = Config(method="labelled-only", num_steps=num_steps, batch_labelled=batch_size, lr=lr,
                 eval_every=eval_every, seed=seed, select=select)
    model, result = train_semi_supervised(model, split, cfg, progress=progress, desc="baseline", device=device)
    return model, TrainResult(result.history, result.wall_time_s)


def train_semi_supervised(model: nn.Module, split: Split, cfg: Config, num_classes: int | None = None,
                          progress: bool = True, desc: str | None = None,
                          device: torch.device | str | None = None, monitor_test: bool = False
                          ) -> tuple[nn.Module, SemiSupervisedResult]:
    """Continue training ``model`` (usually the baseline) under ``cfg``; returns ``(model, result)``.

    Each of ``cfg.rounds`` rounds runs ``num_steps // rounds`` steps through :func:`medtut.train.fit`:

    * ``labelled-only``: L = L_seg(labelled batch);
    * ``self-training``: L = L_seg(labelled batch) + L_seg(unlabelled batch, pseudo-labels);
    * ``local contrastive``: L = L_seg(labelled batch) + λ·L_lc(pairs of labelled and unlabelled slices),
      unlabelled slices entering *only* through L_lc.

    With ``cfg.select="best-val"`` the best validation weights so far are restored after each round;
    with ``"last"`` training simply goes on. If another round follows, the pseudo-labels of the
    unlabelled volumes are recomputed from the current weights (:func:`pseudo_label`). At the end the
    model holds the selected weights. ``monitor_test=True`` also records the test Dice at every
    evaluation (``history["test_dice"]``), for learning curves; nothing is selected on it. The optimiser
    (Adam) is created once and kept. The result's
    ``wall_time_s`` covers training and pseudo-labelling (``history.wall_time_s``: training only). Batches and
    augmentations come from a generator seeded with ``cfg.seed``; the caller's global random state is
    left as it was. The history's records carry their ``round``.
    """
    _check_model(model)
    if not isinstance(split, Split):
        raise ValueError(f"split must be a Split (see make_split); got {type(split).__name__}")
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a local_contrastive.Config; got {type(cfg).__name__}")
    device = resolve_device(device)
    model.to(device)
    num_classes = num_classes or model.num_classes
    _check_split_labels(split, num_classes)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()      # the wall time includes pseudo-labelling, part of the method's cost
    with isolated_rng(cfg.seed, device):
        history, pseudo = _train_rounds(model, split, cfg, num_classes, gen, device, progress, desc, monitor_test)
    return model, SemiSupervisedResult(history, time.perf_counter() - start, pseudo_labels=pseudo,
                                       slices_seen=cfg.num_steps * cfg.slices_per_step)


def _check_model(model) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "num_classes"):
        raise ValueError(f"model must be a UNetWithProjection (an nn.Module with num_classes); got "
                         f"{type(model).__name__}")


def _check_split_labels(split: Split, num_classes: int) -> None:
    for name in ("labelled_labels", "val_labels", "test_labels"):
        for vol in getattr(split, name):
            top, low = int(vol.max()), int(vol.min())
            if low < 0 or top >= num_classes:
                raise ValueError(f"split.{name} must hold classes in [0, {num_classes}) for a model with "
                                 f"num_classes={num_classes}; got labels in [{low}, {top}]")


def _train_rounds(model, split, cfg, num_classes, gen, device, progress, desc, monitor_test):
    x_lab = slices_of(split.labelled_images).float()
    y_lab = slices_of(split.labelled_labels).long()
    x_unl = slices_of(split.unlabelled_images).float()
    seg_loss = seg_loss_fn(num_classes)
    uses_unlabelled = cfg.method != "labelled-only"
    if cfg.oracle_pseudo_labels:
        def label_unlabelled():
            return [torch.as_tensor(v).long() for v in split.unlabelled_labels]
    else:
        def label_unlabelled():
            return pseudo_label(model, split.unlabelled_images, num_classes, cfg.postprocess)
    pseudo = label_unlabelled() if uses_unlabelled else []
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state, eval_fn = _checkpoint_tracker(model, split, num_classes, cfg.select, monitor_test)
    history = History()
    pair_a, pair_b, _ = make_pairs(cfg.batch_labelled, cfg.batch_unlabelled, cfg.n_same)
    y_unl = None

    def step(_):
        il = torch.randint(len(x_lab), (cfg.batch_labelled,), generator=gen)
        xl, yl = spatial_augment(x_lab[il, None], y_lab[il], gen)
        if not uses_unlabelled:
            logits = model(xl.to(device))
            loss = seg_loss(logits, yl.to(device))
            return {"loss": loss, "seg": loss.detach()}
        iu = torch.randint(len(x_unl), (cfg.batch_unlabelled,), generator=gen)
        xu, yu = spatial_augment(x_unl[iu, None], y_unl[iu], gen)
        if cfg.method == "self-training":
            logits = model(torch.cat([xl, xu]).to(device))
            l_lab = seg_loss(logits[:len(xl)], yl.to(device))
            l_unl = seg_loss(logits[len(xl):], yu.to(device))
            return {"loss": l_lab + l_unl, "seg": l_lab.detach(), "seg_pseudo": l_unl.detach()}
        n = cfg.n_same
        # view 1 of every slice, plus a second intensity view of the first n labelled/unlabelled slices
        views = torch.cat([intensity_augment(xl, gen), intensity_augment(xu, gen),
                           intensity_augment(xl[:n], gen), intensity_augment(xu[:n], gen)])
        labels = torch.cat([yl, yu, yl[:n], yu[:n]]).to(device)
        logits, z = model(views.to(device), embed=True)
        l_seg = seg_loss(logits[:len(xl)], yl.to(device))
        l_lc = local_contrastive_loss(z[pair_a], z[pair_b], labels[pair_a], labels[pair_b],
                                      temperature=cfg.temperature, n_anchors=cfg.n_anchors,
                                      variant=cfg.variant, generator=gen)
        return {"loss": l_seg + cfg.lam * l_lc, "seg": l_seg.detach(), "contrastive": l_lc.detach()}

    steps_per_round = [cfg.num_steps // cfg.rounds] * cfg.rounds
    steps_per_round[-1] += cfg.num_steps - sum(steps_per_round)
    for r, n_steps in enumerate(steps_per_round):
        if uses_unlabelled:
            if r > 0:  # refresh with the selected weights so far
                pseudo = label_unlabelled()
            y_unl = torch.cat(pseudo)
        fit(step, optimizer, num_steps=n_steps, eval_fn=eval_fn, eval_every=min(cfg.eval_every, n_steps),
            models=model, progress=progress, history=history, tags={"round": r + 1},
            desc=(desc or cfg.method) + (f" round {r + 1}/{cfg.rounds}" if cfg.rounds > 1 else ""))
        if cfg.select == "best-val":
            model.load_state_dict(state["weights"])
    return history, pseudo


# ------------------------------------------------------------------------------------------------
# 7. evaluation
# ------------------------------------------------------------------------------------------------


def evaluate_dice(model: nn.Module, images, labels, num_classes: int) -> np.ndarray:
    """3-D Dice per test subject and foreground class: (N, num_classes - 1), NaN where a class is
    absent from both prediction and ground truth. Predictions are slice-wise argmax, no post-processing."""
    preds = predict_volumes(model, images)
    labs = as_volumes(labels, "labels", integer=True)
    if len(preds) != len(labs):
        raise ValueError(f"images and labels must hold the same number of volumes; got {len(preds)} and {len(labs)}")
    return np.concatenate([dice(p[None], l[None].long(), num_classes) for p, l in zip(preds, labs)])


@dataclass
class ArmResult(SemiSupervisedResult):
    """One arm of the comparison (:func:`continue_and_evaluate`): the training result plus the test Dice
    ``dice`` (N_test, C-1), the best validation Dice ``val_dice`` and the final weights ``state`` (CPU)."""
    dice: np.ndarray | None = None
    val_dice: float = float("nan")
    state: dict = field(default_factory=dict)


def continue_and_evaluate(model: nn.Module, start_state: dict, split: Split, cfg: Config,
                          progress: bool = True, desc: str | None = None,
                          device: torch.device | str | None = None, monitor_test: bool = False
                          ) -> tuple[nn.Module, ArmResult]:
    """Load ``start_state`` (e.g. the baseline's weights), train under ``cfg`` and score the test set.

    Returns ``(model, ArmResult)``. ``monitor_test``: see :func:`train_semi_supervised`.
    """
    _check_model(model)
    if not isinstance(start_state, dict) or not start_state:
        raise ValueError(f"start_state must be a non-empty state_dict (e.g. the baseline's); got "
                         f"{type(start_state).__name__}")
    model.load_state_dict(start_state)
    model, result = train_semi_supervised(model, split, cfg, progress=progress, desc=desc, device=device,
                                          monitor_test=monitor_test)
    num_classes = model.num_classes
    return model, ArmResult(result.history, result.wall_time_s, pseudo_labels=result.pseudo_labels,
                            slices_seen=result.slices_seen,
                            dice=evaluate_dice(model, split.test_images, split.test_labels, num_classes),
                            val_dice=mean_dice(model, split.val_images, split.val_labels, num_classes),
                            state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})


def dice_of_labels(preds, labels, num_classes: int) -> np.ndarray:
    """3-D Dice between lists of (D, H, W) label maps (e.g. pseudo-labels vs the hidden truth): (N, C-1)."""
    preds, labs = as_volumes(preds, "preds", integer=True), as_volumes(labels, "labels", integer=True)
    if len(preds) != len(labs):
        raise ValueError(f"preds and labels must hold the same number of volumes; got {len(preds)} and {len(labs)}")
    for i, (p, l) in enumerate(zip(preds, labs)):
        if p.shape != l.shape:
            raise ValueError(f"volume {i}: preds and labels must have the same (D, H, W) shape; got "
                             f"{tuple(p.shape)} and {tuple(l.shape)}")
    return np.concatenate([dice(p[None].long(), l[None].long(), num_classes) for p, l in zip(preds, labs)])


__all__ = ["as_volumes", "slices_of", "Split", "make_split", "UNetWithProjection", "class_prototypes",
           "anchor_terms", "local_contrastive_loss", "predict_volumes", "largest_component", "pseudo_label",
           "spatial_augment", "intensity_augment", "make_pairs", "Config", "METHODS", "seg_loss_fn",
           "mean_dice", "SELECTIONS", "SemiSupervisedResult", "ArmResult", "train_baseline", "train_semi_supervised", "evaluate_dice",
           "continue_and_evaluate", "dice_of_labels"]
