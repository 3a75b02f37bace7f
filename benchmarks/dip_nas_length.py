"""Chapter 4, section 8 as a plain script: does the training length change Kendall's tau?

Rebuilds the chapter's pool (same seed, same search space, same 64 x 64 test image and corruption), scores
it with the strip MSE (no training), takes the default DIP network, the ISNAS pick printed by the notebook
(``--pick task=name``) and pool members at evenly spaced ranks of the score, trains each for the official
number of steps, and reads the *same* runs at step 500 and at the last step. Prints the notebook's tables.
Meant for a second condition (another machine, or ``ATEN_CPU_CAPABILITY=default``), e.g.

    ATEN_CPU_CAPABILITY=default nice -n 5 python benchmarks/dip_nas_length.py \\
        --pick inpaint=bilinear-separable-k5-lrelu-s001100101 --pick denoise=bilinear-separable-k5-lrelu-s001100101
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import medtut
from medtut import dip_nas as dn
from medtut.data.dip_images import load_test_image, make_problem

OFFICIAL_STEPS = {"denoise": 1200, "inpaint": 9500, "sr": 4500}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="camera")
    ap.add_argument("--tasks", nargs="+", default=["denoise", "inpaint"], choices=list(OFFICIAL_STEPS))
    ap.add_argument("--pick", action="append", default=[], help="task=architecture (the notebook's ISNAS pick)")
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--early", type=int, default=500, help="the chapter's fixed read-out step")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="fraction of the official steps (smoke runs)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--in-channels", type=int, default=8)
    ap.add_argument("--pool", type=int, default=24)
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    picks = dict(p.split("=", 1) for p in args.pick)

    device = medtut.get_device()
    print(medtut.describe_environment(), "| ATEN_CPU_CAPABILITY:", torch.backends.cpu.get_cpu_capability())
    default = dn.default_dip_arch(args.levels).name
    pool = dn.sample_architectures(args.pool, dn.SearchSpace(levels=args.levels), seed=args.seed, exclude=[default])
    image = load_test_image(args.image, args.size)
    rows = []
    for task in args.tasks:
        prob = make_problem(image, task, seed=args.seed, name=args.image)
        scores = {n: dn.score_architecture(n, prob, num_inits=args.inits, seed=args.seed, in_channels=args.in_channels,
                                           width=args.width, device=device)["strip mse"] for n in pool + [default]}
        include = [default] + ([picks[task]] if task in picks else [])
        names = dn.spanning_subset({n: scores[n] for n in pool}, args.archs, include=include)
        steps = max(args.early + 1, int(round(OFFICIAL_STEPS[task] * args.steps_scale)))
        t0 = time.perf_counter()
        runs = {n: r[0] for n, r in dn.train_pool(names, [prob], steps, seed=args.seed, width=args.width,
                                                  in_channels=args.in_channels, device=device,
                                                  desc=f"{task}: {steps} steps").items()}
        wall = time.perf_counter() - t0
        metric = [scores[n] for n in names]
        early = [runs[n].psnr_ema[args.early - 1] for n in names]
        late = [runs[n].final_psnr for n in names]
        best = [runs[n].oracle_psnr for n in names]
        re, rl = (-np.array(early)).argsort().argsort() + 1, (-np.array(late)).argsort().argsort() + 1
        print(f"\n{task}, {args.image}: the same runs read at step {args.early} and at step {steps}")
        for i, n in enumerate(names):
            role = "default" if n == default else "pick" if n == picks.get(task) else "pool"
            print(f"  {n:45s} {role:8s} strip MSE {metric[i]:7.1f}  @{args.early} {early[i]:6.2f} (rank {re[i]})  "
                  f"@{steps} {late[i]:6.2f} (rank {rl[i]})  oracle {best[i]:6.2f} at {runs[n].oracle_step:5d}  "
                  f"{runs[n].wall_time_s:5.0f} s")
        rows.append((task, len(names), steps, dn.kendall_tau(metric, early), dn.kendall_tau(metric, late),
                     dn.kendall_tau(metric, best), dn.kendall_tau(early, late), wall))
    print(f"\n| task | archs | steps | tau(strip MSE, PSNR @{args.early}) | tau(strip MSE, PSNR @last) | "
          f"tau(strip MSE, oracle PSNR) | tau(PSNR @{args.early}, PSNR @last) | wall time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
