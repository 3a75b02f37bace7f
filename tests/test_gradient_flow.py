"""Tests for medtut.gradient_flow (chapter 5): closed-form flows, the adaptive solver, the gradients."""
import numpy as np
import pytest
import torch
from scipy.special import j1
from torch import nn

import medtut
from medtut.gradient_flow import (SecondOrderFlow, adaptive_euler, armijo_accept, cosine_similarity,
                                  data_efficiency_curve, decoder_gradient, encode, flow_loss, latent_dim_of,
                                  loss_and_grad, make_ae_step, make_decoder, make_encoder, make_gfe_step,
                                  reconstruction_loss)
from medtut.train import fit


def linear_problem(d=3, D=6, seed=0, dtype=torch.float64):
    """A linear decoder D(z) = A z + b, data x and the least-squares code z* (MSE loss)."""
    g = torch.Generator().manual_seed(seed)
    dec = nn.Linear(d, D).to(dtype)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(D, d, generator=g, dtype=dtype))
        dec.bias.copy_(torch.randn(D, generator=g, dtype=dtype) * 0.1)
    x = torch.randn(2, D, generator=g, dtype=dtype)
    A, b = dec.weight.detach(), dec.bias.detach()
    z_star = torch.linalg.lstsq(A, (x - b).T).solution.T
    return dec, x, A, b, z_star


def test_first_order_flow_matches_closed_form():
    # l = |A z + b - x|^2 / D  =>  dz/dt = -(2 alpha / D) A^T A (z - z*)  =>  z(t) = z* + expm(-M t)(z0 - z*)
    dec, x, A, b, z_star = linear_problem()
    alpha, t_end, D = 0.7, 1.5, x.shape[1]
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    M = 2 * alpha / D * A.T @ A
    expected = z_star + (torch.linalg.matrix_exp(-M * t_end) @ (z0 - z_star).T).T
    z, info = encode(dec, x, "mse", z0=z0, method="rk4", alpha=alpha, tau=t_end, num_steps=200)
    torch.testing.assert_close(z, expected, atol=1e-8, rtol=0)
    assert info["nfe"] == 4 * 200 and len(info["loss"]) == 201
    z, _ = encode(dec, x, "mse", z0=z0, method="dopri5", alpha=alpha, tau=t_end, num_steps=3, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(z, expected, atol=1e-6, rtol=0)


def test_adaptive_solver_reaches_least_squares_code():
    dec, x, A, b, z_star = linear_problem()
    z, info = encode(dec, x, "mse", z0="zeros", method="amd", max_evals=2000, conv_tol=0.0, tau=1e4)
    torch.testing.assert_close(z, z_star, atol=1e-6, rtol=0)
    assert info["stopped"] in {"tau", "max_evals"} and info["nfe"] == len(info["loss"])


def test_second_order_flow_matches_bessel_solution():
    # identity decoder, l = |z - x|^2 / D: z'' + (3/t) z' + k (z - x) = 0 with k = 2 alpha / D, z'(0) = 0
    # has the solution z(t) = x + (z0 - x) * 2 J1(w t) / (w t), w = sqrt(k).
    D, alpha, t_end = 4, 1.0, 6.0
    x = torch.tensor([[0.2, -0.5, 1.0, 0.3]], dtype=torch.float64)
    z0 = torch.tensor([[1.0, 1.0, -1.0, 0.0]], dtype=torch.float64)
    w = np.sqrt(2 * alpha / D)
    z, info = encode(nn.Identity(), x, "mse", z0=z0, method="rk4", order=2, tau=t_end, num_steps=3000,
                     alpha=alpha)
    expected = x + (z0 - x) * 2 * j1(w * t_end) / (w * t_end)
    torch.testing.assert_close(z, expected, atol=1e-4, rtol=0)
    # the system's right-hand side, term by term
    flow = SecondOrderFlow(nn.Identity(), x, "mse", alpha)
    m = torch.ones_like(z0)
    dz, dm = flow(torch.tensor(2.0, dtype=torch.float64), (z0, m))
    torch.testing.assert_close(dz, m)
    torch.testing.assert_close(dm, -3 / (2.0 + 1e-5) * m - alpha * 2 * (z0 - x) / D)


def test_adaptive_solver_never_increases_loss_on_accepted_steps():
    medtut.seed_everything(0)
    dec = make_decoder(4, 16, (32,))
    x = torch.rand(7, 16)
    for shared in (False, True):
        z0 = torch.randn(7, 4, generator=torch.Generator().manual_seed(1)) * 3
        # min_dt tiny: no forced step (a forced step is taken whatever the loss does, by design)
        z, info = adaptive_euler(dec, x, z0, "bce", max_evals=150, dt0=50.0, dt_max=50.0, shared_step=shared,
                                 min_dt=1e-300)
        assert info["forced"] == 0 and info["rejected"] > 0  # a large dt0 forces rejections
        assert np.all(np.diff(info["loss"]) <= 1e-7)
        assert info["loss"][-1] < info["loss"][0]
        final = reconstruction_loss(dec(z), x, "bce")
        torch.testing.assert_close(final, info["per_sample_loss"])
    # with the default min_dt and one step size for the batch, converged samples block acceptance (no
    # decrease is possible in float32), dt shrinks below min_dt and forced steps follow
    _, info = adaptive_euler(dec, x, z0, "bce", max_evals=150, dt0=50.0, dt_max=50.0, shared_step=True)
    assert info["forced"] > 0


def test_armijo_accept_rule():
    old = torch.tensor([1.0, 1.0, 1.0])
    new = torch.tensor([0.5, 0.999, float("nan")])
    f_new = torch.tensor([[10.0], [10.0], [0.0]])
    ok = armijo_accept(old, new, f_new, torch.tensor([1.0, 1.0, 1.0]), dt_max=10.0, sigma=1e-5)
    # needed decrease: 1e-5 * 1 * 10 * 100 = 0.01
    assert ok.tolist() == [True, False, False]


def test_fixed_step_euler_diverges_where_adaptive_does_not():
    dec, x, *_ = linear_problem()
    # stiffness: the largest eigenvalue of (2/D) A^T A times dt far above 2 makes Euler blow up
    _, euler = encode(dec, x, "mse", z0="zeros", method="euler", tau=400.0, num_steps=40)
    _, amd = encode(dec, x, "mse", z0="zeros", method="amd", dt0=10.0, dt_max=10.0, max_evals=40)
    assert not np.isfinite(euler["loss"][-1]) or euler["loss"][-1] > 1e6
    assert amd["loss"][-1] <= amd["loss"][0]


def test_adjoint_gradient_equals_backprop_through_fixed_step_solver():
    torch.manual_seed(0)
    dec = make_decoder(3, 10, (8,)).double()
    x = torch.rand(4, 10, dtype=torch.float64)
    z0 = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    kw = dict(method="rk4", tau=2.0, num_steps=40)
    for order in (1, 2):
        g_adj = decoder_gradient(dec, x, z0, "bce", "adjoint", order=order, **kw)
        g_bp = decoder_gradient(dec, x, z0, "bce", "backprop", order=order, **kw)
        # the continuous adjoint solved by rk4 on the same grid differs from the discrete gradient by
        # the O(h^4) discretisation error: relative error below 1e-6 here
        assert torch.linalg.norm(g_adj - g_bp) / torch.linalg.norm(g_bp) < 1e-6
        assert cosine_similarity(g_adj, g_bp) > 1 - 1e-10


def test_approximate_gradient_is_exact_at_a_stationary_point():
    # envelope theorem: if grad_z l(z(tau)) = 0 the term through dz(tau)/dtheta vanishes
    dec, x, A, b, z_star = linear_problem()
    kw = dict(method="rk4", tau=1.0, num_steps=5)
    g_exact = decoder_gradient(dec, x, z_star, "mse", "backprop", **kw)
    g_approx = decoder_gradient(dec, x, z_star, "mse", "approx", **kw)
    torch.testing.assert_close(g_approx, g_exact, atol=1e-10, rtol=1e-8)
    # away from the stationary point the two differ
    z_far = z_star + 1.0
    g_exact = decoder_gradient(dec, x, z_far, "mse", "backprop", **kw)
    g_approx = decoder_gradient(dec, x, z_far, "mse", "approx", **kw)
    assert cosine_similarity(g_exact, g_approx) < 0.999


def test_loss_and_grad_matches_autograd_per_sample():
    torch.manual_seed(0)
    dec = make_decoder(2, 5, (6,))
    x, z = torch.rand(3, 5), torch.randn(3, 2)
    values, grad = loss_and_grad(dec, x, z, "bce")
    for i in range(3):
        zi = z[i:i + 1].clone().requires_grad_(True)
        li = reconstruction_loss(dec(zi), x[i:i + 1], "bce").sum()
        (gi,) = torch.autograd.grad(li, zi)
        torch.testing.assert_close(grad[i], gi[0])
        torch.testing.assert_close(values[i], li.detach())
    custom = lambda x_hat, x: (x_hat - x).abs().sum(1)  # noqa: E731
    values, _ = loss_and_grad(dec, x, z, custom)
    torch.testing.assert_close(values, (dec(z) - x).abs().sum(1).detach())


def test_encode_is_deterministic_and_decreases_loss():
    torch.manual_seed(0)
    dec = make_decoder(4, 12, (16,))
    x = torch.rand(5, 12)
    z1, i1 = encode(dec, x, generator=torch.Generator().manual_seed(3), max_evals=30)
    z2, i2 = encode(dec, x, generator=torch.Generator().manual_seed(3), max_evals=30)
    torch.testing.assert_close(z1, z2)
    assert i1["loss"][-1] < i1["loss"][0]
    assert latent_dim_of(dec) == 4


def test_training_steps_run_with_fit_and_learn():
    medtut.seed_everything(0)
    x = torch.rand(40, 12).round()
    data = [x[i:i + 5] for i in range(0, 40, 5)]
    dec = make_decoder(3, 12, (16,))
    gen = torch.Generator().manual_seed(0)
    step = make_gfe_step(dec, "bce", generator=gen, max_evals=20)
    opt = torch.optim.RMSprop(dec.parameters(), lr=3e-3)
    hist = fit(step, opt, data=data, num_epochs=4, progress=False)
    assert {"loss", "nfe"} <= set(hist.keys()) and len(hist["loss"]) == 32
    assert hist["loss"][-8:].mean() < hist["loss"][:8].mean()
    enc, dec2 = make_encoder(12, 3, (16,)), make_decoder(3, 12, (16,))
    opt = torch.optim.RMSprop([*enc.parameters(), *dec2.parameters()], lr=3e-3)
    hist = fit(make_ae_step(enc, dec2), opt, data=data, num_epochs=4, progress=False)
    assert hist["loss"][-8:].mean() < hist["loss"][:8].mean()
    # the adjoint training step also runs
    step = make_gfe_step(dec, "bce", "adjoint", generator=gen, method="rk4", tau=5.0, num_steps=5)
    opt = torch.optim.RMSprop(dec.parameters(), lr=3e-3)
    fit(step, opt, data=data, num_steps=2, progress=False)


def test_data_efficiency_curve_shapes_and_determinism():
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.rand(30, 8, generator=g), torch.rand(10, 8, generator=g)
    kw = dict(latent_dim=2, hidden=(6,), seed=1, train_flow={"max_evals": 5}, test_flow={"max_evals": 5},
              progress=False)
    models, r1 = data_efficiency_curve("GFE", xtr, xte, [10, 30], **kw)
    _, r2 = data_efficiency_curve("GFE", xtr, xte, [10, 30], **kw)
    c1, c2 = r1.curves, r2.curves
    assert c1["GFE"].shape == (2,) and set(models) == {"decoder"} and r1.seen == (10, 30)
    assert r1.wall_time_s == r1.history.wall_time_s > 0
    np.testing.assert_array_equal(c1["GFE"], c2["GFE"])
    models, r3 = data_efficiency_curve("AE", xtr, xte, [10, 30], **kw)
    c3 = r3.curves
    assert set(c3) == {"AE", "AE + refinement"} and set(models) == {"decoder", "encoder"}
    assert np.all(c3["AE + refinement"] <= c3["AE"] + 1e-7)  # refinement starts at E(x) and only descends


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=torch.rand(2, 1, 8)), r"\(B, D\)"),
    (dict(x=torch.full((2, 8), float("nan"))), "NaN"),
    (dict(x=torch.rand(2, 8) * 3), r"in \[0, 1\]"),
    (dict(x=torch.randint(0, 2, (2, 8))), "floating"),
    (dict(z0=torch.rand(3, 2)), r"z0 must have shape \(2, 2\)"),
    (dict(z0="ones"), "z0 must be"),
    (dict(loss="l1"), "loss must be"),
    (dict(order=3), "order must be"),
    (dict(order=2), "first-order flow"),
    (dict(x=torch.rand(2, 9)), "decoder maps"),
    (dict(method="rk4", max_evals=3), "belong to method='amd'"),
])
def test_bad_input_raises_clear_value_error(kwargs, match):
    dec = make_decoder(2, 8, (4,))
    args = dict(x=torch.rand(2, 8), loss="bce")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        encode(dec, **args)


def test_bad_training_options_raise():
    dec = make_decoder(2, 8, (4,))
    x = torch.rand(2, 8)
    with pytest.raises(ValueError, match="gradient must be"):
        flow_loss(dec, x, gradient="exact")
    with pytest.raises(ValueError, match="needs a torchdiffeq method"):
        flow_loss(dec, x, gradient="adjoint", method="amd")
    with pytest.raises(ValueError, match="method must be 'GFE' or 'AE'"):
        data_efficiency_curve("VAE", x, x, [2], latent_dim=2, hidden=(4,))
    with pytest.raises(ValueError, match="BCE loss needs a decoder"):
        encode(make_decoder(2, 8, (4,), output="linear"), x, "bce")
