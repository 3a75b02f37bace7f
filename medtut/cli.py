"""Train a chapter's method from the command line, on one process or many.

    python -m medtut.cli list
    python -m medtut.cli local_contrastive train --dataset synthetic --num-steps 300 --seed 0 --out runs/lc
    python -m medtut.cli auc_alm train --dataset cifar10 --num-epochs 100 --set loss=wbce --out runs/auc
    torchrun --nproc_per_node=4 -m medtut.cli auc_alm train --dataset cifar10 --num-epochs 100 --out runs/auc

Each chapter entry (:data:`CHAPTERS`) names its data sets (offline synthetic ones and the registered real
ones), the chapter's own config dataclass (``--set field=value`` changes one of its fields) and a ``run``
function that calls the chapter's public trainer, which trains through :func:`medtut.train.fit`. Under
``torchrun`` every process runs the same command: :func:`medtut.train.fit` does the data-parallel part and
only rank 0 writes into ``--out``:

* ``model.pt``: the trained weights (``state_dict``);
* ``history.json``: the records of :class:`medtut.train.History`;
* ``result.json``: the command, the config, the world size, the training wall time and the evaluation on the
  held-out test set.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medtut import distributed


@dataclass(frozen=True)
class Chapter:
    """One chapter's command: ``datasets`` (name -> one-line description), its ``config`` dataclass, the
    budget unit its trainer counts (``"num_steps"`` or ``"num_epochs"``) and ``run(args, cfg)`` returning
    ``(model, result, evaluation)``."""
    title: str
    datasets: dict[str, str]
    config: Callable[[], Any]
    budget: str
    run: Callable[[argparse.Namespace, Any], tuple[torch.nn.Module, Any, dict]]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    prepare: Callable[[argparse.Namespace, Any], Any] = lambda args, cfg: cfg     # chapter options -> config


# ------------------------------------------------------------------------------------------------
# chapter 1: local contrastive loss with pseudo-labels (semi-supervised segmentation)
# ------------------------------------------------------------------------------------------------


def _lc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=None, metavar="LAB,VAL,TEST",
                        help="labelled, validation and test subjects (default: 2,2,4 synthetic; 8,10,40 real)")
    parser.add_argument("--baseline-steps", type=int, default=None,
                        help="steps of the labelled-only baseline the method starts from (default: --num-steps)")
    parser.add_argument("--size", type=int, default=None, help="in-plane size in pixels (default 64 synthetic, "
                        "128 real)")


def _lc_data(args) -> tuple[list, list, int]:
    from medtut.data import cardiac

    if args.dataset == "synthetic":
        images, labels = cardiac.make_cardiac_dataset(args.subjects or 24, size=args.size or 64, seed=args.seed)
        return list(images), list(labels), 4
    root = _data_dir(args)
    if args.dataset == "acdc":
        folder = cardiac.download_acdc(root) if args.download else root
        subjects = cardiac.load_acdc(folder, size=args.size or 128, max_subjects=args.subjects)
        classes = 4
    else:
        subjects = cardiac.load_prostate_decathlon(root, size=args.size or 128, download=args.download,
                                                   seed=args.seed)[:args.subjects]
        classes = 3
    return ([torch.as_tensor(s["image"]) for s in subjects], [torch.as_tensor(s["label"]) for s in subjects],
            classes)


def _lc_run(args, cfg):
    from medtut import local_contrastive as lc

    images, labels, classes = _lc_data(args)
    sizes = args.split or ("2,2,4" if args.dataset == "synthetic" else "8,10,40")
    try:
        n_lab, n_val, n_test = (int(v) for v in sizes.split(","))
    except ValueError:
        raise ValueError(f"--split must be three integers LAB,VAL,TEST; got {sizes!r}") from None
    split = lc.make_split(images, labels, n_lab, n_val, n_test, draw=args.seed)
    model = lc.UNetWithProjection(num_classes=classes)
    start = time.perf_counter()
    baseline_steps = args.baseline_steps if args.baseline_steps is not None else cfg.num_steps
    model, base = lc.train_baseline(model, split, num_steps=baseline_steps, batch_size=cfg.batch_labelled,
                                    lr=cfg.lr, eval_every=cfg.eval_every, seed=cfg.seed,
                                    progress=args.progress, device=args.device)
    histories = {"baseline": base.history}
    if cfg.method != "labelled-only":
        model, result = lc.train_semi_supervised(model, split, cfg, classes, progress=args.progress,
                                                 device=args.device)
        histories[cfg.method] = result.history
    per_class = lc.evaluate_dice(model, split.test_images, split.test_labels, classes)
    evaluation = {"test_dice_mean": float(np.nanmean(per_class)),
                  "test_dice_per_class": [float(v) for v in np.nanmean(per_class, axis=0)],
                  "test_subjects": len(split.test_images), "wall_time_s": time.perf_counter() - start}
    return model, histories, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 6: contrastive single-cell profiles (SimCLR), scored by NSC / NSCB
# ------------------------------------------------------------------------------------------------


def _cp_data(args):
    from medtut.data import cells

    if args.dataset == "synthetic":
        return cells.make_cell_screen(seed=args.seed)
    path = _data_dir(args)
    if path.is_dir():
        path = path / "bbbc021.npz"
    if not path.exists():
        raise ValueError(f"--data-dir must be (or hold) the bbbc021.npz that medtut.data.cells.save_screen wrote "
                         f"from the chapter's BBBC021 crops; {path} does not exist")
    return cells.load_screen(path)


def _cp_run(args, cfg):
    from medtut import cell_profiling as cp

    screen = _cp_data(args)
    images = screen.images[:args.subjects] if args.subjects else screen.images
    meta = {k: v[:len(images)] for k, v in screen.meta.items()}
    start = time.perf_counter()
    model, result = cp.train_simclr(images, cfg, seed=args.seed, device=args.device, progress=args.progress)
    score, _, _ = cp.profile_and_score(cp.embed(model, images), meta, use_tvn=True)
    evaluation = {"nsc": score.nsc, "nscb": score.nscb, "n_nsc": score.n_nsc, "n_nscb": score.n_nscb,
                  "cells": len(images), "wall_time_s": time.perf_counter() - start}
    return model, {"train": result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 7: AUC constraints with an Augmented Lagrangian (imbalanced binary classification)
# ------------------------------------------------------------------------------------------------


def _alm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ratio", type=float, default=None,
                        help="negatives per positive in training (default 30 digits, 100 cifar10, 20 medmnist)")
    parser.add_argument("--alm", default=None, metavar="DICT",
                        help="Augmented Lagrangian settings as a Python dict, e.g. \"{'delta': 1.0}\" "
                             "(default: none, the base loss alone)")


def _alm_prepare(args, cfg):
    return dataclasses.replace(cfg, alm=_literal(args.alm, "--alm")) if args.alm is not None else cfg


def _alm_data(args):
    from medtut.data import imbalanced

    if args.dataset == "digits":
        return imbalanced.make_imbalanced_digits(ratio=args.ratio or 30, seed=args.seed)
    if args.dataset == "cifar10":
        folder = imbalanced.cifar10_folder(args.data_dir) if args.download or args.data_dir is None else \
            Path(args.data_dir)
        return imbalanced.make_cifar10_cars_vs_trucks(ratio=args.ratio or 100, seed=args.seed, folder=folder)
    path = None if args.download or args.data_dir is None else Path(args.data_dir) / f"{args.dataset}.npz"
    return imbalanced.make_medmnist_imbalanced(args.dataset, ratio=args.ratio or 20, seed=args.seed, path=path)


def _alm_run(args, cfg):
    from medtut import auc_alm
    from medtut.data import imbalanced

    if cfg.alm is not None and distributed.world_size() > 1:
        raise ValueError("--alm under torchrun is not supported yet: AugmentedLagrangian keeps one multiplier "
                         "per training sample and updates it on the process that saw the sample, so the "
                         "processes' multipliers would drift apart. Train the ALM on one process")
    split = _alm_data(args)
    if args.dataset == "digits":
        model, augment = auc_alm.TinyCNN(), imbalanced.shift_and_noise
    elif args.dataset == "cifar10":
        model, augment = auc_alm.resnet10(3), imbalanced.crop_and_flip
    else:
        model, augment = auc_alm.TinyCNN(split.X_train.shape[1], image_size=split.X_train.shape[-1]), \
            imbalanced.shift_and_noise
    start = time.perf_counter()
    model, result = auc_alm.train_binary_classifier(model, split.X_train, split.y_train, cfg, seed=args.seed,
                                                    augment=augment, X_val=split.X_val, y_val=split.y_val,
                                                    device=args.device, progress=args.progress)
    scores = auc_alm.predict_logits(model, split.X_test)
    evaluation = {f"test_{k}": float(v) for k, v in auc_alm.evaluate_scores(split.y_test.numpy(), scores).items()}
    evaluation.update(test_samples=len(split.y_test), wall_time_s=time.perf_counter() - start)
    return model, {"train": result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 9: probabilistic 3-D shape reconstruction from three slices
# ------------------------------------------------------------------------------------------------


def _sr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-train", type=int, default=3000, help="training samples (cups), or poses per "
                        "training subject (heart)")
    parser.add_argument("--n-test", type=int, default=500, help="test samples (cups), or test subjects (heart)")
    parser.add_argument("--modes", type=int, default=12, help="PCA modes of the shape model")


def _sr_data(args):
    from medtut.data import cup_shapes

    if args.dataset == "cups":
        return (cup_shapes.make_cup_dataset(args.n_train, seed=2 * args.seed),
                cup_shapes.make_cup_dataset(args.n_test, seed=2 * args.seed + 1))
    subjects = cup_shapes.load_heart_decathlon(_data_dir(args), download=args.download,
                                               max_subjects=args.subjects)
    if len(subjects) <= args.n_test:
        raise ValueError(f"--n-test {args.n_test} leaves no training subject of the {len(subjects)} loaded")
    train, test = subjects[:-args.n_test], subjects[-args.n_test:]
    return (cup_shapes.make_heart_dataset(train, args.n_train, seed=args.seed),
            cup_shapes.make_heart_dataset(test, 10, seed=args.seed + 1))


def _sr_run(args, cfg):
    from medtut import shape_recon as sr

    train_data, test_data = _sr_data(args)
    start = time.perf_counter()
    shape_model = sr.PCAShapeModel.fit(train_data.canonical, min(args.modes, len(train_data) - 1))
    model, result = sr.train(train_data, shape_model, cfg, seed=args.seed, device=args.device,
                             progress=args.progress)
    evaluation = {f"test_{k}": float(v) for k, v in sr.evaluate(sr.predict(model, test_data.images),
                                                                 test_data.vertices).items()}
    evaluation.update(test_samples=len(test_data), wall_time_s=time.perf_counter() - start)
    return model, {"train": result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 2: cross-image pixel contrast (fully supervised segmentation)
# ------------------------------------------------------------------------------------------------


def _pc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-train", type=int, default=16, help="training images (textures); real data: all "
                        "training-section slices, or the first --subjects")
    parser.add_argument("--n-test", type=int, default=100, help="test images (textures); real data: the "
                        "validation-section slices, or the first --n-test of them")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")


def _pc_data(args):
    from medtut.data import textures

    if args.dataset == "textures":
        x, y = textures.make_texture_dataset(args.subjects or args.n_train, size=args.size, seed=2 * args.seed + 1)
        xt, yt = textures.make_texture_dataset(args.n_test, size=args.size, seed=2 * args.seed + 2)
        return x, y, xt, yt, textures.NUM_CLASSES
    task = {"hippocampus": "Task04_Hippocampus", "prostate": "Task05_Prostate"}[args.dataset]
    root = _data_dir(args)
    x, y, _ = textures.load_decathlon_slices(root, task, "training", size=args.size, download=args.download,
                                             seed=args.seed)
    xt, yt, _ = textures.load_decathlon_slices(root, task, "validation", size=args.size, download=False,
                                               seed=args.seed)
    n = args.subjects or len(x)
    return x[:n], y[:n], xt[:args.n_test], yt[:args.n_test], len(textures.DECATHLON_TASKS[task])


def _pc_run(args, cfg):
    from medtut import pixel_contrast as pc

    x, y, xt, yt, classes = _pc_data(args)
    start = time.perf_counter()
    model, result = pc.train(x, y, cfg, classes, device=args.device, progress=args.progress)
    scores = pc.evaluate(model, xt, yt, classes)
    evaluation = {"test_mIoU": scores["mIoU"], "test_IoU_per_class": [float(v) for v in scores["IoU"]],
                  "test_Dice": scores["Dice"], "train_images": len(x), "test_images": len(xt),
                  "wall_time_s": time.perf_counter() - start}
    return model, {cfg.arm: result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 3: Mem3D, interactive 3-D segmentation with a memory network and a quality head
# ------------------------------------------------------------------------------------------------


def _m3_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in-steps", type=int, default=None, help="steps of the interaction network f_In "
                        "(default: medtut.mem3d.InteractionConfig's)")
    parser.add_argument("--pool-size", type=int, default=None, help="pre-drawn f_In training samples (default: "
                        "medtut.mem3d.InteractionConfig's)")
    parser.add_argument("--n-train", type=int, default=32, help="training volumes (tubes)")
    parser.add_argument("--n-test", type=int, default=8, help="test volumes (tubes; real data: the first "
                        "--n-test volumes of the validation section)")
    parser.add_argument("--size", type=int, default=64, help="in-plane size in pixels (a multiple of 8)")
    parser.add_argument("--depth", type=int, default=32, help="slices per volume (tubes)")
    parser.add_argument("--user", default="click", help="simulated user of the test sessions: "
                        "click, extreme, box or scribble")
    parser.add_argument("--strategy", default="quality", help="next-slice strategy of the test sessions: "
                        "quality, random, oracle or uniform")
    parser.add_argument("--rounds", type=int, default=6, help="interaction rounds per test volume")


def _m3_data(args):
    from medtut.data import tubes

    if args.dataset == "tubes":
        return (tubes.make_tube_dataset(args.subjects or args.n_train, args.size, args.depth, seed=2 * args.seed + 1),
                tubes.make_tube_dataset(args.n_test, args.size, args.depth, seed=2 * args.seed + 2))
    task = {"spleen": "Task09_Spleen", "heart": "Task02_Heart"}[args.dataset]
    root = _data_dir(args)
    train = tubes.load_decathlon_volumes(root, task, "training", size=args.size, download=args.download,
                                         seed=args.seed)
    test = tubes.load_decathlon_volumes(root, task, "validation", size=args.size, seed=args.seed)
    return train[:args.subjects], test[:args.n_test]


def _m3_run(args, cfg):
    from medtut import mem3d as m3

    if args.user not in m3.USER_KINDS:
        raise ValueError(f"--user must be one of {m3.USER_KINDS}; got {args.user!r}")
    if args.strategy not in m3.STRATEGIES:
        raise ValueError(f"--strategy must be one of {m3.STRATEGIES}; got {args.strategy!r}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1; got {args.rounds}")
    train_vols, test_vols = _m3_data(args)
    in_changes = {k: v for k, v in (("num_steps", args.in_steps), ("pool_size", args.pool_size)) if v is not None}
    start = time.perf_counter()
    f_in, res_in = m3.train_interaction_network(train_vols, m3.InteractionConfig(**in_changes), seed=args.seed,
                                                device=args.device, progress=args.progress)
    f_mem, res_mem = m3.train_memory_network(train_vols, cfg, seed=args.seed, device=args.device,
                                             progress=args.progress)
    sessions = [m3.run_session(vol, f_in, f_mem, m3.SimulatedUser(args.user, seed=100 * args.seed + i),
                               args.strategy, rounds=args.rounds, seed=100 * args.seed + i)
                for i, vol in enumerate(test_vols)]
    dice = np.stack([s.dice for s in sessions])                       # (volumes, rounds)
    evaluation = {"test_dice_per_round": [float(v) for v in dice.mean(0)], "test_dice_final": float(dice[:, -1].mean()),
                  # rounds to reach Dice 0.9 per volume; None: not reached within --rounds
                  "test_noi_0.9": [v if math.isfinite(v) else None for v in (m3.noi(d, 0.9) for d in dice)],
                  "user": args.user, "strategy": args.strategy,
                  "test_volumes": len(test_vols), "wall_time_s": time.perf_counter() - start}
    return torch.nn.ModuleDict({"f_in": f_in, "f_mem": f_mem}), {"f_in": res_in.history, "f_mem": res_mem.history}, \
        evaluation


# ------------------------------------------------------------------------------------------------
# chapter 5: gradient-flow encoding (a decoder trained without an encoder) vs an autoencoder
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientFlowConfig:
    """The settings of :func:`medtut.gradient_flow.data_efficiency_curve` (the chapter has no config class of
    its own; its notebook passes these as keywords). ``num_steps``: batches of the single pass over the
    training set (``None``: the whole set, ``len // batch_size``); ``train_max_evals`` / ``test_max_evals``:
    the adaptive solver's gradient evaluations per training batch / per test encoding; ``checkpoints``:
    test evaluations along the pass (at evenly spaced image counts, the last at the end)."""
    method: str = "GFE"
    num_steps: int | None = None
    batch_size: int = 5
    lr: float = 2e-3
    latent_dim: int | None = None       # None: 8 on digits, 20 on MNIST (the notebook's)
    hidden: tuple | None = None         # None: (64, 128) on digits, (150, 300, 600) on MNIST
    loss: str = "bce"
    train_max_evals: int = 60
    test_max_evals: int = 120
    checkpoints: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("GFE", "AE"):
            raise ValueError(f"method must be 'GFE' or 'AE'; got {self.method!r}")
        for name in ("batch_size", "train_max_evals", "test_max_evals", "checkpoints"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1; got {v!r}")
        if self.num_steps is not None and (isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int)
                                           or self.num_steps < 1):
            raise ValueError(f"num_steps must be an int >= 1 or None; got {self.num_steps!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number; got {self.lr!r}")


def _gf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-test", type=int, default=None, help="test images (default: all 597 digits, "
                        "1000 MNIST)")


def _gf_run(args, cfg):
    from medtut import gradient_flow as gf
    from medtut.data import mnist

    if distributed.world_size() > 1:
        raise ValueError("gradient_flow under torchrun is not supported: data_efficiency_curve asks fit for "
                         "len(batches) steps of a single pass, but fit shards the batches and cycles each "
                         "process's 1/N share, so N processes would make N passes and every point of the curve "
                         "would have seen N times the images it is labelled with. Train it on one process")
    if args.dataset == "digits":
        split = mnist.load_digits_split()          # the chapter's fixed split; --seed draws weights and order
        x_train, x_test = split.x_train, split.x_test[:args.n_test]
        latent, hidden = 8, (64, 128)
    else:
        x_train = mnist.load_mnist(args.dataset, "train", root=args.data_dir)[0][:50_000]
        x_test = mnist.load_mnist(args.dataset, "test", root=args.data_dir)[0][:args.n_test or 1000]
        latent, hidden = 20, (150, 300, 600)
    if args.subjects:
        x_train = x_train[:args.subjects]
    steps = cfg.num_steps if cfg.num_steps is not None else len(x_train) // cfg.batch_size
    if not 1 <= steps * cfg.batch_size <= len(x_train):
        raise ValueError(f"num_steps x batch_size must lie in [1, {len(x_train)}] (one pass over the training set: "
                         f"the chapter's data-efficiency protocol); got {steps} x {cfg.batch_size}")
    n = steps * cfg.batch_size
    seen = sorted({max(cfg.batch_size, n * (k + 1) // cfg.checkpoints // cfg.batch_size * cfg.batch_size)
                   for k in range(cfg.checkpoints)})
    start = time.perf_counter()
    models, result = gf.data_efficiency_curve(
        cfg.method, x_train, x_test, seen, latent_dim=cfg.latent_dim or latent, hidden=cfg.hidden or hidden,
        loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, seed=args.seed,
        train_flow={"max_evals": cfg.train_max_evals}, test_flow={"max_evals": cfg.test_max_evals},
        device=args.device, progress=args.progress)
    evaluation = {f"test_{name}": float(curve[-1]) for name, curve in result.curves.items()}
    evaluation.update(curves={name: [float(v) for v in c] for name, c in result.curves.items()},
                      images_seen=list(result.seen), test_images=len(x_test), wall_time_s=time.perf_counter() - start)
    return torch.nn.ModuleDict(models), {cfg.method: result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 8: hyperspectral super-resolution (DeepShare, Spectral Mixup, RGB and semi-supervised terms)
# ------------------------------------------------------------------------------------------------


def _hs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-train", type=int, default=6, help="labelled synthetic scenes (CAVE: its 5)")
    parser.add_argument("--n-unlabelled", type=int, default=12, help="LR-only synthetic scenes (CAVE: its 15)")
    parser.add_argument("--n-test", type=int, default=12, help="test scenes (synthetic; CAVE: its 12, or the "
                        "first --n-test)")
    parser.add_argument("--size", type=int, default=None, help="scene side in pixels (default 64 synthetic; CAVE: "
                        "the centre crop, default 256)")


def _hs_data(args, cfg):
    from medtut.data import hyperspectral as hsd

    if args.dataset == "scenes":
        size = args.size or 64
        train = hsd.make_scenes(args.subjects or args.n_train, "train", size, seed=100 + 10 * args.seed)
        unlabelled = hsd.make_scenes(args.n_unlabelled, "train", size, seed=101 + 10 * args.seed) \
            if cfg.semi else None
        tests = {"in-distribution": hsd.make_scenes(args.n_test, "train", size, seed=200 + 10 * args.seed),
                 "unseen materials": hsd.make_scenes(args.n_test, "unseen", size, seed=300 + 10 * args.seed)}
    else:
        source = hsd.download_cave(args.data_dir) if args.download or args.data_dir is None else Path(args.data_dir)
        stack = lambda split: torch.stack(list(hsd.load_cave(source, split, size=args.size or 256).values()))
        train, tests = stack("labelled"), {"CAVE test": stack("test")[:args.n_test]}
        unlabelled = stack("unlabelled") if cfg.semi else None
    rgb = None
    if cfg.rgb:
        size = train.shape[-1]
        rgb = torch.cat([hsd.rgb_photo_tiles(size, per_photo=8, seed=args.seed),
                         hsd.render_rgb(hsd.make_scenes(12, "train", size, seed=102 + 10 * args.seed))])
    return train, unlabelled, rgb, tests


def _hs_run(args, cfg):
    from medtut import hsi_sr as hs

    train_y, unlabelled_y, rgb, tests = _hs_data(args, cfg)
    start = time.perf_counter()
    model, result = hs.train(train_y, cfg, rgb_images=rgb, unlabelled_y=unlabelled_y, seed=args.seed,
                             device=args.device, progress=args.progress)
    evaluation = {}
    for split, test_y in tests.items():          # the model's mean MPSNR / SAM / ERGAS, and bicubic's
        for who, model_or_none in (("test", model), ("bicubic", None)):
            for m, v in hs.evaluate(model_or_none, test_y, cfg.factor).items():
                evaluation[f"{who}_{m} ({split})"] = float(v.mean())
    evaluation.update(arm=cfg.name, optimizer_steps=result.optimizer_steps, images_seen=result.images_seen,
                      train_images=len(train_y), test_images={k: len(v) for k, v in tests.items()},
                      wall_time_s=time.perf_counter() - start)
    return model, {cfg.name: result.history}, evaluation


# ------------------------------------------------------------------------------------------------
# chapter 10: MR reconstruction by posterior sampling (VAE prior + MALA in its latent)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MRSamplingConfig:
    """The chapter's two stages: :func:`medtut.mr_sampling.train_vae` (``num_steps`` ... ``decoder_precision``;
    the chapter takes them as keywords and has no config class for them) and, on each test image,
    :func:`medtut.mr_sampling.sample_reconstructions` (``acceleration`` ... ``thin``; the fields of its
    :class:`~medtut.mr_sampling.SamplerConfig`, with ``mala_steps`` for its ``num_steps``)."""
    num_steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    latent_channels: int = 8
    n_down: int = 3
    width: int = 32
    decoder_precision: float = 50.0
    acceleration: float = 4.0
    center_lines: int = 4
    noise_std: float = 0.01
    num_chains: int = 4
    mala_steps: int = 2000
    burn_in: int = 500
    thin: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in ("num_steps", "batch_size", "latent_channels", "n_down", "width", "num_chains", "mala_steps",
                     "thin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1; got {v!r}")
        for name in ("lr", "decoder_precision", "noise_std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a positive number; got {v!r}")
        if isinstance(self.acceleration, bool) or not isinstance(self.acceleration, (int, float)) \
                or not self.acceleration >= 1:
            raise ValueError(f"acceleration must be a number >= 1; got {self.acceleration!r}")


def _mr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-train", type=int, default=3000, help="training images (phantoms)")
    parser.add_argument("--n-val", type=int, default=200, help="validation images (phantoms)")
    parser.add_argument("--n-test", type=int, default=4, help="test images reconstructed by posterior sampling")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (a multiple of 2**n_down)")
    parser.add_argument("--brainweb-subjects", default="4,5,6,18", metavar="S,S,...",
                        help="BrainWeb subjects; the last one is the test subject")


def _mr_data(args):
    from medtut.data import brain_phantoms as bp

    if args.dataset == "phantoms":
        return (bp.make_head_phantoms(args.subjects or args.n_train, args.size, seed=3 * args.seed),
                bp.make_head_phantoms(args.n_val, args.size, seed=3 * args.seed + 1),
                bp.make_head_phantoms(args.n_test, args.size, seed=3 * args.seed + 2)[:, 0])
    try:
        subjects = [int(s) for s in args.brainweb_subjects.split(",")]
    except ValueError:
        raise ValueError(f"--brainweb-subjects must be integers separated by commas; got "
                         f"{args.brainweb_subjects!r}") from None
    if len(subjects) < 2:
        raise ValueError(f"--brainweb-subjects needs at least two subjects (training and test); got {subjects}")
    kw = {"size": args.size, "brainweb_dir": args.data_dir}
    train = bp.brainweb_t1_slices(subjects[:-1], slices_per_subject=20, **kw)
    test = bp.brainweb_t1_slices(subjects[-1:], slices_per_subject=max(args.n_test, 1), **kw)[:, 0]
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    n_val = max(1, len(train) // 10)
    return train[perm[n_val:]], train[perm[:n_val]], test[:args.n_test]


def _mr_run(args, cfg):
    from medtut import mr_sampling as mr

    train, val, test = _mr_data(args)
    start = time.perf_counter()
    vae, result = mr.train_vae(train, num_steps=cfg.num_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                               latent_channels=cfg.latent_channels, n_down=cfg.n_down, width=cfg.width,
                               decoder_precision=cfg.decoder_precision, val_images=val, seed=args.seed,
                               device=args.device, progress=args.progress)
    mask = mr.cartesian_mask((args.size, args.size), cfg.acceleration, center_lines=cfg.center_lines, seed=args.seed)
    sampler = mr.SamplerConfig(num_chains=cfg.num_chains, num_steps=cfg.mala_steps, burn_in=cfg.burn_in,
                               thin=cfg.thin)
    gen = torch.Generator().manual_seed(args.seed)
    per_image = {"rmse_percent_mean": [], "rmse_percent_zero_filled": [], "coverage_90": [], "mean_std": []}
    for i, truth in enumerate(test):
        y = mr.add_complex_noise(mr.forward_op(truth.to(torch.complex64), mask), cfg.noise_std, mask, gen)
        rec = mr.sample_reconstructions(y, mask, vae, sampler, noise_std=cfg.noise_std, seed=args.seed + i)
        region = truth > 0
        per_image["rmse_percent_mean"].append(mr.rmse_percent(rec.mean, truth))
        per_image["rmse_percent_zero_filled"].append(mr.rmse_percent(rec.zero_filled, truth))
        per_image["coverage_90"].append(mr.interval_coverage(rec.samples, truth, 0.9, region=region))
        per_image["mean_std"].append(float(rec.std[region].mean()))
    evaluation = {f"test_{k}": float(np.mean(v)) for k, v in per_image.items()}
    evaluation.update(per_image={k: [float(x) for x in v] for k, v in per_image.items()},
                      achieved_acceleration=mr.acceleration_of(mask), test_images=len(test),
                      wall_time_s=time.perf_counter() - start)
    return vae, {"vae": result.history}, evaluation


def _config_class(module: str, name: str = "Config") -> Callable[[], type]:
    """The chapter's config dataclass, imported only when its command runs (keeps ``--help`` fast)."""
    return lambda: getattr(importlib.import_module(f"medtut.{module}"), name)


#: the chapters with a command-line entry point (module name -> :class:`Chapter`)
CHAPTERS: dict[str, Chapter] = {
    "local_contrastive": Chapter(
        title="Chapter 1: local contrastive loss with pseudo-labels (semi-supervised segmentation)",
        datasets={"synthetic": "offline cardiac-like volumes (medtut.data.cardiac)",
                  "acdc": "ACDC cine MRI (--data-dir with patientXXX folders, or --download)",
                  "prostate": "MSD Task05 Prostate (--data-dir; --download fetches it with MONAI)"},
        config=_config_class("local_contrastive"), budget="num_steps", run=_lc_run, add_arguments=_lc_arguments),
    "pixel_contrast": Chapter(
        title="Chapter 2: cross-image pixel contrast (fully supervised segmentation)",
        datasets={"textures": "offline texture-defined tissues, 5 classes (medtut.data.textures)",
                  "hippocampus": "MSD Task04 Hippocampus, 2-D slices (--data-dir; --download fetches it with MONAI)",
                  "prostate": "MSD Task05 Prostate, 2-D T2 slices (--data-dir; --download fetches it with MONAI)"},
        config=_config_class("pixel_contrast"), budget="num_steps", run=_pc_run, add_arguments=_pc_arguments),
    "mem3d": Chapter(
        title="Chapter 3: Mem3D, interactive 3-D segmentation (f_In, f_Mem with quality head, simulated users)",
        datasets={"tubes": "offline tube-like volumes with distractors (medtut.data.tubes)",
                  "spleen": "MSD Task09 Spleen CT (--data-dir; --download fetches it with MONAI)",
                  "heart": "MSD Task02 Heart MRI, left atrium (--data-dir; --download fetches it with MONAI)"},
        config=_config_class("mem3d"), budget="num_steps", run=_m3_run, add_arguments=_m3_arguments),
    "gradient_flow": Chapter(
        title="Chapter 5: gradient-flow encoding (decoder only) vs an autoencoder, one pass",
        datasets={"digits": "offline scikit-learn 8x8 digits (medtut.data.mnist.load_digits_split)",
                  "mnist": "MNIST (downloaded once, md5-checked, into --data-dir or medtut's data folder)",
                  "fashion-mnist": "FashionMNIST (downloaded once, md5-checked, into --data-dir or medtut's "
                                   "data folder)"},
        config=lambda: GradientFlowConfig, budget="num_steps", run=_gf_run, add_arguments=_gf_arguments),
    "cell_profiling": Chapter(
        title="Chapter 6: contrastive single-cell profiles (SimCLR), scored by NSC / NSCB",
        datasets={"synthetic": "offline synthetic screen with batch effects (medtut.data.cells)",
                  "bbbc021": "BBBC021 crops saved by medtut.data.cells.save_screen (--data-dir)"},
        config=_config_class("cell_profiling"), budget="num_epochs", run=_cp_run),
    "auc_alm": Chapter(
        title="Chapter 7: AUC constraints with an Augmented Lagrangian (imbalanced classification)",
        datasets={"digits": "offline scikit-learn digits, one digit as the rare class",
                  "cifar10": "CIFAR-10 cars vs trucks (--download, md5-checked, or --data-dir)",
                  "pneumoniamnist": "MedMNIST PneumoniaMNIST (--download or --data-dir/<name>.npz)",
                  "breastmnist": "MedMNIST BreastMNIST (--download or --data-dir/<name>.npz)"},
        config=_config_class("auc_alm", "TrainConfig"), budget="num_epochs", run=_alm_run, add_arguments=_alm_arguments,
        prepare=_alm_prepare),
    "hsi_sr": Chapter(
        title="Chapter 8: hyperspectral super-resolution x4 (DeepShare, Spectral Mixup, RGB / semi terms)",
        datasets={"scenes": "offline synthetic 31-band scenes; test on unseen materials (medtut.data.hyperspectral)",
                  "cave": "CAVE, the paper's split (--download, ~406 MB, sha256 recorded; or --data-dir with the "
                          "ZIP or extracted scenes)"},
        config=_config_class("hsi_sr"), budget="num_steps", run=_hs_run, add_arguments=_hs_arguments),
    "shape_recon": Chapter(
        title="Chapter 9: probabilistic 3-D surface reconstruction from three slices",
        datasets={"cups": "offline synthetic cup shapes with three rendered slices (medtut.data.cup_shapes)",
                  "heart": "MSD Task02 Heart, left atrium (--data-dir; --download fetches it with MONAI)"},
        config=_config_class("shape_recon"), budget="num_epochs", run=_sr_run, add_arguments=_sr_arguments),
    "mr_sampling": Chapter(
        title="Chapter 10: MR reconstruction by posterior sampling (VAE prior, MALA in its latent)",
        datasets={"phantoms": "offline random head phantoms (medtut.data.brain_phantoms)",
                  "brainweb": "BrainWeb T1 slices (needs pip install brainweb-dl; cached in --data-dir)"},
        config=lambda: MRSamplingConfig, budget="num_steps", run=_mr_run, add_arguments=_mr_arguments),
}


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------


def _literal(text: str, name: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{name} must be a Python literal (number, string in quotes, tuple, dict); "
                         f"got {text!r}") from None


def _data_dir(args) -> Path:
    if args.data_dir is None:
        raise ValueError(f"--dataset {args.dataset} needs --data-dir (where the data are, or go with --download)")
    return Path(args.data_dir)


def _config(chapter: Chapter, args) -> Any:
    """The chapter's config with the command's budget, seed and ``--set`` fields."""
    cls = chapter.config()
    fields = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set takes field=value with a field of {cls.__name__} ({sorted(fields)}); "
                             f"got {item!r}")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            changes[key] = value            # a bare word: a string option such as method=self-training
    budget = args.num_steps if chapter.budget == "num_steps" else args.num_epochs
    other = args.num_epochs if chapter.budget == "num_steps" else args.num_steps
    if other is not None:
        raise ValueError(f"this chapter's trainer counts {chapter.budget.replace('_', ' ')}: use "
                         f"--{chapter.budget.replace('_', '-')}")
    if budget is not None:
        changes[chapter.budget] = budget
    if "seed" in fields:
        changes["seed"] = args.seed
    return chapter.prepare(args, cls(**changes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medtut.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="chapter", required=True, metavar="{list," + ",".join(CHAPTERS) + "}")
    sub.add_parser("list", help="list the chapters and their data sets")
    for name, chapter in CHAPTERS.items():
        chapter_parser = sub.add_parser(name, help=chapter.title)
        actions = chapter_parser.add_subparsers(dest="action", required=True)
        train = actions.add_parser("train", help=f"train {name} (torchrun-aware)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        train.add_argument("--dataset", choices=list(chapter.datasets), default=next(iter(chapter.datasets)))
        train.add_argument("--num-steps", type=int, default=None, help="optimisation steps (chapters counting steps)")
        train.add_argument("--num-epochs", type=int, default=None, help="passes over the data (chapters "
                           "counting epochs)")
        train.add_argument("--seed", type=int, default=0)
        train.add_argument("--out", required=True, help="output folder (written by rank 0 only)")
        train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                           help="change one field of the chapter's config (repeatable)")
        train.add_argument("--data-dir", default=None, help="where a real data set is (or goes with --download)")
        train.add_argument("--download", action="store_true", help="download the real data set if needed")
        train.add_argument("--subjects", type=int, default=None, help="use only this many subjects/images")
        train.add_argument("--device", default=None, help="cpu, cuda, mps (default: medtut.get_device(); under "
                           "torchrun each process takes the GPU of its LOCAL_RANK)")
        train.add_argument("--timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S,
                           help="seconds to wait for all processes at the rendezvous")
        train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        chapter.add_arguments(train)
    return parser


def _write(out: Path, args, chapter_name: str, cfg, histories: dict, evaluation: dict, model) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "history.json").write_text(json.dumps({k: h.records for k, h in histories.items()}, indent=1))
    summary = {"chapter": chapter_name, "command": sys.argv, "dataset": args.dataset, "seed": args.seed,
               "world_size": distributed.world_size(), "config": _jsonable(dataclasses.asdict(cfg)),
               "train_wall_time_s": {k: h.wall_time_s for k, h in histories.items()},
               "final": {k: {m: h.last(m) for m in h.keys()} for k, h in histories.items() if len(h)},
               "evaluation": evaluation}
    (out / "result.json").write_text(json.dumps(_jsonable(summary), indent=1))
    return summary


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Run the command; returns the summary written to ``result.json`` (``None`` for ``list`` and on ranks
    other than 0)."""
    args = _parser().parse_args(argv)
    if args.chapter == "list":
        for name, chapter in CHAPTERS.items():
            print(f"{name}: {chapter.title}")
            for dataset, what in chapter.datasets.items():
                print(f"    --dataset {dataset:<15} {what}")
        return None
    chapter = CHAPTERS[args.chapter]
    cfg = _config(chapter, args)
    with distributed.session(timeout_s=args.timeout) as launch:
        args.progress = args.progress and (launch is None or launch.is_main)
        model, histories, evaluation = chapter.run(args, cfg)
        if launch is not None and not launch.is_main:
            return None
        summary = _write(Path(args.out), args, args.chapter, cfg, histories, evaluation, model)
    print(json.dumps({"evaluation": summary["evaluation"], "world_size": summary["world_size"]}))
    return summary


if __name__ == "__main__":
    main()
