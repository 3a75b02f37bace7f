"""Tests for medtut.dip_nas (chapter 4): spectra, metrics, the search space, DIP fitting, selection."""
import numpy as np
import pytest
import torch

from medtut import dip_nas as dn
from medtut.data.dip_images import load_test_image, make_problem
from medtut.metrics import psnr as reference_psnr


# --- power spectra -----------------------------------------------------------------------------------

def test_psd_of_sinusoid_peaks_at_its_frequency():
    n, k = 32, 5
    x = np.cos(2 * np.pi * k * np.arange(n) / n)[None, :].repeat(n, axis=0)   # varies along width only
    p = dn.psd(x)[0]
    peaks = np.argwhere(p > 0.5 * p.max())
    centre = n // 2
    assert sorted(map(tuple, peaks)) == [(centre, centre - k), (centre, centre + k)]
    assert np.isclose(p.max(), 0.25)          # |A/2|^2 with A = 1


def test_parseval_and_shapes():
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 24))
    p = dn.psd(x)
    assert p.shape == (3, 16, 24)
    assert np.allclose(p.sum(axis=(-2, -1)), (x ** 2).mean(axis=(-2, -1)))
    assert dn.psd(torch.from_numpy(x[0])).shape == (1, 16, 24)


def test_strip_mask_matches_brute_force():
    h, w = 20, 32
    m = dn.strip_mask(h, w, 0.05, 0.1)
    for i in range(h):
        for j in range(w):
            fy, fx = (i - h // 2) / h, (j - w // 2) / w
            r = np.hypot(fy, fx)
            assert m[i, j] == (0.05 <= r < 0.1)
    assert m.sum() > 0 and not m[h // 2, w // 2]


def test_metrics_zero_for_identical_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.random((1, 32, 32)), rng.random((1, 32, 32)) ** 2
    for f in (dn.psd_db_mse, dn.strip_mse, dn.strip_wasserstein):
        assert f(a, a) == pytest.approx(0.0, abs=1e-12)
        assert f(a, b) > 0
        assert f(a, b) == pytest.approx(f(b, a))


def test_strip_mse_sees_only_the_strip():
    rng = np.random.default_rng(2)
    a = rng.random((1, 32, 32))
    spec = np.fft.fftshift(np.fft.fft2(a))
    outside = ~dn.strip_mask(32, 32)
    spec2 = spec.copy()
    spec2[0, outside] *= 3.0                                   # change power outside the strip only
    b = np.real(np.fft.ifft2(np.fft.ifftshift(spec2)))
    assert dn.strip_mse(a, b) < 1e-6 < dn.psd_db_mse(a, b)


def test_bandwidth_low_pass_vs_white():
    rng = np.random.default_rng(3)
    white = rng.standard_normal((1, 32, 32))
    smooth = np.ones((1, 32, 32))
    assert dn.bandwidth_99(smooth) == 0.0
    bw = dn.bandwidth_99(white)
    assert 0.5 < bw <= 1.0


def test_metric_errors():
    with pytest.raises(ValueError, match="same"):
        dn.strip_mse(np.zeros((1, 8, 8)), np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        dn.psd(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        dn.psd(np.zeros(5))
    with pytest.raises(ValueError, match="strip"):
        dn.strip_mse(np.ones((1, 4, 4)), np.ones((1, 4, 4)))   # no frequency of a 4x4 image is in the strip
    with pytest.raises(ValueError, match="metrics must be a non-empty list of names"):
        dn.score_architecture(dn.default_dip_arch(2), make_problem(load_test_image("camera", 32), "denoise"),
                              metrics=["nope"])


# --- search space ------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [2, 3, 4])
def test_every_sampled_architecture_builds_and_keeps_size(levels):
    names = dn.sample_architectures(12, dn.SearchSpace(levels=levels), seed=levels)
    assert len(set(names)) == 12
    x = torch.rand(1, 3, 32, 48)
    for name in names + [dn.default_dip_arch(levels).name]:
        model = dn.build_model(name, in_channels=3, out_channels=2, width=4, seed=0, device="cpu")
        y = model(x).detach()
        assert y.shape == (1, 2, 32, 48)
        assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_all_cells_build():
    x = torch.rand(1, 2, 16, 16)
    skip = ((1, 0), (0, 1))
    for prim in dn.PRIMITIVES:
        for op in dn.CONV_OPS:
            for act in dn.ACTIVATIONS:
                arch = dn.Arch(prim, op, 3, act, skip)
                assert dn.build_model(arch, 2, 1, 4, seed=0, device="cpu")(x).shape == (1, 1, 16, 16)


def test_grouped_copies_are_independent_copies_of_the_single_network():
    # every cell type, so every grouped layer (pixel shuffle, transposed, separable, depthwise) is covered
    for prim in dn.PRIMITIVES:
        for op in ("conv", "separable", "depthwise", "identity"):
            arch = dn.Arch(prim, op, 3, "lrelu", ((1, 1), (0, 1)))
            single = dn.build_model(arch, 2, 1, 4, seed=3, device="cpu")
            grouped = dn.build_model(arch, 2, 1, 4, seed=3, device="cpu", copies=3)
            xs = torch.rand(3, 1, 2, 16, 16)
            out = grouped(torch.cat(list(xs), dim=1))                      # (1, 3, 16, 16)
            for i in range(3):
                torch.testing.assert_close(out[:, i:i + 1], single(xs[i]), atol=1e-5, rtol=1e-4)
            # copy 0 must not see copy 1's input
            xs2 = xs.clone()
            xs2[1] = torch.rand_like(xs2[1])          # (a constant shift would vanish in BatchNorm)
            out2 = grouped(torch.cat(list(xs2), dim=1))
            torch.testing.assert_close(out2[:, 0], out[:, 0])
            assert not torch.allclose(out2[:, 1], out[:, 1])
    with pytest.raises(ValueError, match="copies"):
        dn.build_model(dn.default_dip_arch(2), 2, 1, 4, copies=0, device="cpu")
    with pytest.raises(ValueError, match="input channels"):
        dn.build_model(dn.default_dip_arch(2), 2, 1, 4, copies=2, device="cpu")(torch.rand(1, 2, 16, 16))


def test_name_round_trip_and_reinstantiation():
    for name in dn.sample_architectures(20, seed=7):
        arch = dn.Arch.from_name(name)
        assert arch.name == name
        m1 = dn.build_model(name, 4, 1, 4, seed=11, device="cpu")
        m2 = dn.build_model(m1.name, 4, 1, 4, seed=11, device="cpu")
        assert m1.name == name
        for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
            assert k1 == k2 and torch.equal(v1, v2)


def test_build_with_seed_leaves_global_rng_alone():
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    dn.build_model(dn.default_dip_arch(2), 2, 1, 4, seed=5, device="cpu")
    assert torch.equal(torch.rand(3), a)


def test_search_space_size():
    space = dn.SearchSpace(levels=3)
    assert space.num_cells == 5 * (3 * 3 + 1) * 3
    assert space.size == space.num_cells * 2 ** 9


def test_bad_names_raise():
    for bad, message in [("foo", "an architecture name looks like .*; got 'foo'"),
                         ("bilinear-conv-k3-lrelu-s101", "the skip part .part 5. must be .s. and L\\*L bits of 0/1"),
                         ("bilinear-conv-k3-lrelu-s10a1", "the skip part .part 5. must be .s. and L\\*L bits of 0/1"),
                         ("warp-conv-k3-lrelu-s1001", "primitive .part 1. must be one of .*; got .warp."),
                         ("bilinear-conv-k4-lrelu-s1001", "kernel must be 1, 3, 5 or 7; got 4")]:
        with pytest.raises(ValueError, match=message):
            dn.Arch.from_name(bad)
    model = dn.build_model(dn.default_dip_arch(3), 2, 1, 4, seed=0, device="cpu")
    with pytest.raises(ValueError, match="divisible"):
        model(torch.rand(1, 2, 20, 20))


# --- DIP fitting -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def problems():
    img = load_test_image("camera", 32)
    return [make_problem(img, t, seed=0, name="camera") for t in ("denoise", "inpaint", "sr")]


def test_fit_dip_learns_and_tracks_psnr(problems):
    r = dn.fit_dip(dn.default_dip_arch(2), problems[0], 60, width=8, seed=0, device="cpu")
    assert r.psnr.shape == r.psnr_ema.shape == (60,)
    assert r.output.shape == (1, 32, 32)
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert r.psnr[-1] > r.psnr[0] + 3
    assert r.final_psnr == pytest.approx(reference_psnr(r.output, problems[0].clean, data_range=1.0), abs=1e-3)
    assert r.oracle_psnr >= r.final_psnr and 1 <= r.oracle_step <= 60


def test_vectorised_fit_equals_separate_runs_and_is_deterministic(problems):
    name = "pixelshuffle-separable-k3-lrelu-s1101"
    joint = dn.fit_dip(name, problems, 8, width=4, seed=3, device="cpu")
    for prob, rj in zip(problems, joint):
        rs = dn.fit_dip(name, prob, 8, width=4, seed=3, device="cpu")
        np.testing.assert_allclose(rj.psnr, rs.psnr, atol=1e-3)
        np.testing.assert_allclose(rj.psnr_ema, rs.psnr_ema, atol=1e-3)
    again = dn.fit_dip(name, problems, 8, width=4, seed=3, device="cpu")
    for a, b in zip(joint, again):
        np.testing.assert_array_equal(a.psnr_ema, b.psnr_ema)


def test_grouped_fit_equals_separate_runs_exactly_in_float64(problems):
    # in float32 the grouped and single kernels round differently and Adam amplifies it over hundreds of
    # steps; in float64 the two computations must agree, which shows the grouping itself is exact
    name = "bilinear-separable-k5-lrelu-s1011"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        probs = [make_problem(p.clean.double(), p.task, seed=0, name=p.name) for p in problems[:2]]
        for p in probs:
            p.clean, p.observed = p.clean.double(), p.observed.double()
            p.mask = None if p.mask is None else p.mask.double()
        joint = dn.fit_dip(name, probs, 40, width=4, seed=1, device="cpu")
        for prob, rj in zip(probs, joint):
            rs = dn.fit_dip(name, prob, 40, width=4, seed=1, device="cpu")
            np.testing.assert_allclose(rj.psnr, rs.psnr, rtol=0, atol=1e-9)
    finally:
        torch.set_default_dtype(old)


def test_fit_dip_bad_input(problems):
    with pytest.raises(ValueError, match="num_steps"):
        dn.fit_dip(dn.default_dip_arch(2), problems[0], 0)
    other = make_problem(load_test_image("camera", 16), "denoise")
    with pytest.raises(ValueError, match="shape"):
        dn.fit_dip(dn.default_dip_arch(2), [problems[0], other], 2)


# --- metrics on random outputs, cohort and consensus -------------------------------------------------

def test_score_architecture_averages_inits():
    name = dn.default_dip_arch(2).name
    sr = make_problem(load_test_image("camera", 64), "sr", seed=0)      # observed 16 x 16
    s = dn.score_architecture(name, sr, num_inits=2, width=4, device="cpu")
    singles = [dn.score_architecture(name, sr, num_inits=1, seed=sd, width=4, device="cpu")
               for sd in (0, 1000)]
    for m in dn.METRICS:
        assert s[m] == pytest.approx(np.mean([d[m] for d in singles]))
    g = dn.random_output(name, sr, width=4, device="cpu")
    assert g.shape == sr.observed.shape        # SR: compared at the observed (low) resolution


def test_score_architecture_on_many_problems_equals_one_by_one(problems):
    name = "bicubic-conv-k3-relu-s1011"
    probs = problems[:2]            # the 8x8 SR observation of the fixture has no strip frequency
    together = dn.score_architecture(name, probs, num_inits=2, width=4, device="cpu")
    assert len(together) == 2
    for prob, got in zip(probs, together):
        assert got == dn.score_architecture(name, prob, num_inits=2, width=4, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        dn.score_architecture(name, [problems[0], make_problem(load_test_image("camera", 16), "denoise")])


def test_rank_weights_and_cohort():
    np.testing.assert_allclose(dn.rank_weights([1.0, 3.0, 2.0]), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(dn.rank_weights([2.0, 2.0]), [1.0, 1.0])
    assert dn.select_cohort({"a": 3.0, "b": 1.0, "c": 2.0}, 2) == ["b", "c"]
    with pytest.raises(ValueError, match="k must be in \\[1, 1\\]; got 2"):
        dn.select_cohort({"a": 1.0}, 2)
    with pytest.raises(ValueError, match="scores must be a non-empty 1-D array of finite numbers"):
        dn.rank_weights([1.0, np.nan])


def test_consensus_pick_finds_the_central_member():
    base = torch.zeros(1, 8, 8)
    outs = {"low": base - 1.0, "mid": base, "high": base + 1.0}
    name, cons = dn.consensus_pick(outs, {"low": 1.0, "mid": 1.0, "high": 1.0})
    assert name == "mid" and torch.allclose(cons, base)
    # weights pull the consensus towards the best-scored member
    name, cons = dn.consensus_pick(outs, {"low": 0.0, "mid": 5.0, "high": 10.0})
    assert name == "low"


def test_random_cohort_and_kendall():
    rng = np.random.default_rng(0)
    names = [f"m{i}" for i in range(10)]
    outs = {n: torch.from_numpy(rng.random((1, 8, 8))).float() for n in names}
    psnrs = {n: float(i) for i, n in enumerate(names)}
    vals = dn.random_cohort_psnrs(psnrs, outs, k=3, num_resamples=50)
    assert vals.shape == (50,) and set(vals) <= set(psnrs.values())
    assert dn.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="need two 1-D sequences of the same length >= 2"):
        dn.kendall_tau([1, 2], [1, 2, 3])


# --- the pooled PSD scorer ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 32])
def test_psd_scores_equal_the_per_metric_functions(size):
    # score_architecture now scores through psd_scores (shared spectra, cumulative-sum bandwidth); the
    # values must be those of the one-function-per-metric reference to round-off, on several
    # architectures and every task
    img = load_test_image("retina", size)
    probs = [make_problem(img, t, seed=1, name="retina") for t in ("denoise", "inpaint", "sr")]
    if size == 32:
        probs = probs[:2]                # the 8x8 SR observation has no strip frequency
    names = dn.sample_architectures(4, dn.SearchSpace(levels=2), seed=7) + [dn.default_dip_arch(2).name]
    for name in names:
        got = dn.score_architecture(name, probs, num_inits=2, seed=5, width=4, device="cpu")
        for prob, scores in zip(probs, got):
            outs = [dn.random_output(name, prob, seed=5 + 1000 * i, width=4, device="cpu") for i in range(2)]
            for m in dn.METRICS:
                want = np.mean([dn.METRICS[m](prob.observed, g) for g in outs])
                assert scores[m] == pytest.approx(want, rel=1e-12, abs=1e-15), (name, prob.task, m)


def test_psd_scores_subset_of_metrics_and_order():
    rng = np.random.default_rng(0)
    c, outs = rng.random((1, 16, 16)), [rng.random((1, 16, 16)) for _ in range(3)]
    got = dn.psd_scores(c, outs, ["bandwidth 99%", "strip mse"])
    assert [list(d) for d in got] == [["bandwidth 99%", "strip mse"]] * 3
    for g, d in zip(outs, got):
        assert d["strip mse"] == dn.strip_mse(c, g)
        assert d["bandwidth 99%"] == pytest.approx(dn.bandwidth_99(g), rel=1e-12)


def test_spanning_subset_spans_the_score_range():
    scores = {f"a{i}": float(i) for i in range(10)}
    assert dn.spanning_subset(scores, 3) == ["a0", "a4", "a9"]          # ranks round(linspace(0, 9, 3))
    sub = dn.spanning_subset(scores, 5, include=["default", "a0"])
    assert sub[:2] == ["default", "a0"] and sub[2:] == ["a1", "a5", "a9"]
