"""Chapter 7: training for the critical minority class with an AUC constraint and an Augmented Lagrangian.

Seed paper: Sangalli, Erdil, Hötker, Donati, Konukoglu, "Constrained optimization to train neural networks
on critical and under-represented classes", NeurIPS 2021 (arXiv:2102.12894). Read top-down like its method
section:

1. **Data assumptions.** Binary labels, positive (label 1) = the rare *critical* class. A classifier is a
   network with one output, the logit ``f(x)`` (higher = more likely positive).
2. **The constraint** (:func:`auc_constraints`). The AUC is 1 exactly when every positive is scored above
   every negative; one constraint per positive, ``q_i = Σ_j max(0, δ − (f_i − f_j)) = 0``.
3. **The Augmented Lagrangian** (:class:`AugmentedLagrangian`): per-training-sample multipliers λ, the
   batch term, the multiplier update and the penalty (μ) schedule of the official code.
4. **Base losses** (:func:`make_loss`): BCE, weighted BCE, symmetric/asymmetric focal and the mini-batch AUC
   surrogate (MBAUC) baseline.
5. **Training** (:func:`train_binary_classifier`, through :func:`medtut.train.fit`) and **evaluation**
   (:func:`evaluate_scores`: AUC and FPR at TPR 0.90/0.95/0.98, :func:`ensemble_logits`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import metrics
from .config import isolated_rng, resolve_device
from .train import TrainResult, fit, predict

HIGH_TPRS = (0.90, 0.95, 0.98)


# --------------------------------------------------------------------------------------------------
# Input checks shared by the public functions
# --------------------------------------------------------------------------------------------------
def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten (B,) or (B, 1) logits and targets; targets must be binary. Returns (logits, bool mask)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError(f"logits and targets must be torch tensors; got {type(logits).__name__} and "
                         f"{type(targets).__name__}")
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if logits.ndim != 1 or targets.ndim != 1 or logits.shape != targets.shape:
        raise ValueError(f"logits and targets must both be (B,) or (B, 1) with the same B; got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor; got dtype {logits.dtype}")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf")
    if targets.numel() and not ((targets == 0) | (targets == 1)).all():
        values = torch.unique(targets)[:10].tolist()
        raise ValueError(f"targets must be binary (0 = negative, 1 = positive); got values {values}")
    return logits, targets.bool()


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_number(name: str, value, *, low: float | None = None, strict: bool = False,
                  allow_inf: bool = False, hint: str = "") -> float:
    """``value`` as a float, or a ValueError naming ``name``, the expected range and what arrived."""
    bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
    expected = f"a {'' if allow_inf else 'finite '}number{bound}"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not _is_number(value):
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__} {value!r}{hint}")
    value = float(value)
    if math.isnan(value) or (not allow_inf and math.isinf(value)) or (
            low is not None and (value <= low if strict else value < low)):
        raise ValueError(f"{name} must be {expected}; got {value!r}{hint}")
    return value


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int >= {low}; got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _check_labels_scores(y_true, scores) -> None:
    """y_true (N,) in {0, 1} and finite scores (N,), N >= 1, for the threshold helpers."""
    for name, value in (("y_true", y_true), ("scores", scores)):
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be an array-like (N,); got {type(value).__name__}")
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores).ravel()
    if y.size == 0 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be non-empty and equally long (N,); got {y.size} labels and "
                         f"{s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1 (1 = positive); got values {np.unique(y)[:10].tolist()}")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s) or not np.isfinite(s).all():
        raise ValueError(f"scores must be finite real numbers; got dtype {s.dtype}"
                         + (" with NaN or inf" if np.issubdtype(s.dtype, np.number) and not np.iscomplexobj(s) else ""))


def _check_delta(delta: float) -> float:
    if isinstance(delta, torch.Tensor):
        delta = float(delta)
    if not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"delta (the margin) must be a finite number >= 0; got {delta!r}")
    return float(delta)


# --------------------------------------------------------------------------------------------------
# 2. The constraint
# --------------------------------------------------------------------------------------------------
def auc_constraints(logits: torch.Tensor, targets: torch.Tensor, delta: float = 0.0) -> torch.Tensor:
    r"""One AUC constraint per positive sample of the batch (eq. 2 of the paper, computed in the batch).

    .. math:: q_i = \sum_{j \in N_b} \max\bigl(0,\ \delta - (f_i - f_j)\bigr), \qquad i \in P_b

    logits: (B,) or (B, 1) float, the network outputs ``f``.
    targets: (B,) or (B, 1) with values in {0, 1} (bool, int or float); 1 marks a positive.
    delta: the margin δ >= 0 by which every positive should lead every negative.

    Returns q: (|P_b|,) float, one entry per positive *in batch order*, q_i >= 0; q_i = 0 exactly when
    positive i leads every negative of the batch by at least δ. A batch without a positive or without a
    negative gives an empty vector. Only violating pairs (f_i − f_j < δ) carry a gradient.
    """
    logits, positive = _check_logits_targets(logits, targets)
    delta = _check_delta(delta)
    f_pos, f_neg = logits[positive], logits[~positive]
    if f_pos.numel() == 0 or f_neg.numel() == 0:
        return logits.new_zeros(0)
    return torch.relu(delta - (f_pos[:, None] - f_neg[None, :])).sum(dim=1)


# --------------------------------------------------------------------------------------------------
# 3. The Augmented Lagrangian
# --------------------------------------------------------------------------------------------------
class AugmentedLagrangian:
    r"""The Augmented Lagrangian Method (ALM) for the AUC constraints, with one multiplier per training sample.

    For a mini-batch with positives :math:`P_b` and negatives :math:`N_b` the term added to the base loss is

    .. math:: \frac{1}{|P_b||N_b|} \sum_{i \in P_b} \Bigl[\lambda_i q_i + \frac{\mu}{2} q_i^2\Bigr]

    and after it is formed each multiplier of a positive in the batch is updated,
    :math:`\lambda_i \leftarrow \lambda_i + \mu q_i`. Because :math:`q_i \ge 0`, multipliers only grow, and they
    grow fastest for the positives that stay mis-ranked: the lowest-scored positives, which are the ones that
    set the FPR at high TPR.

    Multipliers are indexed by the sample's position in the *training set* (``indices``), not by its
    position in the batch, so they follow their samples through any shuffling.

    Penalty schedule (``schedule="paper"``, the official code, driven by the validation AUC once per epoch
    through :meth:`end_epoch`): μ starts at ``mu0`` and is capped at ``mu_max`` (default ``mu0·ρ³``, or
    ``mu0·ρ⁵`` when ``mu0 < 1e-3``). Epochs count from 0. After epoch 0 nothing changes; after epoch 1 the
    validation AUC is remembered; after epoch 2 μ is multiplied by ρ unconditionally; after every later
    epoch μ is multiplied by ρ only if the validation AUC fell by more than ``auc_drop`` (0.05) since the
    previous epoch. Updates stop for good once μ would pass ``mu_max`` (μ is then set to ``mu_max``) or the
    validation AUC reaches 1.
    ``schedule="geometric"``: μ ← min(ρμ, mu_max) after every epoch from ``warmup`` on, whatever the
    validation AUC (the prototype of ``../shared/reference`` §2.5). ``schedule="constant"``: μ stays ``mu0``.

    Parameters
    ----------
    num_samples: the size of the training set (one multiplier per sample; negatives' stay 0).
    delta: margin δ >= 0 of the constraints.
    mu0, rho, mu_max: initial penalty weight, growth factor (> 1) and cap.
    """

    SCHEDULES = ("paper", "geometric", "constant")

    def __init__(self, num_samples: int, delta: float = 1.0, mu0: float = 1e-2, rho: float = 2.0,
                 mu_max: float | None = None, schedule: str = "paper", auc_drop: float = 0.05,
                 warmup: int = 0):
        if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, (bool, np.bool_)) \
                or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int (the training-set size); got {num_samples!r}")
        self.delta = _check_delta(delta)
        if not (_is_number(mu0) and mu0 > 0 and math.isfinite(mu0)):
            raise ValueError(f"mu0 must be a finite number > 0; got {mu0!r}")
        if not (_is_number(rho) and rho > 1 and math.isfinite(rho)):
            raise ValueError(f"rho must be a finite number > 1; got {rho!r}")
        if mu_max is not None:
            _check_number("mu_max", mu_max, low=0, strict=True, hint=" (or None for the paper's default)")
        _check_number("auc_drop", auc_drop, low=0)
        _check_int("warmup", warmup, 0)
        if not isinstance(schedule, str) or schedule not in self.SCHEDULES:
            raise ValueError(f"schedule must be one of {self.SCHEDULES}; got {schedule!r}")
        if mu_max is None:
            mu_max = mu0 * rho ** (5 if mu0 < 1e-3 else 3)
        if mu_max < mu0:
            raise ValueError(f"mu_max must be >= mu0; got mu_max={mu_max}, mu0={mu0}")
        self.num_samples = int(num_samples)
        self.mu0, self.rho, self.mu_max = float(mu0), float(rho), float(mu_max)
        self.mu = float(mu0)
        self.schedule, self.auc_drop, self.warmup = schedule, float(auc_drop), int(warmup)
        self.lambdas = torch.zeros(self.num_samples, dtype=torch.float64)
        self.epoch = 0
        self.frozen = False
        self._previous_auc: float | None = None
        self.mu_history: list[float] = [self.mu]          # μ in force during epoch k
        self.lambda_history: list[np.ndarray] = []        # λ after epoch k (all samples)

    # -- the batch term -------------------------------------------------------------------------------
    def penalty(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor,
                update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch term of the Augmented Lagrangian and (by default) the multiplier update.

        logits: (B,) or (B, 1) float; targets: (B,) binary; indices: (B,) int64 positions of the batch's
        samples in the training set (what the data loader yields alongside each sample).
        Returns ``(term, q)``: the scalar term (differentiable; 0 for a batch without a pair) and the
        detached constraint values q (|P_b|,) in batch order. With ``update=True`` λ_i ← λ_i + μ q_i for the
        positives of the batch, *after* the term was formed with the old λ.
        """
        logits, positive = _check_logits_targets(logits, targets)
        indices = torch.as_tensor(indices)
        if indices.shape != logits.shape or indices.is_floating_point() or indices.is_complex() \
                or indices.dtype == torch.bool:
            raise ValueError(f"indices must be (B,) integer positions in the training set; got shape "
                             f"{tuple(indices.shape)} dtype {indices.dtype} for logits of shape {tuple(logits.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples - 1}]; got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        q = auc_constraints(logits, positive, self.delta)
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if q.numel() == 0:
            return logits.sum() * 0.0, q.detach()
        pos_idx = indices[positive].cpu()
        lam = self.lambdas[pos_idx].to(device=logits.device, dtype=logits.dtype)
        term = (lam * q + 0.5 * self.mu * q ** 2).sum() / (n_pos * n_neg)
        if update:
            self.update_multipliers(pos_idx, q)
        return term, q.detach()

    def update_multipliers(self, indices: torch.Tensor, q: torch.Tensor) -> None:
        """λ_i ← λ_i + μ q_i for the given training-set indices (|P_b|,) and constraint values (|P_b|,)."""
        if not isinstance(q, torch.Tensor):
            raise TypeError(f"q must be a torch tensor (|P_b|,) of constraint values; got {type(q).__name__}")
        q = q.detach().to("cpu", torch.float64)
        indices = torch.as_tensor(indices).cpu()
        if q.shape != indices.shape:
            raise ValueError(f"indices and q must have the same shape; got {tuple(indices.shape)} and {tuple(q.shape)}")
        if q.ndim != 1:
            raise ValueError(f"indices and q must be 1-D (|P_b|,); got shape {tuple(q.shape)}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be integer positions in the training set; got dtype {indices.dtype}")
        if q.numel():
            if not (bool(torch.isfinite(q).all()) and bool((q >= 0).all())):
                raise ValueError("q must hold finite constraint values >= 0 (from auc_constraints); got "
                                 f"range [{float(q.min())}, {float(q.max())}]")
            if int(indices.min()) < 0 or int(indices.max()) >= self.num_samples:
                raise ValueError(f"indices must lie in [0, {self.num_samples - 1}]; got range "
                                 f"[{int(indices.min())}, {int(indices.max())}]")
        self.lambdas.index_add_(0, indices, self.mu * q)

    # -- the schedule ---------------------------------------------------------------------------------
    def end_epoch(self, val_auc: float | None = None) -> float:
        """Record the multipliers, update μ from the validation AUC as the schedule says; return the new μ."""
        if val_auc is not None:
            auc = _check_number("val_auc", val_auc, low=0,
                                hint=" (the validation AUC in [0, 1], or None for the 'geometric' and "
                                     "'constant' schedules)")
            if auc > 1:
                raise ValueError(f"val_auc must be the validation AUC in [0, 1]; got {val_auc!r}")
        self.lambda_history.append(self.lambdas.numpy().copy())
        epoch = self.epoch
        self.epoch += 1
        if self.schedule == "paper":
            if val_auc is None:
                raise ValueError("the 'paper' schedule needs the validation AUC at the end of each epoch")
            self._paper_step(epoch, float(val_auc))
        elif self.schedule == "geometric" and epoch >= self.warmup:
            self.mu = min(self.mu * self.rho, self.mu_max)
        self.mu_history.append(self.mu)
        return self.mu

    def _paper_step(self, epoch: int, val_auc: float) -> None:
        if self.frozen or epoch == 0:
            return
        if epoch == 1:
            self._previous_auc = val_auc
            return
        if val_auc >= 1.0:
            self.frozen = True
            return
        proposed = self.mu * self.rho
        if proposed > self.mu_max:
            self.mu, self.frozen = self.mu_max, True
            return
        if epoch == 2 or val_auc < self._previous_auc - self.auc_drop:
            self.mu = proposed
        self._previous_auc = val_auc

    def state_dict(self) -> dict:
        return {"lambdas": self.lambdas.clone(), "mu": self.mu, "epoch": self.epoch, "frozen": self.frozen,
                "previous_auc": self._previous_auc}

    def __repr__(self) -> str:
        return (f"AugmentedLagrangian(num_samples={self.num_samples}, delta={self.delta}, mu={self.mu:.3g}, "
                f"mu_max={self.mu_max:.3g}, rho={self.rho}, schedule={self.schedule!r})")


# --------------------------------------------------------------------------------------------------
# 4. Base losses
# --------------------------------------------------------------------------------------------------
def asymmetric_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    r"""Asymmetric focal loss: plain BCE on positives, focal weighting only on negatives.

    .. math:: \ell = \frac{1}{B}\Bigl[\sum_{y=1} -\log p + \sum_{y=0} -p^{\gamma}\log(1-p)\Bigr],\quad p = \sigma(f)

    Easy negatives are down-weighted while every positive keeps its full weight (MONAI's ``FocalLoss`` is the
    symmetric version). logits, targets: (B,) or (B, 1). Returns a scalar.
    """
    _check_number("gamma", gamma, low=0)
    logits, positive = _check_logits_targets(logits, targets)
    y = positive.to(logits.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    weight = torch.where(positive, torch.ones_like(logits), torch.sigmoid(logits) ** gamma)
    return (weight * bce).mean()


def mini_batch_auc_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Mini-batch AUC surrogate (MBAUC, the paper's pairwise baseline).

    .. math:: \ell = \frac{1}{|P_b||N_b|}\sum_{i\in P_b}\sum_{j\in N_b}\bigl(1 - (\sigma(f_i) - \sigma(f_j))\bigr)^2

    Returns 0 (still differentiable) when the batch holds no positive-negative pair.
    """
    logits, positive = _check_logits_targets(logits, targets)
    p = torch.sigmoid(logits)
    p_pos, p_neg = p[positive], p[~positive]
    if p_pos.numel() == 0 or p_neg.numel() == 0:
        return logits.sum() * 0.0
    return ((1.0 - (p_pos[:, None] - p_neg[None, :])) ** 2).mean()


BASE_LOSSES = ("bce", "wbce", "focal", "asym_focal", "mbauc")
LOSS_NAMES = {"bce": "BCE", "wbce": "W-BCE", "focal": "S-FL", "asym_focal": "A-FL", "mbauc": "MBAUC"}


def _loss_key(name: str, argument: str = "name") -> str:
    """The canonical key of a base-loss name ('W-BCE' -> 'wbce'), or a clear error."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a base-loss name, one of {BASE_LOSSES}; got {type(name).__name__} "
                        f"{name!r}")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = {"w_bce": "wbce", "s_fl": "focal", "a_fl": "asym_focal", "sym_focal": "focal"}.get(key, key)
    if key not in BASE_LOSSES:
        raise ValueError(f"unknown base loss {name!r}; choose one of {BASE_LOSSES}")
    return key


def make_loss(name: str, *, pos_weight: float | None = None, gamma: float | None = None
              ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A base loss ``loss(logits, targets) -> scalar`` by name (logits, targets: (B,) or (B, 1)).

    ``"bce"``: ``torch.nn.BCEWithLogitsLoss``. ``"wbce"``: the same with ``pos_weight`` (the paper's W-BCE,
    weight on positives; default 1 here, :func:`train_binary_classifier` passes the class ratio).
    ``"focal"``: symmetric focal loss, MONAI's ``FocalLoss`` on one sigmoid output (``gamma`` default 0.5,
    the CIFAR10 setting of the paper's README). ``"asym_focal"``: :func:`asymmetric_focal_loss` (``gamma``
    default 1). ``"mbauc"``: :func:`mini_batch_auc_loss`.
    """
    key = _loss_key(name)
    if pos_weight is not None and key != "wbce":
        raise ValueError(f"pos_weight is only used by the weighted BCE; got pos_weight={pos_weight!r} for the "
                         f"{name!r} loss, which would ignore it: use make_loss('wbce', pos_weight=...) or drop it")
    if gamma is not None and key not in ("focal", "asym_focal"):
        raise ValueError(f"gamma is only used by the focal losses ('focal', 'asym_focal'); got gamma={gamma!r} "
                         f"for the {name!r} loss, which would ignore it: drop it")
    if pos_weight is not None:
        _check_number("pos_weight", pos_weight, low=0, strict=True)
    if gamma is not None:
        _check_number("gamma", gamma, low=0)
    if key in ("bce", "wbce"):
        weight = 1.0 if pos_weight is None else float(pos_weight)
        if key == "wbce" and not weight > 0:
            raise ValueError(f"pos_weight must be > 0; got {pos_weight!r}")

        def bce(logits, targets):
            logits, positive = _check_logits_targets(logits, targets)
            pw = torch.tensor(weight, dtype=logits.dtype, device=logits.device) if key == "wbce" else None
            return nn.functional.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), pos_weight=pw)
        return bce
    if key == "focal":
        from monai.losses import FocalLoss

        focal = FocalLoss(gamma=0.5 if gamma is None else float(gamma), use_softmax=False, include_background=True)

        def sym_focal(logits, targets):
            logits, positive = _check_logits_targets(logits, targets)
            return focal(logits[:, None], positive.to(logits.dtype)[:, None])
        return sym_focal
    if key == "asym_focal":
        g = 1.0 if gamma is None else float(gamma)
        return lambda logits, targets: asymmetric_focal_loss(logits, targets, g)
    return mini_batch_auc_loss


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
class TinyCNN(nn.Module):
    """Small CNN for 8×8 digits: conv16 – conv32 – 2×2 average pool (to 4×4) – linear → one logit.

    x: (B, C, 8, 8) float → (B,) logits. The pooled map keeps the layout of the strokes, which a global pool
    would throw away.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, image_size: int = 8):
        _check_int("in_channels", in_channels, 1)
        _check_int("width", width, 1)
        _check_int("image_size", image_size, 2)
        super().__init__()
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(2 * width * (image_size // 2) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels \
                or x.shape[2] // 2 != self.image_size // 2 or x.shape[3] // 2 != self.image_size // 2:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"TinyCNN expects x (B, {self.in_channels}, {self.image_size}, {self.image_size}) "
                             f"(in_channels, image_size of the constructor); got {got}")
        return self.head(self.features(x))[:, 0]


class _SqueezeLogit(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


def resnet10(in_channels: int = 3) -> nn.Module:
    """The paper's ResNet-10 (BasicBlock [1, 1, 1, 1], 64-128-256-512 channels, one logit), from MONAI.

    CIFAR-style stem: 3×3 first convolution, stride 1, no max-pool. x: (B, C, 32, 32) → (B,) logits.
    """
    _check_int("in_channels", in_channels, 1)
    from monai.networks.nets import ResNet

    net = ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[64, 128, 256, 512], spatial_dims=2,
                 n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True, num_classes=1)
    return _SqueezeLogit(net)


# --------------------------------------------------------------------------------------------------
# 5. Training and evaluation
# --------------------------------------------------------------------------------------------------
def _check_dataset(X, y, name: str = "X") -> tuple[torch.Tensor, torch.Tensor]:
    if X is None or y is None:
        raise TypeError(f"{name} and its labels must be arrays or tensors (N, ...) and (N,); got "
                        f"{type(X).__name__} and {type(y).__name__}")
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    if X.ndim >= 1 and X.shape[0] == 0:
        raise ValueError(f"{name} is empty: got shape {tuple(X.shape)}; need at least one sample")
    if X.ndim < 2 or not X.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (N, ...) of inputs; got shape {tuple(X.shape)} dtype {X.dtype}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"labels must be (N,) with N = {X.shape[0]} matching {name}; got shape {tuple(y.shape)}")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError(f"labels must be binary 0/1; got values {torch.unique(y)[:10].tolist()}")
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf")
    return X.float(), y.float()


def predict_logits(model: nn.Module, X, batch_size: int = 1024, device: torch.device | str | None = None) -> np.ndarray:
    """Logits of ``model`` on X (N, ...) in eval mode, as a float64 numpy array (N,)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if X is None:
        raise TypeError("X must be an array or tensor (N, ...) of inputs; got None")
    if device is not None:
        resolve_device(device)  # a clear message for 'gpu', or 'cuda' without a GPU
    return predict(model, X, batch_size=batch_size, device=device).reshape(-1).double().numpy()


ALM_SETTINGS = ("delta", "mu0", "rho", "mu_max", "schedule", "auc_drop", "warmup")


@dataclass
class TrainConfig:
    """Options of :func:`train_binary_classifier`.

    loss: a name of :func:`make_loss` (``"wbce"`` gets ``pos_weight = #neg/#pos`` unless given in
        ``loss_kwargs``); alm: ``None`` (base loss only) or a dict of :class:`AugmentedLagrangian` settings
        (``delta``, ``mu0``, ``rho``, ``mu_max``, ``schedule``, ``warmup``);
    num_epochs, batch_size, lr, weight_decay; optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9, the
        paper's); select_best: return the weights of the epoch with the best validation AUC (the paper's
        checkpointing).
    """
    loss: str = "bce"
    alm: Mapping | None = None
    num_epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    loss_kwargs: Mapping | None = None
    select_best: bool = False

    def __post_init__(self):
        _loss_key(self.loss, "loss")
        if not isinstance(self.num_epochs, int) or isinstance(self.num_epochs, bool) or self.num_epochs < 1:
            raise ValueError(f"num_epochs must be an int >= 1; got {self.num_epochs!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {self.batch_size!r}")
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if not isinstance(self.select_best, bool):
            raise ValueError(f"select_best must be True or False; got {self.select_best!r}")
        if self.loss_kwargs is not None and not isinstance(self.loss_kwargs, Mapping):
            raise ValueError(f"loss_kwargs must be None or a dict such as {{'gamma': 2.0}}; got "
                             f"{type(self.loss_kwargs).__name__}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {self.optimizer!r}")
        if self.alm is not None and not isinstance(self.alm, Mapping):
            raise ValueError(f"alm must be None or a dict of AugmentedLagrangian settings; got "
                             f"{type(self.alm).__name__}")
        if self.alm is not None:
            unknown = set(self.alm) - set(ALM_SETTINGS)
            if unknown:
                raise ValueError(f"unknown alm setting(s) {sorted(map(str, unknown))}; choose from {ALM_SETTINGS} "
                                 "(num_samples is the training-set size, set by train_binary_classifier)")


@dataclass
class ClassifierResult(TrainResult):
    """:class:`medtut.train.TrainResult` plus the Lagrangian (``None`` without ALM) and, with
    ``select_best``, the 0-based epoch whose weights were kept."""
    alm: "AugmentedLagrangian | None" = None
    best_epoch: int | None = None


def train_binary_classifier(model: nn.Module, X, y, cfg: TrainConfig | None = None, *, seed: int = 0,
                            augment: Callable | None = None, X_val=None, y_val=None,
                            device: torch.device | str | None = None, progress: bool = False,
                            desc: str | None = None, **options) -> tuple[nn.Module, ClassifierResult]:
    """Train a one-logit classifier with a base loss, with or without the Augmented Lagrangian.

    model: maps (B, ...) inputs to (B,) or (B, 1) logits. X: (N, ...) float; y: (N,) with 1 = positive.
    cfg: a :class:`TrainConfig`; ``options`` replace its fields for this call
    (``train_binary_classifier(net, X, y, loss="wbce", num_epochs=10)``).
    augment: ``augment(x, generator)`` applied to each training batch. X_val, y_val: validation set; its
    AUC is logged every epoch, drives the paper's μ schedule and, with ``select_best``, picks the weights.
    seed: batches are shuffled and augmented by generators seeded with ``seed``, and whatever the model
    draws from torch's global generator during training (dropout) is seeded by it too, without changing
    the caller's global random state.

    Returns ``(model in eval mode, ClassifierResult)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module mapping (B, ...) to (B,) logits; got {type(model).__name__}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an int; got {type(seed).__name__} {seed!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None or a callable augment(x, generator); got {type(augment).__name__}")
    if (X_val is None) != (y_val is None):
        raise ValueError("pass X_val and y_val together (or neither); got only "
                         + ("X_val" if X_val is not None else "y_val"))
    cfg = cfg if cfg is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be an auc_alm.TrainConfig; got {type(cfg).__name__}")
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; TrainConfig has "
                         f"{[f.name for f in dataclasses.fields(TrainConfig)]}")
    cfg = dataclasses.replace(cfg, **options)
    X, y = _check_dataset(X, y)
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError(f"the training set needs both classes; got {int(y.sum())} positives of {len(y)}")
    has_val = X_val is not None
    if has_val:
        X_val, y_val = _check_dataset(X_val, y_val, "X_val")
    alm_settings = dict(cfg.alm or {})
    if cfg.alm is not None and alm_settings.get("schedule", "paper") == "paper" and not has_val:
        raise ValueError("the paper's μ schedule is driven by the validation AUC: pass X_val and y_val, "
                         "or use alm={'schedule': 'geometric', ...}")

    device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    kwargs = dict(cfg.loss_kwargs or {})
    if cfg.loss.lower().replace("-", "") == "wbce" and "pos_weight" not in kwargs:
        kwargs["pos_weight"] = float((y == 0).sum() / (y == 1).sum())
    base_loss = make_loss(cfg.loss, **kwargs)
    lagrangian = AugmentedLagrangian(len(X), **alm_settings) if cfg.alm is not None else None

    dataset = torch.utils.data.TensorDataset(X, y, torch.arange(len(X)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    aug_gen = torch.Generator().manual_seed(seed + 1_000_003)
    best = {"auc": -1.0, "state": None, "epoch": -1}

    def step(batch):
        xb, yb, ib = batch
        if augment is not None:
            xb = augment(xb, aug_gen)
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb).reshape(-1)
        value = base_loss(logits, yb)
        out = {"base_loss": value.detach()}
        if lagrangian is not None:
            term, q = lagrangian.penalty(logits, yb, ib)
            value = value + term
            out.update(alm_term=term.detach(), q_mean=q.mean() if q.numel() else 0.0, mu=lagrangian.mu)
        out["loss"] = value
        return out

    def end_of_epoch():
        record = {}
        val_auc = None
        if has_val:
            val_auc = metrics.roc_auc(y_val.numpy(), predict_logits(model, X_val, device=device))
            record["val_auc"] = val_auc
            if cfg.select_best and val_auc > best["auc"]:
                best.update(auc=val_auc, state=copy.deepcopy(model.state_dict()), epoch=len(best_epochs))
        best_epochs.append(val_auc)
        if lagrangian is not None:
            pos = (y == 1).numpy()
            record["lambda_pos_mean"] = float(lagrangian.lambdas.numpy()[pos].mean())
            record["mu_next"] = lagrangian.end_epoch(val_auc)
        return record

    best_epochs: list = []
    with isolated_rng(seed, device):
        history = fit(step, opt, data=loader, num_epochs=cfg.num_epochs, eval_fn=end_of_epoch,
                      eval_every=len(loader), models=model, progress=progress,
                      desc=desc or (f"{cfg.loss}{' + ALM' if cfg.alm is not None else ''} (seed {seed})"))
    if cfg.select_best and best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model, ClassifierResult(history, history.wall_time_s, alm=lagrangian,
                                   best_epoch=best["epoch"] if cfg.select_best else None)


def evaluate_scores(y_true, scores, tprs: Sequence[float] = HIGH_TPRS) -> dict[str, float]:
    """``{"AUC": ..., "FPR@TPR90": ..., "FPR@TPR95": ..., "FPR@TPR98": ...}`` of one set of scores.

    y_true: (N,) in {0, 1}; scores: (N,) logits or probabilities (any monotone score). The FPR at each TPR
    is read off the linearly interpolated ROC (:func:`medtut.metrics.fpr_at_tpr`).
    """
    if isinstance(tprs, (str, bytes)) or not isinstance(tprs, (Sequence, np.ndarray)) or np.ndim(tprs) != 1 \
            or len(tprs) == 0:
        raise ValueError(f"tprs must be a non-empty sequence of TPRs in (0, 1], such as {HIGH_TPRS}; got {tprs!r}")
    for t in tprs:
        if not (_is_number(t) and 0 < t <= 1):
            raise ValueError(f"tprs must hold numbers in (0, 1], such as {HIGH_TPRS}; got {t!r} in {tprs!r}")
    if len({round(100 * t) for t in tprs}) != len(tprs):
        raise ValueError(f"tprs must be distinct in percent (each names a key 'FPR@TPR<percent>'); got {tprs!r}")
    out = {"AUC": metrics.roc_auc(y_true, scores)}
    fprs = np.atleast_1d(metrics.fpr_at_tpr(y_true, scores, list(tprs)))
    for t, f in zip(tprs, fprs):
        out[f"FPR@TPR{round(100 * t)}"] = float(f)
    return out


def roc_points(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of the full ROC (``sklearn.metrics.roc_curve``, every vertex kept)."""
    from sklearn.metrics import roc_curve

    metrics.roc_auc(y_true, scores)  # validates the inputs with a clear message
    return roc_curve(np.asarray(y_true).astype(int), np.asarray(scores, dtype=float), drop_intermediate=False)


def threshold_at_tpr(y_true, scores, tpr: float) -> float:
    """The largest threshold t such that the rule ``score >= t`` reaches at least ``tpr`` on y_true.

    It is the score of the ⌈tpr·|P|⌉-th highest-scored positive: the *lowest-scored* positives decide it.
    """
    _check_labels_scores(y_true, scores)
    if not _is_number(tpr):
        raise TypeError(f"tpr must be a number in (0, 1]; got {type(tpr).__name__} {tpr!r}")
    y_true, scores = np.asarray(y_true).astype(int).ravel(), np.asarray(scores, dtype=float).ravel()
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1]; got {tpr}")
    pos = np.sort(scores[y_true == 1])[::-1]
    if pos.size == 0:
        raise ValueError("y_true has no positive")
    k = int(math.ceil(tpr * pos.size - 1e-9))
    return float(pos[k - 1])


def confusion_at_threshold(y_true, scores, threshold: float) -> dict[str, float]:
    """Confusion matrix and rates of the rule ``score >= threshold`` → positive.

    Returns ``{"TP", "FN", "FP", "TN", "TPR", "FPR"}`` (counts as ints, rates in [0, 1]).
    """
    _check_labels_scores(y_true, scores)
    _check_number("threshold", threshold, allow_inf=True)
    y_true, scores = np.asarray(y_true).astype(int).ravel(), np.asarray(scores, dtype=float).ravel()
    if y_true.shape != scores.shape:
        raise ValueError(f"y_true and scores must have the same length; got {y_true.size} and {scores.size}")
    pred = scores >= threshold
    tp, fn = int((pred & (y_true == 1)).sum()), int((~pred & (y_true == 1)).sum())
    fp, tn = int((pred & (y_true == 0)).sum()), int((~pred & (y_true == 0)).sum())
    return {"TP": tp, "FN": fn, "FP": fp, "TN": tn, "TPR": tp / max(tp + fn, 1), "FPR": fp / max(fp + tn, 1)}


def ensemble_logits(logits_per_seed: Sequence) -> np.ndarray:
    """The seed ensemble of the paper: the average of the logits (S, N) → (N,)."""
    if logits_per_seed is None or isinstance(logits_per_seed, (str, bytes)):
        raise TypeError(f"logits_per_seed must be a list of logit vectors (N,), one per seed; got "
                        f"{type(logits_per_seed).__name__}")
    vectors = [np.asarray(v, dtype=float).ravel() for v in logits_per_seed]
    lengths = sorted({v.size for v in vectors})
    if len(lengths) > 1 or lengths == [0]:
        raise ValueError(f"need a non-empty list of equally long, non-empty logit vectors; got lengths {lengths}")
    if vectors and not all(np.isfinite(v).all() for v in vectors):
        bad = [i for i, v in enumerate(vectors) if not np.isfinite(v).all()]
        raise ValueError(f"logits_per_seed must be finite; the vectors of seed(s) {bad} hold NaN or inf")
    arr = np.asarray([np.asarray(v, dtype=float).ravel() for v in logits_per_seed])
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"need a non-empty list of equally long logit vectors; got shape {arr.shape}")
    return arr.mean(axis=0)


def paired_wins(baseline: Sequence[float], method: Sequence[float], lower_is_better: bool = True) -> int:
    """How many seeds the method beats the baseline on (strictly), seed by seed."""
    b, m = np.asarray(baseline, dtype=float), np.asarray(method, dtype=float)
    if b.shape != m.shape:
        raise ValueError(f"baseline and method need one value per seed each; got {b.shape} and {m.shape}")
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"baseline and method must be non-empty 1-D (one value per seed); got shape {b.shape}")
    if not (np.isfinite(b).all() and np.isfinite(m).all()):
        raise ValueError("baseline and method must be finite: a NaN would count as neither a win nor a loss")
    if not isinstance(lower_is_better, (bool, np.bool_)):
        raise TypeError(f"lower_is_better must be True or False; got {lower_is_better!r}")
    return int(((m < b) if lower_is_better else (m > b)).sum())


__all__ = ["HIGH_TPRS", "auc_constraints", "AugmentedLagrangian", "asymmetric_focal_loss", "mini_batch_auc_loss",
           "BASE_LOSSES", "LOSS_NAMES", "make_loss", "TinyCNN", "resnet10", "predict_logits",
           "TrainConfig", "ClassifierResult", "train_binary_classifier", "evaluate_scores", "roc_points", "threshold_at_tpr",
           "confusion_at_threshold", "ensemble_logits", "paired_wins"]
