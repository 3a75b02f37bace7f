"""Tests of medtut.auc_alm: the AUC constraint, the Augmented Lagrangian, base losses, training, evaluation."""
import numpy as np
import pytest
import torch

from medtut import auc_alm as A
from medtut.data.imbalanced import make_imbalanced_digits, shift_and_noise


def brute_force_q(logits, targets, delta):
    out = []
    for i in range(len(logits)):
        if targets[i] == 1:
            out.append(sum(max(0.0, delta - (float(logits[i]) - float(logits[j])))
                           for j in range(len(logits)) if targets[j] == 0))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- the constraint
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("delta", [0.0, 0.5, 2.0])
def test_constraints_match_double_loop(seed, delta):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(17, generator=g, dtype=torch.float64)
    targets = (torch.rand(17, generator=g) < 0.3).long()
    targets[0], targets[1] = 1, 0
    q = A.auc_constraints(logits, targets, delta)
    assert q.shape == (int(targets.sum()),)
    torch.testing.assert_close(q, brute_force_q(logits, targets, delta))


def test_constraints_accept_column_and_float_targets():
    logits = torch.tensor([[2.0], [0.0], [1.0]])
    targets = torch.tensor([[1.0], [0.0], [1.0]])
    q = A.auc_constraints(logits, targets, 1.5)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.5]))  # batch order of the positives


def test_constraints_zero_exactly_when_every_positive_leads_by_delta():
    logits = torch.tensor([3.0, 0.0, 2.0, -1.0])
    targets = torch.tensor([1, 0, 1, 0])
    assert torch.equal(A.auc_constraints(logits, targets, 2.0), torch.zeros(2))   # leads of 2 and 3
    q = A.auc_constraints(logits, targets, 2.0 + 1e-3)                             # one lead < δ
    assert q[0] == 0 and q[1] > 0


def test_constraints_empty_without_pairs():
    assert A.auc_constraints(torch.randn(4), torch.ones(4), 1.0).shape == (0,)
    assert A.auc_constraints(torch.randn(4), torch.zeros(4), 1.0).shape == (0,)


def test_gradient_flows_only_through_violating_pairs():
    logits = torch.tensor([2.0, 0.5, 1.8, 3.0, -5.0], requires_grad=True)
    targets = torch.tensor([1, 1, 0, 0, 0])
    A.auc_constraints(logits, targets, 0.5).sum().backward()
    # violating pairs (f_i − f_j < 0.5): (2.0, 1.8), (2.0, 3.0), (0.5, 1.8), (0.5, 3.0); the negative -5.0
    # is beaten by both positives with a margin, so it gets no gradient.
    torch.testing.assert_close(logits.grad, torch.tensor([-2.0, -2.0, 2.0, 2.0, 0.0]))


@pytest.mark.parametrize("bad, message", [
    ((torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), 1.0), r"must both be \(B,\) or \(B, 1\).*got \(4, 2\) and \(4,\)"),
    ((torch.randn(4), torch.tensor([0, 1, 0]), 1.0), r"same B; got \(4,\) and \(3,\)"),          # length mismatch
    ((torch.randn(4), torch.tensor([0, 2, 0, 1]), 1.0), r"targets must be binary.*got values \[0, 1, 2\]"),
    ((torch.tensor([0.0, float("nan"), 1.0, 2.0]), torch.tensor([0, 1, 0, 1]), 1.0), "logits contain NaN or inf"),
    ((torch.randn(4), torch.tensor([0, 1, 0, 1]), -0.1), "delta .* must be a finite number >= 0; got -0.1"),
    ((torch.arange(4), torch.tensor([0, 1, 0, 1]), 1.0), "logits must be a floating-point tensor; got dtype torch.int64"),
])
def test_constraints_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        A.auc_constraints(*bad)


def test_error_message_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        A.auc_constraints(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))


# ---------------------------------------------------------------- the Augmented Lagrangian
def test_batch_term_and_multiplier_update():
    alm = A.AugmentedLagrangian(6, delta=1.0, mu0=0.5, schedule="constant")
    alm.lambdas[4] = 2.0
    logits = torch.tensor([0.0, 0.2, 1.0], requires_grad=True)
    targets = torch.tensor([1, 0, 1])
    indices = torch.tensor([4, 1, 0])
    term, q = alm.penalty(logits, targets, indices)
    # q = [max(0, 1 − (0 − 0.2)), max(0, 1 − (1 − 0.2))] = [1.2, 0.2]; |P||N| = 2
    torch.testing.assert_close(q, torch.tensor([1.2, 0.2]))
    expected = (2.0 * 1.2 + 0.25 * 1.2 ** 2 + 0.0 * 0.2 + 0.25 * 0.2 ** 2) / 2
    assert abs(float(term.detach()) - expected) < 1e-6
    assert term.requires_grad
    torch.testing.assert_close(alm.lambdas, torch.tensor([0.1, 0, 0, 0, 2.6, 0], dtype=torch.float64))


def test_multipliers_only_grow():
    alm = A.AugmentedLagrangian(30, delta=0.5, mu0=0.1, schedule="constant")
    g = torch.Generator().manual_seed(0)
    previous = alm.lambdas.clone()
    for _ in range(20):
        idx = torch.randperm(30, generator=g)[:10]
        alm.penalty(torch.randn(10, generator=g), (idx % 3 == 0).long(), idx)
        assert (alm.lambdas >= previous).all()
        previous = alm.lambdas.clone()
    assert (alm.lambdas[torch.arange(30) % 3 != 0] == 0).all()   # negatives never get a multiplier


def test_multipliers_follow_their_samples_through_shuffling():
    """Train-free check: logits are a fixed function of the sample, batches come from a shuffling loader."""
    n = 40
    scores = torch.linspace(-1, 1, n)
    labels = (torch.arange(n) % 5 == 0).float()
    ds = torch.utils.data.TensorDataset(scores, labels, torch.arange(n))
    expected = torch.zeros(n, dtype=torch.float64)
    alm = A.AugmentedLagrangian(n, delta=0.3, mu0=0.2, schedule="constant")
    for epoch in range(3):
        loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True,
                                             generator=torch.Generator().manual_seed(epoch))
        for x, y, idx in loader:
            alm.penalty(x, y, idx)
            # what λ should be: the same update written per sample, addressed by its dataset index
            for k in range(len(idx)):
                if y[k] == 1:
                    qk = sum(max(0.0, 0.3 - float(x[k] - x[m])) for m in range(len(idx)) if y[m] == 0)
                    expected[int(idx[k])] += 0.2 * qk
    torch.testing.assert_close(alm.lambdas, expected)
    # the lowest-scored positive accumulated a larger multiplier than the highest-scored one
    pos = torch.nonzero(labels == 1).flatten()
    assert alm.lambdas[pos[0]] > alm.lambdas[pos[-1]]


def test_paper_mu_schedule():
    alm = A.AugmentedLagrangian(5, mu0=0.01, rho=2.0)
    assert abs(alm.mu_max - 0.08) < 1e-12
    mus = [alm.end_epoch(a) for a in [0.80, 0.85, 0.90, 0.91, 0.80, 0.82, 0.70]]
    # epoch 0: nothing; 1: remember 0.85; 2: ×2 unconditionally; 3: no drop → keep;
    # 4: drop of 0.11 > 0.05 → ×2; 5: no drop; 6: drop of 0.12 → ×2 reaches mu_max = 0.08
    assert np.allclose(mus, [0.01, 0.01, 0.02, 0.02, 0.04, 0.04, 0.08])
    assert not alm.frozen
    assert alm.end_epoch(0.9) == 0.08 and alm.frozen      # the next ×2 would pass mu_max: frozen for good
    assert alm.end_epoch(0.1) == 0.08
    small = A.AugmentedLagrangian(5, mu0=1e-4, rho=2.0)
    assert abs(small.mu_max - 1e-4 * 32) < 1e-15
    perfect = A.AugmentedLagrangian(5, mu0=0.01)
    assert [perfect.end_epoch(a) for a in [0.9, 0.9, 1.0, 0.5]] == [0.01, 0.01, 0.01, 0.01]
    assert len(perfect.lambda_history) == 4


def test_geometric_schedule_and_errors():
    alm = A.AugmentedLagrangian(3, mu0=0.1, rho=2.0, mu_max=0.5, schedule="geometric", warmup=1)
    assert np.allclose([alm.end_epoch() for _ in range(5)], [0.1, 0.2, 0.4, 0.5, 0.5])
    with pytest.raises(ValueError, match="validation AUC"):
        A.AugmentedLagrangian(3).end_epoch(None)
    with pytest.raises(ValueError, match="schedule"):
        A.AugmentedLagrangian(3, schedule="linear")
    with pytest.raises(ValueError, match="rho"):
        A.AugmentedLagrangian(3, rho=1.0)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        A.AugmentedLagrangian(3).penalty(torch.randn(2), torch.tensor([0, 1]), torch.tensor([0, 7]))


# ---------------------------------------------------------------- base losses
def test_base_losses_against_formulas():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0])
    y = t.double()
    p = torch.sigmoid(x)
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    torch.testing.assert_close(A.make_loss("bce")(x, t), bce.mean())
    torch.testing.assert_close(A.make_loss("wbce", pos_weight=4.0)(x, t),
                               (-(4 * y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean())
    pt = torch.where(t == 1, p, 1 - p)
    torch.testing.assert_close(A.make_loss("focal", gamma=2.0)(x, t).double(),
                               (-(1 - pt) ** 2 * torch.log(pt)).mean(), atol=1e-5, rtol=1e-5)
    afl = torch.where(t == 1, -torch.log(p), -(p ** 1.5) * torch.log(1 - p))
    torch.testing.assert_close(A.make_loss("A-FL", gamma=1.5)(x, t), afl.mean())
    pairs = [(1 - (p[i] - p[j])) ** 2 for i in range(12) for j in range(12) if t[i] == 1 and t[j] == 0]
    torch.testing.assert_close(A.make_loss("mbauc")(x, t), torch.stack(pairs).mean())
    zero = A.make_loss("mbauc")(x.clone().requires_grad_(), torch.zeros(12))
    assert float(zero.detach()) == 0 and zero.requires_grad
    with pytest.raises(ValueError, match="unknown base loss"):
        A.make_loss("hinge")


# ---------------------------------------------------------------- evaluation helpers
def test_fpr_at_tpr_hand_computed():
    # positives 0.9, 0.8, 0.3, 0.1; negatives 0.7, 0.6, 0.5, 0.2, 0.0
    y = np.array([1, 1, 0, 0, 0, 1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1, 0.0])
    out = A.evaluate_scores(y, s, tprs=(0.5, 0.75, 0.875, 1.0))
    # ROC vertices (FPR, TPR): (0,.5) → (.6,.5) → (.6,.75) → (.8,.75) → (.8,1)
    assert out["FPR@TPR50"] == 0.0
    assert abs(out["FPR@TPR75"] - 0.6) < 1e-12
    assert abs(out["FPR@TPR88"] - 0.8) < 1e-12
    assert abs(out["FPR@TPR100"] - 0.8) < 1e-12
    assert abs(out["AUC"] - 13 / 20) < 1e-12   # 13 of the 20 positive-negative pairs are ranked right
    # the threshold that reaches TPR 0.75 is the third-highest positive (0.3): the low positives decide
    assert A.threshold_at_tpr(y, s, 0.75) == 0.3
    c = A.confusion_at_threshold(y, s, 0.3)
    assert (c["TP"], c["FN"], c["FP"], c["TN"]) == (3, 1, 3, 2) and c["TPR"] == 0.75 and c["FPR"] == 0.6
    fpr, tpr, thr = A.roc_points(y, s)
    assert fpr[-1] == 1 and tpr[-1] == 1
    np.testing.assert_allclose(A.ensemble_logits([[1, 2], [3, 4]]), [2, 3])
    assert A.paired_wins([0.3, 0.2, 0.1], [0.2, 0.2, 0.0]) == 2
    with pytest.raises(ValueError, match="y_true must hold only 0 and 1"):
        A.evaluate_scores([0, 1, 2], [0.1, 0.2, 0.3])


# ---------------------------------------------------------------- training
def _tiny_data():
    d = make_imbalanced_digits(3, ratio=30, seed=0)
    return d


def test_train_binary_classifier_learns_and_is_deterministic():
    d = _tiny_data()
    kw = dict(num_epochs=3, seed=0, X_val=d.X_val, y_val=d.y_val, augment=shift_and_noise, device="cpu")
    torch.manual_seed(0)
    m1, info = A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, loss="bce",
                                         alm={"delta": 1.0, "mu0": 0.01}, **kw)
    torch.manual_seed(0)
    m2, _ = A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train,
                                      A.TrainConfig(loss="bce", alm={"delta": 1.0, "mu0": 0.01}), **kw)
    s1, s2 = A.predict_logits(m1, d.X_test), A.predict_logits(m2, d.X_test)
    np.testing.assert_array_equal(s1, s2)
    assert A.evaluate_scores(d.y_test, s1)["AUC"] > 0.8
    alm = info.alm
    pos = (d.y_train == 1).numpy()
    assert len(alm.lambda_history) == 3 and (alm.lambdas.numpy()[~pos] == 0).all()
    assert alm.lambdas.numpy()[pos].max() > 0
    assert len(info.history["val_auc"]) == 3 and "alm_term" in info.history.keys()
    assert info.wall_time_s == info.history.wall_time_s > 0 and info.best_epoch is None
    assert not hasattr(m1, "training_info")


def test_train_without_alm_and_each_base_loss_runs():
    d = _tiny_data()
    for loss in A.BASE_LOSSES:
        torch.manual_seed(0)
        m, _ = A.train_binary_classifier(A.TinyCNN(), d.X_train[:200], d.y_train[:200].clone().index_fill_(0, torch.tensor([0]), 1),
                                         loss=loss, num_epochs=1, seed=0, optimizer="sgd" if loss == "bce" else "adam")
        assert np.isfinite(A.predict_logits(m, d.X_test[:10])).all()


def test_train_bad_input():
    d = _tiny_data()
    with pytest.raises(ValueError, match="both classes"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train[:5], torch.zeros(5), num_epochs=1)
    with pytest.raises(ValueError, match="labels must be"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train[:-1], num_epochs=1)
    with pytest.raises(ValueError, match="validation AUC"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, alm={"delta": 1.0}, num_epochs=1)
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'sgd'; got 'lbfgs'"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, optimizer="lbfgs", num_epochs=1)
    with pytest.raises(ValueError, match="alm must be None or a dict"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, alm=0.5, num_epochs=1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['epochs'\]"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, epochs=1)
    with pytest.raises(ValueError, match="num_epochs must be an int >= 1; got 0"):
        A.TrainConfig(num_epochs=0)
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device name"):
        A.train_binary_classifier(A.TinyCNN(), d.X_train, d.y_train, num_epochs=1, device="gpu")


def test_resnet10_shape():
    net = A.resnet10(3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2,)
