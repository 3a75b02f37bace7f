"""Tests of chapter 8's method: Spectral Mixup, band groups, the network, the losses, the metrics, training."""
import numpy as np
import pytest
import torch

from medtut import hsi_sr as hs
from medtut.data.hyperspectral import degrade, downsample, make_scenes, projection_matrix


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- Spectral Mixup -------------------------------------------------------------------------------

def test_mixup_commutes_with_the_degradation():
    """D(y') = x' for the x4 antialiased bicubic D: exact in exact arithmetic; in float64 the two sides
    agree to 1e-12 (float32: 1e-5)."""
    y = _rand(2, 31, 32, 32, seed=1).double()
    x, x_up = degrade(y, 4)
    xm, um, ym, M = hs.spectral_mixup(x, x_up, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(downsample(ym, 4), xm, atol=1e-12, rtol=0)
    assert torch.allclose(degrade(ym, 4)[1], um, atol=1e-12, rtol=0)
    y32 = y.float()
    x32, _ = degrade(y32, 4)
    xm32, ym32, _ = hs.spectral_mixup(x32, y32, M=M)
    assert torch.allclose(downsample(ym32, 4), xm32, atol=1e-5, rtol=0)


def test_mixup_identity_and_normalisation():
    y = _rand(3, 7, 5, 5)
    (same, M) = hs.spectral_mixup(y, M=torch.eye(7))
    assert torch.allclose(M, torch.eye(7)) and torch.allclose(same, y, atol=1e-6)
    _, M = hs.spectral_mixup(y, generator=torch.Generator().manual_seed(3))
    assert M.shape == (7, 7) and (M >= 0).all()
    assert abs(float(M.sum(0).mean()) - 1.0) < 1e-6           # mean column sum 1
    # a given M is normalised the same way: scaling M changes nothing
    a, _ = hs.spectral_mixup(y, M=2.0 * M)
    b, _ = hs.spectral_mixup(y, M=M)
    assert torch.allclose(a, b, atol=1e-6)


def test_mixup_formula_per_pixel_and_shared_matrix():
    y = _rand(2, 5, 3, 4, seed=2)
    y2 = _rand(2, 5, 3, 4, seed=3)
    a, b, M = hs.spectral_mixup(y, y2, generator=torch.Generator().manual_seed(5))
    s = y[1, :, 2, 3]
    assert torch.allclose(a[1, :, 2, 3], 0.5 * (s + s @ M), atol=1e-6)
    assert torch.allclose(b[0, :, 0, 0], 0.5 * (y2[0, :, 0, 0] + y2[0, :, 0, 0] @ M), atol=1e-6)
    # same generator seed, same matrix
    _, M2 = hs.spectral_mixup(y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(M, M2)


def test_mixup_bad_input():
    with pytest.raises(ValueError, match="at least one tensor"):
        hs.spectral_mixup()
    with pytest.raises(ValueError, match="same number of bands"):
        hs.spectral_mixup(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"M must be a \(3, 3\)"):
        hs.spectral_mixup(torch.zeros(1, 3, 2, 2), M=torch.eye(4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        hs.spectral_mixup(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        hs.spectral_mixup(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="positive sum"):
        hs.spectral_mixup(torch.zeros(1, 3, 2, 2), M=torch.zeros(3, 3))


# --- band groups --------------------------------------------------------------------------------------

def test_band_groups_31():
    g = hs.band_groups(31)
    assert [s for s, _ in g] == [0, 6, 12, 18, 23] and all(e - s == 8 for s, e in g) and g[-1][1] == 31
    assert hs.band_groups(8) == [(0, 8)]
    assert [s for s, _ in hs.band_groups(14)] == [0, 6]
    assert [s for s, _ in hs.band_groups(16)] == [0, 6, 8]


def test_merge_of_identical_groups_returns_the_input():
    x = _rand(2, 31, 4, 4)
    g = hs.band_groups(31)
    assert torch.allclose(hs.merge_groups(hs.split_groups(x, g), g, 31), x, atol=1e-7)
    # overlapping bands are averaged
    parts = torch.ones(len(g) * 2, 8, 4, 4)
    parts[2:4] = 3.0                         # group 1 (bands 6..13)
    merged = hs.merge_groups(parts, g, 31)
    assert torch.allclose(merged[:, 6:8], torch.full_like(merged[:, 6:8], 2.0))     # (1 + 3) / 2
    assert torch.allclose(merged[:, 8:12], torch.full_like(merged[:, 8:12], 3.0))


def test_band_groups_bad_input():
    with pytest.raises(ValueError, match="C must be >= size"):
        hs.band_groups(5)
    with pytest.raises(ValueError, match="overlap"):
        hs.band_groups(31, size=8, overlap=8)
    with pytest.raises(ValueError, match="G=5"):
        hs.merge_groups(torch.zeros(7, 8, 2, 2), hs.band_groups(31), 31)


# --- network ------------------------------------------------------------------------------------------

def test_network_shapes_and_rgb_branch():
    cfg = hs.Config(feats=8)
    model = hs.build_model(cfg, seed=0, device="cpu")
    x = _rand(2, 31, 6, 5)
    x_up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic")
    assert model(x, x_up).shape == (2, 31, 24, 20)
    x8 = _rand(3, 8, 4, 4)
    assert model.forward_rgb(x8, _rand(3, 8, 16, 16)).shape == (3, 8, 16, 16)
    # the group sub-network is shared: HSI and RGB paths use the same parameters
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("group_net.") for n in names) and any(n.startswith("rgb_trunk.") for n in names)
    # same seed, same weights
    other = hs.build_model(cfg, seed=0, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    with pytest.raises(ValueError, match="x_up must be"):
        model(x, x)
    with pytest.raises(ValueError, match="31 channels"):
        model(x[:, :30], x_up[:, :30])


def test_rgb_expansion_and_projection():
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(hs.rgb_to_8(grey), torch.full((1, 8, 2, 2), 0.4), atol=1e-6)
    white = torch.ones(1, 31, 2, 2)
    assert torch.allclose(hs.project(white), torch.ones(1, 8, 2, 2), atol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        hs.rgb_to_8(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"P must be \(31, K\)"):
        hs.project(white, P=torch.zeros(30, 8))


# --- losses ---------------------------------------------------------------------------------------------

def test_hybrid_loss_hand_case():
    y = torch.zeros(1, 2, 2, 2)
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, 1] = 1.0                     # band 1 all ones: L1 = 0.5, no spatial gradient, spectral diff 1
    want = 0.5 + 2e-3 * 1.0
    assert abs(float(hs.hybrid_loss(pred, y)) - want) < 1e-7
    pred2 = torch.zeros(1, 1, 2, 2)
    pred2[0, 0, 1, :] = 1.0              # a horizontal edge: d_h = 1 everywhere, d_w = 0
    assert abs(float(hs.hybrid_loss(pred2, torch.zeros(1, 1, 2, 2))) - (0.5 + 1e-3 * 1.0)) < 1e-7
    with pytest.raises(ValueError, match="same shape"):
        hs.hybrid_loss(pred, torch.zeros(1, 2, 2, 3))


def test_semi_supervised_loss_has_gradients_on_both_paths():
    model = hs.build_model(hs.Config(feats=8), seed=0, device="cpu")
    # an untrained network is exactly bicubic on both paths (the two routes agree, L1 = 0): perturb it
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    y = _rand(2, 31, 16, 16)
    x, u = degrade(y, 4)
    loss = hs.semi_supervised_loss(model, x, u)
    loss.backward()
    assert model.hsi_trunk.final.weight.grad.abs().sum() > 0      # super-resolve-then-project path
    assert model.rgb_trunk.final.weight.grad.abs().sum() > 0      # project-then-super-resolve path
    assert torch.as_tensor(projection_matrix()).shape == (31, 8)


# --- metrics ----------------------------------------------------------------------------------------------

def test_metrics_hand_cases():
    x = _rand(31, 8, 8) + 0.1
    assert hs.sam(x, 2 * x) < 1e-5            # scale-invariant
    assert hs.ergas(x, x) == 0.0
    ref = torch.zeros(2, 4, 4, dtype=torch.float64) + 0.5
    pred = ref.clone()
    pred[0] += 0.1                              # band 0: MSE 0.01 -> 20 dB
    pred[1] += 0.01                             # band 1: MSE 1e-4 -> 40 dB
    assert abs(hs.mpsnr(pred, ref) - 30.0) < 1e-6
    # orthogonal spectra: 90 degrees
    a = torch.zeros(2, 1, 1); a[0] = 1
    b = torch.zeros(2, 1, 1); b[1] = 1
    assert abs(hs.sam(a, b) - 90.0) < 1e-9
    # ERGAS by hand: one band, mean 0.5, RMSE 0.1 -> 100/4 * 0.2 = 5
    assert abs(hs.ergas(ref[:1] + 0.1, ref[:1]) - 5.0) < 1e-9


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        hs.sam(torch.ones(3, 2, 2), torch.ones(3, 2, 3))
    with pytest.raises(ValueError, match="zero mean"):
        hs.ergas(torch.ones(2, 2, 2), torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        hs.mpsnr(torch.full((2, 2, 2), float("nan")), torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        hs.sam(torch.ones(2, 2), torch.ones(2, 2))


# --- training -----------------------------------------------------------------------------------------------

def test_train_runs_every_part_and_is_deterministic():
    y = make_scenes(2, "train", size=32, seed=0)
    unl = make_scenes(2, "train", size=32, seed=1)
    rgb = _rand(3, 3, 32, 32)
    cfg = hs.Config(num_steps=4, batch_size=2, crop=16, feats=8, mixup=True, rgb=True, semi=True)
    model, res = hs.train(y, cfg, rgb_images=rgb, unlabelled_y=unl, seed=0, device="cpu", progress=False)
    # 4 iterations: labelled + mixup + RGB each time, semi in the first half (2 iterations)
    assert res.optimizer_steps == 4 * 3 + 2 == hs.optimizer_steps(cfg)
    assert res.images_seen == {"labelled": 8, "mixup": 8, "rgb": 8, "unlabelled": 4}
    assert set(res.history.keys()) >= {"loss", "mixup loss", "rgb loss", "semi loss"}
    assert cfg.name == "baseline + RGB + semi + mixup" and res.wall_time_s > 0
    model2, _ = hs.train(y, cfg, rgb_images=rgb, unlabelled_y=unl, seed=0, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    scores = hs.evaluate(model, y)
    assert set(scores) == {"MPSNR", "SAM", "ERGAS"} and scores["SAM"].shape == (2,)
    assert hs.super_resolve(model, y).shape == y.shape


def test_iterations_for_an_equal_step_budget():
    base = hs.Config()
    assert hs.iterations_for(base, 100) == 100
    assert hs.iterations_for(hs.Config(mixup=True), 100) == 50
    full = hs.Config(mixup=True, rgb=True, semi=True)
    T = hs.iterations_for(full, 100)
    assert abs(hs.optimizer_steps(full, T) - 100) <= 2
    with pytest.raises(ValueError, match="budget"):
        hs.iterations_for(base, 0)


def test_training_beats_bicubic_on_its_training_scenes():
    y = make_scenes(2, "train", size=32, seed=0)
    cfg = hs.Config(num_steps=60, batch_size=4, crop=16, feats=8)
    untrained = hs.build_model(cfg, seed=0, device="cpu")
    model, res = hs.train(y, cfg, seed=0, device="cpu", progress=False)
    assert len(res.history["loss"]) == 60
    # the untrained network is bicubic upsampling exactly; training improves on it
    assert np.allclose(hs.evaluate(untrained, y)["MPSNR"], hs.evaluate(None, y)["MPSNR"])
    assert hs.evaluate(model, y)["MPSNR"].mean() > hs.evaluate(None, y)["MPSNR"].mean()


def test_train_bad_input():
    y = make_scenes(1, "train", size=32, seed=0)
    with pytest.raises(ValueError, match="needs rgb_images"):
        hs.train(y, hs.Config(num_steps=1, rgb=True), device="cpu", progress=False)
    with pytest.raises(ValueError, match="needs unlabelled_y"):
        hs.train(y, hs.Config(num_steps=1, semi=True), device="cpu", progress=False)
    with pytest.raises(ValueError, match="crop"):
        hs.Config(crop=18)
    with pytest.raises(ValueError, match="num_steps"):
        hs.Config(num_steps=0)
    with pytest.raises(ValueError, match="smaller than the crop"):
        hs.train(y[..., :16, :16], hs.Config(num_steps=1, crop=32), device="cpu", progress=False)


# --- the motivating failure: a plain SR network, and DeepShare without its global residual ----------------

def test_plain_sr_shapes_residual_and_determinism():
    x = _rand(2, 31, 6, 5)
    x_up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic")
    cfg = hs.Config(arch="plain", feats=8, blocks=2)
    model = hs.build_model(cfg, seed=0, device="cpu")
    assert isinstance(model, hs.PlainSR) and model(x, x_up).shape == (2, 31, 24, 20)
    assert len(model.blocks) == 2 and model.residual
    other = hs.build_model(cfg, seed=0, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    # same weights with and without the residual: the outputs differ by exactly x_up
    bare = hs.build_model(hs.Config(arch="plain", feats=8, blocks=2, residual=False), seed=0, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), bare.parameters()))
    with torch.no_grad():
        assert torch.allclose(model(x, x_up) - bare(x, x_up), x_up, atol=1e-6)
    # every 3x3 convolution of the plain network sees all 31 bands (no band groups)
    assert isinstance(model.head, torch.nn.Conv2d) and model.head.in_channels == 31 and model.tail.out_channels == 31
    with pytest.raises(ValueError, match="x_up must be"):
        model(x, x)
    assert cfg.name == "plain SR" and hs.Config(arch="plain", mixup=True, residual=False).name == \
        "plain SR (no x_up residual) + mixup"


def test_deepshare_without_residual_is_not_bicubic_at_start():
    y = make_scenes(2, "train", size=32, seed=0)
    with_res = hs.build_model(hs.Config(feats=8), seed=0, device="cpu")
    without = hs.build_model(hs.Config(feats=8, residual=False), seed=0, device="cpu")
    assert not without.hsi_trunk.residual and with_res.hsi_trunk.residual
    # the residual network starts exactly at bicubic; without the residual it starts elsewhere
    assert np.allclose(hs.evaluate(with_res, y)["MPSNR"], hs.evaluate(None, y)["MPSNR"])
    assert not np.allclose(hs.evaluate(without, y)["MPSNR"], hs.evaluate(None, y)["MPSNR"])
    # the option changes only the final layer's initialisation: every other weight is identical
    same = [torch.equal(a, b) for (n, a), (_, b) in zip(with_res.named_parameters(), without.named_parameters())
            if not n.startswith(("hsi_trunk.final", "rgb_trunk.final"))]
    assert all(same) and len(same) > 10


def test_train_plain_sr_with_mixup_is_paired_and_learns():
    y = make_scenes(2, "train", size=32, seed=0)
    cfg = hs.Config(arch="plain", num_steps=40, batch_size=4, crop=16, feats=8, blocks=2)
    model, res = hs.train(y, cfg, seed=0, device="cpu", progress=False)
    assert isinstance(model, hs.PlainSR) and res.optimizer_steps == 40 and res.images_seen["labelled"] == 160
    losses = res.history["loss"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])          # it learns
    mixed, res_m = hs.train(y, hs.Config(**{**cfg.__dict__, "mixup": True}), seed=0, device="cpu", progress=False)
    assert res_m.optimizer_steps == 80 and res_m.images_seen == {"labelled": 160, "mixup": 160, "rgb": 0, "unlabelled": 0}
    again, _ = hs.train(y, hs.Config(**{**cfg.__dict__, "mixup": True}), seed=0, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(mixed.parameters(), again.parameters()))
    assert hs.super_resolve(mixed, y).shape == y.shape
