"""Tests of chapter 1's method module: the loss's maths, the model, pseudo-labels, pairs, training."""
import math

import numpy as np
import pytest
import torch

from medtut.local_contrastive import (Config, continue_and_evaluate, UNetWithProjection, class_prototypes, evaluate_dice,
                                      largest_component, local_contrastive_loss, make_pairs, make_split,
                                      pseudo_label, train_baseline, train_semi_supervised)


def brute_force_loss(z_a, z_b, y_a, y_b, temperature=0.1, background=0, variant="inter"):
    """The loss of the issue, pixel by pixel with Python loops (all pixels are anchors)."""
    def cos(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    pair_losses = []
    for i in range(z_a.shape[0]):
        za, zb = z_a[i].double(), z_b[i].double()
        ya, yb = y_a[i], y_b[i]
        classes = sorted((set(ya.unique().tolist()) & set(yb.unique().tolist())) - {background})
        if not classes:
            continue

        def proto(z, y, c):
            pix = z[:, y == c]
            return (pix / pix.norm(dim=0, keepdim=True)).mean(1)

        mus = {(side, c): proto(z, y, c) for side, z, y in (("a", za, ya), ("b", zb, yb)) for c in classes}

        def side_loss(z, y, me, other):
            per_class = []
            for c in classes:
                terms = []
                for h in range(y.shape[0]):
                    for w in range(y.shape[1]):
                        if int(y[h, w]) != c:
                            continue
                        zp = z[:, h, w]
                        s = {(sd, cc): math.exp(cos(zp, mus[(sd, cc)]) / temperature)
                             for sd in (me, other) for cc in classes}
                        if variant == "intra":
                            zsum = sum(s[(me, cc)] for cc in classes)
                            terms.append(-math.log(s[(me, c)] / zsum))
                        else:
                            zsum = sum(s.values())
                            terms.append(0.5 * (-math.log(s[(me, c)] / zsum) - math.log(s[(other, c)] / zsum)))
                per_class.append(np.mean(terms))
            return np.mean(per_class)

        pair_losses.append(side_loss(za, ya, "a", "b") + side_loss(zb, yb, "b", "a"))
    return float(np.mean(pair_losses)) if pair_losses else 0.0


def random_case(seed, b=3, d=5, h=6, w=7, k=4):
    g = torch.Generator().manual_seed(seed)
    z_a, z_b = torch.randn(b, d, h, w, generator=g), torch.randn(b, d, h, w, generator=g)
    y_a, y_b = torch.randint(0, k, (b, h, w), generator=g), torch.randint(0, k, (b, h, w), generator=g)
    return z_a, z_b, y_a, y_b


@pytest.mark.parametrize("variant", ["inter", "intra"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_brute_force(seed, variant):
    z_a, z_b, y_a, y_b = random_case(seed)
    y_b[0][y_b[0] == 2] = 1  # a class absent from one image of a pair
    tau = [0.1, 0.5, 1.0][seed]
    got = local_contrastive_loss(z_a, z_b, y_a, y_b, temperature=tau, n_anchors=None, variant=variant)
    want = brute_force_loss(z_a, z_b, y_a, y_b, temperature=tau, variant=variant)
    assert got.item() == pytest.approx(want, rel=1e-4)


def test_background_argument_and_relabelling_invariance():
    z_a, z_b, y_a, y_b = random_case(3)
    base = local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=None)
    perm = torch.tensor([0, 3, 1, 2])  # foreground classes permuted, background kept
    assert local_contrastive_loss(z_a, z_b, perm[y_a], perm[y_b], n_anchors=None).item() == pytest.approx(base.item(), rel=1e-5)
    perm = torch.tensor([2, 0, 3, 1])  # background moved to label 2 and declared as such
    moved = local_contrastive_loss(z_a, z_b, perm[y_a], perm[y_b], n_anchors=None, background=2)
    assert moved.item() == pytest.approx(base.item(), rel=1e-5)


def _clusters(separated: bool, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (2, 8, 8), generator=g)
    centres = torch.eye(16)[:4] * 5.0
    z = centres[y].permute(0, 3, 1, 2) + 0.3 * torch.randn(2, 16, 8, 8, generator=g)
    if not separated:
        z = torch.randn(2, 16, 8, 8, generator=g)
    return z, y


def test_tight_separated_clusters_give_lower_loss():
    z_good, y = _clusters(True)
    z_bad, _ = _clusters(False)
    good = local_contrastive_loss(z_good, z_good.flip(0), y, y.flip(0), n_anchors=None)
    bad = local_contrastive_loss(z_bad, z_bad.flip(0), y, y.flip(0), n_anchors=None)
    assert good < bad - 1.0
    # lower bound: with 3 shared classes the inter loss is >= 2·log(2)·... > 0; perfect clusters approach 2·log 2
    assert good.item() > 0


def test_finite_gradients_and_random_anchors():
    z_a, z_b, y_a, y_b = random_case(4, h=16, w=16)
    z_a.requires_grad_(True)
    z_b.requires_grad_(True)
    loss = local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=3, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()
    assert z_a.grad.abs().sum() > 0
    # the same generator seed gives the same anchors; anchors average to the all-pixel loss
    again = local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=3, generator=torch.Generator().manual_seed(0))
    assert again.item() == pytest.approx(loss.item())
    g = torch.Generator().manual_seed(1)
    draws = [local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=3, generator=g).item() for _ in range(300)]
    full = local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=None).item()
    assert np.mean(draws) == pytest.approx(full, rel=0.03)
    # n_anchors larger than every class = all pixels
    assert local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=10_000).item() == pytest.approx(full, rel=1e-5)


def test_missing_classes_do_not_give_nan():
    z_a, z_b, y_a, y_b = random_case(5)
    z_a.requires_grad_(True)
    y_a[0] = 0            # pair 0: image a is all background → no shared class → pair skipped
    y_b[1] = 1            # pair 1: image b has one class only
    loss = local_contrastive_loss(z_a, z_b, y_a, y_b, n_anchors=None)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all()
    assert loss.item() == pytest.approx(brute_force_loss(z_a.detach(), z_b, y_a, y_b), rel=1e-4)
    zero = local_contrastive_loss(z_a, z_b, torch.zeros_like(y_a), y_b)
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()


@pytest.mark.parametrize("bad, message", [
    (dict(z_b=torch.zeros(3, 5, 6, 6)), r"z_a and z_b must be float \(B, D, H, W\) embeddings of the same shape"),
    (dict(y_a=torch.zeros(3, 6, 7)), r"y_a must be a \(B, H, W\) = \(3, 6, 7\) integer label map; got .*float32"),
    (dict(y_a=-torch.ones(3, 6, 7, dtype=torch.long)), "y_a must hold non-negative class indices; got min -1"),
    (dict(y_b=torch.zeros(3, 1, 6, 7, dtype=torch.long)), r"y_b must be a \(B, H, W\).*got \(3, 1, 6, 7\)"),
    (dict(z_a=torch.full((3, 5, 6, 7), float("nan"))), "z_a and z_b must be finite; got NaN or inf"),
    (dict(temperature=0.0), "temperature must be a finite number > 0; got 0.0"),
    (dict(n_anchors=0), "n_anchors must be a positive int or None"),
    (dict(variant="both"), "variant must be 'inter' or 'intra'; got 'both'"),
])
def test_bad_inputs_raise(bad, message):
    z_a, z_b, y_a, y_b = random_case(6)
    args = dict(z_a=z_a, z_b=z_b, y_a=y_a, y_b=y_b)
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        local_contrastive_loss(**args)


def test_class_prototypes_are_class_means():
    z = torch.arange(2 * 3 * 4, dtype=torch.float).reshape(1, 2, 3, 4)
    y = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 1], [0, 0, 0, 0]]])
    mu, counts = class_prototypes(z, y, 4)
    assert counts.tolist() == [[7, 3, 2, 0]]
    assert torch.allclose(mu[0, 2], z[0][:, y[0] == 2].mean(1))
    assert torch.equal(mu[0, 3], torch.zeros(2))


def test_model_shapes_and_bad_input():
    net = UNetWithProjection(num_classes=4, features=(8, 16, 32), embed_dim=16)
    logits, z = net(torch.randn(2, 1, 32, 32), embed=True)
    assert logits.shape == (2, 4, 32, 32) and z.shape == (2, 16, 32, 32)
    with pytest.raises(ValueError, match="divisible by 4; got \\(2, 1, 30, 30\\)"):
        net(torch.randn(2, 1, 30, 30))


def test_pairs_layout():
    a, b, kinds = make_pairs(8, 8, n_same=2)
    assert kinds == {"same slice": 4, "labelled-unlabelled": 8, "unlabelled-unlabelled": 4, "labelled-labelled": 4}
    assert len(a) == len(b) == 20 and int(max(a.max(), b.max())) == 8 + 8 + 2 + 2 - 1
    with pytest.raises(ValueError, match="need n_labelled >= 1, n_unlabelled >= 2"):
        make_pairs(4, 1)


def test_largest_component_removes_islands():
    lab = torch.zeros(3, 10, 10, dtype=torch.long)
    lab[:, 2:6, 2:6] = 1
    lab[1, 8, 8] = 1        # an island of class 1
    lab[0, 0, 9] = 2
    out = largest_component(lab, 3)
    assert out[1, 8, 8] == 0 and out[:, 2:6, 2:6].eq(1).all() and out[0, 0, 9] == 2


def _tiny_split():
    from medtut.data.cardiac import make_cardiac_dataset

    x, y = make_cardiac_dataset(7, size=32, n_slices=4, seed=0)
    return make_split(x, y, n_labelled=1, n_val=1, n_test=2, draw=0)


def test_training_runs_and_is_deterministic():
    split = _tiny_split()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        net = UNetWithProjection(features=(8, 16, 32))
        net, base = train_baseline(net, split, num_steps=4, batch_size=4, eval_every=2, progress=False,
                                   device="cpu")
        cfg = Config("local contrastive", num_steps=4, rounds=2, batch_labelled=4, batch_unlabelled=4,
                     eval_every=2)
        net, result = train_semi_supervised(net, split, cfg, progress=False)
        hist, hist2, pseudo = base.history, result.history, result.pseudo_labels
        results.append((hist["loss"], hist2["loss"], evaluate_dice(net, split.test_images, split.test_labels, 4)))
    assert len(hist2["loss"]) == 4 and "contrastive" in hist2.keys() and set(hist2["round"]) == {1, 2}
    assert hist2.steps("loss").tolist() == [1, 2, 3, 4]            # rounds continue one history
    assert result.wall_time_s >= hist2.wall_time_s > 0
    assert np.array_equal(results[0][1], results[1][1])
    assert np.allclose(results[0][2], results[1][2], equal_nan=True)
    assert len(pseudo) == len(split.unlabelled_images) and pseudo[0].shape == split.unlabelled_images[0].shape
    labels = pseudo_label(net, split.unlabelled_images, 4)
    assert labels[0].dtype == torch.long


def test_config_and_split_validation():
    with pytest.raises(ValueError, match="method must be one of .*got 'mean teacher'"):
        Config(method="mean teacher")
    with pytest.raises(ValueError, match="num_steps must be >= rounds .*got num_steps=2, rounds=3"):
        Config(num_steps=2, rounds=3)
    x = torch.zeros(4, 2, 32, 32)
    with pytest.raises(ValueError, match="need n_labelled, n_val, n_test >= 1 and at least one unlabelled subject"):
        make_split(x, x.long(), n_labelled=2, n_val=1, n_test=1)
    split = make_split(torch.zeros(10, 2, 32, 32), torch.zeros(10, 2, 32, 32, dtype=torch.long), 2, 2, 2, draw=3)
    other = make_split(torch.zeros(10, 2, 32, 32), torch.zeros(10, 2, 32, 32, dtype=torch.long), 2, 2, 2, draw=4)
    assert len(split.unlabelled_images) == 4 and split.labelled_ids != other.labelled_ids


def test_selection_rules_oracle_labels_and_slices_seen():
    split = _tiny_split()
    torch.manual_seed(0)
    net = UNetWithProjection(features=(8, 16, 32))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = dict(num_steps=4, batch_labelled=4, batch_unlabelled=4, n_same=1, eval_every=2)
    # "last" keeps the final weights: they differ from the start even when validation got worse
    _, last = continue_and_evaluate(net, start, split, Config("local contrastive", select="last", **cfg),
                                    progress=False, monitor_test=True)
    assert any(not torch.equal(last.state[k], start[k]) for k in start if start[k].is_floating_point())
    assert len(last.history["test_dice"]) == len(last.history["val_dice"]) == 2
    assert last.slices_seen == 4 * (4 + 4)
    _, lo = continue_and_evaluate(net, start, split, Config("labelled-only", **cfg), progress=False)
    assert lo.slices_seen == 4 * 4 and "test_dice" not in lo.history.keys()
    # oracle pseudo-labels are the hidden labels themselves
    _, oracle = continue_and_evaluate(net, start, split, Config("local contrastive", oracle_pseudo_labels=True, **cfg),
                                      progress=False)
    assert all(torch.equal(p, t.long()) for p, t in zip(oracle.pseudo_labels, split.unlabelled_labels))
