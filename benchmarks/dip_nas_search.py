"""A larger ISNAS-DIP search than the chapter's notebook, printing a results table (chapter 4).

Meant for a GPU: bigger images, a wider and deeper network, a larger pool and more DIP steps. Every
architecture of the pool is trained on every (image, task) problem so that Kendall's tau and the pool
oracle can be measured; ISNAS-DIP itself would train only the cohort.

    python benchmarks/dip_nas_search.py                       # defaults below (GPU-sized)
    python benchmarks/dip_nas_search.py --size 48 --width 8 --levels 3 --pool 4 --steps 20   # CPU smoke run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import medtut
from medtut import dip_nas as dn
from medtut.data.dip_images import TASKS, load_test_image, make_problem
from medtut.metrics import mean_std


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--pool", type=int, default=40)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--cohort", type=int, default=8)
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--images", default="camera,astronaut,coffee,retina,phantom")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = medtut.get_device()
    print(medtut.describe_environment())
    images = args.images.split(",")
    problems = [make_problem(load_test_image(n, args.size), t, seed=args.seed, name=n) for n in images for t in TASKS]
    default = dn.default_dip_arch(args.levels).name
    pool = dn.sample_architectures(args.pool, dn.SearchSpace(levels=args.levels), seed=args.seed, exclude=[default])
    kw = dict(in_channels=8, width=args.width, device=device)

    t0 = time.perf_counter()
    scores = {(p.task, p.name): {} for p in problems}
    for n in pool + [default]:
        for p, sc in zip(problems, dn.score_architecture(n, problems, num_inits=args.inits, seed=args.seed, **kw)):
            scores[(p.task, p.name)][n] = sc
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = dn.train_pool(pool + [default], problems, args.steps, seed=args.seed, **kw)
    t_train = time.perf_counter() - t0

    print(f"\n{args.size}px, width {args.width}, {args.levels} levels, pool {args.pool}, {args.steps} steps, "
          f"cohort {args.cohort}, {len(images)} images on {device}: scoring {t_score:.0f} s, training {t_train:.0f} s\n")
    print(f"| task | {' | '.join('tau ' + m for m in dn.METRICS)} | ISNAS pick | random cohort | oracle | default DIP |")
    print("|---" * (5 + len(dn.METRICS)) + "|")
    for task in TASKS:
        taus = {m: [] for m in dn.METRICS}
        res = {k: [] for k in ("pick", "random", "oracle", "default")}
        for i, p in enumerate(problems):
            if p.task != task:
                continue
            psnr = {n: runs[n][i].final_psnr for n in pool + [default]}
            outputs = {n: runs[n][i].output for n in pool}
            for m in dn.METRICS:
                taus[m].append(dn.kendall_tau([scores[(task, p.name)][n][m] for n in pool], [psnr[n] for n in pool]))
            metric = {n: scores[(task, p.name)][n]["strip mse"] for n in pool}
            res["pick"].append(psnr[dn.isnas_pick(metric, outputs, args.cohort)])
            res["random"].append(float(dn.random_cohort_psnrs({n: psnr[n] for n in pool}, outputs, args.cohort,
                                                              200, seed=args.seed).mean()))
            res["oracle"].append(max(psnr[n] for n in pool))
            res["default"].append(psnr[default])
        cells = [mean_std(taus[m], ".2f") for m in dn.METRICS] + [mean_std(res[k], ".2f") for k in res]
        print(f"| {task} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
