"""Bad input to every public function and constructor of medtut.hsi_sr and medtut.data.hyperspectral gets a
ValueError that names the argument, what was expected and what arrived (issue 24: "bad input gets a clear
error"). Nothing here downloads or trains for more than one step."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from medtut import hsi_sr as hs
from medtut.data import hyperspectral as hsd

NAN = float("nan")
Y = torch.rand(2, 31, 16, 16, generator=torch.Generator().manual_seed(0))   # HR (B, C, H, W)
X = Y[..., ::4, ::4].contiguous()                                            # LR (B, C, h, w)
X8, U8 = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 16, 16)
G = hs.band_groups(31)
PARTS = torch.rand(len(G) * 2, 8, 4, 4)
RGB = torch.rand(3, 3, 32, 32)
SCENES = torch.rand(2, 31, 32, 32)
CFG = hs.Config(num_steps=1, batch_size=2, crop=16, feats=4)
_MODEL = []


def model():
    if not _MODEL:
        _MODEL.append(hs.build_model(hs.Config(feats=4), seed=0, device="cpu"))
    return _MODEL[0]


_PLAIN = []


def plain():
    if not _PLAIN:
        _PLAIN.append(hs.build_model(hs.Config(arch="plain", feats=4, blocks=1), seed=0, device="cpu"))
    return _PLAIN[0]


def nan_at(t, index=0):
    t = t.clone()
    t.view(-1)[index] = NAN
    return t


def train(y=SCENES, cfg=CFG, **kw):
    args = dict(progress=False, device="cpu")
    args.update(kw)
    return hs.train(y, cfg, **args)


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def div2k_zip(tmp_path, arrays):
    path = tmp_path / "div2k.zip"
    with zipfile.ZipFile(path, "w") as z:
        for k, a in enumerate(arrays):
            z.writestr(f"DIV2K_valid_HR/{801 + k:04d}.png", _png(a))
    return path


CASES = {
    # --- Spectral Mixup -------------------------------------------------------------------------------
    "mixup_matrix: C 0": (lambda: hs.mixup_matrix(0), "C must be a positive int; got 0"),
    "mixup_matrix: C 2.5": (lambda: hs.mixup_matrix(2.5), "C must be a positive int; got 2.5"),
    "mixup_matrix: C True": (lambda: hs.mixup_matrix(True), "C must be a positive int; got True"),
    "mixup_matrix: generator int": (lambda: hs.mixup_matrix(3, generator=0), "generator must be None or a torch.Generator"),
    "mixup: no tensor": (lambda: hs.spectral_mixup(), "needs at least one tensor"),
    "mixup: 3-D tensor": (lambda: hs.spectral_mixup(Y[0]), r"tensors\[0\] must be a real float tensor \(B, C, H, W\)"),
    "mixup: int tensor": (lambda: hs.spectral_mixup(Y.long()), r"got a torch.int64 tensor"),
    "mixup: complex tensor": (lambda: hs.spectral_mixup(Y.to(torch.complex64)), "torch.complex64"),
    "mixup: numpy array": (lambda: hs.spectral_mixup(Y.numpy()), "got ndarray"),
    "mixup: None": (lambda: hs.spectral_mixup(None), "got NoneType"),
    "mixup: empty batch": (lambda: hs.spectral_mixup(Y[:0]), r"must be non-empty \(B, C, H, W\); got shape \(0, 31"),
    "mixup: NaN": (lambda: hs.spectral_mixup(nan_at(Y)), r"tensors\[0\] contains NaN or inf"),
    "mixup: bands differ": (lambda: hs.spectral_mixup(X, Y[:, :30]), r"same number of bands; got \[31, 30\]"),
    "mixup: batches differ": (lambda: hs.spectral_mixup(X, Y[:1]), r"same batch size B .*got \[2, 1\]"),
    "mixup: M wrong shape": (lambda: hs.spectral_mixup(Y, M=torch.eye(30)), r"M must be a \(31, 31\) tensor; got \(30, 30\)"),
    "mixup: M list": (lambda: hs.spectral_mixup(Y, M=[[1.0]]), r"M must be a \(31, 31\) tensor; got list"),
    "mixup: M NaN": (lambda: hs.spectral_mixup(Y, M=nan_at(torch.eye(31))), "M contains NaN or inf"),
    "mixup: M complex": (lambda: hs.spectral_mixup(Y, M=torch.eye(31, dtype=torch.complex64)), "M must be real"),
    "mixup: M zero sum": (lambda: hs.spectral_mixup(Y, M=torch.zeros(31, 31)), "positive sum; got sum 0"),
    "mixup: M and generator": (lambda: hs.spectral_mixup(Y, M=torch.eye(31), generator=torch.Generator()),
                               "give M or generator, not both"),
    "mixup: generator seed": (lambda: hs.spectral_mixup(Y, generator=3), "generator must be None or a torch.Generator"),
    # --- band groups ---------------------------------------------------------------------------------
    "band_groups: C < size": (lambda: hs.band_groups(5), "C must be >= size=8; got C=5"),
    "band_groups: C float": (lambda: hs.band_groups(31.0), "C must be an int; got 31.0"),
    "band_groups: C True": (lambda: hs.band_groups(True), "C must be an int; got True"),
    "band_groups: size 0": (lambda: hs.band_groups(31, size=0), "need size >= 1"),
    "band_groups: overlap = size": (lambda: hs.band_groups(31, 8, 8), "0 <= overlap < size; got size=8, overlap=8"),
    "band_groups: overlap -1": (lambda: hs.band_groups(31, 8, -1), "0 <= overlap < size"),
    "split_groups: 3-D x": (lambda: hs.split_groups(Y[0], G), r"x must be a real float tensor \(B, C, H, W\)"),
    "split_groups: group past C": (lambda: hs.split_groups(Y[:, :20], G), r"0 <= start < end <= C=20"),
    "split_groups: empty groups": (lambda: hs.split_groups(Y, []), "groups must be a non-empty list"),
    "split_groups: groups str": (lambda: hs.split_groups(Y, "0-8"), "groups must be a non-empty list"),
    "split_groups: unequal sizes": (lambda: hs.split_groups(Y, [(0, 8), (8, 31)]), r"same size .*got sizes \[8, 23\]"),
    "merge_groups: G * B mismatch": (lambda: hs.merge_groups(PARTS[:7], G, 31), r"\(G \* B, size, H, W\) with G=5; got shape \(7,"),
    "merge_groups: wrong band count": (lambda: hs.merge_groups(PARTS[:, :7], G, 31), "must have 8 bands per group"),
    "merge_groups: C too small": (lambda: hs.merge_groups(PARTS, G, 20), r"0 <= start < end <= C=20"),
    "merge_groups: C 0": (lambda: hs.merge_groups(PARTS, G, 0), "C must be an int >= 1; got 0"),
    "merge_groups: gap in cover": (lambda: hs.merge_groups(PARTS[:4], [(0, 8), (10, 18)], 18),
                                   r"do not cover all 18 bands"),
    "merge_groups: parts numpy": (lambda: hs.merge_groups(PARTS.numpy(), G, 31), "parts must be a real float tensor"),
    "merge_groups: empty parts": (lambda: hs.merge_groups(PARTS[:0], G, 31), r"got shape \(0,"),
    # --- network constructors and forward ----------------------------------------------------------------
    "ChannelAttention: feats 0": (lambda: hs.ChannelAttention(0), "feats must be an int >= 1; got 0"),
    "ChannelAttention: reduction 0": (lambda: hs.ChannelAttention(8, reduction=0), "reduction must be an int >= 1"),
    "SpatialSpectralBlock: feats -2": (lambda: hs.SpatialSpectralBlock(-2), "feats must be an int >= 1; got -2"),
    "SpatialSpectralBlock: res_scale NaN": (lambda: hs.SpatialSpectralBlock(8, NAN), "res_scale must be a finite number"),
    "GroupNet: blocks 0": (lambda: hs.GroupNet(blocks=0), "blocks must be an int >= 1; got 0"),
    "GroupNet: feats 2.5": (lambda: hs.GroupNet(feats=2.5), "feats must be an int >= 1; got float 2.5"),
    "Trunk: C 0": (lambda: hs.Trunk(0), "C must be an int >= 1; got 0"),
    "Trunk: res_scale str": (lambda: hs.Trunk(31, res_scale="0.1"), "res_scale must be a finite number; got str"),
    "DeepShare: factor 2": (lambda: hs.DeepShare(factor=2), "factor must be 4 .*got factor=2"),
    "DeepShare: factor 0": (lambda: hs.DeepShare(factor=0), "factor must be an int >= 1; got 0"),
    "DeepShare: C < group size": (lambda: hs.DeepShare(C=6), "C must be >= size=8; got C=6"),
    "DeepShare: overlap too large": (lambda: hs.DeepShare(overlap=8), "0 <= overlap < size"),
    "DeepShare: group_size 0": (lambda: hs.DeepShare(group_size=0), "group_size must be an int >= 1; got 0"),
    "DeepShare: residual None": (lambda: hs.DeepShare(residual=None), "residual must be True or False; got NoneType"),
    "Trunk: residual 'no'": (lambda: hs.Trunk(31, residual="no"), "residual must be True or False; got str 'no'"),
    "PlainSR: C 0": (lambda: hs.PlainSR(C=0), "C must be an int >= 1; got 0"),
    "PlainSR: feats 2.5": (lambda: hs.PlainSR(feats=2.5), "feats must be an int >= 1; got float 2.5"),
    "PlainSR: blocks 0": (lambda: hs.PlainSR(blocks=0), "blocks must be an int >= 1; got 0"),
    "PlainSR: residual 1": (lambda: hs.PlainSR(residual=1), "residual must be True or False; got int 1"),
    "PlainSR forward: 30 bands": (lambda: plain()(X[:, :30], hsd.upsample(X[:, :30])), "x must have 31 channels; got 30"),
    "PlainSR forward: x_up not 4x": (lambda: plain()(X, Y[..., :8, :8]), r"x_up must be \(B, C, 4h, 4w\)"),
    "PlainSR forward: float64": (lambda: plain()(X.double(), Y.double()), "x must be torch.float32"),
    "PlainSR forward: NaN": (lambda: plain()(X, nan_at(Y)), "x_up contains NaN or inf"),
    "forward: x_up not 4x": (lambda: model()(X, X), r"x_up must be \(B, C, 4h, 4w\)"),
    "forward: batches differ": (lambda: model()(X, Y[:1]), r"x_up must be \(B, C, 4h, 4w\)"),
    "forward: 30 bands": (lambda: model()(X[:, :30], Y[:, :30]), "x must have 31 channels; got 30"),
    "forward: NaN input": (lambda: model()(nan_at(X), Y), "x contains NaN or inf"),
    "forward: empty batch": (lambda: model()(X[:0], Y[:0]), "x must be non-empty"),
    "forward: float64 input": (lambda: model()(X.double(), Y.double()), "x must be torch.float32 on cpu like the model's weights"),
    "forward: x_up float16": (lambda: model()(X, Y.half()), "x_up must be torch.float32 on cpu"),
    "forward_rgb: 3 channels": (lambda: model().forward_rgb(X8[:, :3], U8[:, :3]), "x must have 8 channels; got 3"),
    "rgb_to_8: 4 channels": (lambda: hs.rgb_to_8(torch.zeros(1, 4, 2, 2)), "rgb must have 3 channels; got 4"),
    "rgb_to_8: uint8": (lambda: hs.rgb_to_8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)), "rgb must be a real float tensor"),
    "project: P wrong rows": (lambda: hs.project(Y, P=torch.zeros(30, 8)), r"P must be \(31, K\); got \(30, 8\)"),
    "project: P NaN": (lambda: hs.project(Y, P=nan_at(torch.zeros(31, 8))), "P contains NaN or inf"),
    "project: P complex": (lambda: hs.project(Y, P=np.zeros((31, 8), complex)), "P must be real"),
    "project: P list": (lambda: hs.project(Y, P=[[0.0] * 8] * 31), "P must be None or a .31, K. tensor or array; got list"),
    "project: P zero columns": (lambda: hs.project(Y, P=torch.zeros(31, 0)), r"P must be \(31, K\); got \(31, 0\)"),
    # --- losses --------------------------------------------------------------------------------------------
    "hybrid_loss: shapes differ": (lambda: hs.hybrid_loss(Y, Y[..., :8]), "same shape"),
    "hybrid_loss: broadcastable": (lambda: hs.hybrid_loss(Y, Y[:1]), "same shape"),
    "hybrid_loss: NaN pred": (lambda: hs.hybrid_loss(nan_at(Y), Y), "pred contains NaN or inf"),
    "hybrid_loss: NaN target": (lambda: hs.hybrid_loss(Y, nan_at(Y, 5)), "y contains NaN or inf"),
    "hybrid_loss: 3-D": (lambda: hs.hybrid_loss(Y[0], Y[0]), r"pred must be a real float tensor \(B, C, H, W\)"),
    "hybrid_loss: negative weight": (lambda: hs.hybrid_loss(Y, Y, spatial_weight=-1e-3), "spatial_weight must be a finite number >= 0"),
    "hybrid_loss: NaN weight": (lambda: hs.hybrid_loss(Y, Y, spectral_weight=NAN), "spectral_weight must be a finite number >= 0"),
    "semi_loss: not a DeepShare": (lambda: hs.semi_supervised_loss(torch.nn.Identity(), X, Y), "model must be a DeepShare"),
    "semi_loss: a PlainSR": (lambda: hs.semi_supervised_loss(plain(), X, Y), "model must be a DeepShare"),
    "semi_loss: 30 bands": (lambda: hs.semi_supervised_loss(model(), X[:, :30], Y[:, :30]), "x must have 31 channels"),
    "semi_loss: P 31x3": (lambda: hs.semi_supervised_loss(model(), X, Y, P=torch.zeros(31, 3)), r"P must be a \(31, 8\) tensor"),
    "semi_loss: x_up wrong size": (lambda: hs.semi_supervised_loss(model(), X, X), r"x_up must be \(B, C, 4h, 4w\)"),
    # --- config and budgets -----------------------------------------------------------------------------------
    "Config: num_steps 0": (lambda: hs.Config(num_steps=0), "Config.num_steps must be an int >= 1; got 0"),
    "Config: num_steps 2.5": (lambda: hs.Config(num_steps=2.5), "Config.num_steps must be an int >= 1; got float 2.5"),
    "Config: batch_size 0": (lambda: hs.Config(batch_size=0), "Config.batch_size must be an int >= 1; got 0"),
    "Config: crop not a multiple": (lambda: hs.Config(crop=18), "crop must be a multiple of factor=4"),
    "Config: crop 4": (lambda: hs.Config(crop=4), "crop must be a multiple of factor=4 and >= 8"),
    "Config: lr 0": (lambda: hs.Config(lr=0.0), "Config.lr must be a finite number > 0; got 0.0"),
    "Config: lr NaN": (lambda: hs.Config(lr=NAN), "Config.lr must be a finite number > 0; got nan"),
    "Config: lr str": (lambda: hs.Config(lr="1e-3"), "Config.lr must be a finite number > 0; got str"),
    "Config: feats 0": (lambda: hs.Config(feats=0), "Config.feats must be an int >= 1"),
    "Config: factor 2": (lambda: hs.Config(factor=2, crop=16), "Config.factor must be 4"),
    "Config: overlap >= group_size": (lambda: hs.Config(overlap=8), "Config.overlap must be < group_size=8"),
    "Config: mixup 'yes'": (lambda: hs.Config(mixup="yes"), "Config.mixup must be True or False; got str 'yes'"),
    "Config: rgb 1": (lambda: hs.Config(rgb=1), "Config.rgb must be True or False; got int 1"),
    "Config: rgb_steps 0": (lambda: hs.Config(rgb_steps=0), "Config.rgb_steps must be an int >= 1"),
    "Config: semi_steps -1": (lambda: hs.Config(semi_steps=-1), "Config.semi_steps must be an int >= 1"),
    "Config: semi_fraction 1.5": (lambda: hs.Config(semi_fraction=1.5), r"semi_fraction must be in \[0, 1\]; got 1.5"),
    "Config: semi_fraction NaN": (lambda: hs.Config(semi_fraction=NAN), "Config.semi_fraction must be a finite number"),
    "Config: res_scale inf": (lambda: hs.Config(res_scale=float("inf")), "Config.res_scale must be a finite number"),
    "Config: arch 'unet'": (lambda: hs.Config(arch="unet"), "Config.arch must be one of .'deepshare', 'plain'.; got 'unet'"),
    "Config: arch None": (lambda: hs.Config(arch=None), "Config.arch must be one of .*; got None"),
    "Config: plain with rgb": (lambda: hs.Config(arch="plain", rgb=True), "arch='plain' .* rgb and semi must be False"),
    "Config: plain with semi": (lambda: hs.Config(arch="plain", semi=True), "arch='plain' .* rgb and semi must be False"),
    "Config: residual 'yes'": (lambda: hs.Config(residual="yes"), "Config.residual must be True or False; got str 'yes'"),
    "optimizer_steps: dict config": (lambda: hs.optimizer_steps({"num_steps": 3}), "config must be a medtut.hsi_sr.Config; got dict"),
    "optimizer_steps: num_steps 0": (lambda: hs.optimizer_steps(CFG, 0), "num_steps must be an int >= 1; got 0"),
    "optimizer_steps: num_steps 2.5": (lambda: hs.optimizer_steps(CFG, 2.5), "num_steps must be an int >= 1; got float"),
    "iterations_for: budget 0": (lambda: hs.iterations_for(CFG, 0), "budget must be an int >= 1 optimiser step; got 0"),
    "iterations_for: budget 10.5": (lambda: hs.iterations_for(CFG, 10.5), "budget must be an int >= 1 optimiser step; got 10.5"),
    "iterations_for: config None": (lambda: hs.iterations_for(None, 10), "config must be a medtut.hsi_sr.Config; got NoneType"),
    # --- crops, model building, training --------------------------------------------------------------------
    "CropSampler: crop > image": (lambda: hs.CropSampler(SCENES, 64, 4, 2, 0), "smaller than the crop 64"),
    "CropSampler: crop not a multiple": (lambda: hs.CropSampler(SCENES, 18, 4, 2, 0), "crop must be a multiple of factor=4; got 18"),
    "CropSampler: batch_size 0": (lambda: hs.CropSampler(SCENES, 16, 4, 0, 0), "batch_size must be an int >= 1; got 0"),
    "CropSampler: factor 0": (lambda: hs.CropSampler(SCENES, 16, 0, 2, 0), "factor must be an int >= 1; got 0"),
    "CropSampler: seed -1": (lambda: hs.CropSampler(SCENES, 16, 4, 2, -1), "seed must be an int >= 0; got -1"),
    "CropSampler: H not divisible": (lambda: hs.CropSampler(SCENES[..., :30, :30], 16, 4, 2, 0), "divisible by factor=4"),
    "CropSampler: lr_only 'no'": (lambda: hs.CropSampler(SCENES, 16, 4, 2, 0, lr_only="no"), "lr_only must be True or False"),
    "build_model: device gpu": (lambda: hs.build_model(CFG, device="gpu"), "device 'gpu' is not a torch device name"),
    "build_model: device cuda": (lambda: hs.build_model(CFG, device="cuda"), "torch sees no CUDA device here"),
    "build_model: device typo": (lambda: hs.build_model(CFG, device="cpuu"), "device must name a torch device"),
    "build_model: device int": (lambda: hs.build_model(CFG, device=3), "device must be None, a string"),
    "build_model: C 4": (lambda: hs.build_model(CFG, C=4), "C must be an int >= 8; got 4"),
    "build_model: seed 1.5": (lambda: hs.build_model(CFG, seed=1.5), "seed must be an int >= 0; got float 1.5"),
    "build_model: config None": (lambda: hs.build_model(None), "config must be a medtut.hsi_sr.Config; got NoneType"),
    "train: 3-D train_y": (lambda: train(SCENES[0]), r"train_y must be a real float tensor \(B, C, H, W\)"),
    "train: NaN train_y": (lambda: train(nan_at(SCENES)), "train_y contains NaN or inf"),
    "train: 16-bit range": (lambda: train(SCENES * 65535), r"train_y must hold values in \[0, 1\] .*divide 16-bit data by 65535"),
    "train: 4 bands": (lambda: train(SCENES[:, :4]), "train_y must have at least group_size=8 bands; got 4"),
    "train: empty batch": (lambda: train(SCENES[:0]), "train_y must be non-empty"),
    "train: image < crop": (lambda: train(SCENES[..., :8, :8]), "smaller than the crop 16"),
    "train: rgb missing": (lambda: train(cfg=hs.Config(num_steps=1, crop=16, feats=4, rgb=True)), "needs rgb_images"),
    "train: rgb 4 channels": (lambda: train(cfg=hs.Config(num_steps=1, crop=16, feats=4, rgb=True), rgb_images=RGB.repeat(1, 2, 1, 1)[:, :4]),
                              "rgb_images must have 3 channels; got 4"),
    "train: rgb 8-bit range": (lambda: train(cfg=hs.Config(num_steps=1, crop=16, feats=4, rgb=True), rgb_images=RGB * 255),
                               r"rgb_images must hold values in \[0, 1\]"),
    "train: semi missing": (lambda: train(cfg=hs.Config(num_steps=1, crop=16, feats=4, semi=True)), "needs unlabelled_y"),
    "train: unlabelled bands differ": (lambda: train(cfg=hs.Config(num_steps=1, crop=16, feats=4, semi=True),
                                                     unlabelled_y=SCENES[:, :30]), "unlabelled_y must have 31 channels; got 30"),
    "train: device gpu": (lambda: train(device="gpu"), "device 'gpu' is not a torch device name"),
    "train: device cuda:3": (lambda: train(device="cuda:3"), "torch sees no CUDA device"),
    "train: seed -1": (lambda: train(seed=-1), "seed must be an int >= 0; got -1"),
    "train: config dict": (lambda: train(cfg={"num_steps": 1}), "config must be a medtut.hsi_sr.Config; got dict"),
    "train: progress 'off'": (lambda: train(progress="off"), "progress must be True or False"),
    "train: desc int": (lambda: train(desc=3), "desc must be None or a string; got int"),
    # --- metrics and evaluation ---------------------------------------------------------------------------------
    "sam: shapes differ": (lambda: hs.sam(Y[0], Y[0, :, :8]), r"same shape \(C, H, W\)"),
    "sam: 2-D": (lambda: hs.sam(Y[0, 0], Y[0, 0]), r"pred must be a real float image \(C, H, W\)"),
    "sam: batch of 2": (lambda: hs.sam(Y, Y), r"pred must be a real float image \(C, H, W\); got shape \(2, 31"),
    "sam: complex": (lambda: hs.sam(Y[0].to(torch.complex64), Y[0]), "real float image"),
    "sam: NaN ref": (lambda: hs.sam(Y[0], nan_at(Y[0])), "ref contains NaN or inf"),
    "sam: all zero": (lambda: hs.sam(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2)), "every pixel of pred or ref is zero"),
    "sam: eps -1": (lambda: hs.sam(Y[0], Y[0], eps=-1.0), "eps must be a finite number >= 0"),
    "sam: empty": (lambda: hs.sam(torch.zeros(3, 0, 2), torch.zeros(3, 0, 2)), "pred must be non-empty"),
    "mpsnr: data_range 0": (lambda: hs.mpsnr(Y[0], Y[0], data_range=0), "data_range must be a finite number > 0; got 0"),
    "mpsnr: data_range -1": (lambda: hs.mpsnr(Y[0], Y[0], data_range=-1.0), "data_range must be a finite number > 0"),
    "mpsnr: NaN pred": (lambda: hs.mpsnr(nan_at(Y[0]), Y[0]), "pred contains NaN or inf"),
    "mpsnr: int image": (lambda: hs.mpsnr(np.ones((3, 2, 2), int), np.ones((3, 2, 2))), "real float image"),
    "ergas: ratio 0": (lambda: hs.ergas(Y[0], Y[0], ratio=0), "ratio must be a finite number > 0; got 0"),
    "ergas: ratio NaN": (lambda: hs.ergas(Y[0], Y[0], ratio=NAN), "ratio must be a finite number > 0; got nan"),
    "ergas: zero-mean band": (lambda: hs.ergas(torch.ones(2, 2, 2), torch.zeros(2, 2, 2)), "zero mean"),
    "super_resolve: batch_size 0": (lambda: hs.super_resolve(model(), Y, batch_size=0), "batch_size must be an int >= 1; got 0"),
    "super_resolve: factor 2 with model": (lambda: hs.super_resolve(model(), Y, factor=2), "factor must be 4 for a DeepShare"),
    "super_resolve: factor 2 with PlainSR": (lambda: hs.super_resolve(plain(), Y, factor=2), "factor must be 4 for a PlainSR"),
    "super_resolve: PlainSR 30 bands": (lambda: hs.super_resolve(plain(), Y[:, :30]), "y must have the model's 31 bands; got 30"),
    "super_resolve: factor 0": (lambda: hs.super_resolve(None, Y, factor=0), "factor must be an int >= 1; got 0"),
    "super_resolve: device gpu": (lambda: hs.super_resolve(model(), Y, device="gpu"), "device 'gpu' is not a torch device name"),
    "super_resolve: device cuda": (lambda: hs.super_resolve(model(), Y, device="cuda"), "torch sees no CUDA device"),
    "super_resolve: not a model": (lambda: hs.super_resolve("model", Y), "model must be None .bicubic., a DeepShare or a PlainSR"),
    "super_resolve: 30 bands": (lambda: hs.super_resolve(model(), Y[:, :30]), "y must have the model's 31 bands; got 30"),
    "super_resolve: NaN": (lambda: hs.super_resolve(None, nan_at(Y)), "y contains NaN or inf"),
    "super_resolve: H not divisible": (lambda: hs.super_resolve(None, Y[..., :14, :14]), "divisible by factor=4"),
    "evaluate: 3-D": (lambda: hs.evaluate(None, Y[0]), r"y must be a real float tensor \(B, C, H, W\)"),
    "evaluate: factor 2.5": (lambda: hs.evaluate(None, Y, factor=2.5), "factor must be an int >= 1; got float 2.5"),
    # --- data: libraries, scenes, degradation ---------------------------------------------------------------------
    "material_library: unknown split": (lambda: hsd.material_library("test"), "split must be 'train' or 'unseen'; got 'test'"),
    "material_library: split None": (lambda: hsd.material_library(None), "split must be 'train' or 'unseen'; got None"),
    "make_scene: rng int": (lambda: hsd.make_scene(0, hsd.material_library()), "rng must be a numpy Generator"),
    "make_scene: one spectrum": (lambda: hsd.make_scene(np.random.default_rng(0), np.zeros((1, 31))), r"spectra must be \(N >= 2, 31\)"),
    "make_scene: 30 bands": (lambda: hsd.make_scene(np.random.default_rng(0), np.zeros((4, 30))), r"got shape \(4, 30\)"),
    "make_scene: NaN spectrum": (lambda: hsd.make_scene(np.random.default_rng(0), np.full((2, 31), NAN)), "NaN or inf"),
    "make_scene: reflectance 2": (lambda: hsd.make_scene(np.random.default_rng(0), np.full((2, 31), 2.0)), r"reflectances in \[0, 1\]"),
    "make_scene: size 30": (lambda: hsd.make_scene(np.random.default_rng(0), hsd.material_library(), size=30), "size must be a multiple of 4"),
    "make_scene: num_ellipses -1": (lambda: hsd.make_scene(np.random.default_rng(0), hsd.material_library(), num_ellipses=-1),
                                    "num_ellipses must be an int >= 0; got -1"),
    "make_scenes: 0 scenes": (lambda: hsd.make_scenes(0), "num_scenes must be a positive int; got 0"),
    "make_scenes: 2.5 scenes": (lambda: hsd.make_scenes(2.5), "num_scenes must be a positive int; got 2.5"),
    "make_scenes: unknown materials": (lambda: hsd.make_scenes(1, "test"), "split must be 'train' or 'unseen'"),
    "make_scenes: size 0": (lambda: hsd.make_scenes(1, size=0), "size must be a multiple of 4 and >= 16; got 0"),
    "make_scenes: seed -1": (lambda: hsd.make_scenes(1, seed=-1), "seed must be an int >= 0; got -1"),
    "make_scenes: seed str": (lambda: hsd.make_scenes(1, seed="0"), "seed must be an int >= 0; got str"),
    "downsample: not divisible": (lambda: hsd.downsample(torch.zeros(1, 31, 10, 10)), "divisible by factor=4"),
    "downsample: factor 0": (lambda: hsd.downsample(Y, 0), "factor must be an int >= 1; got 0"),
    "downsample: factor 2.5": (lambda: hsd.downsample(Y, 2.5), "factor must be an int >= 1; got float 2.5"),
    "downsample: 3-D": (lambda: hsd.downsample(Y[0]), r"y must be a real float tensor \(B, C, H, W\)"),
    "downsample: NaN": (lambda: hsd.downsample(nan_at(Y)), "y contains NaN or inf"),
    "downsample: empty": (lambda: hsd.downsample(Y[:0]), "y must be non-empty"),
    "upsample: factor -4": (lambda: hsd.upsample(X, -4), "factor must be an int >= 1; got -4"),
    "upsample: int tensor": (lambda: hsd.upsample(X.int()), r"x must be a real float tensor .*torch.int32"),
    "degrade: factor 0": (lambda: hsd.degrade(Y, 0), "factor must be an int >= 1; got 0"),
    "render_rgb: 30 bands": (lambda: hsd.render_rgb(torch.ones(1, 30, 4, 4)), "hsi must have 31 bands; got 30"),
    "render_rgb: NaN": (lambda: hsd.render_rgb(nan_at(Y)), "hsi contains NaN or inf"),
    "rgb_photo_tiles: size 30": (lambda: hsd.rgb_photo_tiles(size=30), "size must be a multiple of 4 and >= 16; got 30"),
    "rgb_photo_tiles: size too big": (lambda: hsd.rgb_photo_tiles(size=400, photos=("chelsea",)), "size=400 exceeds the photo 'chelsea'"),
    "rgb_photo_tiles: per_photo 0": (lambda: hsd.rgb_photo_tiles(per_photo=0), "per_photo must be an int >= 1; got 0"),
    "rgb_photo_tiles: unknown photo": (lambda: hsd.rgb_photo_tiles(photos=("camera",)), r"got unknown \['camera'\]"),
    "rgb_photo_tiles: photos str": (lambda: hsd.rgb_photo_tiles(photos="coffee"), "photos must be a non-empty tuple"),
    "rgb_photo_tiles: no photos": (lambda: hsd.rgb_photo_tiles(photos=()), "photos must be a non-empty tuple"),
    # --- data: real-data loaders (on files written here; nothing is downloaded) ---------------------------------
    "download_cave: root int": (lambda: hsd.download_cave(root=3), "root must be None .* or a folder path; got int"),
    "download_div2k: root list": (lambda: hsd.download_div2k(root=["a"]), "root must be None .* or a folder path; got list"),
    "load_cave: source None": (lambda: hsd.load_cave(None), "source must be the path of the CAVE ZIP"),
    "load_cave: scenes int": (lambda: hsd.load_cave("x.zip", scenes=3), "scenes must be None, a split name"),
    "load_cave: empty scene list": (lambda: hsd.load_cave("x.zip", scenes=[]), "scenes must be None, a split name"),
    "load_cave: unknown split": (lambda: hsd.load_cave("x.zip", scenes="train"), r"one of \['labelled', 'unlabelled', 'test'\]"),
    "load_cave: size 0": (lambda: hsd.load_cave("x.zip", size=0), "size must be an int >= 1; got 0"),
    "load_cave: missing file": (lambda: hsd.load_cave("/nonexistent/cave.zip"), "CAVE ZIP or a folder"),
    "load_div2k: source int": (lambda: hsd.load_div2k(3), "source must be the path of the DIV2K ZIP"),
    "load_div2k: num_images 0": (lambda: hsd.load_div2k("x.zip", num_images=0), "num_images must be an int >= 1; got 0"),
    "load_div2k: size 10": (lambda: hsd.load_div2k("x.zip", size=10), "size must be a multiple of 4 and >= 16; got 10"),
    "load_div2k: per_image 0": (lambda: hsd.load_div2k("x.zip", per_image=0), "per_image must be an int >= 1; got 0"),
    "load_div2k: seed -1": (lambda: hsd.load_div2k("x.zip", seed=-1), "seed must be an int >= 0; got -1"),
    "load_div2k: missing file": (lambda: hsd.load_div2k("/nonexistent/div2k.zip"), "DIV2K ZIP or a folder"),
}

# cases that need a file written by the test (tmp_path)
FILE_CASES = {
    "load_div2k: no images in ZIP": (lambda p: hsd.load_div2k(div2k_zip(p, [])), r"no DIV2K images \(NNNN.png\)"),
    "load_div2k: too few images": (lambda p: hsd.load_div2k(div2k_zip(p, [np.zeros((64, 64, 3), np.uint8)]), num_images=2,
                                                            size=16), "num_images=2 but .* holds only 1"),
    "load_div2k: grey PNG": (lambda p: hsd.load_div2k(div2k_zip(p, [np.zeros((64, 64), np.uint8)]), size=16),
                             "expected an 8-bit RGB PNG; got shape .64, 64."),
    "load_div2k: photo smaller than tile": (lambda p: hsd.load_div2k(div2k_zip(p, [np.zeros((20, 20, 3), np.uint8)]), size=16),
                                            r"size=16 exceeds .*0801.png \(10x10 after shrinking by 2\)"),
    "load_cave: empty folder": (lambda p: hsd.load_cave(p), "no CAVE band files"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_bad_files_get_a_clear_error(name, tmp_path):
    call, message = FILE_CASES[name]
    with pytest.raises(ValueError, match=message):
        call(tmp_path)


def test_valid_input_still_works():
    # the checks only guard the boundary: the same calls with valid arguments run as before
    xm, um, M = hs.spectral_mixup(X, Y, generator=torch.Generator().manual_seed(0))
    assert xm.shape == X.shape and M.shape == (31, 31)
    assert hs.merge_groups(hs.split_groups(Y, G), G, 31).shape == Y.shape
    assert model()(X, hsd.upsample(X)).shape == Y.shape
    assert hs.iterations_for(hs.Config(mixup=True), np.int64(100)) == 50
    assert hs.optimizer_steps(hs.Config(semi=True, semi_fraction=0.5), 7) == 7 + 4   # t / 7 < 0.5 for t = 0..3
    assert hs.super_resolve(model(), Y, batch_size=1, device="cpu").shape == Y.shape
    assert hs.super_resolve(plain(), Y, batch_size=1, device="cpu").shape == Y.shape
    assert hs.mpsnr(Y[0], Y[0] * 0.9, data_range=np.float32(1.0)) > 0
    assert hsd.downsample(Y, np.int64(2)).shape == (2, 31, 8, 8)


def test_case_count():
    # the closing note quotes this number
    assert len(CASES) + len(FILE_CASES) >= 190
