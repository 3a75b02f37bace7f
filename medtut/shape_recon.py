"""Chapter 9: probabilistic 3-D surface reconstruction from sparse MR slices.

Reads top-down like the method (Tóthová et al., MICCAI 2020, arXiv:2010.02041, which extends the
authors' ShapeMI 2018 paper, arXiv:1807.11272). No official code is public; this is a rebuild from the
papers' descriptions, and where a detail could not be checked against the PDF the docstring says so.

1. **Shape model** (:class:`PCAShapeModel`): PCA of corresponded canonical-frame meshes; the modes are
   scaled by their standard deviations so that the coefficients are ``b ~ N(0, I)``. It is a fixed
   (non-trainable) linear layer of the network.
2. **Pose** (:func:`axis_angle_to_matrix`, :func:`shape_from_coeffs`): ``v_i = R(omega) (mu_i + Phi_i b) + t``;
   the network is *spatially aware*: it predicts the shape where it lies in the scanner.
3. **Probabilistic output** (:func:`vertex_covariance`, :func:`vertex_nll`): the network predicts
   ``b ~ N(b_hat, diag(sigma_b^2))``; the linear layer turns it into a Gaussian per vertex,
   ``Sigma_i = R Phi_i diag(sigma_b^2) Phi_i^T R^T + (sigma_n^2 + eps) I``, and training minimises the
   negative log-likelihood of the true vertices, summed over vertices (cross-vertex covariance ignored).
4. **Network and training** (:class:`Config`, :class:`ShapeRegressor`, :func:`train`,
   :func:`slice_dropout`): a shared conv encoder per slice, an MLP, and heads for
   ``(b_hat, log sigma_b^2, omega, t, log sigma_n^2)``; a deterministic twin trained by vertex MSE.
5. **Evaluation** (:func:`predict`, :func:`evaluate`, :func:`coverage`, :func:`ensemble`): mean vertex
   error, coverage of the 68 % / 95 % Mahalanobis regions (chi-square with 3 degrees of freedom),
   ``sigma_i = sqrt(tr Sigma_i / 3)``, Spearman's rank correlation between sigma and error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from .config import isolated_rng, resolve_device
from .data.cup_shapes import BACKGROUND, NOISE, ShapeData
from .train import History, fit
from .train import TrainResult as _TrainResult

CHI2_3 = {0.68: 3.5059, 0.95: 7.8147}   # chi-square(3) quantiles, scipy.stats.chi2.ppf (3.53 is the 68.27 % one)


def _check_tensor(x, name: str, ndim: int | None = None, last: tuple | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}")
    if last is not None and tuple(x.shape[-len(last):]) != tuple(last):
        raise ValueError(f"{name} must end in shape {tuple(last)}; got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _check_int(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _check_number(value, name: str, low: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = bool(np.isfinite(value)) and (value > low if strict else value >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}; got {value!r}")
    return float(value)


def _check_shape_model(shape_model, name: str = "shape_model") -> None:
    if not isinstance(shape_model, PCAShapeModel):
        raise ValueError(f"{name} must be a PCAShapeModel (see PCAShapeModel.fit); got {type(shape_model).__name__}")


def _check_predictions(preds, what: str) -> None:
    if isinstance(preds, Prediction) or not isinstance(preds, (list, tuple)) or len(preds) < 2:
        raise ValueError(f"{what} needs a list of at least two Predictions; got {type(preds).__name__}"
                         f"{' of length ' + str(len(preds)) if isinstance(preds, (list, tuple)) else ''}")
    for i, p in enumerate(preds):
        if not isinstance(p, Prediction):
            raise ValueError(f"preds[{i}] must be a Prediction (see predict); got {type(p).__name__}")
        if p.mean.shape != preds[0].mean.shape:
            raise ValueError(f"all predictions must have the same mean shape; preds[0] is {tuple(preds[0].mean.shape)}, "
                             f"preds[{i}] is {tuple(p.mean.shape)}")


# ---------------------------------------------------------------------------------------------------
# 1. The PCA shape model
# ---------------------------------------------------------------------------------------------------

class PCAShapeModel(nn.Module):
    """Linear shape model ``v(b) = mu + Phi b`` on V corresponded vertices, as a fixed layer.

    Buffers: ``mean`` (V, 3) mm; ``modes`` (3V, K), column k = the k-th principal direction times its
    standard deviation, so ``b ~ N(0, I)`` over the training shapes; ``std`` (K,) mm;
    ``explained_variance_ratio`` (K,) fraction of the total variance per mode. Vertex i's 3 x K block
    ``Phi_i`` is ``modes.view(V, 3, K)[i]``.
    """

    def __init__(self, mean: torch.Tensor, modes: torch.Tensor, std: torch.Tensor, explained: torch.Tensor):
        super().__init__()
        _check_tensor(mean, "mean", 2, (3,))
        _check_tensor(modes, "modes", 2)
        if modes.shape[0] != 3 * mean.shape[0] or modes.shape[1] < 1:
            raise ValueError(f"modes must be (3V, K) = ({3 * mean.shape[0]}, K >= 1) for mean (V, 3) = "
                             f"{tuple(mean.shape)}; got {tuple(modes.shape)}")
        for name, x in (("std", std), ("explained", explained)):
            _check_tensor(x, name, 1)
            if x.shape[0] != modes.shape[1]:
                raise ValueError(f"{name} must be (K,) = ({modes.shape[1]},) to match modes; got {tuple(x.shape)}")
        self.register_buffer("mean", mean)
        self.register_buffer("modes", modes)
        self.register_buffer("std", std)
        self.register_buffer("explained_variance_ratio", explained)
        # (K, V * 9): vec(Phi_ik Phi_ik^T) per mode k, so that sum_k var_k Phi_ik Phi_ik^T is one matrix product
        v, k = mean.shape[0], modes.shape[1]
        blocks = modes.view(v, 3, k)
        outer = torch.einsum("vik,vjk->kvij", blocks, blocks).reshape(k, v * 9)
        self.register_buffer("mode_outer", outer, persistent=False)

    @classmethod
    def fit(cls, shapes: torch.Tensor, num_modes: int) -> "PCAShapeModel":
        """PCA (SVD in float64) of ``shapes`` (N, V, 3), keeping ``num_modes`` modes."""
        _check_tensor(shapes, "shapes", 3, (3,))
        n, v, _ = shapes.shape
        if n < 2:
            raise ValueError(f"shapes must hold at least 2 meshes to fit a PCA; got {n}")
        if not isinstance(num_modes, (int, np.integer)) or not 1 <= num_modes <= min(n - 1, 3 * v):
            raise ValueError(f"num_modes must be an int in [1, min(N - 1, 3V) = {min(n - 1, 3 * v)}]; got {num_modes!r}")
        x = shapes.detach().double().reshape(n, 3 * v)
        mean = x.mean(0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        var = s ** 2 / (n - 1)
        std = var[:num_modes].sqrt()
        modes = vt[:num_modes].T * std                                         # (3V, K)
        explained = var[:num_modes] / var.sum()
        f = torch.float32
        return cls(mean.view(v, 3).to(f), modes.to(f), std.to(f), explained.to(f))

    @property
    def num_modes(self) -> int:
        return self.modes.shape[1]

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    def blocks(self) -> torch.Tensor:
        """(V, 3, K): the per-vertex blocks Phi_i."""
        return self.modes.view(self.num_vertices, 3, self.num_modes)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        """Canonical-frame shapes ``mu + Phi b``: b (B, K) → (B, V, 3)."""
        _check_tensor(b, "b", 2, (self.num_modes,))
        return self.mean + (b @ self.modes.T).view(-1, self.num_vertices, 3)

    def project(self, shapes: torch.Tensor) -> torch.Tensor:
        """Least-squares coefficients of canonical shapes (B, V, 3) → (B, K) (the modes are orthogonal)."""
        _check_tensor(shapes, "shapes", 3, (self.num_vertices, 3))
        d = (shapes - self.mean).reshape(len(shapes), -1)
        return d @ self.modes / self.std ** 2

    def truncated(self, num_modes: int) -> "PCAShapeModel":
        """The same model keeping only the first ``num_modes`` modes."""
        if isinstance(num_modes, bool) or not isinstance(num_modes, (int, np.integer)) or not 1 <= num_modes <= self.num_modes:
            raise ValueError(f"num_modes must be an int in [1, {self.num_modes}]; got {num_modes!r}")
        return PCAShapeModel(self.mean.clone(), self.modes[:, :num_modes].clone(), self.std[:num_modes].clone(),
                             self.explained_variance_ratio[:num_modes].clone())


# ---------------------------------------------------------------------------------------------------
# 2. Pose: Rodrigues' formula and the posed shape
# ---------------------------------------------------------------------------------------------------

def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle vectors (..., 3) (rad) → rotation matrices (..., 3, 3).

    ``R = I + (sin theta / theta) [omega]_x + ((1 - cos theta) / theta^2) [omega]_x^2`` with
    ``theta = |omega|``; both factors are written with ``sinc`` so that omega = 0 gives I with finite
    gradients.
    """
    _check_tensor(omega, "omega", None, (3,))
    theta = torch.sqrt((omega ** 2).sum(-1) + 1e-12)[..., None, None]
    wx, wy, wz = omega.unbind(-1)
    zero = torch.zeros_like(wx)
    k = torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], -1).view(*omega.shape[:-1], 3, 3)
    a = torch.sinc(theta / torch.pi)                                        # sin(theta) / theta
    b = 0.5 * torch.sinc(theta / (2 * torch.pi)) ** 2                       # (1 - cos theta) / theta^2
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * k + b * (k @ k)


def shape_from_coeffs(shape_model: PCAShapeModel, b: torch.Tensor, R: torch.Tensor | None = None,
                      t: torch.Tensor | None = None) -> torch.Tensor:
    """Posed mesh ``v_i = R (mu_i + Phi_i b) + t``.

    b (B, K); R (B, 3, 3) or None (identity); t (B, 3) mm or None (zero). Returns (B, V, 3) mm.
    The pose is rigid: the 2018 predecessor adds no scale (size is a PCA mode); whether the 2020 paper
    adds a separate scale could not be checked in the PDF.
    """
    _check_shape_model(shape_model)
    v = shape_model(b)
    if R is not None:
        _check_tensor(R, "R", 3, (3, 3))
        if R.shape[0] != v.shape[0]:
            raise ValueError(f"R must be (B, 3, 3) with B = {v.shape[0]}; got {tuple(R.shape)}")
        v = v @ R.transpose(1, 2)
    if t is not None:
        _check_tensor(t, "t", 2, (3,))
        if t.shape[0] != v.shape[0]:
            raise ValueError(f"t must be (B, 3) with B = {v.shape[0]}; got {tuple(t.shape)}")
        v = v + t[:, None, :]
    return v


# ---------------------------------------------------------------------------------------------------
# 3. The Gaussian per vertex and its negative log-likelihood
# ---------------------------------------------------------------------------------------------------

def vertex_covariance(shape_model: PCAShapeModel, R: torch.Tensor | None, var_b: torch.Tensor,
                      noise: torch.Tensor | float, eps: float = 0.05) -> torch.Tensor:
    """Per-vertex 3 x 3 covariances ``Sigma_i = R Phi_i diag(var_b) Phi_i^T R^T + (noise + eps) I``.

    R (B, 3, 3) or None; var_b (B, K) = sigma_b^2 (unit: coefficient^2, positive); noise (B,) or (B, 1)
    = sigma_n^2 (mm^2, >= 0) or a float; eps: a floor in mm^2. Returns (B, V, 3, 3) mm^2. This is the
    exact covariance of ``R (mu_i + Phi_i b) + t + n`` for ``b ~ N(b_hat, diag(var_b))`` and isotropic
    vertex noise ``n``; the covariance *between* vertices is dropped.
    """
    _check_shape_model(shape_model)
    _check_tensor(var_b, "var_b", 2, (shape_model.num_modes,))
    if (var_b <= 0).any():
        raise ValueError("var_b must be positive (it is a variance)")
    _check_number(eps, "eps (mm^2)")
    if isinstance(noise, bool) or not isinstance(noise, (torch.Tensor, int, float, np.integer, np.floating)):
        raise ValueError(f"noise must be a float or a (B,) / (B, 1) tensor of variances; got {type(noise).__name__}")
    if isinstance(noise, torch.Tensor):
        if noise.numel() not in (1, var_b.shape[0]):
            raise ValueError(f"noise must hold 1 or B = {var_b.shape[0]} variances; got shape {tuple(noise.shape)}")
        if not torch.isfinite(noise).all():
            raise ValueError("noise contains NaN or inf")
    elif not np.isfinite(noise):
        raise ValueError(f"noise must be finite; got {noise!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0 mm^2; got {eps}")
    B, V = var_b.shape[0], shape_model.num_vertices
    # sum_k var_b[k] Phi_i[:, k] Phi_i[:, k]^T for every vertex at once: (B, K) @ (K, V * 9)
    cov = (var_b @ shape_model.mode_outer.to(var_b.dtype)).view(B, V, 3, 3)
    if R is not None:
        _check_tensor(R, "R", 3, (3, 3))
        if R.shape[0] not in (1, B):
            raise ValueError(f"R must be (B, 3, 3) with B = {B} (or 1); got {tuple(R.shape)}")
        cov = torch.einsum("bij,bvjk,blk->bvil", R, cov, R)
    iso = torch.as_tensor(noise, dtype=var_b.dtype, device=var_b.device).reshape(-1, 1, 1, 1)
    if (iso < 0).any():
        raise ValueError("noise must be >= 0 (it is a variance)")
    eye = torch.eye(3, dtype=var_b.dtype, device=var_b.device)
    return cov + (iso + eps) * eye


def cholesky3(cov: torch.Tensor) -> torch.Tensor:
    """Closed-form Cholesky factor of 3 x 3 SPD matrices (..., 3, 3) → lower-triangular (..., 3, 3).

    Element-wise formulas, so a large batch of tiny matrices costs a few vector operations (LAPACK's
    per-matrix call is ~50x slower here). Raises ``ValueError`` if a matrix is not positive definite.
    """
    _check_tensor(cov, "cov", None, (3, 3))
    a = 0.5 * (cov + cov.transpose(-1, -2))   # read both triangles: the gradient is symmetric, like LAPACK's
    l11 = a[..., 0, 0]
    if (l11 <= 0).any():
        raise ValueError("cov must be symmetric positive definite; a leading 1x1 minor is <= 0")
    l11 = l11.sqrt()
    l21, l31 = a[..., 1, 0] / l11, a[..., 2, 0] / l11
    d2 = a[..., 1, 1] - l21 ** 2
    if (d2 <= 0).any():
        raise ValueError("cov must be symmetric positive definite; a leading 2x2 minor is <= 0")
    l22 = d2.sqrt()
    l32 = (a[..., 2, 1] - l31 * l21) / l22
    d3 = a[..., 2, 2] - l31 ** 2 - l32 ** 2
    if (d3 <= 0).any():
        raise ValueError("cov must be symmetric positive definite; its determinant is <= 0")
    l33 = d3.sqrt()
    z = torch.zeros_like(l11)
    return torch.stack([l11, z, z, l21, l22, z, l31, l32, l33], -1).view(*cov.shape)


def vertex_nll(v_true: torch.Tensor, v_mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian negative log-likelihood per vertex, without the constant ``(3/2) log 2 pi``:

    ``nll_i = 1/2 [ (v_i - v_hat_i)^T Sigma_i^{-1} (v_i - v_hat_i) + log det Sigma_i ]``

    v_true = v_i, v_mean = v_hat_i: (B, V, 3) mm; cov = Sigma_i: (B, V, 3, 3) mm^2, positive definite.
    Returns ``(nll, maha2)``, both (B, V): the NLL and the squared Mahalanobis distance. The training
    loss is ``nll.sum(1).mean()`` (sum over vertices, mean over the batch).
    """
    _check_tensor(v_true, "v_true", 3, (3,))
    _check_tensor(v_mean, "v_mean", 3, (3,))
    if v_true.shape != v_mean.shape:
        raise ValueError(f"v_true and v_mean must have the same (B, V, 3) shape; got {tuple(v_true.shape)} "
                         f"and {tuple(v_mean.shape)}")
    _check_tensor(cov, "cov", 4, (3, 3))
    if cov.shape[:2] != v_true.shape[:2]:
        raise ValueError(f"cov must be (B, V, 3, 3) = {tuple(v_true.shape[:2]) + (3, 3)}; got {tuple(cov.shape)}")
    L = cholesky3(cov)
    d = v_true - v_mean
    # forward substitution L z = d
    z1 = d[..., 0] / L[..., 0, 0]
    z2 = (d[..., 1] - L[..., 1, 0] * z1) / L[..., 1, 1]
    z3 = (d[..., 2] - L[..., 2, 0] * z1 - L[..., 2, 1] * z2) / L[..., 2, 2]
    maha2 = z1 ** 2 + z2 ** 2 + z3 ** 2
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (maha2 + logdet), maha2


# ---------------------------------------------------------------------------------------------------
# 4. Network, slice dropout and training
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Settings of one training run (defaults: the reference prototype's; the paper's are not public).

    probabilistic: NLL head (True) or the deterministic twin trained by vertex MSE (False).
    pose: predict R(omega), t and output in the scanner frame (True), or output ``mu + Phi b`` in the
    canonical frame, trained against the canonical shapes (False; the "no spatial awareness" ablation).
    eps: the covariance floor in mm^2. slice_dropout: probability that one random view of a training
    case is replaced by background + noise.
    """
    probabilistic: bool = True
    pose: bool = True
    eps: float = 0.05
    slice_dropout: float = 0.0
    num_epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 16
    hidden: int = 128
    translation_scale: float = 10.0    # t = translation_scale * head output (mm), so the head works near 1

    def __post_init__(self):
        for name in ("probabilistic", "pose"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        for name in ("num_epochs", "batch_size", "width", "hidden"):
            _check_int(getattr(self, name), name)
        _check_number(self.lr, "lr", strict=True)
        _check_number(self.eps, "eps (mm^2)")
        _check_number(self.translation_scale, "translation_scale", strict=True)
        if not isinstance(self.slice_dropout, (int, float, np.integer, np.floating)) or isinstance(self.slice_dropout, bool):
            raise ValueError(f"slice_dropout must be a number in [0, 1); got {self.slice_dropout!r}")
        if not 0 <= self.slice_dropout < 1:
            raise ValueError(f"slice_dropout must be in [0, 1); got {self.slice_dropout}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0 mm^2; got {self.eps}")
        for name in ("num_epochs", "batch_size", "width", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")


class ShapeRegressor(nn.Module):
    """Three slices → (b_hat, log sigma_b^2, omega, t, log sigma_n^2), with the shape model built in.

    Input (B, 3, H, W), H and W divisible by 8. A conv encoder (three stride-2 blocks) is shared by the
    views; the three feature vectors are concatenated in view order (so the MLP knows which view is
    which: the planes are fixed in the scanner) and an MLP maps them to the heads. The shape model is a
    fixed buffer. ``forward`` returns a dict with ``b`` (B, K), ``log_var_b`` (B, K), ``R`` (B, 3, 3),
    ``t`` (B, 3), ``log_noise`` (B, 1), ``mean`` (B, V, 3) and, for the probabilistic head,
    ``cov_local`` (B, V, 3, 3): the covariances before rotation (``Sigma_i = R cov_local_i R^T``).
    """

    def __init__(self, shape_model: PCAShapeModel, config: Config = Config(), image_size: int = 48,
                 num_views: int = 3):
        super().__init__()
        _check_shape_model(shape_model)
        if not isinstance(config, Config):
            raise ValueError(f"config must be a shape_recon.Config; got {type(config).__name__}")
        _check_int(image_size, "image_size")
        _check_int(num_views, "num_views")
        if image_size % 8:
            raise ValueError(f"image_size must be divisible by 8; got {image_size}")
        self.shape_model, self.config, self.num_views = shape_model, config, num_views
        c = config.width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.encoder_size = int(image_size)
        feat = 2 * c * (image_size // 8) ** 2
        k = shape_model.num_modes
        self.mlp = nn.Sequential(nn.Linear(num_views * feat, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.hidden), nn.ReLU())
        self.head = nn.Linear(config.hidden, 2 * k + 7)
        with torch.no_grad():      # start at the mean shape, identity pose, sigma_b = 1
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> dict:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"x must be a float tensor (B, {self.num_views}, H, W); got "
                             f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
        if x.ndim != 4 or x.shape[1] != self.num_views:
            raise ValueError(f"x must be (B, {self.num_views}, H, W); got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"x must hold at least one case; got an empty batch {tuple(x.shape)}")
        size = self.encoder_size
        if x.shape[-2:] != (size, size):
            raise ValueError(f"x must be (B, {self.num_views}, {size}, {size}) (the model's image_size); "
                             f"got {tuple(x.shape)}")
        B = x.shape[0]
        f = self.encoder(x.reshape(B * self.num_views, 1, *x.shape[-2:])).view(B, -1)
        h = self.head(self.mlp(f))
        k = self.shape_model.num_modes
        b, log_var_b = h[:, :k], h[:, k:2 * k].clamp(-12, 6)
        omega, t, log_noise = h[:, 2 * k:2 * k + 3], h[:, 2 * k + 3:2 * k + 6], h[:, -1:].clamp(-12, 6)
        if self.config.pose:
            R, t = axis_angle_to_matrix(omega), self.config.translation_scale * t
        else:
            R, t = None, None
        out = {"b": b, "log_var_b": log_var_b, "omega": omega, "R": R, "t": t, "log_noise": log_noise,
               "mean": shape_from_coeffs(self.shape_model, b, R, t)}
        if self.config.probabilistic:
            # in the shape's own orientation (R = I); see loss_terms and scanner_covariance
            out["cov_local"] = vertex_covariance(self.shape_model, None, log_var_b.exp(), log_noise.exp(),
                                                 self.config.eps)
        return out


def scanner_covariance(out: dict) -> torch.Tensor:
    """(B, V, 3, 3) scanner-frame covariances ``R Sigma_local R^T`` from a :class:`ShapeRegressor` output."""
    if not isinstance(out, dict) or out.get("cov_local") is None or "R" not in out:
        raise ValueError("out must be the dict a probabilistic ShapeRegressor returns (with 'cov_local' and 'R'); "
                         f"got {type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, dict) else ""))
    cov = out["cov_local"]
    return cov if out["R"] is None else torch.einsum("bij,bvjk,blk->bvil", out["R"], cov, out["R"])


def replace_view(x: torch.Tensor, view: int | torch.Tensor, generator: torch.Generator | None = None,
                 background: float = BACKGROUND, noise: float = NOISE) -> torch.Tensor:
    """A copy of x (B, V, H, W) in which view ``view`` (an int, or a (B,) tensor of views) of every case
    is replaced by background + Gaussian noise: the view is "missing", it shows nothing of the shape."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B, V, H, W); got "
                         f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    if isinstance(view, bool) or not isinstance(view, (int, np.integer, torch.Tensor)):
        raise ValueError(f"view must be an int or a (B,) integer tensor of view indices; got {view!r}")
    if isinstance(view, torch.Tensor) and (view.is_floating_point() or view.numel() not in (1, x.shape[0])):
        raise ValueError(f"view must be an integer tensor of 1 or B = {x.shape[0]} view indices; got dtype "
                         f"{view.dtype}, shape {tuple(view.shape)}")
    _check_number(noise, "noise (the noise standard deviation)")
    _check_number(background, "background", low=-np.inf)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be (B, V, H, W); got shape {tuple(x.shape)}")
    views = torch.as_tensor(view, device=x.device).long().expand(x.shape[0])
    if (views < 0).any() or (views >= x.shape[1]).any():
        raise ValueError(f"view must be in [0, {x.shape[1] - 1}]; got {view}")
    out = x.clone()
    rows = torch.arange(x.shape[0], device=x.device)
    fill = torch.randn((x.shape[0], *x.shape[2:]), generator=generator, device="cpu").to(x) * noise + background
    out[rows, views] = fill
    return out


def slice_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` per case, one view chosen uniformly at random becomes background + noise.

    x (B, V, H, W) → same shape (a copy). The fix for the missing-view pitfall: the network learns what a
    missing view looks like, and the NLL teaches it to widen its Gaussian when one is missing.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"p must be a number in [0, 1]; got {p!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B, V, H, W); got "
                         f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be (B, V, H, W); got shape {tuple(x.shape)}")
    drop = torch.rand(x.shape[0], generator=generator) < p
    if not drop.any():
        return x
    views = torch.randint(0, x.shape[1], (x.shape[0],), generator=generator)
    dropped = replace_view(x[drop.to(x.device)], views[drop].to(x.device), generator)
    out = x.clone()
    out[drop.to(x.device)] = dropped
    return out


class _Batches:
    """Re-iterable shuffled mini-batches of indices from a local generator (a new order every epoch)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        return iter(order.split(self.batch_size))


@dataclass
class TrainResult(_TrainResult):
    """What :func:`train` returns beside the model."""
    history: History
    wall_time_s: float
    config: Config
    seed: int
    num_steps: int
    images_seen: int


def loss_terms(out: dict, v_true: torch.Tensor, probabilistic: bool) -> dict:
    """The training loss: NLL summed over vertices (probabilistic) or the mean squared vertex distance
    (deterministic), both averaged over the batch; plus the mean vertex error (mm) for logging.

    The NLL is evaluated in the shape's own orientation: with ``Sigma_i = R S_i R^T`` and residual
    ``d_i``, ``d_i^T Sigma_i^{-1} d_i = (R^T d_i)^T S_i^{-1} (R^T d_i)`` and ``det Sigma_i = det S_i``, so
    rotating the 288 residuals back is exact and cheaper than rotating 288 covariances.
    """
    if not isinstance(out, dict) or "mean" not in out or "R" not in out:
        raise ValueError(f"out must be the dict a ShapeRegressor returns; got {type(out).__name__}")
    if not isinstance(v_true, torch.Tensor) or v_true.shape != out["mean"].shape:
        raise ValueError(f"v_true must be a tensor of the predicted mean's shape {tuple(out['mean'].shape)}; got "
                         f"{tuple(v_true.shape) if isinstance(v_true, torch.Tensor) else type(v_true).__name__}")
    if probabilistic and out.get("cov_local") is None:
        raise ValueError("probabilistic=True needs out['cov_local'] (a model built with Config(probabilistic=True))")
    d = out["mean"] - v_true
    err = d.norm(dim=-1)
    if probabilistic:
        local = d if out["R"] is None else d @ out["R"]          # rows: R^T d_i
        nll, _ = vertex_nll(local, torch.zeros_like(local), out["cov_local"])
        loss = nll.sum(1).mean()
    else:
        loss = (err ** 2).mean()
    return {"loss": loss, "vertex_error_mm": err.mean().detach()}


def train(data: ShapeData, shape_model: PCAShapeModel, config: Config = Config(), seed: int = 0,
          device: torch.device | str | None = None, progress: bool = True,
          desc: str | None = None) -> tuple[ShapeRegressor, TrainResult]:
    """Train a :class:`ShapeRegressor` on ``data`` with Adam through :func:`medtut.train.fit`.

    Weights, batch order and slice dropout come from local generators seeded by ``seed``: the global
    random state is left untouched, and the same seed gives the same model. Returns ``(model, result)``.
    """
    if not isinstance(data, ShapeData) or len(data) < 1:
        raise ValueError("data must be a non-empty ShapeData (see medtut.data.cup_shapes.make_cup_dataset)")
    _check_shape_model(shape_model)
    if not isinstance(config, Config):
        raise ValueError(f"config must be a shape_recon.Config; got {type(config).__name__}")
    _check_int(seed, "seed", low=0)
    target_name = "vertices" if config.pose else "canonical"
    if getattr(data, target_name).shape[1] != shape_model.num_vertices:
        raise ValueError(f"data.{target_name} has {getattr(data, target_name).shape[1]} vertices but the shape model "
                         f"{shape_model.num_vertices}: fit the shape model on this data's meshes")
    if not torch.isfinite(data.images).all():
        raise ValueError("data.images contains NaN or inf")
    device = resolve_device(device)
    with isolated_rng(seed, device):          # weights from ``seed``; the caller's random state is kept
        model = ShapeRegressor(shape_model, config, data.images.shape[-1], data.images.shape[1])
    model = model.to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    images = data.images.to(device)
    target = (data.vertices if config.pose else data.canonical).to(device)
    batches = _Batches(len(data), config.batch_size, gen)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    num_steps = config.num_epochs * len(batches)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, num_steps)

    def step(idx):
        x = images[idx.to(device)]
        if config.slice_dropout > 0:
            x = slice_dropout(x, config.slice_dropout, gen)
        return loss_terms(model(x), target[idx.to(device)], config.probabilistic)

    t0 = time.perf_counter()
    history = fit(step, optimizer, data=batches, num_epochs=config.num_epochs, scheduler=scheduler,
                  models=model, desc=desc or _describe(config, seed), progress=progress)
    wall = time.perf_counter() - t0
    model.eval()
    return model, TrainResult(history, wall, config, seed, num_steps, num_steps * config.batch_size)


def _describe(config: Config, seed: int) -> str:
    parts = ["NLL" if config.probabilistic else "MSE"]
    if config.slice_dropout:
        parts.append(f"slice dropout {config.slice_dropout}")
    if not config.pose:
        parts.append("no pose")
    return f"{' + '.join(parts)}, seed {seed}"


# ---------------------------------------------------------------------------------------------------
# 5. Prediction and evaluation
# ---------------------------------------------------------------------------------------------------

@dataclass
class Prediction:
    """Predicted meshes (N, V, 3) mm and, for a probabilistic model, covariances (N, V, 3, 3) mm^2."""
    mean: torch.Tensor
    cov: torch.Tensor | None = None
    b: torch.Tensor | None = None
    var_b: torch.Tensor | None = None
    R: torch.Tensor | None = None
    t: torch.Tensor | None = None


@torch.no_grad()
def predict(model: ShapeRegressor, images: torch.Tensor, batch_size: int = 256) -> Prediction:
    """Run ``model`` on images (N, 3, H, W) in batches; results on the CPU."""
    if not isinstance(model, ShapeRegressor):
        raise ValueError(f"model must be a ShapeRegressor (see train); got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (N, V, H, W); got "
                         f"{type(images).__name__ if not isinstance(images, torch.Tensor) else images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, V, H, W); got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError(f"images must hold at least one case; got shape {tuple(images.shape)}")
    _check_int(batch_size, "batch_size")
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list] = {k: [] for k in ("mean", "cov", "b", "var_b", "R", "t")}
    for i in range(0, len(images), batch_size):
        out = model(images[i:i + batch_size].to(device))
        parts["mean"].append(out["mean"].cpu())
        parts["b"].append(out["b"].cpu())
        parts["var_b"].append(out["log_var_b"].exp().cpu())
        if out.get("cov_local") is not None:
            parts["cov"].append(scanner_covariance(out).cpu())
        if out["R"] is not None:
            parts["R"].append(out["R"].cpu())
            parts["t"].append(out["t"].cpu())
    cat = lambda k: torch.cat(parts[k]) if parts[k] else None  # noqa: E731
    return Prediction(cat("mean"), cat("cov"), cat("b"), cat("var_b"), cat("R"), cat("t"))


def vertex_sigma(cov: torch.Tensor) -> torch.Tensor:
    """Scalar uncertainty per vertex, ``sigma_i = sqrt(tr Sigma_i / 3)`` (mm): (..., 3, 3) → (...)."""
    _check_tensor(cov, "cov", None, (3, 3))
    return (torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / 3).sqrt()


def coverage(maha2: torch.Tensor, levels: Sequence[float] = (0.68, 0.95)) -> dict[float, float]:
    """Fraction of squared Mahalanobis distances below the chi-square(3) quantile of each level.

    For exact Gaussian samples the fraction is the level itself (a calibrated model).
    """
    from scipy.stats import chi2

    if not isinstance(maha2, (torch.Tensor, np.ndarray, list, tuple)):
        raise ValueError(f"maha2 must be a tensor or array of squared distances; got {type(maha2).__name__}")
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError(f"levels must be a non-empty sequence of numbers in (0, 1); got {levels!r}")
    for lev in levels:
        if isinstance(lev, bool) or not isinstance(lev, (int, float, np.integer, np.floating)):
            raise ValueError(f"coverage levels must be numbers in (0, 1); got {lev!r}")
    m = torch.as_tensor(maha2).double()
    if m.numel() == 0 or (m < 0).any() or not torch.isfinite(m).all():
        raise ValueError("maha2 must be a non-empty tensor of finite squared distances >= 0")
    out = {}
    for lev in levels:
        if not 0 < lev < 1:
            raise ValueError(f"coverage levels must lie in (0, 1); got {lev}")
        out[lev] = float((m < chi2.ppf(lev, 3)).double().mean())
    return out


def evaluate(pred: Prediction, v_true: torch.Tensor) -> dict[str, float]:
    """Mean vertex error (mm) and, when the prediction has covariances, the calibration metrics.

    Returns ``error_mm``, and ``cov68``, ``cov95`` (coverage), ``sigma_mm`` (mean sigma_i), ``spearman``
    (rank correlation between sigma_i and the vertex error over all vertices of all cases), ``nll``
    (mean over cases of the per-case sum over vertices).
    """
    from scipy.stats import spearmanr

    if not isinstance(pred, Prediction) or not isinstance(pred.mean, torch.Tensor):
        raise ValueError(f"pred must be a Prediction (see predict); got {type(pred).__name__}")
    _check_tensor(v_true, "v_true", 3, (3,))
    if len(v_true) == 0:
        raise ValueError("v_true must hold at least one case; got an empty batch")
    if pred.mean.shape != v_true.shape:
        raise ValueError(f"prediction and truth must have the same shape; got {tuple(pred.mean.shape)} "
                         f"and {tuple(v_true.shape)}")
    err = (pred.mean - v_true).norm(dim=-1)
    out = {"error_mm": float(err.mean())}
    if pred.cov is not None:
        nll, maha2 = vertex_nll(v_true, pred.mean, pred.cov)
        cov = coverage(maha2)
        sigma = vertex_sigma(pred.cov)
        out.update(cov68=cov[0.68], cov95=cov[0.95], sigma_mm=float(sigma.mean()),
                   spearman=float(spearmanr(sigma.flatten().numpy(), err.flatten().numpy()).statistic),
                   nll=float(nll.sum(1).mean()))
    return out


def ensemble(preds: Sequence[Prediction]) -> Prediction:
    """Moment-matched mixture of several models' Gaussians (equal weights):
    mean = average mean, cov = average cov (aleatoric) + covariance of the means (epistemic)."""
    _check_predictions(preds, "ensemble")
    if len(preds) < 2 or any(p.cov is None for p in preds):
        raise ValueError("ensemble needs at least two probabilistic predictions")
    means = torch.stack([p.mean for p in preds])                               # (M, N, V, 3)
    mean = means.mean(0)
    d = means - mean
    epistemic = (d[..., :, None] * d[..., None, :]).mean(0)
    return Prediction(mean, torch.stack([p.cov for p in preds]).mean(0) + epistemic)


def epistemic_sigma(preds: Sequence[Prediction]) -> torch.Tensor:
    """(N, V) spread of the members' mean meshes, ``sqrt(tr Cov_members(v_hat_i) / 3)`` (mm)."""
    if isinstance(preds, (list, tuple)) and len(preds) < 2:
        raise ValueError("need at least two predictions to measure their spread")
    _check_predictions(preds, "epistemic_sigma")
    means = torch.stack([p.mean for p in preds])
    return ((means - means.mean(0)).pow(2).sum(-1).mean(0) / 3).sqrt()




# ---------------------------------------------------------------------------------------------------
# 6. Figures and real data
# ---------------------------------------------------------------------------------------------------

def plot_mesh(ax, vertices, faces, values=None, cmap: str = "viridis", vmin: float | None = None,
              vmax: float | None = None, color: str = "0.7", alpha: float = 0.9, title: str = ""):
    """Draw a triangle mesh on a 3-D matplotlib axis, faces coloured by per-vertex ``values``.

    vertices (V, 3) mm; faces (F, 3) int; values (V,) or None (plain ``color``). Returns the
    ``ScalarMappable`` for a colour bar (None without values).
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    v = vertices.detach().cpu().numpy() if isinstance(vertices, torch.Tensor) else np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"need vertices (V, 3) and faces (F, 3); got {v.shape} and {f.shape}")
    if f.size and (not np.issubdtype(f.dtype, np.integer) or f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces must hold integer vertex indices in [0, V - 1 = {len(v) - 1}]; got dtype {f.dtype}"
                         + (f", range [{f.min()}, {f.max()}]" if f.dtype.kind in "iuf" else ""))
    if not np.isfinite(v).all():
        raise ValueError("vertices contains NaN or inf")
    _check_number(alpha, "alpha")
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    coll = Poly3DCollection(v[f], linewidths=0.15, edgecolor=(0, 0, 0, 0.25), alpha=alpha)
    mappable = None
    if values is not None:
        val = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if val.shape != (len(v),):
            raise ValueError(f"values must be (V,) = ({len(v)},); got {val.shape}")
        norm = plt.Normalize(val.min() if vmin is None else vmin, val.max() if vmax is None else vmax)
        coll.set_facecolor(plt.get_cmap(cmap)(norm(val[f].mean(1))))
        mappable = ScalarMappable(norm=norm, cmap=cmap)
    else:
        coll.set_facecolor(color)
    ax.add_collection3d(coll)
    centre, half = v.mean(0), (v.max(0) - v.min(0)).max() / 2 + 2
    for set_lim, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        set_lim(c - half, c + half)
    ax.set_xlabel("x (mm)", fontsize=7)
    ax.set_ylabel("y (mm)", fontsize=7)
    ax.set_zlabel("z (mm)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=9)
    return mappable


def cross_validate(subjects: Sequence[dict], config: Config, num_modes: int = 12, num_folds: int = 5,
                   num_per_subject: int = 100, seed: int = 0, device: torch.device | str | None = None,
                   progress: bool = True, size: int = 48) -> list[dict]:
    """K-fold cross-validation over *subjects* (never over poses of one subject) for the real-data route.

    subjects: output of :func:`medtut.data.cup_shapes.load_heart_decathlon`. For each fold the shape
    model is fitted on the training subjects only (K = min(num_modes, #train - 1)), ``num_per_subject``
    random poses per subject are drawn (:func:`medtut.data.cup_shapes.make_heart_dataset`), a model is
    trained and evaluated on the held-out subjects with complete inputs and with the 2CH view missing.
    Returns one dict of metrics per fold and condition.
    """
    from .data.cup_shapes import make_heart_dataset

    if isinstance(subjects, (str, bytes, dict)) or not isinstance(subjects, Sequence) or \
            not all(isinstance(s, dict) and "canonical" in s for s in subjects):
        raise ValueError("subjects must be a list of subject dicts with a 'canonical' mesh (see "
                         f"medtut.data.cup_shapes.load_heart_decathlon); got {type(subjects).__name__}")
    if not isinstance(config, Config):
        raise ValueError(f"config must be a shape_recon.Config; got {type(config).__name__}")
    _check_int(num_modes, "num_modes")
    _check_int(num_per_subject, "num_per_subject")
    _check_int(seed, "seed", low=0)
    _check_int(size, "size")
    if size % 8:
        raise ValueError(f"size must be divisible by 8 (the network halves it three times); got {size}")
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)):
        raise ValueError(f"num_folds must be an int in [2, {len(subjects)}]; got {num_folds!r}")
    if not 2 <= num_folds <= len(subjects):
        raise ValueError(f"num_folds must be in [2, {len(subjects)}] (one subject per fold at least); got {num_folds}")
    rows = []
    for fold in range(num_folds):
        test_subj = [s for i, s in enumerate(subjects) if i % num_folds == fold]
        train_subj = [s for i, s in enumerate(subjects) if i % num_folds != fold]
        train_data = make_heart_dataset(train_subj, num_per_subject, seed=seed + fold, size=size)
        test_data = make_heart_dataset(test_subj, num_per_subject, seed=seed + 1000 + fold, size=size)
        canon = torch.from_numpy(np.stack([s["canonical"] for s in train_subj])).float()
        shape_model = PCAShapeModel.fit(canon, min(num_modes, len(train_subj) - 1))
        model, result = train(train_data, shape_model, config, seed=seed, device=device, progress=progress,
                              desc=f"fold {fold + 1}/{num_folds}")
        gen = torch.Generator().manual_seed(seed + fold)
        for cond, x in (("complete", test_data.images), ("2CH missing", replace_view(test_data.images, 1, gen))):
            rows.append({"fold": fold, "condition": cond, "wall_time_s": result.wall_time_s,
                         **evaluate(predict(model, x), test_data.vertices)})
    return rows


__all__ = ["CHI2_3", "PCAShapeModel", "axis_angle_to_matrix", "shape_from_coeffs", "vertex_covariance",
           "cholesky3", "vertex_nll", "Config", "ShapeRegressor", "scanner_covariance", "replace_view", "slice_dropout", "TrainResult",
           "loss_terms", "train", "Prediction", "predict", "vertex_sigma", "coverage", "evaluate", "ensemble",
           "epistemic_sigma", "plot_mesh", "cross_validate"]
