"""Tests of chapter 9's method: the shape model, Rodrigues, covariance propagation, the NLL, coverage,
slice dropout and a tiny training run."""
import copy
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import multivariate_normal

from medtut import shape_recon as sr
from medtut.data.cup_shapes import make_cup_dataset


@pytest.fixture(scope="module")
def shapes():
    return make_cup_dataset(40, seed=3, size=16, spacing=6.0).canonical


@pytest.fixture(scope="module")
def pca(shapes):
    return sr.PCAShapeModel.fit(shapes, 6)


# ---------------------------------------------------------------- shape model
def test_all_modes_reproduce_the_training_shapes(shapes):
    model = sr.PCAShapeModel.fit(shapes.double(), len(shapes) - 1)
    model = model.double()
    rebuilt = model(model.project(shapes.double()))
    assert torch.allclose(rebuilt, shapes.double(), atol=1e-3)
    assert math.isclose(float(model.explained_variance_ratio.sum()), 1.0, abs_tol=1e-5)


def test_zero_coefficients_give_the_mean_and_modes_have_unit_variance(shapes, pca):
    assert torch.allclose(pca(torch.zeros(2, pca.num_modes)), pca.mean.expand(2, -1, -1))
    assert torch.allclose(pca.mean, shapes.mean(0), atol=1e-4)
    b = pca.project(shapes)
    assert torch.allclose(b.var(0, unbiased=True), torch.ones(pca.num_modes), atol=1e-3)
    assert torch.allclose(b.mean(0), torch.zeros(pca.num_modes), atol=1e-3)
    evr = pca.explained_variance_ratio
    assert (evr[:-1] >= evr[1:]).all() and float(evr.sum()) < 1
    assert pca.truncated(3).num_modes == 3 and torch.equal(pca.truncated(3).modes, pca.modes[:, :3])
    assert not any(p.requires_grad for p in pca.parameters())
    assert {"mean", "modes", "std", "explained_variance_ratio"} <= set(dict(pca.named_buffers()))


def test_shape_model_bad_inputs(shapes, pca):
    with pytest.raises(ValueError, match="shapes"):
        sr.PCAShapeModel.fit(shapes[:, :, :2], 3)
    with pytest.raises(ValueError, match="num_modes"):
        sr.PCAShapeModel.fit(shapes, len(shapes))
    with pytest.raises(ValueError, match="at least 2"):
        sr.PCAShapeModel.fit(shapes[:1], 1)
    bad = shapes.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sr.PCAShapeModel.fit(bad, 3)
    with pytest.raises(ValueError, match="b must"):
        pca(torch.zeros(2, pca.num_modes + 1))
    with pytest.raises(ValueError, match="floating"):
        sr.PCAShapeModel.fit(shapes.long(), 3)


# ---------------------------------------------------------------- rotations and pose
def test_rodrigues_is_a_rotation_and_matches_scipy():
    omega = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = sr.axis_angle_to_matrix(omega)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(1, 2), eye.expand(50, 3, 3), atol=1e-10)
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=torch.float64), atol=1e-10)
    assert np.allclose(R.numpy(), Rotation.from_rotvec(omega.numpy()).as_matrix(), atol=1e-10)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    R0 = sr.axis_angle_to_matrix(zero)
    assert torch.allclose(R0[0], eye)
    R0.sum().backward()
    assert torch.isfinite(zero.grad).all()
    with pytest.raises(ValueError, match="omega"):
        sr.axis_angle_to_matrix(torch.zeros(4, 2))


def test_shape_from_coeffs_poses_the_canonical_shape(pca):
    g = torch.Generator().manual_seed(1)
    b, omega, t = torch.randn(3, pca.num_modes, generator=g), 0.3 * torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g)
    R = sr.axis_angle_to_matrix(omega)
    v = sr.shape_from_coeffs(pca, b, R, t)
    manual = torch.einsum("bij,bvj->bvi", R, pca(b)) + t[:, None]
    assert torch.allclose(v, manual, atol=1e-4)
    assert torch.allclose(sr.shape_from_coeffs(pca, b), pca(b))
    with pytest.raises(ValueError, match="R must"):
        sr.shape_from_coeffs(pca, b, R[:2], t)


# ---------------------------------------------------------------- covariance, Cholesky, NLL
def test_sampled_coefficients_reproduce_the_vertex_covariance(pca):
    pca = copy.deepcopy(pca).double()
    g = torch.Generator().manual_seed(2)
    b_hat = torch.randn(1, pca.num_modes, generator=g, dtype=torch.float64)
    var_b = torch.rand(1, pca.num_modes, generator=g, dtype=torch.float64) + 0.2
    R = sr.axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64))
    noise = torch.tensor([0.7], dtype=torch.float64)
    cov = sr.vertex_covariance(pca, R, var_b, noise, eps=0.05)[0]              # (V, 3, 3)
    n, chunk = 50_000, 10_000                      # in chunks: keeps the test's memory small
    s1 = torch.zeros(pca.num_vertices, 3, dtype=torch.float64)
    s2 = torch.zeros(pca.num_vertices, 3, 3, dtype=torch.float64)
    for _ in range(n // chunk):
        b = b_hat + var_b.sqrt() * torch.randn(chunk, pca.num_modes, generator=g, dtype=torch.float64)
        v = sr.shape_from_coeffs(pca, b, R.expand(chunk, 3, 3), torch.zeros(chunk, 3, dtype=torch.float64))
        v = v + (noise + 0.05).sqrt() * torch.randn(v.shape, generator=g, dtype=torch.float64)
        s1 += v.sum(0)
        s2 += torch.einsum("nvi,nvj->vij", v, v)
    mu = s1 / n
    emp = (s2 - n * mu[:, :, None] * mu[:, None, :]) / (n - 1)
    scale = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1)[:, None, None]
    assert float(((emp - cov).abs() / scale).max()) < 0.05


def test_vertex_covariance_rejects_bad_variances(pca):
    with pytest.raises(ValueError, match="var_b"):
        sr.vertex_covariance(pca, None, -torch.ones(1, pca.num_modes), 0.1)
    with pytest.raises(ValueError, match="noise"):
        sr.vertex_covariance(pca, None, torch.ones(1, pca.num_modes), -1.0)
    with pytest.raises(ValueError, match="eps"):
        sr.vertex_covariance(pca, None, torch.ones(1, pca.num_modes), 0.1, eps=-1)


def _random_spd(n, g, dtype=torch.float64):
    a = torch.randn(n, 3, 3, generator=g, dtype=dtype)
    return a @ a.transpose(-1, -2) + 0.1 * torch.eye(3, dtype=dtype)


def test_cholesky3_matches_lapack_and_rejects_non_pd():
    g = torch.Generator().manual_seed(3)
    cov = _random_spd(200, g)
    assert torch.allclose(sr.cholesky3(cov), torch.linalg.cholesky(cov), atol=1e-10)
    bad = cov[:2].clone()
    bad[1] = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="positive definite"):
        sr.cholesky3(bad)
    with pytest.raises(ValueError, match="positive definite"):
        sr.cholesky3(torch.ones(1, 3, 3, dtype=torch.float64))


def test_vertex_nll_equals_scipy_log_density_up_to_the_constant():
    g = torch.Generator().manual_seed(4)
    cov = _random_spd(12, g).view(2, 6, 3, 3)
    mean = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    x = torch.randn(2, 6, 3, generator=g, dtype=torch.float64) * 2
    nll, maha2 = sr.vertex_nll(x, mean, cov)
    for b in range(2):
        for i in range(6):
            logpdf = multivariate_normal(mean[b, i].numpy(), cov[b, i].numpy()).logpdf(x[b, i].numpy())
            assert math.isclose(float(nll[b, i]), -logpdf - 1.5 * math.log(2 * math.pi), rel_tol=1e-9, abs_tol=1e-9)
            d = (x[b, i] - mean[b, i]).numpy()
            assert math.isclose(float(maha2[b, i]), float(d @ np.linalg.solve(cov[b, i].numpy(), d)), rel_tol=1e-9)


def test_vertex_nll_bad_inputs():
    cov = torch.eye(3).expand(2, 5, 3, 3).clone()
    x = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="same"):
        sr.vertex_nll(x, torch.zeros(2, 4, 3), cov)
    with pytest.raises(ValueError, match="cov must be"):
        sr.vertex_nll(x, x, cov[:, :4])
    cov[0, 0] = -torch.eye(3)
    with pytest.raises(ValueError, match="positive definite"):
        sr.vertex_nll(x, x, cov)


def test_exact_gaussian_samples_have_nominal_coverage():
    g = torch.Generator().manual_seed(5)
    cov = _random_spd(200, g).view(1, 200, 3, 3).expand(100, -1, -1, -1)
    L = torch.linalg.cholesky(cov)
    mean = torch.zeros(100, 200, 3, dtype=torch.float64)
    x = mean + (L @ torch.randn(100, 200, 3, 1, generator=g, dtype=torch.float64))[..., 0]
    _, maha2 = sr.vertex_nll(x, mean, cov)
    cov_frac = sr.coverage(maha2)
    assert abs(cov_frac[0.68] - 0.68) < 0.01 and abs(cov_frac[0.95] - 0.95) < 0.005
    from scipy.stats import chi2
    assert all(math.isclose(q, chi2.ppf(level, 3), abs_tol=1e-4) for level, q in sr.CHI2_3.items())
    # an over-confident model (covariance too small by 4x) under-covers
    _, m_small = sr.vertex_nll(x, mean, cov / 4)
    assert sr.coverage(m_small)[0.95] < 0.6
    with pytest.raises(ValueError, match="levels"):
        sr.coverage(maha2, levels=(1.5,))
    with pytest.raises(ValueError, match="maha2"):
        sr.coverage(-maha2)


def test_sigma_and_ensemble():
    cov = torch.diag(torch.tensor([1.0, 4.0, 7.0])).expand(2, 3, 3, 3)
    assert torch.allclose(sr.vertex_sigma(cov), torch.full((2, 3), 2.0))
    p = sr.Prediction(torch.zeros(2, 3, 3), cov.clone())
    q = sr.Prediction(torch.ones(2, 3, 3), cov.clone())
    e = sr.ensemble([p, q])
    assert torch.allclose(e.mean, torch.full((2, 3, 3), 0.5))
    assert torch.allclose(e.cov, cov + 0.25 * torch.ones(3, 3))
    assert torch.allclose(sr.epistemic_sigma([p, q]), torch.full((2, 3), 0.5))
    assert torch.allclose(sr.ensemble([p, p]).cov, cov)
    with pytest.raises(ValueError, match="two"):
        sr.ensemble([p])


# ---------------------------------------------------------------- slice dropout
def test_slice_dropout_replaces_exactly_one_view():
    x = torch.full((64, 3, 8, 8), 5.0)
    assert torch.equal(sr.slice_dropout(x, 0.0, torch.Generator().manual_seed(0)), x)
    y = sr.slice_dropout(x, 1.0, torch.Generator().manual_seed(0))
    changed = (y != 5.0).flatten(2).all(-1)                      # (B, V) view replaced
    assert torch.equal(changed.sum(1), torch.ones(64, dtype=torch.long))
    assert len(set(changed.float().argmax(1).tolist())) == 3     # all three views get dropped
    filled = y[changed]
    assert abs(float(filled.mean()) - 0.2) < 0.02 and abs(float(filled.std()) - 0.15) < 0.02
    assert torch.equal(y, sr.slice_dropout(x, 1.0, torch.Generator().manual_seed(0)))
    z = sr.slice_dropout(x, 0.3, torch.Generator().manual_seed(1))
    assert 5 <= int((z != 5.0).flatten(1).any(1).sum()) <= 35
    assert torch.equal(x, torch.full((64, 3, 8, 8), 5.0))        # input untouched
    with pytest.raises(ValueError, match="p must"):
        sr.slice_dropout(x, 1.5)
    with pytest.raises(ValueError, match="view must"):
        sr.replace_view(x, 3)


# ---------------------------------------------------------------- network and training
def test_config_validation():
    with pytest.raises(ValueError, match="slice_dropout"):
        sr.Config(slice_dropout=1.0)
    with pytest.raises(ValueError, match="eps"):
        sr.Config(eps=-0.1)
    with pytest.raises(ValueError, match="lr"):
        sr.Config(lr=0)


def test_tiny_training_runs_is_deterministic_and_leaves_global_rng_alone():
    data = make_cup_dataset(48, seed=0, size=16, spacing=6.0)
    pca = sr.PCAShapeModel.fit(data.canonical, 4)
    cfg = sr.Config(num_epochs=2, batch_size=16, width=4, hidden=16, slice_dropout=0.3)
    state = torch.get_rng_state()
    model, result = sr.train(data, pca, cfg, seed=7, device="cpu", progress=False)
    assert torch.equal(state, torch.get_rng_state())
    model2, _ = sr.train(data, pca, cfg, seed=7, device="cpu", progress=False)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert result.num_steps == 6 and result.images_seen == 96 and result.wall_time_s > 0
    assert len(result.history["loss"]) == 6
    pred = sr.predict(model, data.images)
    assert pred.mean.shape == (48, 288, 3) and pred.cov.shape == (48, 288, 3, 3)
    metrics = sr.evaluate(pred, data.vertices)
    assert set(metrics) == {"error_mm", "cov68", "cov95", "sigma_mm", "spearman", "nll"}
    det, _ = sr.train(data, pca, sr.Config(probabilistic=False, num_epochs=1, batch_size=16, width=4, hidden=16),
                      seed=0, device="cpu", progress=False)
    assert sr.predict(det, data.images).cov is None
    canon, _ = sr.train(data, pca, sr.Config(pose=False, num_epochs=1, batch_size=16, width=4, hidden=16),
                        seed=0, device="cpu", progress=False)
    assert sr.predict(canon, data.images).R is None
    with pytest.raises(ValueError, match="x must"):
        model(data.images[:, :2])
    with pytest.raises(ValueError, match="same shape"):
        sr.evaluate(pred, data.vertices[:, :10])


def test_nll_training_reduces_the_loss_gradient_flows_to_variance_heads():
    data = make_cup_dataset(32, seed=1, size=16, spacing=6.0)
    pca = sr.PCAShapeModel.fit(data.canonical, 4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = sr.ShapeRegressor(pca, sr.Config(width=4, hidden=16), image_size=16)
    out = model(data.images[:8])
    loss = sr.loss_terms(out, data.vertices[:8], True)["loss"]
    loss.backward()
    head_grad = model.head.weight.grad
    k = pca.num_modes
    assert head_grad[k:2 * k].abs().sum() > 0 and head_grad[-1].abs().sum() > 0   # log var_b and log noise


def test_cross_validation_over_subjects_runs_on_a_nifti_fixture(tmp_path):
    from test_data_cup_shapes import _write_task02_fixture

    from medtut.data.cup_shapes import load_heart_decathlon

    _write_task02_fixture(tmp_path, n=3)
    subjects = load_heart_decathlon(tmp_path, val_frac=0.0)
    cfg = sr.Config(num_epochs=1, batch_size=8, width=4, hidden=16)
    rows = sr.cross_validate(subjects, cfg, num_modes=4, num_folds=3, num_per_subject=4, device="cpu", progress=False,
                             size=16)
    assert len(rows) == 6 and {r["condition"] for r in rows} == {"complete", "2CH missing"}
    assert all(np.isfinite(r["error_mm"]) and 0 <= r["cov95"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="num_folds"):
        sr.cross_validate(subjects, cfg, num_folds=4)


def test_plot_mesh_colours_faces():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = make_cup_dataset(1, seed=0, size=16, spacing=6.0)
    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    m = sr.plot_mesh(ax, data.vertices[0], data.faces, values=torch.arange(288.0))
    assert m is not None and sr.plot_mesh(ax, data.vertices[0], data.faces) is None
    with pytest.raises(ValueError, match="values"):
        sr.plot_mesh(ax, data.vertices[0], data.faces, values=torch.arange(5.0))
    plt.close(fig)
