"""Tests of medtut.pixel_contrast: the loss against a brute-force loop, its invariances and edge cases,
the hard/easy sampler, the FIFO memory, the trainer and the diagnostics."""
import math

import numpy as np
import pytest
import torch

from medtut import pixel_contrast as pc

T, TB = 0.1, 0.07


def brute_force_loss(z, y, temperature=T, base_temperature=TB, ignore_index=-1):
    """L_i by explicit loops over anchors i, positives j and negatives k (all pixels are anchors)."""
    b, d, h, w = z.shape
    vecs = z.permute(0, 2, 3, 1).reshape(-1, d).double()
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    labs = y.reshape(-1).tolist()
    idx = [i for i, c in enumerate(labs) if c != ignore_index]
    losses = []
    for i in idx:
        pos = [j for j in idx if j != i and labs[j] == labs[i]]
        neg = [k for k in idx if labs[k] != labs[i]]
        if not pos:
            continue
        neg_sum = sum(math.exp(float(vecs[i] @ vecs[k]) / temperature) for k in neg)
        total = 0.0
        for j in pos:
            e = math.exp(float(vecs[i] @ vecs[j]) / temperature)
            total += math.log(e / (e + neg_sum))
        losses.append(-(temperature / base_temperature) * total / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def _random_case(seed, b=2, d=4, h=3, w=4, k=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, h, w, generator=g), torch.randint(0, k, (b, h, w), generator=g)


# ------------------------------------------------------------------------------------------------ loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_pixel_loss_matches_brute_force(seed):
    z, y = _random_case(seed)
    got = pc.pixel_contrast_loss(z.double(), y, None, max_samples=None)
    assert got.item() == pytest.approx(brute_force_loss(z, y), rel=1e-9, abs=1e-12)


def test_all_pixel_loss_matches_brute_force_other_temperatures_and_ignored_pixels():
    z, y = _random_case(5, k=4)
    y[0, 0, :2] = -1
    y[1, 2, 3] = -1
    for t, tb in ((0.5, 0.5), (0.05, 0.07), (1.0, 0.2)):
        got = pc.pixel_contrast_loss(z.double(), y, None, t, tb, max_samples=None)
        assert got.item() == pytest.approx(brute_force_loss(z, y, t, tb), rel=1e-9)


def test_hand_computed_two_class_toy_case():
    # four 1-D... 2-D unit vectors: class 0 at angle 0 and 0, class 1 at 90 and 180 degrees
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).T.reshape(1, 2, 1, 4)
    y = torch.tensor([[[0, 0, 1, 1]]])
    t = 1.0
    # anchor 0: positive 1 (cos 1), negatives cos 0 and -1; anchor 1: the same
    l0 = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    # anchor 2: positive 3 (cos 0), negatives 0 and 1 (cos 0 each); anchor 3: positive 2 (cos 0), negatives cos -1
    l2 = -math.log(1 / (1 + 2))
    l3 = -math.log(1 / (1 + 2 * math.exp(-1)))
    want = (l0 + l0 + l2 + l3) / 4
    got = pc.pixel_contrast_loss(z, y, None, temperature=t, base_temperature=t, max_samples=None)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_other_positives_stay_out_of_the_denominator():
    """Unlike SupCon: adding positives that are identical to the anchor does not change L_i of an anchor
    whose only other positive is at cosine 1 (each term sees only itself and the negatives)."""
    base = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 4)
    more = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4).T.reshape(1, 2, 1, 8)
    l_base = pc.pixel_contrast_loss(base, torch.tensor([[[0, 0, 1, 1]]]), None, max_samples=None)
    l_more = pc.pixel_contrast_loss(more, torch.tensor([[[0] * 4 + [1] * 4]]), None, max_samples=None)
    # per positive: -log(e^{10} / (e^{10} + n_neg e^0)); twice the negatives in the larger set
    want_base = (T / TB) * math.log1p(2 * math.exp(-1 / T))
    want_more = (T / TB) * math.log1p(4 * math.exp(-1 / T))
    assert l_base.item() == pytest.approx(want_base, rel=1e-5)
    assert l_more.item() == pytest.approx(want_more, rel=1e-5)


def test_invariant_to_relabelling_and_rescaling():
    z, y = _random_case(3, k=4)
    ref = pc.pixel_contrast_loss(z, y, None, max_samples=None)
    perm = torch.tensor([2, 0, 3, 1])
    assert pc.pixel_contrast_loss(z, perm[y], None, max_samples=None).item() == pytest.approx(ref.item(), rel=1e-5)
    scale = torch.rand(2, 1, 3, 4) * 10 + 0.1              # a positive scale per pixel
    assert pc.pixel_contrast_loss(z * scale, y, None, max_samples=None).item() == pytest.approx(ref.item(), rel=1e-5)


def test_lower_for_separated_clusters():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 4, 4), generator=g)
    centres = torch.eye(3, 8)
    separated = centres[y].permute(0, 3, 1, 2) + 0.05 * torch.randn(2, 8, 4, 4, generator=g)
    mixed = torch.randn(2, 8, 4, 4, generator=g)
    l_sep = pc.pixel_contrast_loss(separated, y, None, max_samples=None)
    l_mix = pc.pixel_contrast_loss(mixed, y, None, max_samples=None)
    assert l_sep < l_mix


def test_no_nan_with_one_class_singletons_or_ignored_pixels():
    z = torch.randn(1, 4, 3, 3, requires_grad=True)
    one_class = torch.zeros(1, 3, 3, dtype=torch.long)
    loss = pc.pixel_contrast_loss(z, one_class, None, max_samples=None)   # positives, no negatives
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    singletons = torch.arange(9).reshape(1, 3, 3)                       # negatives, no positives
    loss = pc.pixel_contrast_loss(z, singletons, None, max_samples=None)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()
    ignored = torch.full((1, 3, 3), -1)
    assert pc.pixel_contrast_loss(z, ignored, None, max_samples=None).item() == 0.0
    # sampled mode with no class above max_views: a differentiable zero
    pred = torch.zeros(1, 3, 3, dtype=torch.long)
    loss = pc.pixel_contrast_loss(z, one_class, pred, max_samples=10, max_views=100)
    assert loss.item() == 0.0 and loss.requires_grad


def test_no_nan_at_tiny_temperature():
    z, y = _random_case(4)
    z.requires_grad_(True)
    loss = pc.pixel_contrast_loss(z, y, None, temperature=0.001, base_temperature=0.07, max_samples=None)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_finite_gradients_and_gradcheck():
    z, y = _random_case(6, b=1, d=3, h=2, w=3)
    z = z.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pc.pixel_contrast_loss(t, y, None, max_samples=None), (z,))
    z2 = torch.randn(2, 8, 16, 16, requires_grad=True)
    y2 = torch.randint(0, 3, (2, 16, 16))
    loss = pc.pixel_contrast_loss(z2, y2, torch.randint(0, 3, (2, 16, 16)), max_samples=64, max_views=10,
                                  generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0


def test_labels_are_resized_by_nearest_neighbour():
    z, y = _random_case(7, b=1, h=2, w=2)
    y_big = y.repeat_interleave(4, 1).repeat_interleave(4, 2)          # (1, 8, 8) block-constant
    a = pc.pixel_contrast_loss(z, y, None, max_samples=None)
    b = pc.pixel_contrast_loss(z, y_big, None, max_samples=None)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_same_generator_seed_same_loss():
    z = torch.randn(2, 8, 16, 16)
    y = torch.randint(0, 3, (2, 16, 16))
    p = torch.randint(0, 3, (2, 16, 16))
    runs = [pc.pixel_contrast_loss(z, y, p, max_samples=40, max_views=10,
                                   generator=torch.Generator().manual_seed(3)).item() for _ in range(2)]
    assert runs[0] == runs[1]


def test_loss_bad_inputs():
    z, y = _random_case(0)
    with pytest.raises(ValueError, match="embeddings must be a float"):
        pc.pixel_contrast_loss(z[0], y, None, max_samples=None)
    with pytest.raises(ValueError, match="embeddings must be a float"):
        pc.pixel_contrast_loss(z.long(), y, None, max_samples=None)
    with pytest.raises(ValueError, match="labels must be an integer"):
        pc.pixel_contrast_loss(z, y.float(), None, max_samples=None)
    with pytest.raises(ValueError, match="labels must hold B = 2"):
        pc.pixel_contrast_loss(z, y[:1], None, max_samples=None)
    with pytest.raises(ValueError, match="class indices >= 0"):
        pc.pixel_contrast_loss(z, y - 5, None, max_samples=None)
    with pytest.raises(ValueError, match="finite"):
        pc.pixel_contrast_loss(z * float("nan"), y, None, max_samples=None)
    with pytest.raises(ValueError, match="temperature must be a positive"):
        pc.pixel_contrast_loss(z, y, None, temperature=0.0, max_samples=None)
    with pytest.raises(ValueError, match="base_temperature must be a positive"):
        pc.pixel_contrast_loss(z, y, None, base_temperature=-1, max_samples=None)
    with pytest.raises(ValueError, match="predictions"):
        pc.pixel_contrast_loss(z, y, None, max_samples=10)
    with pytest.raises(ValueError, match="predictions must be an integer"):
        pc.pixel_contrast_loss(z, y, y.float(), max_samples=10)
    with pytest.raises(ValueError, match="max_samples must be a positive int"):
        pc.pixel_contrast_loss(z, y, y, max_samples=0)
    with pytest.raises(ValueError, match="max_views must be an int"):
        pc.pixel_contrast_loss(z, y, y, max_views=-1)
    with pytest.raises(ValueError, match="anchor_sampling must be one of"):
        pc.pixel_contrast_loss(z, y, y, anchor_sampling="hardest")


# ------------------------------------------------------------------------------------------------ sampler


def _sampler_case():
    """Two 10×10 images: image 0 has class 0 (60 px) and class 1 (40 px); image 1 class 1 (95 px) and
    class 2 (5 px, below max_views). Predictions: in image 0, 10 pixels of class 0 and 30 of class 1 wrong."""
    y = torch.zeros(2, 10, 10, dtype=torch.long)
    y[0, 6:] = 1
    y[1] = 1
    y[1, 0, :5] = 2
    p = y.clone()
    p[0, 0] = 1                     # 10 hard pixels of class 0
    p[0, 6:9] = 0                   # 30 hard pixels of class 1, 10 easy
    return y, p


def test_sampler_counts_split_and_classes():
    y, p = _sampler_case()
    a = pc.sample_anchors(y, p, max_samples=60, max_views=8, generator=torch.Generator().manual_seed(0))
    # pairs kept: (0, 0), (0, 1), (1, 1); class 2 of image 1 has 5 <= 8 pixels → n_view = min(60 // 3, 8) = 8
    assert a.n_view == 8 and len(a) == 24
    flat_y, flat_p = y.reshape(-1), p.reshape(-1)
    assert torch.equal(a.labels, flat_y[a.index])                   # only label-c pixels are drawn
    assert torch.equal(a.hard, flat_p[a.index] != flat_y[a.index])
    assert len(torch.unique(a.index)) == len(a)                     # without replacement
    img = a.index // 100
    for i, c, n_hard in ((0, 0, 4), (0, 1, 4), (1, 1, 0)):          # image 1 has no hard pixel: top up
        sel = (img == i) & (a.labels == c)
        assert int(sel.sum()) == 8 and int(a.hard[sel].sum()) == n_hard
    assert not bool((a.labels == 2).any())


def test_sampler_tops_up_with_hard_when_easy_is_short():
    y = torch.zeros(1, 10, 10, dtype=torch.long)
    p = torch.ones(1, 10, 10, dtype=torch.long)
    p[0, 0, :2] = 0                                                  # 2 easy, 98 hard
    a = pc.sample_anchors(y, p, max_samples=10, max_views=10, generator=torch.Generator().manual_seed(0))
    assert len(a) == 10 and int((~a.hard).sum()) == 2 and int(a.hard.sum()) == 8


def test_sampler_n_view_at_least_one_and_capped_by_max_views():
    y, p = _sampler_case()
    a = pc.sample_anchors(y, p, max_samples=2, max_views=8, generator=torch.Generator().manual_seed(0))
    assert a.n_view == 1 and len(a) == 3
    a = pc.sample_anchors(y, p, max_samples=10_000, max_views=8, generator=torch.Generator().manual_seed(0))
    assert a.n_view == 8


def test_random_sampling_ignores_predictions():
    y, p = _sampler_case()
    a1 = pc.sample_anchors(y, p, 60, 8, anchor_sampling="random", generator=torch.Generator().manual_seed(1))
    a2 = pc.sample_anchors(y, y, 60, 8, anchor_sampling="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a1.index, a2.index)


def test_all_pixel_mode_skips_ignored_pixels_and_predictions():
    y, _ = _sampler_case()
    y[0, 0, 0] = -1
    a = pc.sample_anchors(y, None, max_samples=None)
    assert len(a) == 199 and not bool((a.labels == -1).any())


def test_sampler_bad_inputs():
    y, p = _sampler_case()
    with pytest.raises(ValueError, match="predictions must have the labels' shape"):
        pc.sample_anchors(y, p[:, :5], 60, 8)
    with pytest.raises(ValueError, match="labels must be an integer"):
        pc.sample_anchors(y[0], p, 60, 8)


# ------------------------------------------------------------------------------------------------ memory


def test_memory_fifo_order_pointer_and_detachment():
    mem = pc.PixelSegmentMemory(num_classes=2, dim=2, pixel_size=5, segment_size=3, pixels_per_image=2,
                                device="cpu")
    z = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2).clone().requires_grad_(True)
    y = torch.zeros(1, 2, 2, dtype=torch.long)
    mem.enqueue(z, y)
    assert int(mem.pixel_ptr[0]) == 2 and int(mem.pixel_count[0]) == 2      # moved by the count written
    assert int(mem.segment_ptr[0]) == 1 and int(mem.segment_count[0]) == 1
    assert int(mem.pixel_count[1]) == 0 and len(mem) == 3
    assert not mem.pixel_queue.requires_grad
    # write batches tagged by their direction so order can be read back
    for k in range(1, 5):
        ang = k * 0.3
        zk = torch.tensor([math.cos(ang), math.sin(ang)]).view(1, 2, 1, 1).expand(1, 2, 2, 2) * 3.0
        mem.enqueue(zk, y)
    # 5 batches × 2 pixels = 10 writes into 5 slots: the pointer is back at 0, slots hold batches 3 and 4
    assert int(mem.pixel_ptr[0]) == 0 and int(mem.pixel_count[0]) == 5
    angles = torch.atan2(mem.pixel_queue[0, :, 1], mem.pixel_queue[0, :, 0])
    want = torch.tensor([0.6, 0.9, 0.9, 1.2, 1.2])                             # oldest overwritten first
    assert torch.allclose(angles, want, atol=1e-6)
    assert torch.allclose(mem.pixel_queue[0].norm(dim=1), torch.ones(5))       # stored normalised
    # segments: 5 writes into 3 slots → batches 3, 4 then 2 at slot 2 (ptr = 5 % 3 = 2)
    seg_angles = torch.atan2(mem.segment_queue[0, :, 1], mem.segment_queue[0, :, 0])
    assert torch.allclose(seg_angles, torch.tensor([0.9, 1.2, 0.6]), atol=1e-6) and int(mem.segment_ptr[0]) == 2


def test_memory_contrast_set_only_filled_entries():
    mem = pc.PixelSegmentMemory(3, 4, pixel_size=6, segment_size=2, pixels_per_image=3, device="cpu")
    z, y = torch.randn(2, 4, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    y[1] = 2
    mem.enqueue(z, y)
    zs, ys = mem.contrast_set()
    assert zs.shape == (3 + 3 + 1 + 1, 4)
    assert sorted(ys.tolist()) == [0, 0, 0, 0, 2, 2, 2, 2]
    assert not bool((ys == 1).any())


def test_memory_region_mean_and_pixels_from_the_right_class():
    mem = pc.PixelSegmentMemory(2, 2, pixel_size=10, segment_size=2, pixels_per_image=10, device="cpu")
    z = torch.zeros(1, 2, 2, 2)
    z[0, 0, 0, :] = 1.0          # class 0 pixels (row 0) point along x
    z[0, 1, 1, :] = 1.0          # class 1 pixels (row 1) point along y
    y = torch.tensor([[[0, 0], [1, 1]]])
    mem.enqueue(z, y)
    assert torch.allclose(mem.segment_queue[0, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(mem.segment_queue[1, 0], torch.tensor([0.0, 1.0]))
    assert int(mem.pixel_count[0]) == 2 and torch.allclose(mem.pixel_queue[0, :2], torch.tensor([[1.0, 0.0]] * 2))


def test_memory_contrast_loss_matches_terms_and_is_zero_when_empty():
    mem = pc.PixelSegmentMemory(3, 8, pixel_size=20, segment_size=5, device="cpu")
    z = torch.randn(2, 8, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (2, 8, 8))
    empty = pc.memory_contrast_loss(z, y, y, mem, max_samples=None)
    assert empty.item() == 0.0 and empty.requires_grad
    mem.enqueue(torch.randn(2, 8, 8, 8), y)
    loss = pc.memory_contrast_loss(z, y, None, mem, max_samples=None)
    zm, ym = mem.contrast_set()
    za = pc.l2_normalize(z, 1).permute(0, 2, 3, 1).reshape(-1, 8)
    terms, valid = pc.contrast_terms(za, y.reshape(-1), zm, ym, exclude_self=False)
    assert loss.item() == pytest.approx(terms[valid].mean().item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_memory_bad_inputs():
    with pytest.raises(ValueError, match="num_classes must be an int"):
        pc.PixelSegmentMemory(1, 4, 5, 5)
    with pytest.raises(ValueError, match="pixel_size \\+ segment_size"):
        pc.PixelSegmentMemory(2, 4, 0, 0)
    mem = pc.PixelSegmentMemory(2, 4, 5, 5, device="cpu")
    with pytest.raises(ValueError, match="dim = 4"):
        mem.enqueue(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in"):
        mem.enqueue(torch.randn(1, 4, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="memory must be a PixelSegmentMemory"):
        pc.memory_contrast_loss(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), None, "queue",
                                max_samples=None)


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def tiny_data():
    from medtut.data.textures import make_texture_dataset
    return make_texture_dataset(4, size=32, seed=0)


@pytest.mark.parametrize("arm", pc.ARMS)
def test_train_runs_every_arm_and_is_deterministic(tiny_data, arm):
    x, y = tiny_data
    cfg = pc.Config(arm=arm, num_steps=4, batch_size=2, max_samples=64, max_views=10, warmup_frac=0.25,
                    pixel_queue=20, segment_queue=5, seed=1)
    m1, r1 = pc.train(x, y, cfg, 5, device="cpu", progress=False)
    m2, r2 = pc.train(x, y, cfg, 5, device="cpu", progress=False)
    assert np.array_equal(r1.history["loss"], r2.history["loss"])
    assert len(r1.history["loss"]) == 4 and r1.wall_time_s > 0 and not m1.training
    if arm != "ce":
        assert np.array_equal(r1.history["weight"], [0.0, 1.0, 1.0, 1.0])
        assert r1.history["contrast"][0] == 0.0 and r1.history["contrast"][-1] > 0
    assert (r1.memory is not None) == (arm == "memory")
    if arm == "memory":
        assert len(r1.memory) > 0
    scores = pc.evaluate(m1, x, y, 5)
    assert 0 <= scores["mIoU"] <= 1 and scores["IoU"].shape == (5,)


def test_train_does_not_touch_the_global_rng(tiny_data):
    x, y = tiny_data
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    pc.train(x, y, pc.Config(arm="contrast", num_steps=2, batch_size=2, max_samples=32, max_views=10,
                             warmup_frac=0.0), 5, device="cpu", progress=False)
    assert torch.equal(torch.rand(1), before)


def test_config_and_train_bad_inputs(tiny_data):
    x, y = tiny_data
    with pytest.raises(ValueError, match="arm must be one of"):
        pc.Config(arm="supcon")
    with pytest.raises(ValueError, match="warmup_frac"):
        pc.Config(warmup_frac=1.0)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        pc.Config(num_steps=0)
    with pytest.raises(ValueError, match="anchor_sampling"):
        pc.Config(anchor_sampling="semi-hard")
    with pytest.raises(ValueError, match="images must be a float"):
        pc.train(x[:, None], y, pc.Config(num_steps=1), 5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="labels must lie in"):
        pc.train(x, y + 5, pc.Config(num_steps=1), 5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="cfg must be"):
        pc.train(x, y, {"arm": "ce"}, 5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="num_classes must be an int"):
        pc.make_model(1)


# ------------------------------------------------------------------------------------------------ evaluation


def test_segmentation_scores_by_hand():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])
    s = pc.segmentation_scores(pred, target, 2)
    # IoU class 0: 1/2; class 1: 2/3
    assert s["IoU"].tolist() == pytest.approx([0.5, 2 / 3])
    assert s["mIoU"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["Dice"] == pytest.approx(0.8)                  # class 1: 2·2/(3+2)
    with pytest.raises(ValueError, match="same shape"):
        pc.segmentation_scores(pred[:, :, :2], target, 2)
    with pytest.raises(ValueError, match="must lie in"):
        pc.segmentation_scores(pred + 2, target, 2)


def test_embedding_diagnostics_by_hand():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    d = pc.embedding_diagnostics(z, y, 2, z, y)
    assert d["intra"] == pytest.approx(1.0) and d["inter"] == pytest.approx(0.0)
    assert d["prototype_acc"] == 1.0
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    d2 = pc.embedding_diagnostics(z2, y, 2, z, y)
    assert d2["intra"] == pytest.approx(0.0) and d2["inter"] == pytest.approx(0.5)
    assert d2["ratio"] == pytest.approx(0.5) and d2["prototype_acc"] == pytest.approx(0.5)
    # brute force on random data
    g = torch.Generator().manual_seed(0)
    zr = pc.l2_normalize(torch.randn(30, 5, generator=g), 1)
    yr = torch.randint(0, 3, (30,), generator=g)
    cos = zr @ zr.T
    intra = np.mean([cos[yr == c][:, yr == c][~torch.eye(int((yr == c).sum()), dtype=torch.bool)].mean().item()
                     for c in range(3)])
    inter = np.mean([cos[yr == a][:, yr == b].mean().item() for a in range(3) for b in range(3) if a != b])
    dr = pc.embedding_diagnostics(zr, yr, 3, zr, yr)
    assert dr["intra"] == pytest.approx(intra, abs=1e-6) and dr["inter"] == pytest.approx(inter, abs=1e-6)
    with pytest.raises(ValueError, match="z must be"):
        pc.embedding_diagnostics(zr[:, None], yr, 3, zr, yr)


def test_pixel_embeddings_and_similarity_map(tiny_data):
    x, y = tiny_data
    m = pc.make_model(5, embed_dim=8, seed=0, device="cpu")
    f = pc.pixel_embeddings(m, x[:2])
    p = pc.pixel_embeddings(m, x[:2], space="projection")
    assert f.shape == (2, 16, 32, 32) and p.shape == (2, 8, 32, 32)
    assert torch.allclose(f.norm(dim=1), torch.ones(2, 32, 32), atol=1e-5)
    s = pc.similarity_map(m, x[0], 3, 4)
    assert s.shape == (32, 32) and s[3, 4].item() == pytest.approx(1.0, abs=1e-5)
    idx = pc.sample_pixels(y[:2], per_class=7, seed=0)
    assert len(idx) == 7 * len(torch.unique(y[:2]))
    assert pc.gather_pixels(f, idx).shape == (len(idx), 16)
    with pytest.raises(ValueError, match="space must be"):
        pc.pixel_embeddings(m, x, space="logits")
    with pytest.raises(ValueError, match="inside the 32×32 image"):
        pc.similarity_map(m, x[0], 40, 0)


def test_diagnose_is_deterministic_and_validates(tiny_data):
    x, y = tiny_data
    m = pc.make_model(5, embed_dim=8, seed=0, device="cpu")
    d1 = pc.diagnose(m, x[:2], y[:2], x[2:], y[2:], 5, per_class=20)
    d2 = pc.diagnose(m, x[:2], y[:2], x[2:], y[2:], 5, per_class=20)
    assert d1 == d2 and set(d1) == {"intra", "inter", "ratio", "prototype_acc"}
    with pytest.raises(ValueError, match="labels must lie in"):
        pc.diagnose(m, x[:2], y[:2] + 9, x[2:], y[2:], 5)
