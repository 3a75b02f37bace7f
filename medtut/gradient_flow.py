"""Chapter 5: gradient-flow encoding (GFE) — autoencoding with a decoder and no encoder.

Flouris, Volokitin, Bredell and Konukoglu (arXiv:2105.05031, revised as arXiv:2412.00864) replace the
encoder of an autoencoder by an optimisation: the code of a sample ``x`` is the end point of the
gradient flow of the reconstruction loss through the decoder ``D``. The module reads like the paper:

1. the per-sample reconstruction loss ``l(x, D(z))`` (:func:`reconstruction_loss`);
2. the flows, written as torchdiffeq vector fields: first order ``dz/dt = -alpha grad_z l``
   (:class:`GradientFlow`) and the second-order, Nesterov-type flow
   ``z'' + (3/t) z' + alpha grad_z l = 0`` as a first-order system (:class:`SecondOrderFlow`);
3. the paper's adaptive Euler solver with an Armijo-like acceptance test (:func:`adaptive_euler`);
4. the public entry point :func:`encode` (any torchdiffeq method, or ``"amd"``);
5. decoder training: :func:`flow_loss` with the approximate gradient (``z(tau)`` detached, exact at a
   stationary point by the envelope theorem), the exact adjoint (``odeint_adjoint``), or plain
   back-propagation through the solver; :func:`make_gfe_step` turns it into a step for
   :func:`medtut.train.fit`;
6. the baselines: an autoencoder with the mirrored encoder and the same decoder (:func:`make_ae_step`)
   and "AE decoder + test-time flow refinement" (:func:`evaluate_ae_refined`);
7. evaluation (:func:`evaluate_gfe`, :func:`evaluate_ae`) and the data-efficiency run
   (:func:`data_efficiency_curve`).

Shapes: data ``x`` is ``(B, D)`` (images flattened), codes ``z`` are ``(B, d)``; the decoder maps
``(B, d) -> (B, D)``. With the BCE loss the decoder must output probabilities (a sigmoid last layer).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .config import isolated_rng, resolve_device
from .train import TrainResult, fit

LossSpec = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ---------------------------------------------------------------------------------------------------
# 1. Models: the decoder (the only network GFE has) and the mirrored encoder of the AE baseline
# ---------------------------------------------------------------------------------------------------


def make_decoder(latent_dim: int, out_dim: int, hidden: Sequence[int] = (150, 300, 600),
                 output: str = "sigmoid") -> nn.Sequential:
    """MLP decoder ``latent_dim -> hidden... -> out_dim`` with ELU activations.

    The paper's MNIST decoder is ``make_decoder(20, 784, (150, 300, 600))``. ``output="sigmoid"`` gives
    probabilities (for the BCE loss); ``"linear"`` leaves the output unbounded (for MSE on real data).
    """
    if latent_dim < 1 or out_dim < 1:
        raise ValueError(f"latent_dim and out_dim must be >= 1; got {latent_dim} and {out_dim}")
    if output not in {"sigmoid", "linear"}:
        raise ValueError(f"output must be 'sigmoid' or 'linear'; got {output!r}")
    sizes = [latent_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    if output == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def make_encoder(in_dim: int, latent_dim: int, hidden: Sequence[int] = (600, 300, 150)) -> nn.Sequential:
    """The AE baseline's encoder: the decoder mirrored, ``in_dim -> hidden... -> latent_dim`` (ELU)."""
    return make_decoder(in_dim, latent_dim, hidden, output="linear")


def latent_dim_of(decoder: nn.Module) -> int:
    """The input width of ``decoder`` (its first ``nn.Linear``); raises ``ValueError`` if there is none."""
    for module in decoder.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    raise ValueError("cannot infer the latent size of this decoder (no nn.Linear found); pass z0 or latent_dim")


# ---------------------------------------------------------------------------------------------------
# 2. The per-sample loss l(x, D(z)) and input validation
# ---------------------------------------------------------------------------------------------------


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, loss: LossSpec = "bce") -> torch.Tensor:
    """Per-sample reconstruction loss ``l(x, x_hat)``, averaged over pixels: shape ``(B,)``.

    - ``"bce"``: ``l = -(1/D) sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]``; ``x_hat`` are
      probabilities (the decoder ends in a sigmoid), ``x`` lies in [0, 1].
    - ``"mse"``: ``l = (1/D) sum_i (x_hat_i - x_i)^2``.
    - a callable ``loss(x_hat, x) -> (B,)``.
    """
    if callable(loss):
        out = loss(x_hat, x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape[:1]:
            raise ValueError(f"a callable loss must return one value per sample, shape ({x.shape[0]},); got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        return out
    if loss in ("bce", "mse") and (not isinstance(x_hat, torch.Tensor) or not isinstance(x, torch.Tensor)
                                   or x_hat.shape != x.shape):
        got = (f"{tuple(x_hat.shape)} and {tuple(x.shape)}" if isinstance(x_hat, torch.Tensor) and
               isinstance(x, torch.Tensor) else f"{type(x_hat).__name__} and {type(x).__name__}")
        raise ValueError(f"x_hat and x must be tensors of the same shape (no broadcasting: one reconstruction per "
                         f"sample); got {got}")
    if loss == "bce":
        # binary_cross_entropy clamps log() at -100, so x_hat = 0 or 1 stays finite.
        return F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).mean(1)
    if loss == "mse":
        return (x_hat - x).pow(2).flatten(1).mean(1)
    raise ValueError(f"loss must be 'mse', 'bce' or a callable per-sample loss; got {loss!r}")


def check_data(x, loss: LossSpec = "bce", name: str = "x") -> torch.Tensor:
    """Validate a batch: a ``(B, D)`` floating tensor, finite, in [0, 1] for BCE. Returns it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, D); got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be (B, D) with images flattened (e.g. x.flatten(1)); "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~torch.isfinite(x)).sum())} values)")
    if loss == "bce" and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"the BCE loss needs {name} in [0, 1]; got values in "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}] (rescale, or use loss='mse')")
    return x


def _check_loss_spec(loss: LossSpec) -> None:
    if not (callable(loss) or loss in {"bce", "mse"}):
        raise ValueError(f"loss must be 'mse', 'bce' or a callable per-sample loss; got {loss!r}")


def _check_decoder_output(decoder: nn.Module, z: torch.Tensor, x: torch.Tensor, loss: LossSpec) -> None:
    with torch.no_grad():
        out = decoder(z[:1])
    if out.shape[1:] != x.shape[1:]:
        raise ValueError(f"the decoder maps a code to shape {tuple(out.shape[1:])} but x has samples of shape "
                         f"{tuple(x.shape[1:])}")
    if loss == "bce" and (out.min() < 0 or out.max() > 1):
        raise ValueError("the BCE loss needs a decoder that outputs probabilities in [0, 1] (end it with "
                         "nn.Sigmoid()); use loss='mse' otherwise")


def initial_code(batch_size: int, latent_dim: int, z0: str | torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """The flow's start ``z(0)``: ``(batch_size, latent_dim)``.

    ``None`` / ``"rand"``: uniform in [0, 1)^d as in the official code (drawn on the CPU from
    ``generator``, so a seed gives the same codes on every device); ``"zeros"``; or a given tensor.
    """
    if isinstance(z0, torch.Tensor):
        if z0.shape != (batch_size, latent_dim):
            raise ValueError(f"z0 must have shape ({batch_size}, {latent_dim}); got {tuple(z0.shape)}")
        if not torch.isfinite(z0).all():
            raise ValueError("z0 contains NaN or inf")
        return z0.to(device) if device is not None else z0
    if z0 is None or z0 == "rand":
        z = torch.rand(batch_size, latent_dim, generator=generator)
    elif z0 == "zeros":
        z = torch.zeros(batch_size, latent_dim)
    else:
        raise ValueError(f"z0 must be None, 'rand', 'zeros' or a (B, d) tensor; got {z0!r}")
    return z.to(device) if device is not None else z


def loss_and_grad(decoder: nn.Module, x: torch.Tensor, z: torch.Tensor, loss: LossSpec = "bce",
                  create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss ``l_b = l(x_b, D(z_b))`` ``(B,)`` and its gradient ``grad_z l`` ``(B, d)``.

    The samples do not interact, so the gradient of ``sum_b l_b`` is each sample's own gradient.
    With ``create_graph=False`` the outputs carry no graph (cheap); with ``True`` they do, so the
    gradient can itself be differentiated with respect to ``z`` and the decoder's parameters.
    """
    with torch.enable_grad():
        if create_graph:
            zz = z if z.requires_grad else z.detach().requires_grad_(True)
        else:
            zz = z.detach().requires_grad_(True)
        values = reconstruction_loss(decoder(zz), x, loss)
        (grad,) = torch.autograd.grad(values.sum(), zz, create_graph=create_graph)
    if not create_graph:
        values = values.detach()
    return values, grad


# ---------------------------------------------------------------------------------------------------
# 3. The flows as torchdiffeq vector fields
# ---------------------------------------------------------------------------------------------------


def _check_flow_args(alpha, tau=None, num_steps=None) -> None:
    """alpha > 0 and tau > 0 (finite numbers), num_steps a positive int: a negative alpha or tau would run
    the flow uphill, silently (and torchdiffeq needs strictly increasing times)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (a negative alpha runs the flow uphill); got {alpha!r}")
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(tau)
                            or tau <= 0):
        raise ValueError(f"tau (the flow's end time) must be a finite number > 0; got {tau!r}")
    if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral)
                                  or num_steps < 1):
        raise ValueError(f"num_steps must be a positive int; got {num_steps!r}")


class GradientFlow(nn.Module):
    """First-order gradient flow ``dz/dt = f(t, z) = -alpha * grad_z l(x, D(z))``.

    An ``nn.Module`` holding the decoder, so ``odeint_adjoint`` finds its parameters. The gradient is
    taken under ``torch.enable_grad()`` (torchdiffeq runs the forward pass of the adjoint without grad)
    and with ``create_graph=True`` when the solve must be differentiated (adjoint or back-propagation);
    ``nfe`` counts the evaluations.
    """

    def __init__(self, decoder: nn.Module, x: torch.Tensor, loss: LossSpec = "bce", alpha: float = 1.0,
                 create_graph: bool = False):
        super().__init__()
        _check_flow_args(alpha)
        self.decoder, self.x, self.loss, self.alpha, self.create_graph = decoder, x, loss, alpha, create_graph
        self.nfe = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        _, grad = loss_and_grad(self.decoder, self.x, z, self.loss, create_graph=self.create_graph)
        return -self.alpha * grad


class SecondOrderFlow(GradientFlow):
    """Nesterov-type flow ``z'' + (3/t) z' + alpha grad_z l = 0`` as the first-order system

    ``dz/dt = m``,  ``dm/dt = -(3 / (t + t_eps)) m - alpha grad_z l(x, D(z))``,

    on the state ``(z, m)`` (a tuple, which torchdiffeq integrates as one system). ``t_eps = 1e-5`` as in
    the official code keeps ``t = 0`` finite (there ``m(0) = 0``, so the friction term vanishes).
    """

    def __init__(self, *args, t_eps: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.t_eps = t_eps

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        z, m = state
        return m, -3.0 / (t + self.t_eps) * m + super().forward(t, z)


def _integrate(func: GradientFlow, z0: torch.Tensor, t: torch.Tensor, method: str, order: int,
               adjoint: bool, options: dict | None, rtol: float, atol: float) -> torch.Tensor:
    """Run torchdiffeq; return the codes at the times ``t``: ``(T, B, d)``."""
    y0 = (z0, torch.zeros_like(z0)) if order == 2 else z0
    kwargs = dict(method=method, options=options, rtol=rtol, atol=atol)
    if adjoint:
        params = tuple(p for p in func.parameters() if p.requires_grad)
        traj = odeint_adjoint(func, y0, t, adjoint_params=params, **kwargs)
    else:
        traj = odeint(func, y0, t, **kwargs)
    return traj[0] if order == 2 else traj


# ---------------------------------------------------------------------------------------------------
# 4. The paper's adaptive solver ("AMD": adaptive minimise distance)
# ---------------------------------------------------------------------------------------------------


def armijo_accept(loss_old: torch.Tensor, loss_new: torch.Tensor, f_new: torch.Tensor, dt: torch.Tensor,
                  dt_max: float = 10.0, sigma: float = 1e-5) -> torch.Tensor:
    """The AMD acceptance test, per sample: ``(B,)`` bool.

    Accept the Euler step ``z+ = z + dt f(z)`` when the loss drops by at least
    ``l(z) - l(z+) >= sigma * dt * dt_max * ||f(z+)||^2`` (Armijo-like; as in the official code the
    field is taken at the new point). A non-finite new loss is always rejected.
    """
    decrease = loss_old - loss_new
    return torch.isfinite(loss_new) & (decrease >= sigma * dt * dt_max * f_new.pow(2).sum(1))


@dataclass(frozen=True)
class AMDConfig:
    """Settings of the paper's adaptive Euler solver (:func:`adaptive_euler`); defaults are the official code's.

    dt0, dt_max: first and largest step; sigma: Armijo constant; shrink, grow: step factors on rejection and
    acceptance; min_dt: below it the next step is forced, with forced_dt (default dt_max); conv_start,
    conv_window, conv_tol: the early stop on a flat loss; max_evals: gradient evaluations at most;
    shared_step: one step size for the whole batch (the official code) instead of one per sample.
    """
    dt0: float = 1.0
    dt_max: float = 10.0
    sigma: float = 1e-5
    shrink: float = 0.5
    grow: float = 1.1
    min_dt: float = 0.5 ** 20
    forced_dt: float | None = None
    conv_start: float = 0.02
    conv_window: int = 5
    conv_tol: float = 1e-5
    max_evals: int = 300
    shared_step: bool = False

    def __post_init__(self):
        if not (0 < self.shrink < 1 and self.grow >= 1 and self.dt0 > 0 and self.dt_max > 0
                and self.max_evals >= 1 and self.conv_window >= 1 and self.min_dt > 0):
            raise ValueError(f"need 0 < shrink < 1, grow >= 1, dt0 > 0, dt_max > 0, min_dt > 0, max_evals >= 1 "
                             f"and conv_window >= 1; got shrink={self.shrink}, grow={self.grow}, dt0={self.dt0}, "
                             f"dt_max={self.dt_max}, min_dt={self.min_dt}, max_evals={self.max_evals}, "
                             f"conv_window={self.conv_window}")


def adaptive_euler(decoder: nn.Module, x: torch.Tensor, z0: torch.Tensor, loss: LossSpec = "bce",
                   cfg: AMDConfig | None = None, *, alpha: float = 1.0, tau: float = 1e4, **options
                   ) -> tuple[torch.Tensor, dict]:
    """Integrate ``dz/dt = -alpha grad_z l`` from ``z0`` to ``tau`` with the paper's adaptive Euler.

    cfg: an :class:`AMDConfig`; ``options`` replace its fields for this call (``max_evals=60``).

    Each trial is an explicit Euler step ``z+ = z + dt f(z)``, kept when :func:`armijo_accept` holds.
    - rejection: ``dt <- shrink * dt``; when ``dt`` falls below ``min_dt`` the next step is *forced*
      (taken whatever the loss does) with ``forced_dt`` (default ``dt_max``, as in the official code);
    - acceptance: ``dt <- min(max(1, grow * dt), dt_max)``;
    - early stop: once every sample has reached ``t >= conv_start * tau``, the batch-mean loss is
      recorded after each step with an acceptance; stop when the mean absolute difference of the last
      ``conv_window`` records is below ``conv_tol``; also stop after ``max_evals`` evaluations.

    The official code uses one step size for the whole batch (``shared_step=True``: a step is accepted
    only if every sample passes). The default gives each sample its own step size, which matters when
    a test set is encoded as one large batch; with ``B = 1`` both are identical.

    Returns ``z`` ``(B, d)`` (detached) and ``info`` with ``"loss"`` (batch-mean loss after each
    evaluation, starting at ``z0``), ``"nfe"`` (gradient evaluations, ``len(info["loss"])``),
    ``"t"`` (each sample's reached time), ``"per_sample_loss"``, ``"accepted"``, ``"rejected"``,
    ``"forced"`` (counts) and ``"stopped"`` (``"tau"``, ``"flat"`` or ``"max_evals"``).
    """
    unknown = set(options) - {f.name for f in dataclasses.fields(AMDConfig)}
    if unknown:
        raise ValueError(f"unknown solver option(s) {sorted(unknown)}; AMDConfig has "
                         f"{[f.name for f in dataclasses.fields(AMDConfig)]}")
    cfg = dataclasses.replace(cfg if cfg is not None else AMDConfig(), **options)
    if not (tau > 0 and alpha > 0):
        raise ValueError(f"tau and alpha must be > 0 (a negative value runs the flow uphill); got tau={tau}, "
                         f"alpha={alpha}")
    dt0, dt_max, sigma, shrink, grow, min_dt = cfg.dt0, cfg.dt_max, cfg.sigma, cfg.shrink, cfg.grow, cfg.min_dt
    conv_start, conv_window, conv_tol = cfg.conv_start, cfg.conv_window, cfg.conv_tol
    max_evals, shared_step = cfg.max_evals, cfg.shared_step
    forced_dt = dt_max if cfg.forced_dt is None else cfg.forced_dt
    batch = z0.shape[0]
    z = z0.detach().clone()
    l_cur, g = loss_and_grad(decoder, x, z, loss)
    f = -alpha * g
    dt = torch.full((batch,), float(dt0), dtype=z.dtype, device=z.device)
    t = torch.zeros_like(dt)
    forced_next = torch.zeros(batch, dtype=torch.bool, device=z.device)
    trajectory = [l_cur.mean()]
    flat_record: list[float] = []
    counts = torch.zeros(3, dtype=torch.long)  # accepted, rejected, forced
    conv_time = conv_start * tau
    stopped = "max_evals"
    for _ in range(max_evals - 1):
        active = t < tau
        if shared_step:
            if not bool(active[0]):
                stopped = "tau"
                break
        elif not bool(active.any()):
            stopped = "tau"
            break
        step = torch.minimum(dt, tau - t) * active
        z_new = torch.addcmul(z, step[:, None], f)
        l_new, g_new = loss_and_grad(decoder, x, z_new, loss)
        f_new = g_new.mul_(-alpha)
        ok = armijo_accept(l_cur, l_new, f_new, step, dt_max, sigma)
        if shared_step:
            ok = ok.all().expand(batch)
        take = active & (ok | forced_next)
        reject = active & ~take
        counts += torch.stack([(take & ~forced_next).sum(), reject.sum(), (take & forced_next).sum()]).cpu()
        z = torch.where(take[:, None], z_new, z)
        l_cur = torch.where(take, l_new, l_cur)
        f = torch.where(take[:, None], f_new, f)
        t = t + step * take
        dt = torch.where(take, (grow * dt).clamp(1.0, dt_max), dt * torch.where(reject, shrink, 1.0))
        forced_next = reject & (dt < min_dt)
        dt = torch.where(forced_next, forced_dt, dt)
        trajectory.append(l_cur.mean())
        if conv_tol > 0 and bool(take.any() & (t.min() >= conv_time)):
            flat_record.append(float(trajectory[-1]))
            if len(flat_record) >= conv_window:
                recent = np.asarray(flat_record[-conv_window:])
                if np.abs(np.diff(recent)).mean() < conv_tol:
                    stopped = "flat"
                    break
    else:
        if not bool((t < tau).any()):
            stopped = "tau"
    trajectory = torch.stack(trajectory).cpu().numpy()
    counts = dict(zip(("accepted", "rejected", "forced"), (int(c) for c in counts)))
    info = {"loss": trajectory, "nfe": len(trajectory), "t": t.detach().cpu().numpy(),
            "per_sample_loss": l_cur.detach(), "stopped": stopped, **counts}
    return z.detach(), info


# ---------------------------------------------------------------------------------------------------
# 5. The public entry point
# ---------------------------------------------------------------------------------------------------


def encode(decoder: nn.Module, x: torch.Tensor, loss: LossSpec = "bce", z0: str | torch.Tensor | None = None,
           method: str = "amd", order: int = 1, *, alpha: float = 1.0, tau: float | None = None,
           num_steps: int = 50, rtol: float = 1e-5, atol: float = 1e-6, generator: torch.Generator | None = None,
           latent_dim: int | None = None, **amd_options) -> tuple[torch.Tensor, dict]:
    """Encode ``x`` ``(B, D)`` by the gradient flow of ``l(x, D(z))`` through ``decoder``.

    Parameters
    ----------
    loss: ``"bce"`` (decoder outputs probabilities, ``x`` in [0, 1]), ``"mse"`` or a callable
        ``loss(x_hat, x) -> (B,)``.
    z0: start of the flow: ``None``/``"rand"`` (uniform [0, 1)^d from ``generator``), ``"zeros"`` or a
        ``(B, d)`` tensor (e.g. an encoder's output, for test-time refinement).
    method: ``"amd"`` for the paper's adaptive Euler (:func:`adaptive_euler`, first order only; extra
        keyword arguments go to it, e.g. ``max_evals``, ``dt_max``), or any torchdiffeq method
        (``"euler"``, ``"rk4"``, ``"dopri5"``...) integrated on ``num_steps`` equal intervals of
        ``[0, tau]`` (fixed-grid methods step exactly on this grid).
    order: 1 (gradient flow) or 2 (Nesterov-type flow, torchdiffeq methods only).
    alpha, tau: flow speed and end time (defaults: 1 and 1e4 for AMD, 10 for torchdiffeq).

    Returns
    -------
    z: ``(B, d)`` codes, detached.
    info: ``"loss"`` (batch-mean loss along the flow), ``"nfe"`` (vector-field evaluations),
        ``"per_sample_loss"`` ``(B,)`` at the end, plus ``"t"`` (times of the loss records for
        torchdiffeq; each sample's end time for AMD), for torchdiffeq the path ``"z"``
        ``(num_steps + 1, B, d)``, and for AMD the solver's counts.
    """
    check_data(x, loss)
    _check_loss_spec(loss)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (gradient flow) or 2 (Nesterov-type flow); got {order!r}")
    if not isinstance(method, str):
        raise ValueError(f"method must be 'amd' or a torchdiffeq method name; got {method!r}")
    _check_flow_args(alpha, tau, num_steps)
    d = latent_dim if latent_dim is not None else (z0.shape[1] if isinstance(z0, torch.Tensor)
                                                   else latent_dim_of(decoder))
    z_start = initial_code(x.shape[0], d, z0, generator=generator, device=x.device).to(x.dtype)
    _check_decoder_output(decoder, z_start, x, loss)
    if method == "amd":
        if order != 1:
            raise ValueError("the adaptive solver integrates the first-order flow; use a torchdiffeq "
                             "method (e.g. 'rk4') for order=2")
        return adaptive_euler(decoder, x, z_start, loss, alpha=alpha, tau=1e4 if tau is None else tau,
                              **amd_options)
    if amd_options:
        raise ValueError(f"options {sorted(amd_options)} belong to method='amd'; got method={method!r}")
    tau = 10.0 if tau is None else tau
    times = torch.linspace(0.0, float(tau), num_steps + 1, dtype=x.dtype, device=x.device)
    flow_cls = SecondOrderFlow if order == 2 else GradientFlow
    func = flow_cls(decoder, x, loss, alpha)
    with torch.no_grad():
        traj = _integrate(func, z_start, times, method, order, False, None, rtol, atol)
        per_time = torch.stack([reconstruction_loss(decoder(zt), x, loss) for zt in traj])
    return traj[-1].detach(), {"loss": per_time.mean(1).cpu().numpy(), "t": times.cpu().numpy(),
                               "nfe": func.nfe, "per_sample_loss": per_time[-1], "z": traj.detach()}


# ---------------------------------------------------------------------------------------------------
# 6. Decoder training: approximate gradient, exact adjoint, back-propagation through the solver
# ---------------------------------------------------------------------------------------------------


def flow_loss(decoder: nn.Module, x: torch.Tensor, z0: str | torch.Tensor | None = None, loss: LossSpec = "bce",
              gradient: str = "approx", *, method: str = "amd", order: int = 1, alpha: float = 1.0,
              tau: float | None = None, num_steps: int = 50, generator: torch.Generator | None = None,
              **amd_options) -> tuple[torch.Tensor, dict]:
    """The training objective ``L(theta) = (1/B) sum_b l(x_b, D_theta(z_b(tau)))`` and how it is differentiated.

    - ``gradient="approx"``: ``z(tau)`` is found by :func:`encode` and **detached**, so ``backward`` gives
      only the partial derivative ``dl/dtheta`` at fixed ``z``. By the envelope theorem this is the full
      derivative when ``z(tau)`` is a stationary point (``grad_z l = 0`` kills the term through
      ``dz(tau)/dtheta``). Any ``method`` (default: the adaptive solver).
    - ``gradient="adjoint"``: ``odeint_adjoint`` solves the adjoint ODE backwards (Hessian-vector
      products through ``create_graph=True``), giving the exact gradient of the discretised flow up
      to the solver's tolerance. torchdiffeq methods only.
    - ``gradient="backprop"``: plain back-propagation through every solver step (exact, memory grows
      with the number of steps). torchdiffeq methods only.

    The official code sums the loss over the batch; we average (RMSprop and Adam are insensitive to
    this constant factor). Returns ``(L, info)`` with ``info`` as in :func:`encode`.
    """
    if gradient not in {"approx", "adjoint", "backprop"}:
        raise ValueError(f"gradient must be 'approx', 'adjoint' or 'backprop'; got {gradient!r}")
    _check_flow_args(alpha, tau, num_steps)
    if gradient == "approx":
        was_training = decoder.training
        z, info = encode(decoder, x, loss, z0, method, order, alpha=alpha, tau=tau, num_steps=num_steps,
                         generator=generator, **amd_options)
        decoder.train(was_training)
        return reconstruction_loss(decoder(z), x, loss).mean(), info
    if method == "amd":
        raise ValueError(f"gradient={gradient!r} needs a torchdiffeq method (e.g. 'rk4'); the adaptive "
                         "solver is used with gradient='approx'")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2; got {order!r}")
    check_data(x, loss)
    _check_loss_spec(loss)
    d = z0.shape[1] if isinstance(z0, torch.Tensor) else latent_dim_of(decoder)
    z_start = initial_code(x.shape[0], d, z0, generator=generator, device=x.device).to(x.dtype)
    _check_decoder_output(decoder, z_start, x, loss)
    tau = 10.0 if tau is None else tau
    times = torch.linspace(0.0, float(tau), num_steps + 1, dtype=x.dtype, device=x.device)
    func = (SecondOrderFlow if order == 2 else GradientFlow)(decoder, x, loss, alpha, create_graph=True)
    traj = _integrate(func, z_start, times, method, order, gradient == "adjoint", None, 1e-5, 1e-6)
    z = traj[-1]
    values = reconstruction_loss(decoder(z), x, loss)
    return values.mean(), {"nfe": func.nfe, "per_sample_loss": values.detach()}


def decoder_gradient(decoder: nn.Module, x: torch.Tensor, z0: torch.Tensor, loss: LossSpec = "bce",
                     gradient: str = "approx", **flow_kwargs) -> torch.Tensor:
    """The gradient of :func:`flow_loss` with respect to all decoder parameters, flattened: ``(P,)``."""
    params = [p for p in decoder.parameters() if p.requires_grad]
    value, _ = flow_loss(decoder, x, z0, loss, gradient, **flow_kwargs)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])


def _batch_tensor(batch) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"a batch must be a tensor (B, D) or a tuple whose first item is one; got "
                         f"{type(batch).__name__}")
    return batch


def make_gfe_step(decoder: nn.Module, loss: LossSpec = "bce", gradient: str = "approx", *,
                  generator: torch.Generator | None = None, device=None, **flow_kwargs) -> Callable:
    """A step function for :func:`medtut.train.fit`: encode the batch by the flow, return the loss.

    ``step(batch) -> {"loss": L, "nfe": evaluations of the inner solve}``, where ``batch`` is ``x``
    ``(B, D)`` or a tuple ``(x, ...)``. ``flow_kwargs`` go to :func:`flow_loss` (``method``, ``tau``,
    ``max_evals``...). ``generator`` draws the random starts, so a seed fixes the whole run.
    """
    def step(batch):
        x = _batch_tensor(batch)
        if device is not None:
            x = x.to(device)
        value, info = flow_loss(decoder, x, None, loss, gradient, generator=generator, **flow_kwargs)
        return {"loss": value, "nfe": float(info["nfe"])}
    return step


def make_ae_step(encoder: nn.Module, decoder: nn.Module, loss: LossSpec = "bce", *, device=None) -> Callable:
    """The AE baseline's step for :func:`medtut.train.fit`: ``L = mean_b l(x_b, D(E(x_b)))``."""
    def step(batch):
        x = _batch_tensor(batch)
        if device is not None:
            x = x.to(device)
        return {"loss": reconstruction_loss(decoder(encoder(x)), x, loss).mean()}
    return step


# ---------------------------------------------------------------------------------------------------
# 7. Evaluation and the data-efficiency experiment
# ---------------------------------------------------------------------------------------------------


def evaluate_ae(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, loss: LossSpec = "bce") -> float:
    """Mean per-sample test loss of the autoencoder (one forward pass per sample)."""
    check_data(x, loss)
    with torch.no_grad():
        return float(reconstruction_loss(decoder(encoder(x)), x, loss).mean())


def evaluate_gfe(decoder: nn.Module, x: torch.Tensor, loss: LossSpec = "bce", *, seed: int = 0,
                 **flow_kwargs) -> float:
    """Mean test loss after encoding ``x`` by the flow from seeded random starts (``seed``)."""
    _, info = encode(decoder, x, loss, generator=torch.Generator().manual_seed(seed), **flow_kwargs)
    return float(info["per_sample_loss"].mean())


def evaluate_ae_refined(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, loss: LossSpec = "bce",
                        **flow_kwargs) -> float:
    """The "AE + refinement" baseline: start the flow at the encoder's code ``E(x)``, run it at test time.

    Separates a better *training signal* (GFE) from *inference by optimisation*.
    """
    check_data(x, loss)
    with torch.no_grad():
        z0 = encoder(x)
    _, info = encode(decoder, x, loss, z0=z0, **flow_kwargs)
    return float(info["per_sample_loss"].mean())


def _train_curve(method, decoder, encoder, x_train, x_test, seen, loss, batch_size, lr, seed, gen, train_flow,
                 test_flow, device, progress):
    params = list(decoder.parameters())
    models: dict[str, nn.Module] = {"decoder": decoder}
    train_flow = dict(train_flow or {})
    test_flow = dict(test_flow or {})
    if method == "AE":
        params += list(encoder.parameters())
        models["encoder"] = encoder
        step = make_ae_step(encoder, decoder, loss, device=device)
    else:
        step = make_gfe_step(decoder, loss, "approx", generator=gen, device=device, **train_flow)
    order = torch.randperm(len(x_train), generator=gen)[: seen[-1] // batch_size * batch_size]
    batches = [x_train[idx] for idx in order.split(batch_size)]
    optimizer = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-6)
    checkpoints = {n // batch_size for n in seen}
    counter = {"step": 0}
    x_test = x_test.to(device)

    def counted_step(batch):
        counter["step"] += 1
        return step(batch)

    def eval_fn():
        if counter["step"] not in checkpoints:
            return {}
        if method == "AE":
            return {"test_AE": evaluate_ae(encoder, decoder, x_test, loss),
                    "test_AE + refinement": evaluate_ae_refined(encoder, decoder, x_test, loss, **test_flow)}
        return {"test_GFE": evaluate_gfe(decoder, x_test, loss, seed=seed + 10_000, **test_flow)}

    return fit(counted_step, optimizer, data=batches, num_steps=len(batches), eval_fn=eval_fn,
               eval_every=1, models=models, desc=f"{method} (seed {seed})", progress=progress)


@dataclass
class CurveResult(TrainResult):
    """:class:`medtut.train.TrainResult` plus the test-loss curves ``{method name: (len(seen),) array}``
    (``"GFE"``, or ``"AE"`` and ``"AE + refinement"``) and the images seen at each point."""
    curves: dict = dataclasses.field(default_factory=dict)
    seen: tuple = ()


def data_efficiency_curve(method: str, x_train: torch.Tensor, x_test: torch.Tensor, seen: Sequence[int], *,
                          latent_dim: int, hidden: Sequence[int], loss: LossSpec = "bce", batch_size: int = 5,
                          lr: float = 5e-4, seed: int = 0, train_flow: dict | None = None,
                          test_flow: dict | None = None, device=None, progress: bool = True
                          ) -> tuple[dict[str, nn.Module], CurveResult]:
    """Train one model for a single pass and record its test loss after ``seen`` training images.

    method: ``"GFE"`` (decoder only, approximate gradient) or ``"AE"`` (mirrored encoder + decoder;
    also reports ``"AE + refinement"``, the AE decoder with test-time flow from ``E(x)``).
    The set-up follows the paper's MNIST run: RMSprop (``lr``, alpha 0.9, eps 1e-6), batch
    ``batch_size``, one epoch over ``x_train`` (shuffled by ``seed``). ``train_flow`` / ``test_flow``:
    keyword arguments of :func:`encode` for the inner solves (e.g. ``{"max_evals": 60}``). The weights are
    initialised from ``seed`` without touching the caller's global random state.

    Returns ``({"decoder": ..., "encoder": ... (AE only)}, CurveResult)``.
    """
    if method not in {"GFE", "AE"}:
        raise ValueError(f"method must be 'GFE' or 'AE'; got {method!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    seen = sorted(int(n) for n in seen)
    if not seen or seen[0] < batch_size or seen[-1] > len(x_train):
        raise ValueError(f"seen must lie in [{batch_size}, {len(x_train)}] (batch size, training set size); "
                         f"got {seen}")
    if not (lr > 0):
        raise ValueError(f"lr must be > 0; got {lr}")
    check_data(x_train, loss, "x_train")
    check_data(x_test, loss, "x_test")
    gen = torch.Generator().manual_seed(seed)
    device = resolve_device(device)
    dim = x_train.shape[1]
    with isolated_rng(seed, device):   # one seeded block from initialisation to the end of training
        decoder = make_decoder(latent_dim, dim, hidden).to(device)
        encoder = (make_encoder(dim, latent_dim, tuple(reversed(tuple(hidden)))).to(device)
                   if method == "AE" else None)
        history = _train_curve(method, decoder, encoder, x_train, x_test, seen, loss, batch_size, lr, seed, gen,
                               train_flow, test_flow, device, progress)
    names = ["AE", "AE + refinement"] if method == "AE" else ["GFE"]
    curves = {name: history[f"test_{name}"] for name in names}
    models = {"decoder": decoder, **({"encoder": encoder} if encoder is not None else {})}
    return models, CurveResult(history, history.wall_time_s, curves=curves, seen=tuple(seen))


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """``<a, b> / (|a| |b|)`` of two flattened gradients."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.numel() != b.numel() or a.numel() == 0:
        got = (f"{a.numel()} and {b.numel()} elements" if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
               else f"{type(a).__name__} and {type(b).__name__}")
        raise ValueError(f"a and b must be non-empty tensors with the same number of elements; got {got}")
    return float(F.cosine_similarity(a.flatten()[None], b.flatten()[None]).squeeze())


__all__ = ["make_decoder", "make_encoder", "latent_dim_of", "reconstruction_loss", "check_data",
           "initial_code", "loss_and_grad", "GradientFlow", "SecondOrderFlow", "armijo_accept",
           "AMDConfig", "adaptive_euler", "encode", "flow_loss", "decoder_gradient", "make_gfe_step", "make_ae_step",
           "evaluate_ae", "evaluate_gfe", "evaluate_ae_refined", "CurveResult", "data_efficiency_curve",
           "cosine_similarity"]
