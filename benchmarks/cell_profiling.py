"""Chapter 6's claim outside the notebook: NSC / NSCB / drop of hand-crafted features, a random encoder and
SimCLR (after ``--short`` and ``--epochs`` epochs, with and without TVN), over several seeds.

Seed ``s`` draws synthetic screen ``s`` and initialises the network with ``s``; the settings default to the
notebook's full mode. Use it to re-run the claim under another CPU code path, or to time a bigger encoder
on a GPU (``--encoder resnet18 --device cuda``; ``--data bbbc021 --weeks Week1`` on a machine with
internet and ~10 GB of disk for the real screen).

    ATEN_CPU_CAPABILITY=default python benchmarks/cell_profiling.py           # the notebook's full run
    python benchmarks/cell_profiling.py --encoder resnet18 --widths 0 --batch-size 256 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

import medtut
from medtut import cell_profiling as cp
from medtut.data.cells import load_bbbc021, make_cell_screen
from medtut.metrics import summarize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--encoder", default="small_cnn", choices=cp.ENCODERS)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 128])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--proj-dim", type=int, default=64)
    ap.add_argument("--augmentation", default="book", choices=list(cp.AUGMENTATIONS))
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--data", choices=["synthetic", "bbbc021"], default="synthetic")
    ap.add_argument("--weeks", nargs="+", default=["Week1"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="also write the per-seed numbers here")
    args = ap.parse_args()

    device = torch.device(args.device) if args.device else medtut.get_device()
    print(medtut.describe_environment(), "ATEN_CPU_CAPABILITY =", os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"))
    widths = tuple(args.widths) if args.encoder == "small_cnn" else (32, 64, 128, 128)
    cfg = cp.Config(encoder=args.encoder, cnn_widths=widths, proj_dim=args.proj_dim, temperature=args.temperature,
                    batch_size=args.batch_size, lr=args.lr, num_epochs=args.epochs, augmentation=args.augmentation)
    arms = ["hand-crafted", "hand-crafted + TVN", "random encoder", f"SimCLR {args.short} ep",
            f"SimCLR {args.epochs} ep", f"SimCLR {args.epochs} ep + TVN"]
    table = {a: {"NSC": [], "NSCB": [], "drop": []} for a in arms}
    wall = {a: [] for a in arms}
    for seed in args.seeds:
        screen = make_cell_screen(seed=seed) if args.data == "synthetic" else load_bbbc021(args.weeks)

        def score(arm, feats, use_tvn, seconds):
            r, _, _ = cp.profile_and_score(feats, screen.meta, use_tvn=use_tvn, lam=args.lam)
            for k, v in (("NSC", r.nsc), ("NSCB", r.nscb), ("drop", r.drop)):
                table[arm][k].append(v)
            wall[arm].append(seconds)

        t0 = time.perf_counter()
        hf = cp.handcrafted_features(screen.images)
        t_hf = time.perf_counter() - t0
        score("hand-crafted", hf, False, t_hf)
        score("hand-crafted + TVN", hf, True, t_hf)
        t0 = time.perf_counter()
        rnd = cp.build_model(cfg, seed=seed, device=device)
        score("random encoder", cp.embed(rnd, screen.images), False, time.perf_counter() - t0)
        model, res = cp.train_simclr(screen.images, cfg, seed=seed, device=device, snapshot_epochs=[args.short],
                                     progress=False)
        short = cp.build_model(cfg, seed=seed, device=device)
        short.load_state_dict(res.snapshots[args.short])
        score(f"SimCLR {args.short} ep", cp.embed(short, screen.images), False, res.snapshot_wall_s[args.short])
        h = cp.embed(model, screen.images)
        score(f"SimCLR {args.epochs} ep", h, False, res.wall_time_s)
        score(f"SimCLR {args.epochs} ep + TVN", h, True, res.wall_time_s)
        print(f"seed {seed}: " + "; ".join(f"{a} {table[a]['NSC'][-1]:.3f}/{table[a]['NSCB'][-1]:.3f}" for a in arms),
              flush=True)
    extra = {a: {"wall time / seed (s)": f"{np.mean(wall[a]):.1f}"} for a in arms}
    print(summarize(table, extra=extra, caption=f"{args.data}, {device}, {args.encoder}, seeds {args.seeds}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": table, "wall": wall, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
