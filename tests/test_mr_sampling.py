"""Tests for medtut.mr_sampling (chapter 10): MR operators, VAE, latent posterior, MALA and diagnostics."""
import math

import numpy as np
import pytest
import torch

import medtut
from medtut import mr_sampling as mr


def _rand_complex(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex64, generator=g)


# --- MR physics -----------------------------------------------------------------------------------------

def test_fft2c_is_orthonormal_and_inverted_by_ifft2c():
    x = _rand_complex(3, 16, 12)
    k = mr.fft2c(x)
    assert torch.allclose(torch.linalg.vector_norm(k), torch.linalg.vector_norm(x), rtol=1e-5)  # Parseval
    assert torch.allclose(mr.ifft2c(k), x, atol=1e-5)
    # adjoint: <F x, v> = <x, F^H v>
    v = _rand_complex(3, 16, 12, seed=1)
    assert torch.allclose((k.conj() * v).sum(), (x.conj() * mr.ifft2c(v)).sum(), rtol=1e-4)


def test_fft2c_is_centred_and_matches_monai():
    from monai.networks.blocks.fft_utils_t import fftn_centered_t
    x = torch.ones(8, 8, dtype=torch.complex64)
    k = mr.fft2c(x)
    assert torch.isclose(k[4, 4].abs(), torch.tensor(8.0))  # DC at (H//2, W//2), value sum/sqrt(N)
    assert k.abs().sum() == pytest.approx(8.0, rel=1e-5)
    x = _rand_complex(2, 10, 8)
    monai_k = torch.view_as_complex(fftn_centered_t(torch.view_as_real(x), spatial_dims=2).contiguous())
    assert torch.allclose(mr.fft2c(x), monai_k, atol=1e-5)


@pytest.mark.parametrize("R", [2, 3, 4, 5])
def test_variable_density_mask_has_requested_acceleration_and_centre(R):
    mask = mr.cartesian_mask((32, 48), R, center_lines=6, seed=R)
    assert mask.shape == (32, 48) and mask.dtype == torch.bool
    cols = mask[0]
    assert torch.equal(mask, cols.expand(32, 48))  # whole columns
    assert int(cols.sum()) == round(48 / R)
    assert mr.acceleration_of(mask) == pytest.approx(48 / round(48 / R))
    assert cols[48 // 2 - 3: 48 // 2 + 3].all()  # the 6 centre lines
    # variable density: the central half holds more sampled lines than the outer half
    inner = cols[12:36].sum()
    assert inner > cols.sum() - inner


def test_masks_are_seeded_and_monai_kinds_keep_the_centre():
    assert torch.equal(mr.cartesian_mask((32, 32), 3, seed=5), mr.cartesian_mask((32, 32), 3, seed=5))
    for kind in ("random", "equispaced"):
        m = mr.cartesian_mask((32, 64), 4, center_lines=8, kind=kind, seed=0)
        assert m[0, 28:36].all()
        assert 2.5 < mr.acceleration_of(m) < 6.5


def test_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="acceleration"):
        mr.cartesian_mask((32, 32), 0.5)
    with pytest.raises(ValueError, match="center_lines"):
        mr.cartesian_mask((32, 32), 4, center_lines=20)
    with pytest.raises(ValueError, match="kind"):
        mr.cartesian_mask((32, 32), 4, kind="radial")


def test_coil_sensitivities_are_normalised():
    s = mr.coil_sensitivities(4, (16, 16))
    assert s.shape == (4, 16, 16) and s.is_complex()
    assert torch.allclose((s.abs() ** 2).sum(0), torch.ones(16, 16), atol=1e-5)


@pytest.mark.parametrize("n_coils", [None, 4])
def test_adjoint_dot_product(n_coils):
    """<E x, y> = <x, E^H y> for random x, y (the classic adjoint test)."""
    sens = None if n_coils is None else mr.coil_sensitivities(n_coils, (16, 16))
    mask = mr.cartesian_mask((16, 16), 3, seed=1)
    x = _rand_complex(2, 16, 16, seed=2)
    y = _rand_complex(2, n_coils or 1, 16, 16, seed=3)
    lhs = (mr.forward_op(x, mask, sens).conj() * y).sum()
    rhs = (x.conj() * mr.adjoint_op(y, mask, sens)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_fully_sampled_multicoil_is_lossless():
    sens = mr.coil_sensitivities(4, (16, 16))
    full = torch.ones(16, 16, dtype=torch.bool)
    x = _rand_complex(16, 16, seed=4)
    assert torch.allclose(mr.zero_filled(mr.forward_op(x, full, sens), full, sens), x, atol=1e-5)


def test_bad_inputs_raise_value_error():
    mask = mr.cartesian_mask((16, 16), 2)
    with pytest.raises(ValueError, match="complex"):
        mr.forward_op(torch.randn(16, 16), mask)  # real input where complex is required
    with pytest.raises(ValueError, match="mask must have the image's shape"):
        mr.forward_op(_rand_complex(16, 16), mr.cartesian_mask((16, 12), 2))
    with pytest.raises(ValueError, match="complex"):
        mr.fft2c(torch.randn(4, 4))
    with pytest.raises(ValueError, match="mask"):
        mr.adjoint_op(_rand_complex(1, 16, 16), torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="coil"):
        mr.adjoint_op(_rand_complex(3, 16, 16), mask, mr.coil_sensitivities(4, (16, 16)))


def test_noise_has_requested_std_and_respects_the_mask():
    mask = mr.cartesian_mask((64, 64), 2, seed=0)
    k = torch.zeros(1, 64, 64, dtype=torch.complex64)
    noisy = mr.add_complex_noise(k, 0.1, mask, generator=torch.Generator().manual_seed(0))
    vals = noisy[0][mask]
    assert vals.real.std().item() == pytest.approx(0.1, rel=0.05)
    assert vals.imag.std().item() == pytest.approx(0.1, rel=0.05)
    assert (noisy[0][~mask] == 0).all()


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    Q = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    A = Q @ Q.transpose(1, 2) + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = mr.conjugate_gradient(lambda v: (A @ v[..., None])[..., 0], b, n_iters=50, tol=1e-12)
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-8)


# --- likelihood and data consistency --------------------------------------------------------------------

def test_cg_likelihood_equals_closed_form_for_one_coil():
    mask = mr.cartesian_mask((16, 16), 3, seed=2)
    y = mr.forward_op(_rand_complex(16, 16, seed=5), mask)[:1].reshape(1, 16, 16)
    mu = torch.randn(3, 16, 16, requires_grad=True)
    kw = dict(noise_std=0.05, decoder_std=0.14)
    closed = mr.log_likelihood(mu, y, mask, method="closed_form", **kw)
    g_closed, = torch.autograd.grad(closed.sum(), mu)
    cg = mr.log_likelihood(mu, y, mask, method="cg", cg_iters=50, **kw)
    g_cg, = torch.autograd.grad(cg.sum(), mu)
    assert torch.allclose(closed, cg, rtol=1e-4)
    assert torch.allclose(g_closed, g_cg, rtol=1e-3, atol=1e-3)


def test_multicoil_likelihood_matches_dense_gaussian():
    """log p(y|z) from CG equals the explicit Gaussian quadratic form on the sampled entries."""
    hw = (8, 8)
    sens = mr.coil_sensitivities(2, hw).to(torch.complex128)
    mask = mr.cartesian_mask(hw, 2, center_lines=2, seed=0)
    sn, sx = 0.1, 0.3
    # dense E on the sampled entries
    basis = torch.eye(64, dtype=torch.complex128).reshape(64, *hw)
    E = mr.forward_op(basis, mask, sens)[:, :, mask].reshape(64, -1).T  # (n_meas, 64)
    y = mr.forward_op(_rand_complex(*hw, seed=6).to(torch.complex128), mask, sens)
    mu = torch.randn(1, *hw, dtype=torch.float64)
    r = y[:, mask].reshape(-1) - E @ mu.reshape(-1).to(torch.complex128)
    A = sn ** 2 * torch.eye(E.shape[0], dtype=torch.complex128) + sx ** 2 * E @ E.conj().T
    expected = -0.5 * (r.conj() @ torch.linalg.solve(A, r)).real
    got = mr.log_likelihood(mu, y, mask, noise_std=sn, decoder_std=sx, sens=sens, cg_iters=200)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def _dense_problem(hw, n_coils, noise_std):
    """A tiny undersampled problem and its dense forward matrix E (measurements × pixels), for brute force."""
    sens = None if n_coils is None else mr.coil_sensitivities(n_coils, hw).to(torch.complex128)
    mask = mr.cartesian_mask(hw, 2, center_lines=2, seed=1)
    n = hw[0] * hw[1]
    basis = torch.eye(n, dtype=torch.complex128).reshape(n, *hw)
    E = mr.forward_op(basis, mask, sens)[:, :, mask].reshape(n, -1).T
    y = mr.add_complex_noise(mr.forward_op(_rand_complex(*hw, seed=7).to(torch.complex128), mask, sens),
                             noise_std, mask, torch.Generator().manual_seed(0))
    return sens, mask, E, y


@pytest.mark.parametrize("n_coils", [None, 3])
def test_data_consistent_image_is_the_gaussian_posterior_mean(n_coils):
    hw = (8, 8)
    sn, sx = 0.05, 0.2
    sens, mask, E, y = _dense_problem(hw, n_coils, sn)
    mu = torch.randn(1, *hw, dtype=torch.float64)
    P = torch.eye(64, dtype=torch.complex128) / sx ** 2 + E.conj().T @ E / sn ** 2
    b = mu.reshape(-1).to(torch.complex128) / sx ** 2 + E.conj().T @ y[:, mask].reshape(-1) / sn ** 2
    expected = torch.linalg.solve(P, b).reshape(hw)
    got = mr.data_consistent_image(mu, y, mask, noise_std=sn, decoder_std=sx, sens=sens, cg_iters=300)[0]
    assert torch.allclose(got, expected, atol=1e-6)


def test_metrics():
    x = torch.rand(8, 8) + 0.5
    assert mr.rmse_percent(x, x) == 0.0
    assert mr.rmse_percent(1.1 * x, x) == pytest.approx(10.0, rel=1e-5)
    mask = mr.cartesian_mask((8, 8), 2, center_lines=2)
    y = mr.forward_op(x.to(torch.complex64), mask)
    assert mr.data_consistency_error(x, y, mask) < 1e-6
    samples = torch.stack([x - 1, x + 1])
    assert mr.interval_coverage(samples, x) == 1.0
    assert mr.interval_coverage(samples, x + 5) == 0.0
    with pytest.raises(ValueError, match="image and reference must have the same shape"):
        mr.rmse_percent(x, x[:4])


# --- VAE ------------------------------------------------------------------------------------------------

def test_vae_shapes_loss_and_training_reduce_the_loss():
    medtut.seed_everything(0)
    from medtut.data.brain_phantoms import make_head_phantoms
    images = make_head_phantoms(64, 16, seed=0)
    vae, result = mr.train_vae(images, num_steps=60, batch_size=16, lr=3e-3, latent_channels=2, n_down=2,
                               width=8, progress=False, seed=0)
    hist = result.history
    assert vae.latent_shape == (2, 4, 4) and result.wall_time_s == hist.wall_time_s > 0
    again, _ = mr.train_vae(images, num_steps=60, batch_size=16, lr=3e-3, latent_channels=2, n_down=2,
                            width=8, progress=False, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), again.state_dict().values()))
    assert hist["loss"][-10:].mean() < hist["loss"][:10].mean()
    x_mean, zm, zl = vae(images[:3])
    assert x_mean.shape == (3, 1, 16, 16) and zm.shape == (3, 2, 4, 4)
    with pytest.raises(ValueError, match="x must be"):
        vae.encode(torch.zeros(2, 1, 12, 12))


def test_negative_elbo_matches_hand_computation():
    x = torch.zeros(1, 1, 2, 2)
    x_mean = torch.full((1, 1, 2, 2), 0.1)
    zm = torch.ones(1, 1, 1, 1)
    zl = torch.zeros(1, 1, 1, 1)
    out = mr.negative_elbo(x, x_mean, zm, zl, decoder_precision=50.0)
    recon = 25 * 0.04 - 2 * math.log(50 / (2 * math.pi))
    assert out["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert out["kl"].item() == pytest.approx(0.5, rel=1e-6)


# --- MALA and diagnostics -------------------------------------------------------------------------------

def test_mala_recovers_a_correlated_2d_gaussian():
    """Mean within 0.05 and covariance entries within 10 % (of the largest variance) of the truth."""
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=torch.float64)
    prec = torch.linalg.inv(cov)

    def log_prob(z):
        d = z - mean
        return -0.5 * ((d @ prec) * d).sum(1)

    z0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    res = mr.mala(log_prob, z0, 3000, step_size=0.5, burn_in=600, thin=2,
               generator=torch.Generator().manual_seed(1))
    assert res.samples.shape == (6, 1200, 2)
    s = res.samples.reshape(-1, 2)
    assert torch.allclose(s.mean(0), mean, atol=0.05, rtol=0)
    assert torch.allclose(torch.cov(s.T), cov, atol=0.1 * float(cov.diag().max()), rtol=0)
    assert 0.4 < res.acceptance_rate < 0.75
    assert res.summary()["max R-hat"] < 1.05
    assert res.summary()["min ESS"] > 300


def test_mala_on_the_linear_gaussian_toy_matches_the_analytic_posterior():
    """Mean within 4 Monte-Carlo standard errors (sqrt(var / ESS)); covariance within 20 % of its scale."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, generator=g, dtype=torch.float64)
    m, C = mr.gaussian_linear_posterior(A, y, 0.7)

    def log_prob(z):
        return -0.5 * ((z @ A.T - y) ** 2).sum(1) / 0.49 + mr.latent_log_prior(z)

    res = mr.mala(log_prob, torch.zeros(8, 3, dtype=torch.float64), 3000, step_size=0.1, burn_in=500,
                  generator=torch.Generator().manual_seed(4))
    s = res.samples.reshape(-1, 3)
    mc_se = torch.sqrt(torch.diag(C) / torch.as_tensor(res.ess))
    assert (torch.abs(s.mean(0) - m) < 4 * mc_se).all()
    assert torch.allclose(torch.cov(s.T), C, atol=0.2 * float(C.diag().max()))


def test_mala_accepts_everything_in_the_zero_step_limit():
    """Detailed-balance sanity: as ε → 0 the proposal and its reverse coincide, so α → 1."""
    def log_prob(z):
        return -0.5 * (z ** 2).sum(1) - 0.1 * (z ** 4).sum(1)

    res = mr.mala(log_prob, torch.randn(4, 3, dtype=torch.float64), 200, step_size=1e-10, burn_in=0, adapt=False,
                  generator=torch.Generator().manual_seed(0))
    assert res.acceptance_rate == 1.0
    assert res.step_size == pytest.approx(1e-10)


def test_mala_log_accept_ratio_is_zero_for_an_exact_gaussian_step_pair():
    """For π = N(0, I) the MH ratio of a move and its reverse are exact negatives (reversibility)."""
    z, z2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    lp = lambda v: -0.5 * (v ** 2).sum(1)  # noqa: E731
    a = mr.mala_log_accept_ratio(z, lp(z), -z, z2, lp(z2), -z2, 0.3)
    b = mr.mala_log_accept_ratio(z2, lp(z2), -z2, z, lp(z), -z, 0.3)
    assert torch.allclose(a, -b)


def test_mala_is_deterministic_and_validates():
    lp = lambda v: -0.5 * (v ** 2).sum(1)  # noqa: E731
    z0 = torch.zeros(2, 2)
    a = mr.mala(lp, z0, 50, generator=torch.Generator().manual_seed(0)).samples
    b = mr.mala(lp, z0, 50, generator=torch.Generator().manual_seed(0)).samples
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="burn_in"):
        mr.mala(lp, z0, 10, burn_in=10)
    with pytest.raises(ValueError, match="step_size"):
        mr.mala(lp, z0, 10, step_size=0.0)
    with pytest.raises(ValueError, match="z0"):
        mr.mala(lp, torch.zeros(3), 10)
    with pytest.raises(ValueError, match=r"\(num_chains,\)"):
        mr.mala(lambda v: v.sum(), z0, 10)


def test_ess_and_rhat_on_known_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000, 3))
    ess = mr.effective_sample_size(iid)
    assert ess.shape == (3,) and np.all((ess > 3000) & (ess < 5000))
    assert np.all(mr.split_rhat(iid) < 1.01)
    # AR(1) with phi = 0.9: ESS ≈ N (1 - phi) / (1 + phi) = 16000 / 19 ≈ 842 (4 chains x 4000)
    x = np.zeros((4, 4000))
    for t in range(1, 4000):
        x[:, t] = 0.9 * x[:, t - 1] + rng.normal(size=4)
    assert 650 < mr.effective_sample_size(x[:, :, None])[0] < 1050
    # chains stuck in different places are flagged
    shifted = iid + np.arange(4)[:, None, None]
    assert np.all(mr.split_rhat(shifted) > 1.5)


# --- the end-to-end pipeline ----------------------------------------------------------------------------

def test_sample_reconstructions_end_to_end_on_a_tiny_vae():
    medtut.seed_everything(0)
    from medtut.data.brain_phantoms import make_head_phantoms
    images = make_head_phantoms(64, 16, seed=0)
    vae, _ = mr.train_vae(images, num_steps=40, batch_size=16, latent_channels=2, n_down=2, width=8,
                          progress=False)
    truth = make_head_phantoms(1, 16, seed=9)[0, 0]
    mask = mr.cartesian_mask((16, 16), 4, center_lines=2, seed=0)
    y = mr.add_complex_noise(mr.forward_op(truth.to(torch.complex64), mask), 0.01, mask,
                             torch.Generator().manual_seed(0))
    rec = mr.sample_reconstructions(y, mask, vae, noise_std=0.01, num_chains=2, num_steps=60, burn_in=20, thin=2)
    assert rec.samples.shape == (40, 16, 16)
    assert rec.mean.shape == rec.std.shape == (16, 16)
    assert (rec.std >= 0).all()
    assert 0 <= rec.latent.acceptance_rate <= 1
    # sampled k-space is honoured to about the noise level
    assert mr.data_consistency_error(rec.complex_samples[:5], y, mask) < 0.05
    # the caller's requires_grad flags survive sampling: a frozen decoder stays frozen, the rest trainable
    frozen = {name for name, _ in vae.named_parameters() if name.startswith("decoder")}
    assert frozen and len(frozen) < len(list(vae.parameters()))
    for name, p in vae.named_parameters():
        p.requires_grad_(name not in frozen)
    again = mr.sample_reconstructions(y, mask, vae, noise_std=0.01, num_chains=2, num_steps=60, burn_in=20, thin=2)
    assert torch.equal(rec.samples, again.samples)
    assert {name for name, p in vae.named_parameters() if not p.requires_grad} == frozen
    with pytest.raises(ValueError, match="complex"):
        mr.sample_reconstructions(y.real, mask, vae, noise_std=0.01)
    with pytest.raises(ValueError, match="mask"):
        mr.sample_reconstructions(y, mask[:8], vae, noise_std=0.01)
    with pytest.raises(ValueError, match="num_chains must be an int >= 1; got 0"):
        mr.sample_reconstructions(y, mask, vae, noise_std=0.01, num_chains=0)
    with pytest.raises(ValueError, match=r"unknown sampler option\(s\) \['chains'\]"):
        mr.sample_reconstructions(y, mask, vae, noise_std=0.01, chains=2)
    # the same run through an explicit SamplerConfig
    cfg = mr.SamplerConfig(num_chains=2, num_steps=60, burn_in=20, thin=2)
    assert torch.equal(mr.sample_reconstructions(y, mask, vae, cfg, noise_std=0.01).samples, rec.samples)


def test_variable_density_masks_with_one_seed_are_nested():
    masks = [mr.cartesian_mask((32, 32), R, seed=7) for R in (2, 3, 4, 5)]
    for finer, coarser in zip(masks, masks[1:]):
        assert bool((coarser <= finer).all())


def test_preconditioned_mala_samples_an_anisotropic_gaussian():
    """With D = the true variances, one step size suits coordinates whose scales differ 100-fold."""
    scales = torch.tensor([0.01, 1.0], dtype=torch.float64)

    def log_prob(z):
        return -0.5 * ((z / scales) ** 2).sum(1)

    res = mr.mala(log_prob, torch.zeros(4, 2, dtype=torch.float64), 2000, step_size=0.5, burn_in=500,
                  precond=scales ** 2, generator=torch.Generator().manual_seed(0))
    s = res.samples.reshape(-1, 2)
    assert torch.allclose(s.std(0), scales, rtol=0.1)
    assert res.summary()["min ESS"] > 500
    with pytest.raises(ValueError, match="precond"):
        mr.mala(log_prob, torch.zeros(4, 2, dtype=torch.float64), 10, precond=torch.tensor([1.0, -1.0]))


def test_restart_below_moves_a_stuck_chain_during_burn_in_only():
    """A chain started 40 sd away is moved to another chain's state half-way through burn-in."""
    def log_prob(z):
        return -0.5 * (z ** 2).sum(1)

    z0 = torch.zeros(4, 2, dtype=torch.float64)
    z0[2] = 40.0
    res = mr.mala(log_prob, z0, 400, step_size=1e-4, burn_in=20, adapt=False, restart_below=30.0,
                  generator=torch.Generator().manual_seed(0))
    assert res.n_restarted == 1
    assert float(res.samples.abs().max()) < 10.0
    plain = mr.mala(log_prob, z0, 400, step_size=1e-4, burn_in=20, adapt=False,
                    generator=torch.Generator().manual_seed(0))
    assert plain.n_restarted == 0 and float(plain.samples.abs().max()) > 30.0
    with pytest.raises(ValueError, match="restart_below"):
        mr.mala(log_prob, z0, 10, restart_below=-1.0)


# --- x | y, z: the whole Gaussian posterior of the image -------------------------------------------------

@pytest.mark.parametrize("n_coils", [None, 3])
def test_sample_image_posterior_matches_the_dense_gaussian(n_coils):
    """Draws of x | y, z have the mean of data_consistent_image and the covariance P⁻¹ per real/imaginary part,
    P = σ_x⁻² I + σ_n⁻² EᴴE (dense, brute force), and are circular (pseudo-covariance 0)."""
    hw = (4, 4)
    sn, sx = 0.3, 0.5
    sens, mask, E, y = _dense_problem(hw, n_coils, sn)
    P = torch.eye(16, dtype=torch.complex128) / sx ** 2 + E.conj().T @ E / sn ** 2
    cov = torch.linalg.inv(P)
    n = 40000
    mu = torch.randn(1, *hw, dtype=torch.float64).expand(n, *hw).to(torch.complex128)
    draws = mr.sample_image_posterior(mu, y, mask, noise_std=sn, decoder_std=sx, sens=sens,
                                      generator=torch.Generator().manual_seed(1), cg_iters=100).reshape(n, 16)
    mean = mr.data_consistent_image(mu[:1], y, mask, noise_std=sn, decoder_std=sx, sens=sens, cg_iters=100).reshape(16)
    d = draws - mean
    scale = float(cov.diagonal().real.max())
    assert (d.mean(0).abs() < 5 * math.sqrt(2 * scale / n)).all()
    emp_cov = d.T @ d.conj() / (2 * n)          # E[(x - m)(x - m)^H] / 2 = P⁻¹
    emp_pseudo = d.T @ d / n                    # E[(x - m)(x - m)^T] = 0 for circular noise
    assert (emp_cov - cov).abs().max() < 0.05 * scale
    assert emp_pseudo.abs().max() < 0.05 * scale


def test_single_coil_posterior_variance_is_the_prior_variance_off_the_mask():
    """One coil: in k-space the per-part variance is σ_x² on unmeasured entries and σ_x²σ_n²/(σ_x²+σ_n²) on measured."""
    mask = mr.cartesian_mask((8, 8), 4, center_lines=2, seed=0)
    sn, sx = 0.1, 0.4
    y = mr.forward_op(_rand_complex(8, 8, seed=2), mask)
    mu = torch.zeros(20000, 8, 8)
    k = mr.fft2c(mr.sample_image_posterior(mu, y, mask, noise_std=sn, decoder_std=sx,
                                           generator=torch.Generator().manual_seed(0)))
    var = k.real.var(0)
    assert torch.allclose(var[~mask], torch.full_like(var[~mask], sx ** 2), rtol=0.06)
    assert torch.allclose(var[mask], torch.full_like(var[mask], sx ** 2 * sn ** 2 / (sx ** 2 + sn ** 2)), rtol=0.06)


# --- the TV baseline ------------------------------------------------------------------------------------

def test_tv_reconstruction_limits_and_optimality():
    from medtut.data.brain_phantoms import make_head_phantoms
    truth = make_head_phantoms(1, 16, seed=3)[0, 0]
    mask = mr.cartesian_mask((16, 16), 3, center_lines=2, seed=0)
    y = mr.add_complex_noise(mr.forward_op(truth.to(torch.complex128), mask), 0.01, mask,
                             torch.Generator().manual_seed(0))
    # λ = 0: the zero-filled image already minimises the data term, and PDHG starts there and stays
    assert torch.allclose(mr.tv_reconstruction(y, mask, lam=0.0, num_iters=50), mr.zero_filled(y, mask), atol=1e-10)
    # huge λ: a constant image, the one whose DC matches the measured DC (the zero-filled image's mean)
    flat = mr.tv_reconstruction(y, mask, lam=1e3, num_iters=2000)
    assert torch.allclose(flat, mr.zero_filled(y, mask).mean().expand(16, 16), atol=1e-3)
    # a moderate λ: converged (300 iterations within 0.01 % of 3000) and no random perturbation does better
    lam = 0.01
    x = mr.tv_reconstruction(y, mask, lam=lam)
    best = mr.tv_objective(mr.tv_reconstruction(y, mask, lam=lam, num_iters=3000), y, mask, lam=lam)
    f = mr.tv_objective(x, y, mask, lam=lam)
    assert best <= f <= best * (1 + 1e-4)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        dx = 1e-3 * torch.randn(16, 16, dtype=torch.complex128, generator=g)
        assert mr.tv_objective(x + dx, y, mask, lam=lam) > best
    # TV beats zero-filling on a piecewise-constant phantom
    assert mr.rmse_percent(x.abs(), truth) < mr.rmse_percent(mr.zero_filled(y, mask).abs(), truth)


def test_tv_gradient_adjoint():
    from medtut.mr_sampling import _grad2d, _grad2d_adjoint
    x, g = _rand_complex(5, 7, seed=1), _rand_complex(2, 5, 7, seed=2)
    assert torch.allclose((_grad2d(x).conj() * g).sum(), (x.conj() * _grad2d_adjoint(g)).sum(), atol=1e-4)


def test_sample_reconstructions_full_posterior_is_wider_and_leaves_the_chain_alone():
    from medtut.data.brain_phantoms import make_head_phantoms
    images = make_head_phantoms(32, 16, seed=0)
    vae, _ = mr.train_vae(images, num_steps=20, batch_size=8, latent_channels=2, n_down=2, width=4, progress=False)
    mask = mr.cartesian_mask((16, 16), 4, center_lines=2, seed=0)
    y = mr.forward_op(images[0, 0].to(torch.complex64), mask)
    kw = dict(noise_std=0.01, num_chains=2, num_steps=30, burn_in=10, thin=2, seed=3)
    rec = mr.sample_reconstructions(y, mask, vae, **kw)
    plain = mr.sample_reconstructions(y, mask, vae, full_posterior=False, **kw)
    assert plain.full_samples is None and torch.equal(plain.samples, rec.samples)
    assert rec.full_samples.shape == rec.samples.shape
    assert rec.full_complex_samples.is_complex() and torch.equal(rec.full_complex_samples.abs(), rec.full_samples)
    assert float(rec.full_samples.std(0).mean()) > 2 * float(rec.std.mean())
