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


def _cp_config():
    from medtut.cell_profiling import Config
    return Config


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


def _sr_config():
    from medtut.shape_recon import Config
    return Config


def _lc_config():
    from medtut.local_contrastive import Config
    return Config


def _alm_config():
    from medtut.auc_alm import TrainConfig
    return TrainConfig


#: the chapters with a command-line entry point (module name -> :class:`Chapter`)
CHAPTERS: dict[str, Chapter] = {
    "local_contrastive": Chapter(
        title="Chapter 1: local contrastive loss with pseudo-labels (semi-supervised segmentation)",
        datasets={"synthetic": "offline cardiac-like volumes (medtut.data.cardiac)",
                  "acdc": "ACDC cine MRI (--data-dir with patientXXX folders, or --download)",
                  "prostate": "MSD Task05 Prostate (--data-dir; --download fetches it with MONAI)"},
        config=_lc_config, budget="num_steps", run=_lc_run, add_arguments=_lc_arguments),
    "cell_profiling": Chapter(
        title="Chapter 6: contrastive single-cell profiles (SimCLR), scored by NSC / NSCB",
        datasets={"synthetic": "offline synthetic screen with batch effects (medtut.data.cells)",
                  "bbbc021": "BBBC021 crops saved by medtut.data.cells.save_screen (--data-dir)"},
        config=_cp_config, budget="num_epochs", run=_cp_run),
    "auc_alm": Chapter(
        title="Chapter 7: AUC constraints with an Augmented Lagrangian (imbalanced classification)",
        datasets={"digits": "offline scikit-learn digits, one digit as the rare class",
                  "cifar10": "CIFAR-10 cars vs trucks (--download, md5-checked, or --data-dir)",
                  "pneumoniamnist": "MedMNIST PneumoniaMNIST (--download or --data-dir/<name>.npz)",
                  "breastmnist": "MedMNIST BreastMNIST (--download or --data-dir/<name>.npz)"},
        config=_alm_config, budget="num_epochs", run=_alm_run, add_arguments=_alm_arguments,
        prepare=_alm_prepare),
    "shape_recon": Chapter(
        title="Chapter 9: probabilistic 3-D surface reconstruction from three slices",
        datasets={"cups": "offline synthetic cup shapes with three rendered slices (medtut.data.cup_shapes)",
                  "heart": "MSD Task02 Heart, left atrium (--data-dir; --download fetches it with MONAI)"},
        config=_sr_config, budget="num_epochs", run=_sr_run, add_arguments=_sr_arguments),
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
