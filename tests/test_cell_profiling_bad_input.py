"""Bad input to every public function of medtut.cell_profiling and medtut.data.cells gets a ValueError that
names the argument, what was expected and what arrived (issue 24: "bad input gets a clear error")."""
import zipfile

import numpy as np
import pytest
import torch

from medtut import cell_profiling as cp
from medtut.data import cells as dc

NAN = float("nan")
X = torch.rand(4, 3, 16, 16)
G = torch.Generator().manual_seed(0)
Z = torch.randn(4, 8)
CFG = cp.Config(encoder="small_cnn", cnn_widths=(4, 4, 8, 8), proj_dim=4, batch_size=2, num_epochs=1,
                augmentation="book")
MODEL = cp.build_model(CFG, device="cpu")
# a tiny cell table: 2 plates x 2 wells x 2 cells; one control well per plate
META = {"plate": np.array(["P1"] * 4 + ["P2"] * 4), "well": np.array(["A1", "A1", "A2", "A2"] * 2),
        "batch": np.array(["W1"] * 4 + ["W2"] * 4), "compound": np.array(["DMSO"] * 2 + ["c1"] * 2 + ["DMSO"] * 2 + ["c2"] * 2),
        "concentration": np.array([0, 0, 1, 1] * 2, dtype=float), "moa": np.array(["", "", "m", "m"] * 2),
        "is_control": np.array([True, True, False, False] * 2)}
F8 = np.random.default_rng(0).normal(size=(8, 5))
P = np.random.default_rng(1).normal(size=(6, 3))
CTRL = np.array([True, True, True, False, False, False])
T_META = {"compound": np.array(["a", "b", "c"]), "moa": np.array(["x", "x", "y"]),
          "batches": [{"W1"}, {"W2"}, {"W1", "W2"}]}
T_P = np.eye(3)


def meta(**kw):
    return {**META, **kw}


def tmeta(**kw):
    return {**T_META, **kw}


def cfg(**kw):
    return cp.Config(**{**CFG.__dict__, **kw})


def tiny_zip(tmp):
    path = tmp / "plate.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.txt", "not a tiff")
    return path


ROW = {"plate": "Week1_1", "well": "B02", "batch": "Week1", "compound": "DMSO", "concentration": 0.0, "moa": "",
       "is_control": True, "DNA": "a.tif", "tubulin": "b.tif", "actin": "c.tif", "folder": "Week1/Week1_1"}

CASES = {
    # ------------------------------------------------------------------ augmentations
    "augment: None x": (lambda: cp.augment(None, G), "x must be a float tensor"),
    "augment: 3-D x": (lambda: cp.augment(X[0], G), r"x must be a float tensor \(B, C, H, W\)"),
    "augment: int x": (lambda: cp.augment(X.long(), G), "x must be a float tensor .* torch.int64"),
    "augment: empty batch": (lambda: cp.augment(X[:0], G), "at least one image"),
    "augment: 1x1 px": (lambda: cp.augment(X[:, :, :1, :1], G), r"at least 2 x 2 px"),
    "augment: NaN x": (lambda: cp.augment(X * NAN, G), "x contains NaN"),
    "augment: int seed as generator": (lambda: cp.augment(X, 0), "generator must be a torch.Generator; got int"),
    "augment: unknown list": (lambda: cp.augment(X, G, "simclr"), "augmentation must be one of"),
    "augment: unknown key": (lambda: cp.augment(X, G, {"hue": 0.1}), r"unknown augmentation keys \['hue'\]"),
    "augment: crop 0": (lambda: cp.augment(X, G, {"crop": 0.0}), r"augmentation\['crop'\] must be a finite number >= 0.01"),
    "augment: crop 1.5": (lambda: cp.augment(X, G, {"crop": 1.5}), r"augmentation\['crop'\] .* <= 1.0; got float 1.5"),
    "augment: negative gain": (lambda: cp.augment(X, G, {"channel_gain": -0.5}), r"channel_gain'\] must be a finite number >= 0"),
    "augment: gain 2": (lambda: cp.augment(X, G, {"channel_gain": 2.0}), r"channel_gain'\] .* <= 1.0"),
    "augment: NaN noise": (lambda: cp.augment(X, G, {"noise": NAN}), r"noise'\] must be a finite number"),
    "augment: blur 0.05": (lambda: cp.augment(X, G, {"blur": 0.05}), r"use >= 0.1 or 0"),
    "augment: flip 'yes'": (lambda: cp.augment(X, G, {"flip": "yes"}), r"flip'\] must be True or False"),
    "augment: hue on 2 channels": (lambda: cp.augment(X[:, :2], G, {"color_jitter": 0.2}), "needs 3 channels; got C=2"),
    "augment: list as kind": (lambda: cp.augment(X, G, ["crop"]), "augmentation must be a name or a dict; got list"),
    # ------------------------------------------------------------------ encoders
    "SmallCNN: in_channels 0": (lambda: cp.SmallCNN(0), "in_channels must be an int >= 1; got int 0"),
    "SmallCNN: 3 widths": (lambda: cp.SmallCNN(3, (32, 64, 128)), "widths must be 4 positive ints"),
    "SmallCNN: width 0": (lambda: cp.SmallCNN(3, (32, 0, 128, 128)), "widths must be 4 positive ints"),
    "SmallCNN: float width": (lambda: cp.SmallCNN(3, (32, 64.5, 128, 128)), "widths must be 4 positive ints"),
    "build_encoder: unknown": (lambda: cp.build_encoder("vit"), "encoder must be one of"),
    "build_encoder: None": (lambda: cp.build_encoder(None), "encoder must be one of"),
    "build_encoder: in_channels 2.5": (lambda: cp.build_encoder("small_cnn", 2.5), "in_channels must be an int >= 1; got float"),
    "build_encoder: imagenet with 1 channel": (lambda: cp.build_encoder("resnet18_imagenet", 1), "expect 3 input channels"),
    "SimCLRNet: no out_dim": (lambda: cp.SimCLRNet(torch.nn.Linear(3, 3)), "int attribute out_dim"),
    "SimCLRNet: encoder None": (lambda: cp.SimCLRNet(None), "encoder must be an nn.Module"),
    "SimCLRNet: proj_dim 0": (lambda: cp.SimCLRNet(cp.SmallCNN(3, (4, 4, 8, 8)), 0), "proj_dim must be an int >= 1"),
    "SimCLRNet: hidden_dim -1": (lambda: cp.SimCLRNet(cp.SmallCNN(3, (4, 4, 8, 8)), 4, -1), "hidden_dim must be an int >= 1"),
    # ------------------------------------------------------------------ NT-Xent
    "nt_xent: None": (lambda: cp.nt_xent(None, Z), "z1 and z2 must be tensors"),
    "nt_xent: numpy": (lambda: cp.nt_xent(Z.numpy(), Z), "z1 and z2 must be tensors .*; got ndarray"),
    "nt_xent: N = 1": (lambda: cp.nt_xent(Z[:1], Z[:1]), "N >= 2 pairs"),
    "nt_xent: N = 0": (lambda: cp.nt_xent(Z[:0], Z[:0]), "N >= 2 pairs"),
    "nt_xent: shapes differ": (lambda: cp.nt_xent(Z, Z[:3]), r"same shape; got \(4, 8\) and \(3, 8\)"),
    "nt_xent: d differs": (lambda: cp.nt_xent(Z, Z[:, :4]), "same shape"),
    "nt_xent: 1-D": (lambda: cp.nt_xent(Z[0], Z[1]), r"must be \(N, d\)"),
    "nt_xent: 3-D": (lambda: cp.nt_xent(Z[None], Z[None]), r"must be \(N, d\)"),
    "nt_xent: d = 0": (lambda: cp.nt_xent(Z[:, :0], Z[:, :0]), "d >= 1"),
    "nt_xent: int tensors": (lambda: cp.nt_xent(Z.long(), Z.long()), "real float tensors"),
    "nt_xent: dtypes differ": (lambda: cp.nt_xent(Z, Z.double()), "of one dtype; got torch.float32 and torch.float64"),
    "nt_xent: complex": (lambda: cp.nt_xent(Z.cfloat(), Z.cfloat()), "real float tensors"),
    "nt_xent: temperature 0": (lambda: cp.nt_xent(Z, Z, 0.0), "temperature must be a finite number > 0.0; got float 0.0"),
    "nt_xent: temperature -0.1": (lambda: cp.nt_xent(Z, Z, -0.1), "temperature must be a finite number > 0"),
    "nt_xent: temperature nan": (lambda: cp.nt_xent(Z, Z, NAN), "temperature must be a finite number"),
    "nt_xent: temperature inf": (lambda: cp.nt_xent(Z, Z, float("inf")), "temperature must be a finite number"),
    "nt_xent: temperature str": (lambda: cp.nt_xent(Z, Z, "0.1"), "temperature must be a finite number > 0.0; got str"),
    "nt_xent: temperature tensor-like list": (lambda: cp.nt_xent(Z, Z, [0.1]), "temperature must be a finite number"),
    "nt_xent: NaN embeddings": (lambda: cp.nt_xent(Z * NAN, Z), "contains NaN or inf"),
    # ------------------------------------------------------------------ Config
    "Config: encoder": (lambda: cfg(encoder="resnet34"), "encoder must be one of"),
    "Config: batch_size 1": (lambda: cfg(batch_size=1), "batch_size must be >= 2"),
    "Config: batch_size 0": (lambda: cfg(batch_size=0), "batch_size must be an int >= 1; got int 0"),
    "Config: batch_size 2.5": (lambda: cfg(batch_size=2.5), "batch_size must be an int >= 1; got float 2.5"),
    "Config: num_epochs 0": (lambda: cfg(num_epochs=0), "num_epochs must be an int >= 1"),
    "Config: num_epochs True": (lambda: cfg(num_epochs=True), "num_epochs must be an int >= 1; got bool"),
    "Config: proj_dim -4": (lambda: cfg(proj_dim=-4), "proj_dim must be an int >= 1"),
    "Config: hidden_dim 0": (lambda: cfg(hidden_dim=0), "hidden_dim must be an int >= 1"),
    "Config: temperature 0": (lambda: cfg(temperature=0.0), "temperature must be a finite number > 0"),
    "Config: temperature nan": (lambda: cfg(temperature=NAN), "temperature must be a finite number > 0"),
    "Config: lr 0": (lambda: cfg(lr=0.0), "lr must be a finite number > 0"),
    "Config: lr str": (lambda: cfg(lr="1e-3"), "lr must be a finite number > 0.0; got str"),
    "Config: weight_decay -1": (lambda: cfg(weight_decay=-1e-5), "weight_decay must be a finite number >= 0"),
    "Config: augmentation": (lambda: cfg(augmentation="imagenet"), "augmentation must be one of"),
    "Config: cnn_widths": (lambda: cfg(cnn_widths=(16, 32)), "widths must be 4 positive ints"),
    # ------------------------------------------------------------------ model and training
    "build_model: cfg dict": (lambda: cp.build_model({"encoder": "small_cnn"}), "cfg must be a cell_profiling.Config; got dict"),
    "build_model: seed -1": (lambda: cp.build_model(CFG, seed=-1, device="cpu"), "seed must be an int >= 0"),
    "build_model: in_channels 0": (lambda: cp.build_model(CFG, 0, device="cpu"), "in_channels must be an int >= 1"),
    "build_model: device gpu": (lambda: cp.build_model(CFG, device="gpu"), "'gpu' is not a torch device name"),
    "build_model: device cuda": (lambda: cp.build_model(CFG, device="cuda"), "no CUDA device|CUDA device"),
    "build_model: device tpu0": (lambda: cp.build_model(CFG, device="tpu0"), "device must name a torch device"),
    "build_model: device 3": (lambda: cp.build_model(CFG, device=3), "device must be None, a string"),
    "train: images None": (lambda: cp.train_simclr(None, CFG), "images must be a float tensor"),
    "train: uint8 images": (lambda: cp.train_simclr((X * 255).byte(), CFG), "images must be a float tensor .* torch.uint8"),
    "train: NaN images": (lambda: cp.train_simclr(X * NAN, CFG, progress=False), "images contain NaN"),
    "train: empty images": (lambda: cp.train_simclr(X[:0], CFG), "images is empty"),
    "train: cfg None": (lambda: cp.train_simclr(X, None), "cfg must be a cell_profiling.Config; got NoneType"),
    "train: batch larger than data": (lambda: cp.train_simclr(X[:3], cfg(batch_size=4)), "larger than the 3 images"),
    "train: snapshot 0": (lambda: cp.train_simclr(X, CFG, snapshot_epochs=[0]), r"snapshot_epochs must be ints in \[1, num_epochs=1\]"),
    "train: snapshot past the end": (lambda: cp.train_simclr(X, CFG, snapshot_epochs=[2]), "snapshot_epochs must be ints"),
    "train: snapshot 1.0": (lambda: cp.train_simclr(X, CFG, snapshot_epochs=[1.0]), "snapshot_epochs must be ints"),
    "train: snapshot int": (lambda: cp.train_simclr(X, CFG, snapshot_epochs=1), "snapshot_epochs must be a list"),
    "train: seed 1.5": (lambda: cp.train_simclr(X, CFG, seed=1.5), "seed must be an int >= 0; got float 1.5"),
    "train: progress 'no'": (lambda: cp.train_simclr(X, CFG, progress="no"), "progress must be True or False"),
    "train: device gpu": (lambda: cp.train_simclr(X, CFG, device="gpu", progress=False), "'gpu' is not a torch device"),
    # ------------------------------------------------------------------ features
    "embed: model None": (lambda: cp.embed(None, X), "model must be a SimCLRNet or an encoder"),
    "embed: batch_size 0": (lambda: cp.embed(MODEL, X, batch_size=0), "batch_size must be an int >= 1; got int 0"),
    "embed: batch_size -1": (lambda: cp.embed(MODEL, X, batch_size=-1), "batch_size must be an int >= 1"),
    "embed: channels": (lambda: cp.embed(MODEL, X[:, :1]), "images have 1 channels but the encoder takes 3"),
    "embed: NaN images": (lambda: cp.embed(MODEL, X * NAN), "images contain NaN"),
    "embed: device cuda:7": (lambda: cp.embed(MODEL, X, device="cuda:7"), "CUDA"),
    "embed: device gpu": (lambda: cp.embed(MODEL, X, device="gpu"), "'gpu' is not a torch device name"),
    "handcrafted: numpy": (lambda: cp.handcrafted_features(X.numpy()), "images must be a float tensor .*; got ndarray"),
    "handcrafted: NaN": (lambda: cp.handcrafted_features(X * NAN), "images contain NaN"),
    "handcrafted: 1 px": (lambda: cp.handcrafted_features(X[:, :, :1, :1]), "at least 2 pixels"),
    "handcrafted: standardize str": (lambda: cp.handcrafted_features(X, standardize="yes"), "standardize must be True or False"),
    # ------------------------------------------------------------------ profiles
    "well_profiles: features None": (lambda: cp.well_profiles(None, META), "features must be a 2-D array"),
    "well_profiles: 1-D features": (lambda: cp.well_profiles(F8[:, 0], META), r"features must be a non-empty 2-D array \(n, d\); got shape \(8,\)"),
    "well_profiles: NaN features": (lambda: cp.well_profiles(F8 * NAN, META), "features must be finite numbers"),
    "well_profiles: complex features": (lambda: cp.well_profiles(F8 + 1j, META), "features must be real"),
    "well_profiles: meta list": (lambda: cp.well_profiles(F8, list(META.values())), "meta must be a dict of arrays"),
    "well_profiles: meta lacks well": (lambda: cp.well_profiles(F8, {k: v for k, v in META.items() if k != "well"}), r"meta lacks the keys \['well'\]"),
    "well_profiles: lengths disagree": (lambda: cp.well_profiles(F8[:7], META), "columns must have 7 entries"),
    "well_profiles: scalar column": (lambda: cp.well_profiles(F8, meta(batch="W1")), r"\['batch'\] are scalars"),
    "well_profiles: int is_control": (lambda: cp.well_profiles(F8, meta(is_control=META["is_control"].astype(int))), r"meta\['is_control'\] must be a bool array"),
    "well_profiles: compound varies in a well": (lambda: cp.well_profiles(F8, meta(compound=np.array(["DMSO", "c1"] * 4))), r"meta\['compound'\] varies inside a \(plate, well\)"),
    "tvn: 1 control": (lambda: cp.tvn(P, np.arange(6) == 0), "at least 2 control profiles; got 1"),
    "tvn: is_control int": (lambda: cp.tvn(P, CTRL.astype(int)), "is_control must be a bool array"),
    "tvn: is_control too short": (lambda: cp.tvn(P, CTRL[:5]), r"shape \(6,\)"),
    "tvn: lam -1": (lambda: cp.tvn(P, CTRL, lam=-1.0), "lam must be a finite number >= 0.0; got float -1.0"),
    "tvn: lam nan": (lambda: cp.tvn(P, CTRL, lam=NAN), "lam must be a finite number >= 0"),
    "tvn: lam str": (lambda: cp.tvn(P, CTRL, lam="1"), "lam must be a finite number >= 0.0; got str"),
    "tvn: lam 0 rank-deficient": (lambda: cp.tvn(np.random.default_rng(0).normal(size=(6, 8)), CTRL, lam=0.0), "full-rank control covariance"),
    "tvn: NaN profiles": (lambda: cp.tvn(P * NAN, CTRL), "profiles must be finite"),
    "tvn: batches wrong length": (lambda: cp.tvn(P, CTRL, batches=["a"] * 5), r"batches must have shape \(6,\)"),
    "tvn: CORAL batch without controls": (lambda: cp.tvn(P, CTRL, batches=["a"] * 3 + ["b"] * 3), "CORAL needs at least 2 controls in every batch; batch 'b'"),
    "treatment_profiles: all controls": (lambda: cp.treatment_profiles(np.ones((2, 3)), {"compound": np.array(["DMSO"] * 2), "concentration": np.zeros(2), "moa": np.array(["", ""]), "batch": np.array(["W1"] * 2), "is_control": np.array([True, True])}), "every well is a control"),
    "treatment_profiles: two MoAs": (lambda: cp.treatment_profiles(np.ones((2, 3)), {"compound": np.array(["c"] * 2), "concentration": np.ones(2), "moa": np.array(["x", "y"]), "batch": np.array(["W1"] * 2), "is_control": np.array([False, False])}), r"several MoAs \['x', 'y'\]"),
    "treatment_profiles: length mismatch": (lambda: cp.treatment_profiles(np.ones((3, 3)), {"compound": np.array(["c"] * 2), "concentration": np.ones(2), "moa": np.array(["x", "y"]), "batch": np.array(["W1"] * 2), "is_control": np.array([False, False])}), "well_meta columns must have 3 entries"),
    "treatment_profiles: meta None": (lambda: cp.treatment_profiles(np.ones((2, 3)), None), "well_meta must be a dict"),
    # ------------------------------------------------------------------ evaluation
    "cosine_similarity: 1-D": (lambda: cp.cosine_similarity(np.ones(3)), "non-empty 2-D array"),
    "cosine_similarity: str": (lambda: cp.cosine_similarity("abc"), "profiles must be a 2-D array"),
    "cosine_similarity: inf": (lambda: cp.cosine_similarity(np.full((2, 2), np.inf)), "finite numbers"),
    "nsc_nscb: one compound": (lambda: cp.nsc_nscb(np.eye(2), {"compound": np.array(["a", "a"]), "moa": np.array(["x", "x"]), "batches": ["W1", "W2"]}), "at least two compounds"),
    "nsc_nscb: N = 1": (lambda: cp.nsc_nscb(np.eye(1), {"compound": np.array(["a"]), "moa": np.array(["x"]), "batches": ["W1"]}), "at least two compounds"),
    "nsc_nscb: meta too short": (lambda: cp.nsc_nscb(T_P, tmeta(moa=np.array(["x", "x"]))), r"meta columns must have 3 entries .*; got \{'moa': 2\}"),
    "nsc_nscb: profiles and meta disagree": (lambda: cp.nsc_nscb(np.eye(4), T_META), "meta columns must have 4 entries"),
    "nsc_nscb: empty batch set": (lambda: cp.nsc_nscb(T_P, tmeta(batches=[{"W1"}, set(), {"W2"}])), "at least one batch label"),
    "nsc_nscb: lacks batches": (lambda: cp.nsc_nscb(T_P, {"compound": T_META["compound"], "moa": T_META["moa"]}), r"lacks the keys \['batches'\]"),
    "nsc_nscb: NaN profiles": (lambda: cp.nsc_nscb(T_P * NAN, T_META), "profiles must be finite"),
    "nsc_nscb: no NSCB candidate": (lambda: cp.nsc_nscb(T_P, T_META), r"NSCB: treatment 2 \(c\) has no candidate neighbour left"),
    "nscb_candidates: meta list": (lambda: cp.nscb_candidates([1, 2]), "meta must be a dict"),
    "nscb_candidates: scalar compound": (lambda: cp.nscb_candidates(tmeta(compound="a")), "are scalars"),
    "profile_and_score: coral without tvn": (lambda: cp.profile_and_score(F8, META, coral=True), "pass use_tvn=True"),
    "profile_and_score: use_tvn str": (lambda: cp.profile_and_score(F8, META, use_tvn="yes"), "use_tvn must be True or False"),
    "profile_and_score: lam -1": (lambda: cp.profile_and_score(F8, META, use_tvn=True, lam=-1), "lam must be a finite number >= 0"),
    # ------------------------------------------------------------------ medtut.data.cells: the synthetic screen
    "ScreenDesign: moas str": (lambda: dc.ScreenDesign(moas="DNA damage"), "moas must be a tuple of MoA names"),
    "ScreenDesign: repeated moa": (lambda: dc.ScreenDesign(moas=("DNA damage", "DNA damage")), "must not repeat"),
    "ScreenDesign: cells_per_well 2.5": (lambda: dc.ScreenDesign(cells_per_well=2.5), "cells_per_well must be an int >= 1; got float"),
    "ScreenDesign: num_batches 0": (lambda: dc.ScreenDesign(num_batches=0), "num_batches must be an int >= 1"),
    "ScreenDesign: control wells -1": (lambda: dc.ScreenDesign(control_wells_per_batch=-1), "control_wells_per_batch must be an int >= 0"),
    "ScreenDesign: concentration 0": (lambda: dc.ScreenDesign(concentrations=(0.0, 1.0)), r"fractions in \(0, 1\]"),
    "ScreenDesign: concentrations empty": (lambda: dc.ScreenDesign(concentrations=()), "concentrations must be fractions"),
    "ScreenDesign: gain range reversed": (lambda: dc.ScreenDesign(gain_range=(1.4, 0.6)), "gain_range must be a pair"),
    "ScreenDesign: noise range negative": (lambda: dc.ScreenDesign(noise_range=(-0.1, 0.1)), "noise_range must be a pair"),
    "ScreenDesign: blur_max nan": (lambda: dc.ScreenDesign(blur_max=NAN), "blur_max must be a finite number >= 0"),
    "ScreenDesign: offset_max -1": (lambda: dc.ScreenDesign(offset_max=-1.0), "offset_max must be a finite number >= 0"),
    "ScreenDesign: compound_offset -0.2": (lambda: dc.ScreenDesign(compound_offset=-0.2), "compound_offset must be a finite number >= 0"),
    "ScreenDesign: size 16": (lambda: dc.ScreenDesign(size=16), "size must be an int >= 24"),
    "make_cell_screen: seed True": (lambda: dc.make_cell_screen(seed=True), "seed must be a non-negative int"),
    "make_cell_screen: seed 1.0": (lambda: dc.make_cell_screen(seed=1.0), "seed must be a non-negative int"),
    "compound_batches: dict": (lambda: dc.compound_batches({"num_batches": 4}), "design must be a ScreenDesign"),
    "compound_name: unknown MoA": (lambda: dc.compound_name("Antibiotics", 0), "moa must be one of"),
    "compound_name: j -1": (lambda: dc.compound_name("DNA damage", -1), "j must be an int >= 0"),
    "render_cell: NaN morph": (lambda: dc.render_cell(np.full(9, NAN), np.random.default_rng(0)), "morph must be finite"),
    "render_cell: int seed as rng": (lambda: dc.render_cell(np.zeros(9), 0), "rng must be a numpy Generator"),
    "render_cell: size 4": (lambda: dc.render_cell(np.zeros(9), np.random.default_rng(0), size=4), "size must be an int >= 8"),
    "apply_batch_effect: 3-D images": (lambda: dc.apply_batch_effect(np.zeros((3, 8, 8)), np.ones(3), np.zeros(3), 0.0, 0.0, np.random.default_rng(0)), r"images must be a finite numeric array \(N, C, H, W\)"),
    "apply_batch_effect: 2 gains for 3 channels": (lambda: dc.apply_batch_effect(np.zeros((1, 3, 8, 8)), np.ones(2), np.zeros(3), 0.0, 0.0, np.random.default_rng(0)), "gain must be 3 finite numbers"),
    "apply_batch_effect: negative gain": (lambda: dc.apply_batch_effect(np.zeros((1, 3, 8, 8)), -np.ones(3), np.zeros(3), 0.0, 0.0, np.random.default_rng(0)), "gain must be >= 0"),
    "apply_batch_effect: NaN offset": (lambda: dc.apply_batch_effect(np.zeros((1, 3, 8, 8)), np.ones(3), np.full(3, NAN), 0.0, 0.0, np.random.default_rng(0)), "offset must be 3 finite numbers"),
    "apply_batch_effect: blur -1": (lambda: dc.apply_batch_effect(np.zeros((1, 3, 8, 8)), np.ones(3), np.zeros(3), -1.0, 0.0, np.random.default_rng(0)), "blur must be a finite number >= 0"),
    "apply_batch_effect: noise -0.1": (lambda: dc.apply_batch_effect(np.zeros((1, 3, 8, 8)), np.ones(3), np.zeros(3), 0.0, -0.1, np.random.default_rng(0)), "noise must be a finite number >= 0"),
    "CellScreen: images list": (lambda: dc.CellScreen([[0.0]], META), "images must be a float tensor"),
    "CellScreen: empty": (lambda: dc.CellScreen(torch.zeros(0, 3, 8, 8), {k: v[:0] for k, v in META.items()}), "images is empty"),
    "CellScreen: meta lengths": (lambda: dc.CellScreen(torch.zeros(7, 3, 8, 8), META), "one entry per image"),
    "CellScreen: is_control str": (lambda: dc.CellScreen(torch.zeros(8, 3, 8, 8), meta(is_control=META["is_control"].astype(str))), r"meta\['is_control'\] must be a bool array"),
    "CellScreen: concentration text": (lambda: dc.CellScreen(torch.zeros(8, 3, 8, 8), meta(concentration=np.array(["high"] * 8))), r"meta\['concentration'\] must hold numbers"),
    "CellScreen: NaN concentration": (lambda: dc.CellScreen(torch.zeros(8, 3, 8, 8), meta(concentration=np.full(8, NAN))), "contains NaN or inf"),
    "CellScreen: scalar column": (lambda: dc.CellScreen(torch.zeros(8, 3, 8, 8), meta(plate="P1")), "1-D array"),
    "CellScreen: morphology shape": (lambda: dc.CellScreen(torch.zeros(8, 3, 8, 8), META, np.zeros((8, 3))), r"morphology must be \(N, 9\)"),
    "concat_screens: empty": (lambda: dc.concat_screens([]), "non-empty list of CellScreen"),
    "concat_screens: one screen": (lambda: dc.concat_screens(dc.CellScreen(torch.zeros(8, 3, 8, 8), META)), "non-empty list of CellScreen"),
    "concat_screens: a tensor": (lambda: dc.concat_screens([torch.zeros(2)]), "needs CellScreen items"),
    "concat_screens: crop sizes differ": (lambda: dc.concat_screens([dc.CellScreen(torch.zeros(8, 3, 8, 8), META), dc.CellScreen(torch.zeros(8, 3, 16, 16), META)]), "crops of one shape"),
    "save_screen: dict": (lambda: dc.save_screen({"images": X}, "x.npz"), "screen must be a CellScreen"),
    "load_screen: missing file": (lambda: dc.load_screen("/nonexistent/plate.npz"), "existing .npz written by save_screen"),
    # ------------------------------------------------------------------ medtut.data.cells: BBBC021
    "plate_zip_url: path": (lambda: dc.plate_zip_url("../etc"), "plate must look like 'Week1_22123'"),
    "plate_zip_url: None": (lambda: dc.plate_zip_url(None), "plate must look like"),
    "plate_zip_url: ftp mirror": (lambda: dc.plate_zip_url("Week1_1", "ftp://x"), "base_url must be an https://"),
    "bbbc021_plate: bad plate": (lambda: dc.bbbc021_plate("Week1"), "plate must look like"),
    "bbbc021_table: which": (lambda: dc.bbbc021_table("compound"), "which must be 'image' or 'moa'"),
    "plates_to_fetch: weeks str": (lambda: dc.plates_to_fetch([ROW], "Week1"), "not one string"),
    "plates_to_fetch: weeks names": (lambda: dc.plates_to_fetch([ROW], ["week 1"]), "names like 'Week1'"),
    "plates_to_fetch: empty rows": (lambda: dc.plates_to_fetch([]), "rows must be a non-empty list"),
    "plates_to_fetch: rows lack keys": (lambda: dc.plates_to_fetch([{"plate": "Week1_1"}]), "some lack"),
    "read_bbbc021_metadata: missing file": (lambda: dc.read_bbbc021_metadata("/nonexistent.csv", "/nonexistent_moa.csv"), "existing CSV file or CSV text"),
    "read_bbbc021_metadata: text concentration": (lambda: dc.read_bbbc021_metadata("/nonexistent.csv", "compound,concentration,moa\ntaxol,high,X\n"), "existing CSV"),
    "read_bbbc021_metadata: bad MoA concentration": (lambda: dc.read_bbbc021_metadata(
        ",".join(["Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI", "Image_Metadata_Compound", "Image_Metadata_Concentration", "Image_FileName_DAPI", "Image_FileName_Tubulin", "Image_FileName_Actin", "Image_PathName_DAPI"]) + "\nWeek1_1,B02,DMSO,0.0,a,b,c,d\n",
        "compound,concentration,moa\ntaxol,high,X\n"), "MoA CSV row 2: concentration must be a number; got 'high'"),
    "segment_nuclei: 3-D": (lambda: dc.segment_nuclei(np.zeros((2, 8, 8))), r"dna must be a 2-D image"),
    "segment_nuclei: NaN": (lambda: dc.segment_nuclei(np.full((8, 8), NAN)), "finite real numbers"),
    "segment_nuclei: min_area 0": (lambda: dc.segment_nuclei(np.zeros((8, 8)), min_area=0), "min_area must be an int >= 1"),
    "crops_from_plate_zip: crop 4": (lambda: dc.crops_from_plate_zip("x.zip", [ROW], crop=4), "crop must be an int >= 8"),
    "crops_from_plate_zip: out_size 0": (lambda: dc.crops_from_plate_zip("x.zip", [ROW], out_size=0), "out_size must be an int >= 8"),
    "crops_from_plate_zip: max cells 0": (lambda: dc.crops_from_plate_zip("x.zip", [ROW], max_cells_per_image=0), "max_cells_per_image must be an int >= 1"),
    "crops_from_plate_zip: missing zip": (lambda: dc.crops_from_plate_zip("/nonexistent.zip", [ROW]), "existing plate ZIP file"),
    "crops_from_plate_zip: rows dict": (lambda: dc.crops_from_plate_zip("/nonexistent.zip", ROW), "rows must be a non-empty list"),
    "load_bbbc021: weeks str": (lambda: dc.load_bbbc021("Week1"), "not one string"),
    "load_bbbc021: crop 0": (lambda: dc.load_bbbc021(["Week1"], crop=0), "crop must be an int >= 8"),
    "load_bbbc021: base_url": (lambda: dc.load_bbbc021(["Week1"], base_url="data.broadinstitute.org"), "base_url must be an https://"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_error(case):
    call, match = CASES[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_corrupt_zip_names_the_file_and_the_remedy(tmp_path):
    bad = tmp_path / "Week1_1.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a ZIP archive .* delete it and fetch the plate again"):
        dc.crops_from_plate_zip(bad, [ROW])
    with pytest.raises(ValueError, match="none of the 1 fields of view"):
        dc.crops_from_plate_zip(tiny_zip(tmp_path), [ROW])


def test_valid_input_still_computes():
    """The checks sit before the computation: valid calls of the same functions run and agree."""
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(cp.augment(X, g1, "book"), cp.augment(X, g2, "book"))
    assert float(cp.nt_xent(Z, Z + 0.01, 0.5)) > 0
    r = cp.nsc_nscb(np.eye(4) + 0.1, {"compound": np.array(list("abcd")), "moa": np.array(list("xxyy")),
                                      "batches": [{"W1"}, {"W2"}, {"W1"}, {"W2"}]})
    assert r.n_nsc == 4 and r.n_nscb == 4
    w = cp.tvn(P, CTRL, lam=1)
    assert np.allclose(w, cp.tvn(P, CTRL, lam=1.0))
