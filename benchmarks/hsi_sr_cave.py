"""Chapter 8 at the paper's network size, timed: baseline vs + Spectral Mixup vs the full model.

Meant for a GPU. Trains DeepShare with the paper's 256 features, 3 spatial-spectral blocks per stage,
batch 8 and 64x64 HR crops, on CAVE (the paper's split, when the ZIP is given or already downloaded into
``$MEDTUT_DATA``) or on the chapter's synthetic scenes (no download; the default, since lent GPU machines
have no network), and prints a table of MPSNR / SAM / ERGAS with the wall time and ms per Adam step.

    python benchmarks/hsi_sr_cave.py                                   # synthetic 128x128 scenes, GPU-sized
    python benchmarks/hsi_sr_cave.py --cave ~/.cache/medtut/cave_complete_ms_data.zip --size 256
    python benchmarks/hsi_sr_cave.py --cave ... --div2k ~/.cache/medtut/DIV2K_valid_HR.zip   # RGB task on DIV2K
    python benchmarks/hsi_sr_cave.py --feats 8 --blocks 1 --steps 5 --crop 16 --test 2   # CPU smoke run
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

import medtut
from medtut import hsi_sr as hs
from medtut.data import hyperspectral as hsd
from medtut.metrics import mean_std, summarize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cave", default=None, help="CAVE ZIP or extracted folder (default: synthetic scenes)")
    ap.add_argument("--div2k", default=None, help="DIV2K_valid_HR.zip or folder for the RGB task (default: "
                                                  "scikit-image photos and rendered synthetic scenes)")
    ap.add_argument("--size", type=int, default=128, help="scene size (synthetic) or CAVE centre crop")
    ap.add_argument("--feats", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps per arm (equal for every arm)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--test", type=int, default=12, help="synthetic test scenes per split")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()

    device = medtut.get_device()
    print(medtut.describe_environment())
    if args.cave:
        load = lambda split: torch.stack(list(hsd.load_cave(args.cave, split, size=args.size).values()))
        train_y, unl_y = load("labelled"), load("unlabelled")
        tests = {"CAVE test": load("test")}
    else:
        train_y = hsd.make_scenes(6, "train", args.size, seed=100)
        unl_y = hsd.make_scenes(12, "train", args.size, seed=101)
        tests = {"in-distribution": hsd.make_scenes(args.test, "train", args.size, seed=200),
                 "unseen materials": hsd.make_scenes(args.test, "unseen", args.size, seed=300)}
    if args.div2k:
        rgb_y = hsd.load_div2k(args.div2k, size=args.size, per_image=8, seed=0)
    else:
        rgb_y = torch.cat([hsd.rgb_photo_tiles(args.size, per_photo=8, seed=0),
                           hsd.render_rgb(hsd.make_scenes(12, "train", args.size, seed=102))])
    base = hs.Config(feats=args.feats, blocks=args.blocks, crop=args.crop, batch_size=args.batch, lr=args.lr)
    arms = {"baseline": base, "+ Spectral Mixup": replace(base, mixup=True),
            "+ RGB + semi + mixup": replace(base, rgb=True, semi=True, mixup=True)}
    rows, extra = {}, {}
    for name, cfg in arms.items():
        cfg = replace(cfg, num_steps=hs.iterations_for(cfg, args.steps))
        per_key = {k: {m: [] for m in hs.METRICS} for k in tests}
        walls = []
        for seed in (int(s) for s in args.seeds.split(",")):
            model, res = hs.train(train_y, cfg, rgb_images=rgb_y, unlabelled_y=unl_y, seed=seed, device=device,
                                  desc=f"{name}, seed {seed}")
            walls.append(res.wall_time_s)
            for key, ys in tests.items():
                for m, v in hs.evaluate(model, ys).items():
                    per_key[key][m].append(float(np.mean(v)))
            print(f"{name} seed {seed}: {res.optimizer_steps} Adam steps in {res.wall_time_s:.1f} s "
                  f"({1000 * res.wall_time_s / res.optimizer_steps:.1f} ms per step)")
        for key in tests:
            rows[f"{name} ({key})"] = per_key[key]
            extra[f"{name} ({key})"] = {"Adam steps": hs.optimizer_steps(cfg), "wall (s)": mean_std(walls, ".1f"),
                                        "device": str(device)}
    print(summarize(rows, extra=extra, caption=f"{args.feats} features, {args.blocks} blocks, crop {args.crop}, "
                                                f"batch {args.batch}, {args.steps} Adam steps per arm"))


if __name__ == "__main__":
    main()
