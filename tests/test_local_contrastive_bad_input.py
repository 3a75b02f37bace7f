"""Bad input to every public function of medtut.local_contrastive gets a ValueError that names the argument,
what was expected and what arrived (issue: "bad input gets a clear error")."""
import numpy as np
import pytest
import torch

from medtut import local_contrastive as lc

Z = torch.randn(2, 4, 8, 8)
Y = torch.randint(0, 3, (2, 8, 8))


def _split():
    x = torch.rand(6, 2, 16, 16)
    y = torch.randint(0, 4, (6, 2, 16, 16))
    return lc.make_split(x, y, n_labelled=1, n_val=1, n_test=2)


def _net():
    return lc.UNetWithProjection(features=(4, 8))


CASES = {
    # loss
    "loss: background -1": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, background=-1), "background must be a class index >= 0"),
    "loss: temperature nan": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, temperature=float("nan")), "temperature must be a finite number > 0"),
    "loss: temperature -1": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, temperature=-1.0), "temperature must be a finite number > 0"),
    "loss: n_anchors True": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, n_anchors=True), "n_anchors must be a positive int or None"),
    "loss: n_anchors 0": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, n_anchors=0), "n_anchors must be a positive int or None"),
    "loss: z NaN": (lambda: lc.local_contrastive_loss(Z * float("nan"), Z, Y, Y), "must be finite; got NaN"),
    "loss: z int": (lambda: lc.local_contrastive_loss(Z.long(), Z.long(), Y, Y), "must be float .B, D, H, W."),
    "loss: z 3-D": (lambda: lc.local_contrastive_loss(Z[0], Z[0], Y, Y), "must be float .B, D, H, W."),
    "loss: shapes differ": (lambda: lc.local_contrastive_loss(Z, Z[:1], Y, Y), "of the same shape"),
    "loss: float labels": (lambda: lc.local_contrastive_loss(Z, Z, Y.float(), Y), "y_a must be a .B, H, W."),
    "loss: labels wrong size": (lambda: lc.local_contrastive_loss(Z, Z, Y[:, :4], Y), "y_a must be a .B, H, W."),
    "loss: negative label": (lambda: lc.local_contrastive_loss(Z, Z, Y - 1, Y), "non-negative class indices"),
    "loss: None": (lambda: lc.local_contrastive_loss(None, Z, Y, Y), "must be torch tensors"),
    "loss: variant": (lambda: lc.local_contrastive_loss(Z, Z, Y, Y, variant="both"), "variant must be 'inter' or 'intra'"),
    # prototypes and anchor terms
    "prototypes: label >= num_classes": (lambda: lc.class_prototypes(Z, Y, 2), r"y must hold classes in \[0, num_classes=2\)"),
    "prototypes: float labels": (lambda: lc.class_prototypes(Z, Y.float(), 3), "y must be an integer"),
    "prototypes: z 3-D": (lambda: lc.class_prototypes(Z[0], Y, 3), "z must be a float .B, D, H, W."),
    "anchor_terms: shapes": (lambda: lc.anchor_terms(torch.randn(2, 4, 5), torch.randn(2, 3, 4), torch.randn(2, 3, 5),
                                                     torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool)),
                             r"expected z_self \(B, D, M\)"),
    "anchor_terms: temperature 0": (lambda: lc.anchor_terms(torch.randn(2, 4, 5), torch.randn(2, 3, 4), torch.randn(2, 3, 4),
                                                            torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool), 0.0),
                                    "temperature must be a finite number > 0"),
    # data helpers
    "as_volumes: 3-D tensor": (lambda: lc.as_volumes(torch.zeros(2, 8, 8)), r"must be \(N, D, H, W\)"),
    "as_volumes: empty": (lambda: lc.as_volumes([]), "is empty"),
    "as_volumes: float labels": (lambda: lc.as_volumes([torch.zeros(2, 8, 8)], "labels", integer=True), "must hold integer labels"),
    "make_split: counts differ": (lambda: lc.make_split(torch.zeros(6, 2, 8, 8), torch.zeros(5, 2, 8, 8, dtype=torch.long), 1, 1, 1),
                                  "same number of subjects"),
    "make_split: too few": (lambda: lc.make_split(torch.zeros(3, 2, 8, 8), torch.zeros(3, 2, 8, 8, dtype=torch.long), 1, 1, 1),
                            "at least one unlabelled subject"),
    "make_split: negative draw": (lambda: lc.make_split(torch.zeros(6, 2, 8, 8), torch.zeros(6, 2, 8, 8, dtype=torch.long), 1, 1, 1, draw=-1),
                                  "draw must be an int >= 0"),
    "make_pairs: one unlabelled": (lambda: lc.make_pairs(4, 1), "n_unlabelled >= 2"),
    "make_pairs: n_same too big": (lambda: lc.make_pairs(2, 2, 3), "0 <= n_same <= both"),
    "spatial_augment: shapes": (lambda: lc.spatial_augment(torch.zeros(2, 1, 8, 8), torch.zeros(3, 8, 8), torch.Generator()),
                                r"expected images x \(B, 1, H, W\)"),
    "spatial_augment: scale": (lambda: lc.spatial_augment(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8), torch.Generator(), scale=(1.1, 0.9)),
                               r"0 < scale\[0\] <= scale\[1\]"),
    "intensity_augment: contrast": (lambda: lc.intensity_augment(torch.zeros(2, 1, 8, 8), torch.Generator(), contrast=(0.0, 1.0)),
                                    r"0 < contrast\[0\]"),
    "intensity_augment: 3-D": (lambda: lc.intensity_augment(torch.zeros(2, 8, 8), torch.Generator()), r"x must be a \(B, C, H, W\)"),
    "dice_of_labels: lengths": (lambda: lc.dice_of_labels([torch.zeros(2, 4, 4, dtype=torch.long)] * 2,
                                                          [torch.zeros(2, 4, 4, dtype=torch.long)], 3), "same number of volumes"),
    "dice_of_labels: shapes": (lambda: lc.dice_of_labels([torch.zeros(2, 4, 4, dtype=torch.long)],
                                                         [torch.zeros(2, 4, 5, dtype=torch.long)], 3), r"same \(D, H, W\) shape"),
    # model
    "model: one class": (lambda: lc.UNetWithProjection(num_classes=1), "need num_classes >= 2"),
    "model: norm": (lambda: lc.UNetWithProjection(norm="group"), "norm must be 'batch' or 'instance'"),
    "model: features": (lambda: lc.UNetWithProjection(features=(8,)), "features must list >= 2"),
    "model: odd input": (lambda: _net()(torch.zeros(1, 1, 9, 9)), "H, W divisible by 2"),
    "pseudo_label: num_classes": (lambda: lc.pseudo_label(_net(), [torch.zeros(2, 8, 8)], 1), "num_classes must be an int >= 2"),
    # configuration and training
    "Config: method": (lambda: lc.Config(method="mean teacher"), "method must be one of"),
    "Config: select": (lambda: lc.Config(select="best-test"), "select must be one of"),
    "Config: num_steps 2.5": (lambda: lc.Config(num_steps=2.5), "num_steps must be a positive int"),
    "Config: num_steps 0": (lambda: lc.Config(num_steps=0), "num_steps must be a positive int"),
    "Config: batch 0": (lambda: lc.Config(batch_labelled=0), "batch_labelled must be a positive int"),
    "Config: eval_every 0": (lambda: lc.Config(eval_every=0), "eval_every must be a positive int"),
    "Config: lr 0": (lambda: lc.Config(lr=0.0), "lr must be a finite number > 0"),
    "Config: temperature inf": (lambda: lc.Config(temperature=float("inf")), "temperature must be a finite number > 0"),
    "Config: lam -1": (lambda: lc.Config(lam=-1.0), "lam must be a finite number >= 0"),
    "Config: n_anchors 0": (lambda: lc.Config(n_anchors=0), "n_anchors must be a positive int or None"),
    "Config: variant": (lambda: lc.Config(variant="cross"), "variant must be 'inter' or 'intra'"),
    "Config: n_same": (lambda: lc.Config(n_same=9), "n_same must be in"),
    "Config: contrastive needs 2 unlabelled": (lambda: lc.Config(batch_unlabelled=1), "batch_unlabelled must be >= 2"),
    "train: not a model": (lambda: lc.train_baseline(object(), _split(), 2, progress=False), "model must be a UNetWithProjection"),
    "train: not a split": (lambda: lc.train_semi_supervised(_net(), {"images": []}, lc.Config(num_steps=2), progress=False),
                           "split must be a Split"),
    "train: not a config": (lambda: lc.train_semi_supervised(_net(), _split(), {"num_steps": 2}, progress=False),
                            "cfg must be a local_contrastive.Config"),
    "train: labels beyond the model's classes": (lambda: lc.train_semi_supervised(lc.UNetWithProjection(num_classes=3, features=(4, 8)),
                                                                                  _split(), lc.Config(num_steps=2), progress=False),
                                                 r"must hold classes in \[0, 3\)"),
    "train: device gpu": (lambda: lc.train_baseline(_net(), _split(), 2, progress=False, device="gpu"), "gpu"),
    "continue: empty state": (lambda: lc.continue_and_evaluate(_net(), {}, _split(), lc.Config(num_steps=2), progress=False),
                              "start_state must be a non-empty state_dict"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=message):
        call()


def test_case_count():
    # the closing note quotes this number
    assert len(CASES) >= 50
