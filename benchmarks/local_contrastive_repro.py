"""Chapter 1's central claim, re-run outside the notebook under other floating-point conditions.

Runs the baselines and the two main arms ("labelled-only", "local contrastive") of chapter 1 with the
notebook's settings (keep them in step with its parameters cell; the notebook refuses a file whose
settings differ) and writes the per-run mean test Dice to ``book/01_local_contrastive/reproducibility.json``,
which the chapter prints beside its own run. Typical use, on the same machine as the notebook run:

    ATEN_CPU_CAPABILITY=default python benchmarks/local_contrastive_repro.py

``ATEN_CPU_CAPABILITY=default`` makes PyTorch use its portable kernels instead of the AVX2/AVX-512 ones,
which changes the last bits of every convolution: a cheap stand-in for "another machine". Takes about
20 min on one CPU thread (full settings); ``MEDTUT_QUICK=1`` runs the quick settings in about a minute
(and the notebook then reports that the settings differ).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np
import torch

import medtut
from medtut import local_contrastive as lc
from medtut.config import isolated_rng
from medtut.data import cardiac

SETTINGS = {  # = chapter 1's parameters cell
    "generator_seeds": medtut.budget(full=[0, 1], quick=[0]),
    "draws": medtut.budget(full=[0, 1, 2, 3, 4], quick=[0]),
    "baseline_steps": medtut.budget(full=200, quick=60),
    "arm_steps": medtut.budget(full=300, quick=30),
    "select": "last",
    "n_unlabelled": medtut.budget(full=30, quick=10),
    "n_test": medtut.budget(full=20, quick=6),
}
SEED, SIZE, N_SLICES, N_LABELLED, N_VAL = 0, 64, 8, 2, 2
FEATURES, EMBED_DIM, BASELINE_LR, LR = (8, 16, 32, 64), 16, 1e-2, 1e-3
BATCH_LABELLED, BATCH_UNLABELLED, N_SAME, LAMBDA, TAU, N_ANCHORS = 8, 6, 1, 0.1, 0.1, 3
EVAL_EVERY = medtut.budget(full=50, quick=10)


def main(out: pathlib.Path) -> None:
    device = medtut.get_device()
    s = SETTINGS
    n_subjects = N_LABELLED + s["n_unlabelled"] + N_VAL + s["n_test"]
    runs = {}
    start = time.perf_counter()
    for g in s["generator_seeds"]:
        images, labels = cardiac.make_cardiac_dataset(n_subjects, size=SIZE, n_slices=N_SLICES, seed=g)
        for d in s["draws"]:
            seed = SEED + 10 * g + d
            split = lc.make_split(images, labels, N_LABELLED, N_VAL, s["n_test"], draw=d)
            with isolated_rng(seed, device):
                model = lc.UNetWithProjection(num_classes=4, features=FEATURES, embed_dim=EMBED_DIM).to(device)
            model, _ = lc.train_baseline(model, split, s["baseline_steps"], batch_size=BATCH_LABELLED,
                                         lr=BASELINE_LR, seed=seed, progress=False)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            row = {"baseline": lc.mean_dice(model, split.test_images, split.test_labels, 4)}
            for method in ("labelled-only", "local contrastive"):
                cfg = lc.Config(method=method, num_steps=s["arm_steps"], batch_labelled=BATCH_LABELLED,
                                batch_unlabelled=BATCH_UNLABELLED, n_same=N_SAME, lam=LAMBDA, temperature=TAU,
                                n_anchors=N_ANCHORS, lr=LR, seed=seed, select=s["select"], eval_every=EVAL_EVERY)
                _, result = lc.continue_and_evaluate(model, state, split, cfg, progress=False, monitor_test=True)
                row[method] = float(np.nanmean(result.dice))
            runs[f"{g}/{d}"] = row
            print(f"data set {g}, draw {d}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items())
                  + f"  (gain {row['local contrastive'] - row['labelled-only']:+.3f}; {time.perf_counter() - start:.0f} s)",
                  flush=True)
    condition = (f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')} "
                 f"(dispatch: {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} thread(s), "
                 f"torch {torch.__version__}, {platform.machine()}")
    out.write_text(json.dumps({"condition": condition, "settings": s, "runs": runs,
                               "wall_time_s": round(time.perf_counter() - start, 1)}, indent=1) + "\n")
    print(f"wrote {out} ({condition})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[1] / "book/01_local_contrastive/reproducibility.json")
    main(parser.parse_args().out)
