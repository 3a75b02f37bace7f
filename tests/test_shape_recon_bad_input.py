"""Bad input to every public function of medtut.shape_recon gets a ValueError that names the argument,
what was expected and what arrived (issue 24: "bad input gets a clear error")."""
import numpy as np
import pytest
import torch

from medtut import shape_recon as sr
from medtut.data.cup_shapes import make_cup_dataset

_CACHE = {}


def _data():
    if "data" not in _CACHE:
        _CACHE["data"] = make_cup_dataset(6, seed=1, size=16, spacing=6.0)
    return _CACHE["data"]


def _pca():
    if "pca" not in _CACHE:
        _CACHE["pca"] = sr.PCAShapeModel.fit(_data().canonical, 3)
    return _CACHE["pca"]


def _net(**cfg):
    return sr.ShapeRegressor(_pca(), sr.Config(width=2, hidden=8, **cfg), image_size=16)


def _pred(n=2):
    v = _data().vertices[:n]
    cov = torch.eye(3).expand(n, v.shape[1], 3, 3).clone()
    return sr.Prediction(v.clone(), cov)


B3 = torch.zeros(2, 3)
NAN = float("nan")
CFG = dict(num_epochs=1, batch_size=4, width=2, hidden=8)

CASES = {
    # shape model
    "PCA fit: 2-D shapes": (lambda: sr.PCAShapeModel.fit(torch.zeros(4, 3), 2), "shapes must have 3 dimensions"),
    "PCA fit: int shapes": (lambda: sr.PCAShapeModel.fit(torch.zeros(4, 5, 3, dtype=torch.long), 2), "floating-point"),
    "PCA fit: NaN": (lambda: sr.PCAShapeModel.fit(torch.full((4, 5, 3), NAN), 2), "shapes contains NaN"),
    "PCA fit: one mesh": (lambda: sr.PCAShapeModel.fit(torch.zeros(1, 5, 3), 1), "at least 2 meshes"),
    "PCA fit: num_modes 0": (lambda: sr.PCAShapeModel.fit(_data().canonical, 0), r"num_modes must be an int in \[1"),
    "PCA fit: num_modes 2.0": (lambda: sr.PCAShapeModel.fit(_data().canonical, 2.0), "num_modes must be an int"),
    "PCA init: modes rows": (lambda: sr.PCAShapeModel(torch.zeros(5, 3), torch.zeros(14, 2), torch.ones(2), torch.ones(2)),
                             r"modes must be \(3V, K\) = \(15"),
    "PCA init: std length": (lambda: sr.PCAShapeModel(torch.zeros(5, 3), torch.zeros(15, 2), torch.ones(3), torch.ones(2)),
                             r"std must be \(K,\) = \(2,\)"),
    "PCA init: mean None": (lambda: sr.PCAShapeModel(None, torch.zeros(15, 2), torch.ones(2), torch.ones(2)),
                            "mean must be a torch.Tensor; got NoneType"),
    "PCA forward: wrong K": (lambda: _pca()(torch.zeros(2, 5)), r"b must end in shape \(3,\)"),
    "PCA project: wrong V": (lambda: _pca().project(torch.zeros(2, 7, 3)), "shapes must end in shape"),
    "PCA truncated: too many": (lambda: _pca().truncated(9), r"num_modes must be an int in \[1, 3\]"),
    "PCA truncated: float": (lambda: _pca().truncated(2.5), "num_modes must be an int"),
    # pose
    "rodrigues: (2, 4)": (lambda: sr.axis_angle_to_matrix(torch.zeros(2, 4)), r"omega must end in shape \(3,\)"),
    "rodrigues: inf": (lambda: sr.axis_angle_to_matrix(torch.full((2, 3), float("inf"))), "omega contains NaN or inf"),
    "rodrigues: numpy": (lambda: sr.axis_angle_to_matrix(np.zeros(3)), "omega must be a torch.Tensor"),
    "shape_from_coeffs: not a model": (lambda: sr.shape_from_coeffs(object(), B3), "shape_model must be a PCAShapeModel"),
    "shape_from_coeffs: R batch": (lambda: sr.shape_from_coeffs(_pca(), B3, torch.eye(3).expand(3, 3, 3)),
                                   r"R must be \(B, 3, 3\) with B = 2"),
    "shape_from_coeffs: t batch": (lambda: sr.shape_from_coeffs(_pca(), B3, None, torch.zeros(5, 3)),
                                   r"t must be \(B, 3\) with B = 2"),
    "shape_from_coeffs: t (2, 2)": (lambda: sr.shape_from_coeffs(_pca(), B3, None, torch.zeros(2, 2)), "t must end in shape"),
    # covariance and NLL
    "vertex_covariance: var_b 0": (lambda: sr.vertex_covariance(_pca(), None, torch.zeros(2, 3), 0.1), "var_b must be positive"),
    "vertex_covariance: noise -1": (lambda: sr.vertex_covariance(_pca(), None, torch.ones(2, 3), -1.0), "noise must be >= 0"),
    "vertex_covariance: noise nan": (lambda: sr.vertex_covariance(_pca(), None, torch.ones(2, 3), torch.full((2,), NAN)),
                                     "noise contains NaN"),
    "vertex_covariance: noise length": (lambda: sr.vertex_covariance(_pca(), None, torch.ones(2, 3), torch.ones(5)),
                                        "noise must hold 1 or B = 2 variances"),
    "vertex_covariance: noise str": (lambda: sr.vertex_covariance(_pca(), None, torch.ones(2, 3), "0.1"),
                                     "noise must be a float or"),
    "vertex_covariance: eps nan": (lambda: sr.vertex_covariance(_pca(), None, torch.ones(2, 3), 0.1, eps=NAN),
                                   "eps .mm.2. must be a finite number >= 0"),
    "vertex_covariance: R batch": (lambda: sr.vertex_covariance(_pca(), torch.eye(3).expand(3, 3, 3), torch.ones(2, 3), 0.1),
                                   r"R must be \(B, 3, 3\) with B = 2"),
    "cholesky3: not SPD": (lambda: sr.cholesky3(-torch.eye(3)), "positive definite"),
    "cholesky3: (2, 2)": (lambda: sr.cholesky3(torch.eye(2)), r"cov must end in shape \(3, 3\)"),
    "vertex_nll: shapes differ": (lambda: sr.vertex_nll(torch.zeros(2, 5, 3), torch.zeros(2, 4, 3), torch.eye(3).expand(2, 5, 3, 3)),
                                  "v_true and v_mean must have the same"),
    "vertex_nll: cov batch": (lambda: sr.vertex_nll(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.eye(3).expand(1, 5, 3, 3)),
                              r"cov must be \(B, V, 3, 3\)"),
    # configuration and network
    "Config: num_epochs 2.5": (lambda: sr.Config(num_epochs=2.5), "num_epochs must be an int >= 1"),
    "Config: batch_size 0": (lambda: sr.Config(batch_size=0), "batch_size must be an int >= 1"),
    "Config: lr nan": (lambda: sr.Config(lr=NAN), "lr must be a finite number > 0"),
    "Config: lr -1": (lambda: sr.Config(lr=-1e-3), "lr must be a finite number > 0"),
    "Config: eps inf": (lambda: sr.Config(eps=float("inf")), "eps .mm.2. must be a finite number >= 0"),
    "Config: slice_dropout 1": (lambda: sr.Config(slice_dropout=1.0), r"slice_dropout must be in \[0, 1\)"),
    "Config: slice_dropout nan": (lambda: sr.Config(slice_dropout=NAN), r"slice_dropout must be in \[0, 1\)"),
    "Config: probabilistic str": (lambda: sr.Config(probabilistic="yes"), "probabilistic must be True or False"),
    "Config: translation_scale 0": (lambda: sr.Config(translation_scale=0.0), "translation_scale must be a finite number > 0"),
    "ShapeRegressor: image_size 20": (lambda: sr.ShapeRegressor(_pca(), image_size=20), "divisible by 8"),
    "ShapeRegressor: image_size 0": (lambda: sr.ShapeRegressor(_pca(), image_size=0), "image_size must be an int >= 1"),
    "ShapeRegressor: config dict": (lambda: sr.ShapeRegressor(_pca(), {"width": 4}), "config must be a shape_recon.Config"),
    "ShapeRegressor: not a model": (lambda: sr.ShapeRegressor(None), "shape_model must be a PCAShapeModel"),
    "forward: two views": (lambda: _net()(torch.zeros(2, 2, 16, 16)), r"x must be \(B, 3, H, W\)"),
    "forward: wrong size": (lambda: _net()(torch.zeros(2, 3, 24, 24)), r"x must be \(B, 3, 16, 16\)"),
    "forward: empty batch": (lambda: _net()(torch.zeros(0, 3, 16, 16)), "at least one case"),
    "forward: int images": (lambda: _net()(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)), "x must be a float tensor"),
    "scanner_covariance: deterministic": (lambda: sr.scanner_covariance(_net(probabilistic=False)(torch.zeros(1, 3, 16, 16))),
                                          "out must be the dict a probabilistic ShapeRegressor"),
    # views
    "replace_view: view 3": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), 3), r"view must be in \[0, 2\]"),
    "replace_view: view -1": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), -1), r"view must be in \[0, 2\]"),
    "replace_view: view 1.5": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), 1.5), "view must be an int"),
    "replace_view: views length": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), torch.tensor([0, 1, 2])),
                                   "view must be an integer tensor of 1 or B = 2"),
    "replace_view: noise -1": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), 0, noise=-1.0), "noise .* must be a finite number >= 0"),
    "replace_view: 3-D x": (lambda: sr.replace_view(torch.zeros(3, 8, 8), 0), r"x must be \(B, V, H, W\)"),
    "replace_view: generator seed": (lambda: sr.replace_view(torch.zeros(2, 3, 8, 8), 0, 7), "generator must be a torch.Generator"),
    "slice_dropout: p 1.5": (lambda: sr.slice_dropout(torch.zeros(2, 3, 8, 8), 1.5), r"p must be a number in \[0, 1\]"),
    "slice_dropout: p nan": (lambda: sr.slice_dropout(torch.zeros(2, 3, 8, 8), NAN), r"p must be a number in \[0, 1\]"),
    "slice_dropout: numpy x": (lambda: sr.slice_dropout(np.zeros((2, 3, 8, 8)), 0.5), "x must be a float tensor"),
    # loss and training
    "loss_terms: v_true shape": (lambda: sr.loss_terms(_net()(torch.zeros(2, 3, 16, 16)), torch.zeros(2, 7, 3), True),
                                 "v_true must be a tensor of the predicted mean's shape"),
    "loss_terms: deterministic out, NLL": (lambda: sr.loss_terms(_net(probabilistic=False)(torch.zeros(2, 3, 16, 16)),
                                                                 _data().vertices[:2], True),
                                           "probabilistic=True needs out\\['cov_local'\\]"),
    "train: not ShapeData": (lambda: sr.train({"images": None}, _pca(), progress=False), "data must be a non-empty ShapeData"),
    "train: config dict": (lambda: sr.train(_data(), _pca(), {"lr": 1e-3}, progress=False), "config must be a shape_recon.Config"),
    "train: seed -1": (lambda: sr.train(_data(), _pca(), sr.Config(**CFG), seed=-1, progress=False), "seed must be an int >= 0"),
    "train: shape model of other meshes": (lambda: sr.train(_data(), sr.PCAShapeModel.fit(torch.randn(4, 5, 3), 2),
                                                            sr.Config(**CFG), progress=False, device="cpu"),
                                           "vertices but the shape model"),
    "train: device gpu": (lambda: sr.train(_data(), _pca(), sr.Config(**CFG), progress=False, device="gpu"), "'gpu' is not a torch device"),
    "train: device nonsense": (lambda: sr.train(_data(), _pca(), sr.Config(**CFG), progress=False, device="tpu9"),
                               "device must name a torch device"),
    # prediction and evaluation
    "predict: not a model": (lambda: sr.predict(torch.nn.Linear(2, 2), torch.zeros(2, 3, 16, 16)), "model must be a ShapeRegressor"),
    "predict: batch_size 0": (lambda: sr.predict(_net(), torch.zeros(2, 3, 16, 16), batch_size=0), "batch_size must be an int >= 1"),
    "predict: empty": (lambda: sr.predict(_net(), torch.zeros(0, 3, 16, 16)), "at least one case"),
    "predict: 3-D images": (lambda: sr.predict(_net(), torch.zeros(3, 16, 16)), r"images must be \(N, V, H, W\)"),
    "vertex_sigma: NaN": (lambda: sr.vertex_sigma(torch.full((2, 3, 3), NAN)), "cov contains NaN"),
    "coverage: empty": (lambda: sr.coverage(torch.zeros(0)), "maha2 must be a non-empty"),
    "coverage: negative": (lambda: sr.coverage(torch.tensor([-1.0, 2.0])), "maha2 must be a non-empty"),
    "coverage: None": (lambda: sr.coverage(None), "maha2 must be a tensor or array"),
    "coverage: level 95": (lambda: sr.coverage(torch.ones(4), (95,)), r"levels must lie in \(0, 1\)"),
    "coverage: level str": (lambda: sr.coverage(torch.ones(4), "0.95"), "levels must be a non-empty sequence"),
    "evaluate: shapes differ": (lambda: sr.evaluate(_pred(2), _data().vertices[:3]), "same shape"),
    "evaluate: not a Prediction": (lambda: sr.evaluate(_data().vertices[:2], _data().vertices[:2]), "pred must be a Prediction"),
    "evaluate: empty": (lambda: sr.evaluate(sr.Prediction(torch.zeros(0, 5, 3)), torch.zeros(0, 5, 3)), "at least one case"),
    "ensemble: one member": (lambda: sr.ensemble([_pred()]), "at least two"),
    "ensemble: a bare Prediction": (lambda: sr.ensemble(_pred()), "list of at least two Predictions"),
    "ensemble: deterministic member": (lambda: sr.ensemble([_pred(), sr.Prediction(_pred().mean)]), "two probabilistic"),
    "ensemble: shapes differ": (lambda: sr.ensemble([_pred(2), _pred(3)]), "same mean shape"),
    "epistemic_sigma: one": (lambda: sr.epistemic_sigma([_pred()]), "at least two"),
    "epistemic_sigma: tensors": (lambda: sr.epistemic_sigma([_pred().mean, _pred().mean]), r"preds\[0\] must be a Prediction"),
    # figures and real data
    "plot_mesh: values length": (lambda: sr.plot_mesh(None, torch.zeros(5, 3), np.zeros((2, 3), int), values=np.zeros(4)),
                                 r"values must be \(V,\)"),
    "plot_mesh: faces (F, 2)": (lambda: sr.plot_mesh(None, torch.zeros(5, 3), np.zeros((2, 2), int)), r"faces \(F, 3\)"),
    "plot_mesh: face index 5 of 5 vertices": (lambda: sr.plot_mesh(None, torch.zeros(5, 3), np.array([[0, 1, 5]])),
                                              r"faces must hold integer vertex indices in \[0, V - 1 = 4\]"),
    "plot_mesh: float faces": (lambda: sr.plot_mesh(None, torch.zeros(5, 3), np.zeros((2, 3))), "faces must hold integer"),
    "plot_mesh: NaN vertices": (lambda: sr.plot_mesh(None, torch.full((5, 3), NAN), np.zeros((2, 3), int)), "vertices contains NaN"),
    "plot_mesh: alpha 2": (lambda: sr.plot_mesh(None, torch.zeros(5, 3), np.zeros((2, 3), int), alpha=2.0), r"alpha must be in \[0, 1\]"),
    "cross_validate: num_folds 1": (lambda: sr.cross_validate([{"canonical": np.zeros((5, 3))}] * 3, sr.Config(), num_folds=1),
                                    "num_folds must be in"),
    "cross_validate: not subjects": (lambda: sr.cross_validate("heart", sr.Config()), "subjects must be a list of subject dicts"),
    "cross_validate: size 50": (lambda: sr.cross_validate([{"canonical": np.zeros((5, 3))}] * 3, sr.Config(), num_folds=2, size=50),
                                "size must be divisible by 8"),
    "cross_validate: num_modes 0": (lambda: sr.cross_validate([{"canonical": np.zeros((5, 3))}] * 3, sr.Config(), num_modes=0),
                                    "num_modes must be an int >= 1"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=message):
        call()


def test_case_count():
    # the closing note quotes this number
    assert len(CASES) >= 80
