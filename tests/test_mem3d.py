"""Tests of chapter 3 (Mem3D): the read, the losses, the users, selection, the session and its controller."""
import math
import random

import numpy as np
import pytest
import torch

import medtut
from medtut import mem3d as m
from medtut.data.tubes import make_tube_dataset
from medtut.train import TrainResult


# ------------------------------------------------------------------------------------------------
# the memory read
# ------------------------------------------------------------------------------------------------
def _brute_force_read(mem_keys, mem_values, query_key):
    b, t, dk, h, w = mem_keys.shape
    dv = mem_values.shape[2]
    out = torch.zeros(b, dv, h, w, dtype=torch.float64)
    for bi in range(b):
        for qy in range(h):
            for qx in range(w):
                kq = query_key[bi, :, qy, qx]
                scores, vals = [], []
                for ti in range(t):
                    for jy in range(h):
                        for jx in range(w):
                            scores.append(float(mem_keys[bi, ti, :, jy, jx] @ kq) / math.sqrt(dk))
                            vals.append(mem_values[bi, ti, :, jy, jx])
                s = torch.tensor(scores, dtype=torch.float64)
                wts = torch.exp(s - s.max())
                wts = wts / wts.sum()
                out[bi, :, qy, qx] = sum(wj * vj for wj, vj in zip(wts, vals))
    return out


def test_memory_read_matches_brute_force_and_weights_sum_to_one():
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 3, 4, 3, 2, generator=g, dtype=torch.float64)
    v = torch.randn(2, 3, 5, 3, 2, generator=g, dtype=torch.float64)
    q = torch.randn(2, 4, 3, 2, generator=g, dtype=torch.float64)
    read, w = m.memory_read(k, v, q, return_weights=True)
    assert read.shape == (2, 5, 3, 2) and w.shape == (2, 6, 18)
    assert torch.allclose(read, _brute_force_read(k, v, q), atol=1e-10)
    assert torch.allclose(w.sum(-1), torch.ones(2, 6, dtype=torch.float64), atol=1e-12)
    assert (w >= 0).all()


def test_memory_order_is_irrelevant():
    g = torch.Generator().manual_seed(1)
    k, v, q = torch.randn(1, 4, 3, 4, 4, generator=g), torch.randn(1, 4, 6, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(m.memory_read(k, v, q), m.memory_read(k[:, perm], v[:, perm], q), atol=1e-5)


def test_memory_read_bad_input():
    k, v, q = torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 2, 5, 4, 4), torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="mem_keys must be a float tensor with 5 dims"):
        m.memory_read(k[0], v, q)
    with pytest.raises(ValueError, match=r"query_key must be \(B, Dk, H, W\)"):
        m.memory_read(k, v, torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"mem_values must be \(B, T, Dv, H, W\)"):
        m.memory_read(k, torch.zeros(1, 3, 5, 4, 4), q)
    with pytest.raises(ValueError, match="the memory is empty"):
        m.memory_read(k[:, :0], v[:, :0], q)


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------
def test_soft_iou_hand_cases():
    g = torch.zeros(1, 4, 4)
    g[0, :2, :2] = 1                                           # 4 pixels
    assert torch.allclose(m.soft_iou(g.clone(), g, eps=0), torch.ones(1))
    p = torch.zeros(1, 4, 4)
    p[0, :2, :] = 1                                            # 8 pixels, 4 of them on g
    assert torch.allclose(m.soft_iou(p, g, eps=0), torch.tensor([0.5]))
    assert torch.allclose(m.soft_iou(p, g, eps=1), torch.tensor([5 / 9]))
    half = g * 0.5                                             # soft: min = 0.5·4, max = 4
    assert torch.allclose(m.soft_iou(half, g, eps=0), torch.tensor([0.5]))
    assert torch.allclose(m.soft_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)), torch.ones(1))
    with pytest.raises(ValueError, match="p must hold probabilities in"):
        m.soft_iou(p * 2, g)
    with pytest.raises(ValueError, match="same shape"):
        m.soft_iou(p, g[:, :2])


def test_quality_loss_target_is_detached():
    p = torch.rand(2, 1, 8, 8, requires_grad=True)
    q = torch.full((2,), 0.5, requires_grad=True)
    loss = m.quality_loss(q, p, (torch.rand(2, 1, 8, 8) > 0.5).float())
    loss.backward()
    assert p.grad is None and q.grad is not None


# ------------------------------------------------------------------------------------------------
# simulated users
# ------------------------------------------------------------------------------------------------
def _square(n=32, y0=8, y1=20, x0=10, x1=24):
    gt = np.zeros((n, n), bool)
    gt[y0:y1, x0:x1] = True
    return gt


def test_click_user_first_click_at_the_centre_and_corrections_signed():
    gt = _square()
    user = m.SimulatedUser("click", seed=0)
    maps = user.initial(gt)
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    y, x = np.unravel_index(int(maps[0].argmax()), (32, 32))
    assert gt[y, x] and 12 <= y <= 15 and 15 <= x <= 18 and maps[1].max() == 0
    pred = gt.copy()
    pred[8:20, 10:14] = False                                  # a false-negative strip, 12x4
    pred[26:30, 2:5] = True                                    # a smaller false-positive blob
    c = user.correct(pred, gt)
    y, x = np.unravel_index(int(c[0].argmax()), (32, 32))
    assert c[0].max() > 0.99 and c[1].max() == 0 and gt[y, x] and not pred[y, x]
    assert user.last_points[0][2] == 1
    pred2 = gt.copy()
    pred2[0:6, 0:6] = True                                     # only a false positive
    c2 = user.correct(pred2, gt)
    y, x = np.unravel_index(int(c2[1].argmax()), (32, 32))
    assert c2[0].max() == 0 and not gt[y, x] and pred2[y, x] and user.last_points[0][2] == -1
    assert user.correct(gt, gt).sum() == 0                     # nothing to correct


def test_box_holds_the_ground_truth_and_extreme_points_lie_near_it():
    gt = _square()
    for seed in range(5):
        box = m.SimulatedUser("box", seed=seed).initial(gt)
        assert box[0].max() == 0 and box[1][torch.from_numpy(gt)].max() == 0 and box[1].sum() > 0
        ext = m.SimulatedUser("extreme", seed=seed)
        ext.initial(gt)
        for y, x, _ in ext.last_points:
            assert 8 - 3 <= y <= 19 + 3 and 10 - 3 <= x <= 23 + 3
        assert len(ext.last_points) == 4


def test_scribbles_inside_and_outside():
    yy, xx = np.mgrid[0:48, 0:48]
    gt = (yy - 24) ** 2 / 100 + (xx - 22) ** 2 / 49 <= 1
    for seed in range(5):
        s = m.SimulatedUser("scribble", seed=seed).initial(gt)
        pos, neg = s[0].numpy() > 0, s[1].numpy() > 0
        assert pos.any() and neg.any()
        assert gt[pos].all() and not gt[neg].any()


def test_user_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        m.SimulatedUser("lasso")
    with pytest.raises(ValueError, match="gt is empty"):
        m.SimulatedUser("click").initial(np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match=r"gt must be a \(H, W\) mask"):
        m.SimulatedUser("click").initial(np.zeros((2, 8, 8), bool))
    with pytest.raises(ValueError, match="pred must have shape"):
        m.SimulatedUser("click").correct(np.zeros((4, 4)), _square())


# ------------------------------------------------------------------------------------------------
# selection and NoI
# ------------------------------------------------------------------------------------------------
def test_select_next_slice_strategies():
    q = np.array([0.9, 0.2, 0.5, 0.1, 0.8, 0.3])
    ann = np.array([False, False, False, True, False, False])
    assert m.select_next_slice("quality", q, ann) == 1                       # 3 is annotated
    cand = np.array([False, False, True, True, True, True])
    assert m.select_next_slice("quality", q, ann, candidates=cand) == 5
    true = np.array([0.1, 0.9, 0.9, 0.9, 0.0, 0.9])
    assert m.select_next_slice("oracle", q, ann, gt=true) == 4
    assert m.select_next_slice("uniform", q, ann) == 0
    rng = np.random.default_rng(0)
    picks = {m.select_next_slice("random", q, ann, rng=rng) for _ in range(60)}
    assert picks == {0, 1, 2, 4, 5}
    for strategy in m.STRATEGIES:                                              # never an annotated slice
        for _ in range(10):
            a = np.random.default_rng(_).random(6) < 0.5
            if a.all():
                continue
            z = m.select_next_slice(strategy, q, a, gt=true, rng=1)
            assert not a[z]


def test_select_next_slice_bad_input():
    q, ann = np.zeros(4), np.zeros(4, bool)
    with pytest.raises(ValueError, match="strategy 'oracle' needs gt"):
        m.select_next_slice("oracle", q, ann)
    with pytest.raises(ValueError, match="strategy must be one of"):
        m.select_next_slice("worst", q, ann)
    with pytest.raises(ValueError, match="every slice is annotated"):
        m.select_next_slice("quality", q, np.ones(4, bool))
    with pytest.raises(ValueError, match="q_hat holds NaN"):
        m.select_next_slice("quality", np.array([0.1, np.nan, 0, 0]), ann)
    with pytest.raises(ValueError, match="q_hat and annotated must be"):
        m.select_next_slice("quality", q, np.zeros(3, bool))


def test_noi():
    assert m.noi([0.5, 0.85, 0.91, 0.95], 0.9) == 3
    assert m.noi([0.95], 0.9) == 1
    assert m.noi([0.5, 0.6], 0.9) == math.inf
    with pytest.raises(ValueError, match="dice_per_round must be a non-empty"):
        m.noi([], 0.9)
    with pytest.raises(ValueError, match="threshold must be in"):
        m.noi([0.5], 1.5)


def test_metrics_and_copy_baseline():
    gt = np.zeros((3, 4, 4), bool)
    gt[1, :2, :2] = True
    pred = np.zeros_like(gt)
    pred[1, :2, :1] = True
    assert np.allclose(m.slice_dice(pred, gt), [1.0, 2 * 2 / 6, 1.0])
    assert m.dice_3d(pred, gt) == pytest.approx(4 / 6)
    cp = m.copy_propagate({1: gt[1]}, 3)
    assert cp.shape == (3, 4, 4) and all((cp[z] == gt[1]).all() for z in range(3))
    with pytest.raises(ValueError, match="annotations is empty"):
        m.copy_propagate({}, 3)


# ------------------------------------------------------------------------------------------------
# networks, training, the session (tiny, untrained or briefly trained models)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    vols = make_tube_dataset(3, size=32, depth=16, seed=0)
    f_mem, res = m.train_memory_network(vols, num_steps=3, batch_size=2, seed=0, device="cpu", progress=False)
    f_in, res_in = m.train_interaction_network(vols, num_steps=3, batch_size=2, pool_size=8, seed=0,
                                               device="cpu", progress=False)
    return vols, f_mem, res, f_in, res_in


def test_memory_network_shapes_and_quality_in_unit_interval(tiny):
    _, f_mem, res, _, res_in = tiny
    x = torch.rand(2, 1, 32, 32)
    k, v = f_mem.encode_memory(x, (x > 0.5).float())
    assert k.shape == (2, 32, 8, 8) and v.shape == (2, 33, 8, 8)
    logits, q = f_mem(x, k[:, None], v[:, None])
    assert logits.shape == (2, 1, 32, 32) and q.shape == (2,) and ((q > 0) & (q < 1)).all()
    assert isinstance(res, TrainResult) and res.wall_time_s > 0 and len(res.history["loss"]) == 3
    assert isinstance(res_in, TrainResult)
    with pytest.raises(ValueError, match=r"image must be \(B, 1, H, W\)"):
        f_mem(torch.rand(2, 1, 30, 30), k[:, None], v[:, None])


def test_trainers_are_seeded_and_leave_global_state_alone():
    vols = make_tube_dataset(2, size=32, depth=16, seed=3)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    _, r1 = m.train_memory_network(vols, num_steps=2, batch_size=2, seed=1, device="cpu", progress=False)
    _, i1 = m.train_interaction_network(vols, num_steps=2, batch_size=2, pool_size=4, seed=1, device="cpu", progress=False)
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    torch.manual_seed(99)
    _, r2 = m.train_memory_network(vols, num_steps=2, batch_size=2, seed=1, device="cpu", progress=False)
    _, i2 = m.train_interaction_network(vols, num_steps=2, batch_size=2, pool_size=4, seed=1, device="cpu", progress=False)
    assert np.array_equal(r1.history["loss"], r2.history["loss"]) and np.array_equal(i1.history["loss"], i2.history["loss"])


def test_trainers_honour_the_device_rule(monkeypatch):
    vols = make_tube_dataset(2, size=32, depth=16, seed=3)
    calls = []
    real = medtut.config.get_device
    monkeypatch.setattr(medtut.config, "get_device", lambda: calls.append(1) or real())
    net, _ = m.train_memory_network(vols, num_steps=1, batch_size=1, progress=False)
    assert calls and all(p.device.type == real().type for p in net.parameters())
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device name"):
        m.train_interaction_network(vols, num_steps=1, pool_size=2, device="gpu", progress=False)


def test_trainer_bad_input():
    with pytest.raises(ValueError, match="volumes must be a non-empty list"):
        m.train_memory_network([], num_steps=1)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        m.Config(num_steps=0)
    with pytest.raises(ValueError, match="kinds must be a non-empty subset"):
        m.InteractionConfig(kinds=("lasso",))
    bad = {"image": np.zeros((4, 8, 8), np.float32), "label": np.full((4, 8, 8), 2)}
    with pytest.raises(ValueError, match=r"volume\['label'\] must be binary"):
        m.train_memory_network([bad], num_steps=1)
    nan = {"image": np.full((4, 8, 8), np.nan, np.float32), "label": np.zeros((4, 8, 8))}
    with pytest.raises(ValueError, match=r"volume\['image'\] holds NaN"):
        m.train_memory_network([nan], num_steps=1)


def test_propagate_covers_one_side_and_respects_memory_options(tiny):
    vols, f_mem, _, _, _ = tiny
    image, gt = vols[0]["image"], vols[0]["label"].astype(bool)
    z = int(np.flatnonzero(gt.any((1, 2)))[4])
    out = m.propagate(f_mem, image, {z: gt[z]}, z, +1, 16)
    assert sorted(out) == list(range(z + 1, 16))
    p, q = out[z + 1]
    assert p.shape == (32, 32) and 0 < q < 1
    down = m.propagate(f_mem, image, {z: gt[z]}, z, -1, -1, memory=("annotated",))
    assert sorted(down) == list(range(0, z))
    with pytest.raises(ValueError, match="memory must hold 'annotated'"):
        m.propagate(f_mem, image, {z: gt[z]}, z, 1, 16, memory=("previous",))
    with pytest.raises(ValueError, match="direction must be"):
        m.propagate(f_mem, image, {z: gt[z]}, z, 2, 16)
    with pytest.raises(ValueError, match="is not annotated"):
        m.propagate(f_mem, image, {z: gt[z]}, z + 1, 1, 16)


def test_session_rounds_and_headless_twin_equals_the_api(tiny):
    vols, f_mem, _, f_in, _ = tiny
    vol = vols[1]
    gt = vol["label"].astype(bool)
    res = m.run_session(vol, f_in, f_mem, m.SimulatedUser("click", seed=3), "quality", rounds=3, corrections=1)
    assert res.dice.shape == (3,) and len(res.slices) == 3 == len(set(res.slices))
    assert res.q_hat.shape == (3, 16) and res.true_iou.shape == (3, 16) and res.worst5.shape == (3,)
    zs = np.flatnonzero(gt.any((1, 2)))
    assert res.slices[0] == zs[len(zs) // 2]
    # the same session driven step by step through the controller, as the widget's twin does
    user = m.SimulatedUser("click", seed=3)
    s = m.InteractiveSession(vol["image"], f_in, f_mem)
    dice = []
    for r in range(3):
        z = res.slices[0] if r == 0 else s.suggest_next("quality")
        assert z == res.slices[r]
        if gt[z].any():
            s.interact(z, user.initial(gt[z]))
            s.segment(z)
            if not (s.annotations[z] == gt[z]).all():
                s.interact(z, user.correct(s.annotations[z], gt[z]))
                s.segment(z)
        else:
            s.mark_background(z)
        s.propagate(z)
        dice.append(m.dice_3d(s.mask, gt))
    assert np.allclose(dice, res.dice)
    # undo goes back one action at a time
    before = s.probs.copy()
    s.interact(res.slices[0], np.zeros((2, 32, 32), np.float32))
    assert s.undo() and np.array_equal(s.probs, before)
    rnd = [m.run_session(vol, f_in, f_mem, m.SimulatedUser("box", seed=0), "random", rounds=3, seed=7).slices
           for _ in range(2)]
    assert rnd[0] == rnd[1]


def test_session_bad_input(tiny):
    vols, f_mem, _, f_in, _ = tiny
    with pytest.raises(ValueError, match="strategy must be one of"):
        m.run_session(vols[0], f_in, f_mem, m.SimulatedUser(), "best")
    with pytest.raises(ValueError, match="user must be a SimulatedUser"):
        m.run_session(vols[0], f_in, f_mem, "click", "quality")
    empty = {"image": vols[0]["image"], "label": np.zeros_like(vols[0]["label"])}
    with pytest.raises(ValueError, match="non-empty 'label'"):
        m.run_session(empty, f_in, f_mem, m.SimulatedUser(), "quality")
    s = m.InteractiveSession(vols[0]["image"], f_in, f_mem)
    with pytest.raises(ValueError, match="nothing is annotated yet"):
        s.propagate()
    with pytest.raises(ValueError, match="has no interaction yet"):
        s.segment(3)
    with pytest.raises(ValueError, match=r"z must be a slice index in \[0, 15\]"):
        s.interact(16, np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match=r"maps must be \(2, H, W\)"):
        s.interact(3, np.zeros((1, 32, 32)))
    assert not s.undo()


def test_static_twin_draws(tiny):
    import matplotlib
    matplotlib.use("Agg")
    vols, f_mem, _, f_in, _ = tiny
    s = m.InteractiveSession(vols[0]["image"], f_in, f_mem)
    gt = vols[0]["label"]
    z = int(np.flatnonzero(gt.any((1, 2)))[3])
    s.interact(z, m.SimulatedUser("click").initial(gt[z]))
    s.segment(z)
    s.propagate(z)
    fig = m.draw_session(s, z, gt, suggested=s.suggest_next("quality"))
    assert len(fig.axes) == 2
    assert m.interactive_tool(s).widget is None    # no live kernel in a test: no widgets, the controller only
