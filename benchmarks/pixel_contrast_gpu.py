"""Chapter 2 on a GPU: the CPU comparison at 10x the steps, optionally on MSD Hippocampus/Prostate slices.

    python benchmarks/pixel_contrast_gpu.py --out results.json                       # texture tissues
    python benchmarks/pixel_contrast_gpu.py --task Task04_Hippocampus --data DIR     # real slices in DIR

Trains every arm (CE, CE + in-batch pixel contrast, + memory) for ``--steps`` steps (default 1000: 10x the
book's full CPU run) over ``--seeds`` seeds, and records per run the test mIoU / Dice, the embedding
diagnostics on held-out pixels and the wall time, plus the device. The real-data mode reads an MSD task that
is already in ``DIR`` (``download=False``: device machines have no network); copy it there first, e.g. with
``medtut.data.textures.load_decathlon_slices(DIR, task, download=True)`` on a machine that has one.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import medtut
from medtut import pixel_contrast as pc
from medtut.data.textures import DECATHLON_TASKS, load_decathlon_slices, make_texture_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=list(pc.ARMS), choices=pc.ARMS)
    parser.add_argument("--task", default=None, choices=sorted(DECATHLON_TASKS))
    parser.add_argument("--data", default=None, help="folder holding the MSD task (real-data mode)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="pixel_contrast_gpu.json")
    args = parser.parse_args(argv)
    device = medtut.get_device()
    if args.task:
        if not args.data:
            parser.error("--task needs --data (the folder holding the extracted MSD task)")
        x_tr, y_tr, _ = load_decathlon_slices(args.data, args.task, "training", size=args.size)
        x_te, y_te, _ = load_decathlon_slices(args.data, args.task, "validation", size=args.size)
        k = len(DECATHLON_TASKS[args.task])
    else:
        x_tr, y_tr = make_texture_dataset(16, seed=1)
        x_te, y_te = make_texture_dataset(100, seed=2)
        k = 5
    records = []
    for seed in args.seeds:
        for arm in args.arms:
            cfg = pc.Config(arm=arm, num_steps=args.steps, seed=seed)
            model, res = pc.train(x_tr, y_tr, cfg, k, device=device, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            scores = pc.evaluate(model, x_te, y_te, k)
            diag = pc.diagnose(model, x_tr, y_tr, x_te, y_te, k)
            rec = {"arm": arm, "seed": seed, "steps": args.steps, "train_s": res.wall_time_s,
                   "eval_s": time.perf_counter() - t0, "mIoU": scores["mIoU"], "Dice": scores["Dice"], **diag}
            records.append(rec)
            print(json.dumps(rec), flush=True)
    summary = {}
    for arm in args.arms:
        rows = [r for r in records if r["arm"] == arm]
        summary[arm] = {m: [float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows], ddof=1))
                            if len(rows) > 1 else 0.0] for m in ("mIoU", "Dice", "ratio", "prototype_acc", "train_s")}
    out = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
           "task": args.task or "texture tissues", "records": records, "summary_mean_std": summary}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
