"""Tests of chapter 6's method: NT-Xent, augmentations, encoders, training, profiles, TVN, NSC/NSCB."""
import math

import numpy as np
import pytest
import torch

from medtut import cell_profiling as cp
from medtut.data.cells import ScreenDesign, make_cell_screen


# --------------------------------------------------------------------------------------------- NT-Xent
def brute_force_nt_xent(z1, z2, tau):
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    n = n2 // 2

    def ell(i, j):
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        return -math.log(num / den)

    return sum(ell(i, i + n) + ell(i + n, i) for i in range(n)) / n2


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.1), (5, 8, 0.5), (7, 4, 1.0)])
def test_nt_xent_matches_brute_force(n, d, tau):
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert float(cp.nt_xent(z1, z2, tau)) == pytest.approx(brute_force_nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_all_coincide_gives_log_2n_minus_1():
    for n in (2, 4, 9):
        z = torch.ones(n, 5)
        assert float(cp.nt_xent(z, z.clone(), 0.3)) == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_nt_xent_symmetric_in_views_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert torch.allclose(cp.nt_xent(z1, z2), cp.nt_xent(z2, z1), atol=1e-6)
    scale = torch.rand(6, 1, generator=g) + 0.5
    assert torch.allclose(cp.nt_xent(z1 * scale, z2), cp.nt_xent(z1, z2), atol=1e-5)


def test_nt_xent_low_when_views_agree_and_differentiable():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(8, 16, generator=g, requires_grad=True)
    aligned = cp.nt_xent(z1, z1.detach() + 1e-3, 0.1)
    shuffled = cp.nt_xent(z1, z1.detach()[torch.roll(torch.arange(8), 1)], 0.1)
    assert float(aligned.detach()) < float(shuffled.detach())
    aligned.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()


def test_nt_xent_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        cp.nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="same shape"):
        cp.nt_xent(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        cp.nt_xent(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="temperature"):
        cp.nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


# ------------------------------------------------------------------------------------------- augment
def test_augment_deterministic_shapes_and_every_list():
    x = torch.rand(6, 3, 32, 32)
    for kind in cp.AUGMENTATIONS:
        a = cp.augment(x, torch.Generator().manual_seed(3), kind)
        b = cp.augment(x, torch.Generator().manual_seed(3), kind)
        c = cp.augment(x, torch.Generator().manual_seed(4), kind)
        assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
        assert torch.isfinite(a).all()


def test_augment_rot90_flip_are_exact_symmetries():
    x = torch.rand(8, 3, 16, 16)
    y = cp.augment(x, torch.Generator().manual_seed(0), {"rot90": True, "flip": True})
    for i in range(8):
        candidates = [torch.rot90(v, k, dims=(1, 2)) for v in (x[i], x[i].flip(2)) for k in range(4)]
        assert min(float((y[i] - c).abs().max()) for c in candidates) < 1e-5


def test_channel_jitter_keeps_stains_apart_and_hue_mixes_them():
    x = torch.zeros(4, 3, 16, 16)
    x[:, 0, 4:12, 4:12] = 1.0                       # DNA only
    kept = cp.augment(x, torch.Generator().manual_seed(0), {"crop": 0.75, "channel_gain": 0.5, "rot90": True})
    assert float(kept[:, 1:].abs().max()) == 0.0
    mixed = cp.augment(x, torch.Generator().manual_seed(0), {"color_jitter": 0.2})
    assert float(mixed[:, 1:].abs().max()) > 0.01


def test_augment_bad_input():
    g = torch.Generator()
    with pytest.raises(ValueError, match="augmentation must be one of"):
        cp.augment(torch.rand(2, 3, 8, 8), g, "nonsense")
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        cp.augment(torch.rand(2, 3, 8, 8), g, {"hue": 0.1})
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        cp.augment(torch.rand(3, 8, 8), g)
    with pytest.raises(ValueError, match="generator"):
        cp.augment(torch.rand(2, 3, 8, 8), 0)


# ---------------------------------------------------------------------------------- encoders, training
def test_encoders_shapes():
    x = torch.rand(2, 3, 32, 32)
    assert cp.build_encoder("small_cnn")(x).shape == (2, 128)
    assert cp.build_encoder("small_cnn", widths=(4, 8, 8, 16))(x).shape == (2, 16)
    net = cp.build_encoder("resnet18")
    assert net.out_dim == 512 and net.eval()(x).shape == (2, 512)
    model = cp.SimCLRNet(cp.build_encoder("small_cnn", widths=(4, 8, 8, 16)), proj_dim=5)
    h, z = model(x)
    assert h.shape == (2, 16) and z.shape == (2, 5)
    with pytest.raises(ValueError, match="encoder must be one of"):
        cp.build_encoder("vgg")
    with pytest.raises(ValueError, match="widths"):
        cp.build_encoder("small_cnn", widths=(4, 8))


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        cp.Config(batch_size=1)
    with pytest.raises(ValueError, match="temperature"):
        cp.Config(temperature=0)
    with pytest.raises(ValueError, match="encoder"):
        cp.Config(encoder="alexnet")
    with pytest.raises(ValueError, match="augmentation"):
        cp.Config(augmentation="mystery")


def _tiny_cfg(**kw):
    base = dict(encoder="small_cnn", cnn_widths=(4, 8, 8, 8), proj_dim=8, temperature=0.2, batch_size=16,
                lr=1e-3, num_epochs=3, augmentation="book")
    base.update(kw)
    return cp.Config(**base)


def test_train_simclr_deterministic_snapshots_and_global_rng_untouched():
    images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = _tiny_cfg()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m1, r1 = cp.train_simclr(images, cfg, seed=1, device="cpu", snapshot_epochs=[1, 3], progress=False)
    after = torch.rand(1)
    assert torch.equal(before, after)            # library code leaves the global RNG alone
    m2, r2 = cp.train_simclr(images, cfg, seed=1, device="cpu", progress=False)
    assert r1.steps_per_epoch == 2 and len(r1.history["loss"]) == 6
    np.testing.assert_allclose(r1.history["loss"], r2.history["loss"], rtol=1e-5)
    assert set(r1.snapshots) == {1, 3} and r1.wall_time_s > 0
    for k, v in m1.state_dict().items():
        assert torch.allclose(v.float(), r1.snapshots[3][k].float())
    h = cp.embed(m1, images)
    assert h.shape == (40, 8) and h.dtype == np.float64


def test_train_simclr_bad_input():
    cfg = _tiny_cfg(batch_size=64)
    with pytest.raises(ValueError, match="larger than"):
        cp.train_simclr(torch.rand(10, 3, 16, 16), cfg, device="cpu", progress=False)
    with pytest.raises(ValueError, match="snapshot_epochs"):
        cp.train_simclr(torch.rand(80, 3, 16, 16), cfg, device="cpu", snapshot_epochs=[9], progress=False)
    with pytest.raises(ValueError, match="images"):
        cp.train_simclr(torch.rand(80, 16, 16), cfg, device="cpu", progress=False)
    bad = torch.rand(80, 3, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cp.train_simclr(bad, cfg, device="cpu", progress=False)


# ---------------------------------------------------------------------------------------- profiles
def _cell_meta(rows):
    keys = ("plate", "well", "batch", "compound", "concentration", "moa", "is_control")
    return {k: np.array([r[i] for r in rows]) for i, k in enumerate(keys)}


def test_well_and_treatment_profiles():
    feats = np.array([[1.0, 0], [3, 0], [0, 2], [0, 4], [10, 10], [5, 5], [7, 7]])
    meta = _cell_meta([("P1", "A01", "W1", "c", 1.0, "m", False), ("P1", "A01", "W1", "c", 1.0, "m", False),
                       ("P1", "A02", "W1", "DMSO", 0.0, "", True), ("P1", "A02", "W1", "DMSO", 0.0, "", True),
                       ("P2", "A01", "W2", "c", 1.0, "m", False),
                       ("P2", "A03", "W2", "c", 1.0, "m", False), ("P2", "A04", "W2", "d", 1.0, "n", False)])
    wp, wm = cp.well_profiles(feats, meta)
    np.testing.assert_allclose(wp, [[2, 0], [0, 3], [10, 10], [5, 5], [7, 7]])
    assert wm["n_cells"].tolist() == [2, 2, 1, 1, 1]
    tp, tm = cp.treatment_profiles(wp, wm)
    np.testing.assert_allclose(tp, [[5, 5], [7, 7]])          # median of wells (2,0), (10,10), (5,5)
    assert tm["compound"].tolist() == ["c", "d"]
    assert tm["batches"][0] == frozenset({"W1", "W2"})
    bad = dict(meta)
    bad["compound"] = meta["compound"].copy()
    bad["compound"][1] = "x"
    with pytest.raises(ValueError, match="varies inside"):
        cp.well_profiles(feats, bad)
    with pytest.raises(ValueError, match="lacks the keys"):
        cp.well_profiles(feats, {"plate": meta["plate"]})
    with pytest.raises(ValueError, match="entries"):
        cp.well_profiles(feats[:3], meta)
    with pytest.raises(ValueError, match="finite"):
        cp.well_profiles(np.full((7, 2), np.nan), meta)


def test_tvn_whitens_the_controls():
    rng = np.random.default_rng(0)
    d = 4
    ctrl = rng.normal(size=(200, d)) @ rng.normal(size=(d, d)) + 5.0
    treated = rng.normal(size=(20, d)) * 3
    x = np.concatenate([ctrl, treated])
    is_ctrl = np.arange(len(x)) < 200
    for lam in (1.0, 1e-3, 0.0):
        y = cp.tvn(x, is_ctrl, lam=lam)
        assert y.shape == x.shape
        np.testing.assert_allclose(y[is_ctrl].mean(0), 0, atol=1e-10)
    y = cp.tvn(x, is_ctrl, lam=1e-9)
    np.testing.assert_allclose(np.cov(y[is_ctrl], rowvar=False), np.eye(d), atol=1e-6)
    # lam shrinks: larger lam, smaller whitened spread
    assert cp.tvn(x, is_ctrl, lam=10.0)[is_ctrl].std() < cp.tvn(x, is_ctrl, lam=0.1)[is_ctrl].std()
    # CORAL per batch keeps the shape and the control mean at zero
    batches = np.where(np.arange(len(x)) % 2 == 0, "W1", "W2")
    z = cp.tvn(x, is_ctrl, lam=1.0, batches=batches)
    assert z.shape == x.shape and np.isfinite(z).all()


def test_tvn_bad_input():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="at least 2 control"):
        cp.tvn(x, np.array([True, False, False, False, False]))
    with pytest.raises(ValueError, match="bool array"):
        cp.tvn(x, np.ones(5))
    with pytest.raises(ValueError, match="lam"):
        cp.tvn(x, np.ones(5, dtype=bool), lam=-1)
    with pytest.raises(ValueError, match="full-rank"):
        cp.tvn(np.random.default_rng(0).normal(size=(5, 8)), np.ones(5, dtype=bool), lam=0.0)


# ------------------------------------------------------------------------------------------ NSC/NSCB
def _table():
    """Six treatments on the unit circle (cosine similarity = cos of the angle between them).

    idx compound moa batches angle (deg)
    0   a1       A   {W1}    0
    1   a2       A   {W2}    40
    2   b1       B   {W1}    10
    3   b2       B   {W2}    60
    4   c1       C   {W3}    200
    5   c2       C   {W3}    210     MoA C lives in one batch: removed for NSCB
    """
    ang = np.deg2rad([0, 40, 10, 60, 200, 210])
    p = np.stack([np.cos(ang), np.sin(ang)], 1)
    meta = {"compound": np.array(["a1", "a2", "b1", "b2", "c1", "c2"]),
            "moa": np.array(list("AABBCC")),
            "batches": [{"W1"}, {"W2"}, {"W1"}, {"W2"}, {"W3"}, {"W3"}]}
    return p, meta


def test_nsc_nscb_known_answers():
    p, meta = _table()
    r = cp.nsc_nscb(p, meta)
    # NSC: 0 -> 2 (10 deg), 1 -> 3 (20), 2 -> 0 (10), 3 -> 1 (20): all the wrong MoA; 4 <-> 5 right
    assert r.nsc_neighbour.tolist() == [2, 3, 0, 1, 5, 4]
    assert r.nsc_correct.tolist() == [False, False, False, False, True, True]
    assert r.nsc == pytest.approx(2 / 6) and r.n_nsc == 6
    # NSCB: C removed; 0 -> 1 (right), 1 -> 2 (30 deg beats 0 at 40: wrong), 2 -> 1 (wrong), 3 -> 2 (right)
    assert r.nscb_neighbour.tolist() == [1, 2, 1, 2, -1, -1]
    assert r.nscb_correct.tolist() == [True, False, False, True, False, False]
    assert r.n_nscb == 4 and r.nscb == pytest.approx(0.5)
    assert r.drop == pytest.approx(2 / 6 - 0.5)


def test_nscb_excludes_by_set_intersection_for_multi_batch_treatments():
    p, meta = _table()
    # b3: MoA B, wells in W1 and W3, 5 degrees from a1. It shares W1 with a1, so a1 must not see it under
    # NSCB (the official code compared the joined string "W1,W3" with "W1" and would have let it through)
    p = np.concatenate([p, [[np.cos(np.deg2rad(5)), np.sin(np.deg2rad(5))]]])
    meta = {"compound": np.append(meta["compound"], "b3"), "moa": np.append(meta["moa"], "B"),
            "batches": meta["batches"] + [{"W1", "W3"}]}
    r = cp.nsc_nscb(p, meta)
    assert r.nsc_neighbour[0] == 6                      # NSC: the closest other compound
    assert r.nscb_neighbour[0] == 1 and r.nscb_correct[0]
    assert r.nscb_neighbour[6] == 1                     # b3 {W1, W3}: only a2 {W2} and b2... a2 is closer
    # string batch labels are accepted as one batch each
    meta_str = dict(meta, batches=["W1", "W2", "W1", "W2", "W3", "W3", "W1,W3"])
    assert cp.nsc_nscb(p, meta_str).nscb_neighbour[0] == 6


def test_nscb_no_candidate_left_is_an_error():
    p, meta = _table()
    meta = dict(meta, batches=[{"W1"}, {"W2"}, {"W1"}, {"W1", "W2"}, {"W3"}, {"W3"}])
    with pytest.raises(ValueError, match="no candidate"):
        cp.nsc_nscb(p, meta)          # b2 shares a batch with every other multi-batch treatment


def test_nsc_ties_go_to_lowest_index():
    p = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    meta = {"compound": np.array(["q", "x", "y", "z"]), "moa": np.array(["A", "B", "A", "B"]),
            "batches": ["W1", "W2", "W3", "W4"]}
    r = cp.nsc_nscb(p, meta)
    assert r.nsc_neighbour[0] == 1 and not r.nsc_correct[0]


def test_nsc_bad_input():
    p, meta = _table()
    with pytest.raises(ValueError, match="lacks the keys"):
        cp.nsc_nscb(p, {"compound": meta["compound"], "moa": meta["moa"]})
    with pytest.raises(ValueError, match="entries"):
        cp.nsc_nscb(p[:4], meta)
    with pytest.raises(ValueError, match="two compounds"):
        cp.nsc_nscb(p[:2], {"compound": np.array(["a", "a"]), "moa": np.array(["A", "A"]),
                            "batches": ["W1", "W2"]})
    with pytest.raises(ValueError, match="2-D"):
        cp.nsc_nscb(p[:, 0], meta)


# ------------------------------------------------------------------------------------ the pipeline
def test_handcrafted_features_and_pipeline_on_a_small_screen():
    design = ScreenDesign(moas=("Microtubule stabilizers", "Actin disruptors", "DNA damage"),
                          cells_per_well=4, control_wells_per_batch=2, num_batches=3)
    screen = make_cell_screen(design, seed=0)
    f = cp.handcrafted_features(screen.images)
    assert f.shape == (len(screen), 27)
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-8)
    r, tp, tm = cp.profile_and_score(f, screen.meta)
    assert tp.shape[0] == design.num_treatments == len(tm["compound"])
    assert 0 <= r.nsc <= 1 and 0 <= r.nscb <= 1
    r_tvn, _, _ = cp.profile_and_score(f, screen.meta, use_tvn=True, lam=1.0)
    assert 0 <= r_tvn.nsc <= 1
    r_true, _, _ = cp.profile_and_score(screen.morphology, screen.meta)
    assert r_true.nsc >= r.nsc    # the generating morphology is the ideal profile


def test_nscb_candidates_matches_the_rule():
    p, meta = _table()
    cand = cp.nscb_candidates(meta)
    assert cand.shape == (6, 6) and cand.dtype == bool
    assert not cand[4:].any() and not cand[:, 4:].any()             # MoA C (one batch) removed
    assert cand[0].tolist() == [False, True, False, True, False, False]
    assert not np.diag(cand).any()
    r = cp.nsc_nscb(p, meta)
    for i in range(4):
        assert cand[i, r.nscb_neighbour[i]]
