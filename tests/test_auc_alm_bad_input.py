"""Bad input to every public function of medtut.auc_alm gets a ValueError (or TypeError) that names the argument,
what was expected and what arrived (issue 24: "bad input gets a clear error")."""
import numpy as np
import pytest
import torch

from medtut import auc_alm as A

L = torch.tensor([0.5, -1.0, 2.0, 0.0])
T = torch.tensor([1, 0, 1, 0])
I = torch.arange(4)
X = torch.rand(6, 1, 8, 8)
Y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
YN = np.array([0, 1, 0, 1, 0, 0])
S = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4])
NAN = float("nan")


def _alm(**kw):
    return A.AugmentedLagrangian(4, **kw)


def _train(**kw):
    args = dict(num_epochs=1, progress=False)
    args.update(kw)
    model = args.pop("model", A.TinyCNN())
    return A.train_binary_classifier(model, args.pop("X", X), args.pop("y", Y), **args)


CASES = {
    # the constraint
    "constraints: None logits": (lambda: A.auc_constraints(None, T), "must be torch tensors"),
    "constraints: NaN logits": (lambda: A.auc_constraints(L * NAN, T), "logits contain NaN or inf"),
    "constraints: label 2": (lambda: A.auc_constraints(L, T + 1), "targets must be binary"),
    "constraints: shapes differ": (lambda: A.auc_constraints(L, T[:3]), r"same B; got \(4,\) and \(3,\)"),
    "constraints: delta nan": (lambda: A.auc_constraints(L, T, NAN), "delta .* must be a finite number >= 0"),
    "constraints: delta -1": (lambda: A.auc_constraints(L, T, -1.0), "delta .* must be a finite number >= 0"),
    # the Augmented Lagrangian
    "ALM: num_samples 0": (lambda: A.AugmentedLagrangian(0), "num_samples must be a positive int"),
    "ALM: num_samples True": (lambda: A.AugmentedLagrangian(True), "num_samples must be a positive int"),
    "ALM: num_samples 2.5": (lambda: A.AugmentedLagrangian(2.5), "num_samples must be a positive int"),
    "ALM: mu0 0": (lambda: _alm(mu0=0.0), "mu0 must be a finite number > 0; got 0.0"),
    "ALM: mu0 str": (lambda: _alm(mu0="0.01"), "mu0 must be a finite number > 0; got '0.01'"),
    "ALM: rho inf": (lambda: _alm(rho=float("inf")), "rho must be a finite number > 1; got inf"),
    "ALM: rho nan": (lambda: _alm(rho=NAN), "rho must be a finite number > 1; got nan"),
    "ALM: mu_max nan": (lambda: _alm(mu_max=NAN), "mu_max must be a finite number > 0; got nan"),
    "ALM: mu_max < mu0": (lambda: _alm(mu0=0.1, mu_max=0.01), "mu_max must be >= mu0"),
    "ALM: auc_drop -0.1": (lambda: _alm(auc_drop=-0.1), "auc_drop must be a finite number >= 0; got -0.1"),
    "ALM: warmup -1": (lambda: _alm(warmup=-1), "warmup must be an int >= 0; got -1"),
    "ALM: warmup 1.5": (lambda: _alm(warmup=1.5), "warmup must be an int >= 0; got float 1.5"),
    "ALM: schedule": (lambda: _alm(schedule="cosine"), r"schedule must be one of \('paper'"),
    "ALM: schedule None": (lambda: _alm(schedule=None), r"schedule must be one of"),
    "penalty: float indices": (lambda: _alm().penalty(L, T, I.float()), "indices must be .B,. integer positions"),
    "penalty: bool indices": (lambda: _alm().penalty(L, T, I > 1), "indices must be .B,. integer positions"),
    "penalty: indices too short": (lambda: _alm().penalty(L, T, I[:3]), r"got shape \(3,\)"),
    "penalty: index out of range": (lambda: _alm().penalty(L, T, I + 1), r"indices must lie in \[0, 3\]; got range \[1, 4\]"),
    "penalty: NaN logits": (lambda: _alm().penalty(L * NAN, T, I), "logits contain NaN or inf"),
    "update_multipliers: NaN q": (lambda: _alm().update_multipliers(torch.tensor([0, 1]), torch.tensor([NAN, 1.0])),
                                  "q must hold finite constraint values >= 0"),
    "update_multipliers: negative q": (lambda: _alm().update_multipliers(torch.tensor([0, 1]), torch.tensor([-1.0, 1.0])),
                                       "q must hold finite constraint values >= 0"),
    "update_multipliers: index out of range": (lambda: _alm().update_multipliers(torch.tensor([0, 9]), torch.ones(2)),
                                               r"indices must lie in \[0, 3\]"),
    "update_multipliers: float indices": (lambda: _alm().update_multipliers(torch.tensor([0.0, 1.0]), torch.ones(2)),
                                          "indices must be integer positions"),
    "update_multipliers: shapes": (lambda: _alm().update_multipliers(torch.tensor([0, 1]), torch.ones(3)),
                                   "indices and q must have the same shape"),
    "update_multipliers: q list": (lambda: _alm().update_multipliers(torch.tensor([0]), [1.0]), "q must be a torch tensor"),
    "end_epoch: nan": (lambda: _alm().end_epoch(NAN), r"val_auc must be a finite number >= 0; got nan"),
    "end_epoch: nan (geometric)": (lambda: _alm(schedule="geometric").end_epoch(NAN), "val_auc must be a finite number"),
    "end_epoch: 1.5": (lambda: _alm().end_epoch(1.5), r"val_auc must be the validation AUC in \[0, 1\]; got 1.5"),
    "end_epoch: str": (lambda: _alm().end_epoch("0.9"), "val_auc must be a finite number >= 0; got str"),
    "end_epoch: paper without AUC": (lambda: _alm().end_epoch(None), "needs the validation AUC"),
    # base losses
    "make_loss: bce with pos_weight": (lambda: A.make_loss("bce", pos_weight=5), r"pos_weight is only used by the weighted BCE.*make_loss\('wbce'"),
    "make_loss: focal with pos_weight": (lambda: A.make_loss("focal", pos_weight=5), "pos_weight is only used by the weighted BCE"),
    "make_loss: bce with gamma": (lambda: A.make_loss("bce", gamma=2.0), "gamma is only used by the focal losses"),
    "make_loss: mbauc with gamma": (lambda: A.make_loss("mbauc", gamma=2.0), "gamma is only used by the focal losses"),
    "make_loss: wbce pos_weight 0": (lambda: A.make_loss("wbce", pos_weight=0), "pos_weight must be a finite number > 0; got 0"),
    "make_loss: wbce pos_weight inf": (lambda: A.make_loss("wbce", pos_weight=float("inf")), "pos_weight must be a finite number > 0; got inf"),
    "make_loss: wbce pos_weight str": (lambda: A.make_loss("wbce", pos_weight="5"), "pos_weight must be a finite number > 0; got str"),
    "make_loss: focal gamma -1": (lambda: A.make_loss("focal", gamma=-1.0), "gamma must be a finite number >= 0; got -1.0"),
    "make_loss: asym_focal gamma nan": (lambda: A.make_loss("asym_focal", gamma=NAN), "gamma must be a finite number >= 0; got nan"),
    "make_loss: unknown": (lambda: A.make_loss("hinge"), r"unknown base loss 'hinge'; choose one of \('bce'"),
    "make_loss: None": (lambda: A.make_loss(None), "name must be a base-loss name"),
    "make_loss: bad logits at call": (lambda: A.make_loss("bce")(L[:, None].repeat(1, 2), T), r"must both be \(B,\) or \(B, 1\)"),
    "asymmetric_focal_loss: gamma -1": (lambda: A.asymmetric_focal_loss(L, T, -1.0), "gamma must be a finite number >= 0"),
    "asymmetric_focal_loss: int logits": (lambda: A.asymmetric_focal_loss(T, T), "logits must be a floating-point tensor"),
    "mini_batch_auc_loss: label -1": (lambda: A.mini_batch_auc_loss(L, T - 1), "targets must be binary"),
    # models
    "TinyCNN: in_channels 0": (lambda: A.TinyCNN(0), "in_channels must be an int >= 1; got 0"),
    "TinyCNN: width 2.5": (lambda: A.TinyCNN(width=2.5), "width must be an int >= 1; got float 2.5"),
    "TinyCNN: image_size 1": (lambda: A.TinyCNN(image_size=1), "image_size must be an int >= 2; got 1"),
    "TinyCNN: wrong image size": (lambda: A.TinyCNN()(torch.rand(2, 1, 28, 28)), r"TinyCNN expects x \(B, 1, 8, 8\).*got shape \(2, 1, 28, 28\)"),
    "TinyCNN: wrong channels": (lambda: A.TinyCNN()(torch.rand(2, 3, 8, 8)), r"TinyCNN expects x \(B, 1, 8, 8\)"),
    "TinyCNN: 3-D input": (lambda: A.TinyCNN()(torch.rand(1, 8, 8)), r"got shape \(1, 8, 8\)"),
    "resnet10: in_channels 0": (lambda: A.resnet10(0), "in_channels must be an int >= 1; got 0"),
    # prediction
    "predict_logits: device gpu": (lambda: A.predict_logits(A.TinyCNN(), X, device="gpu"), "device 'gpu' is not a torch device name"),
    "predict_logits: device bogus": (lambda: A.predict_logits(A.TinyCNN(), X, device="tpu0"), "device must name a torch device"),
    "predict_logits: batch_size 0": (lambda: A.predict_logits(A.TinyCNN(), X, batch_size=0), "batch_size"),
    "predict_logits: empty": (lambda: A.predict_logits(A.TinyCNN(), X[:0]), "non-empty batch"),
    "predict_logits: not a model": (lambda: A.predict_logits(lambda x: x, X), "model must be a torch.nn.Module"),
    "predict_logits: X None": (lambda: A.predict_logits(A.TinyCNN(), None), "X must be an array or tensor"),
    # configuration and training
    "TrainConfig: loss": (lambda: A.TrainConfig(loss="hinge"), "unknown base loss 'hinge'"),
    "TrainConfig: loss None": (lambda: A.TrainConfig(loss=None), "loss must be a base-loss name"),
    "TrainConfig: num_epochs True": (lambda: A.TrainConfig(num_epochs=True), "num_epochs must be an int >= 1; got True"),
    "TrainConfig: batch_size 0": (lambda: A.TrainConfig(batch_size=0), "batch_size must be an int >= 1; got 0"),
    "TrainConfig: lr nan": (lambda: A.TrainConfig(lr=NAN), "lr must be a positive number; got nan"),
    "TrainConfig: lr str": (lambda: A.TrainConfig(lr="3e-3"), "lr must be a positive number; got '3e-3'"),
    "TrainConfig: weight_decay -1": (lambda: A.TrainConfig(weight_decay=-1.0), "weight_decay must be >= 0"),
    "TrainConfig: optimizer": (lambda: A.TrainConfig(optimizer="lbfgs"), "optimizer must be 'adam' or 'sgd'"),
    "TrainConfig: select_best str": (lambda: A.TrainConfig(select_best="yes"), "select_best must be True or False"),
    "TrainConfig: loss_kwargs list": (lambda: A.TrainConfig(loss_kwargs=[2.0]), "loss_kwargs must be None or a dict"),
    "TrainConfig: alm unknown key": (lambda: A.TrainConfig(alm={"lr": 1.0}), r"unknown alm setting\(s\) \['lr'\]"),
    "TrainConfig: alm num_samples": (lambda: A.TrainConfig(alm={"num_samples": 3}), "set by train_binary_classifier"),
    "train: device gpu": (lambda: _train(device="gpu"), "device 'gpu' is not a torch device name"),
    "train: device cuda without GPU": ((lambda: _train(device="cuda")) if not torch.cuda.is_available()
                                       else (lambda: _train(device="cuda:99")), "asked for, but"),
    "train: not a model": (lambda: _train(model=object()), "model must be a torch.nn.Module"),
    "train: seed 1.5": (lambda: _train(seed=1.5), "seed must be an int; got float 1.5"),
    "train: augment not callable": (lambda: _train(augment=True), "augment must be None or a callable"),
    "train: X_val without y_val": (lambda: _train(X_val=X), "pass X_val and y_val together"),
    "train: X None": (lambda: _train(X=None), "X and its labels must be arrays or tensors"),
    "train: X empty": (lambda: _train(X=X[:0], y=Y[:0]), r"X is empty: got shape \(0, 1, 8, 8\)"),
    "train: X NaN": (lambda: _train(X=X * NAN), "X contains NaN or inf"),
    "train: X int": (lambda: _train(X=(X * 10).long()), "X must be a float tensor"),
    "train: labels 2": (lambda: _train(y=Y * 2), "labels must be binary 0/1"),
    "train: labels too short": (lambda: _train(y=Y[:-1]), r"labels must be \(N,\) with N = 6"),
    "train: one class": (lambda: _train(y=torch.zeros(6)), "the training set needs both classes"),
    "train: X_val empty": (lambda: _train(X_val=X[:0], y_val=Y[:0]), "X_val is empty"),
    "train: cfg dict": (lambda: _train(cfg={"num_epochs": 1}), "cfg must be an auc_alm.TrainConfig"),
    "train: unknown option": (lambda: _train(epochs=1), r"unknown option\(s\) \['epochs'\]"),
    "train: paper ALM without validation": (lambda: _train(alm={"delta": 1.0}), "validation AUC"),
    # evaluation
    "evaluate_scores: tprs scalar": (lambda: A.evaluate_scores(YN, S, 0.95), "tprs must be a non-empty sequence"),
    "evaluate_scores: tprs empty": (lambda: A.evaluate_scores(YN, S, ()), "tprs must be a non-empty sequence"),
    "evaluate_scores: tpr 95": (lambda: A.evaluate_scores(YN, S, (0.9, 95)), r"tprs must hold numbers in \(0, 1\].*got 95"),
    "evaluate_scores: tprs duplicate": (lambda: A.evaluate_scores(YN, S, (0.95, 0.951)), "tprs must be distinct"),
    "evaluate_scores: labels 2": (lambda: A.evaluate_scores(YN * 2, S), "y_true must hold only 0 and 1"),
    "threshold_at_tpr: lengths": (lambda: A.threshold_at_tpr(YN, S[:4], 0.9), "equally long.*got 6 labels and 4 scores"),
    "threshold_at_tpr: labels 0.5": (lambda: A.threshold_at_tpr(YN * 0.5, S, 0.9), "y_true must hold only 0 and 1"),
    "threshold_at_tpr: NaN score": (lambda: A.threshold_at_tpr(YN, S * NAN, 0.9), "scores must be finite"),
    "threshold_at_tpr: tpr 0": (lambda: A.threshold_at_tpr(YN, S, 0.0), r"tpr must lie in \(0, 1\]; got 0.0"),
    "threshold_at_tpr: tpr str": (lambda: A.threshold_at_tpr(YN, S, "0.9"), r"tpr must be a number in \(0, 1\]"),
    "threshold_at_tpr: no positive": (lambda: A.threshold_at_tpr(YN * 0, S, 0.9), "y_true has no positive"),
    "confusion_at_threshold: threshold nan": (lambda: A.confusion_at_threshold(YN, S, NAN), "threshold must be a number; got nan"),
    "confusion_at_threshold: threshold None": (lambda: A.confusion_at_threshold(YN, S, None), "threshold must be a number; got NoneType"),
    "confusion_at_threshold: lengths": (lambda: A.confusion_at_threshold(YN[:3], S, 0.5), "equally long"),
    "confusion_at_threshold: empty": (lambda: A.confusion_at_threshold([], [], 0.5), "must be non-empty"),
    "confusion_at_threshold: y None": (lambda: A.confusion_at_threshold(None, S, 0.5), "y_true must be an array-like"),
    "roc_points: labels 2": (lambda: A.roc_points(YN + 1, S), "y_true must hold only 0 and 1"),
    "ensemble_logits: ragged": (lambda: A.ensemble_logits([S, S[:4]]), r"equally long.*got lengths \[4, 6\]"),
    "ensemble_logits: empty": (lambda: A.ensemble_logits([]), "need a non-empty list"),
    "ensemble_logits: NaN": (lambda: A.ensemble_logits([S, S * NAN]), r"the vectors of seed\(s\) \[1\] hold NaN"),
    "ensemble_logits: None": (lambda: A.ensemble_logits(None), "logits_per_seed must be a list"),
    "paired_wins: lengths": (lambda: A.paired_wins([1.0, 2.0], [1.0]), "one value per seed each"),
    "paired_wins: NaN": (lambda: A.paired_wins([1.0, NAN], [0.5, 0.5]), "baseline and method must be finite"),
    "paired_wins: empty": (lambda: A.paired_wins([], []), "must be non-empty 1-D"),
    "paired_wins: lower_is_better str": (lambda: A.paired_wins([1.0], [0.5], "no"), "lower_is_better must be True or False"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_valid_input_still_works():
    # the checks only guard the boundary: the same calls with valid arguments run as before
    alm = A.AugmentedLagrangian(4, mu0=0.1, schedule="paper")
    term, q = alm.penalty(L, T, I)
    assert torch.isfinite(term) and q.shape == (2,)
    assert alm.end_epoch(0.8) == pytest.approx(0.1)
    assert A.make_loss("wbce", pos_weight=5)(L, T).ndim == 0
    assert set(A.evaluate_scores(YN, S)) == {"AUC", "FPR@TPR90", "FPR@TPR95", "FPR@TPR98"}
    assert A.confusion_at_threshold(YN, S, float("inf"))["TP"] == 0
    assert A.paired_wins(np.array([1.0, 2.0]), np.array([0.5, 3.0])) == 1


def test_case_count():
    # the closing note quotes this number
    assert len(CASES) >= 25
