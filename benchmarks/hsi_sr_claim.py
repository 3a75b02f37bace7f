"""Chapter 8's central claim as a plain script, with the notebook's full-mode settings.

Re-runs section 6 of the notebook (baseline with the paper's protocol, baseline at equal Adam steps, and
+ Spectral Mixup, over paired seeds, on in-distribution and unseen-material test scenes) so that the claim
can be checked under another condition, e.g. a different CPU kernel path:

    ATEN_CPU_CAPABILITY=default python benchmarks/hsi_sr_claim.py
    python benchmarks/hsi_sr_claim.py --iters 20 --seeds 0 --test 3        # smoke run
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

import medtut
from medtut import hsi_sr as hs
from medtut.data import hyperspectral as hsd
from medtut.metrics import mean_std, summarize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=350, help="labelled iterations (the notebook's ITERS)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=24)
    ap.add_argument("--feats", type=int, default=16)
    ap.add_argument("--test", type=int, default=12)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(medtut.describe_environment(), "ATEN_CPU_CAPABILITY =",
          os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"))

    train_y = hsd.make_scenes(6, "train", 64, seed=100)
    tests = {"in-distribution": hsd.make_scenes(args.test, "train", 64, seed=200),
             "unseen materials": hsd.make_scenes(args.test, "unseen", 64, seed=300)}
    cfg0 = hs.Config(feats=args.feats, crop=args.crop, batch_size=args.batch)
    budget = 2 * args.iters
    arms = {"baseline, paper protocol": replace(cfg0, num_steps=args.iters),
            "baseline, equal steps": replace(cfg0, num_steps=hs.iterations_for(cfg0, budget)),
            "+ Spectral Mixup": replace(cfg0, mixup=True,
                                        num_steps=hs.iterations_for(replace(cfg0, mixup=True), budget))}
    scores, walls = {}, {}
    t0 = time.perf_counter()
    for seed in seeds:
        for arm, cfg in arms.items():
            model, res = hs.train(train_y, cfg, seed=seed, progress=False)
            scores[(arm, seed)] = {k: {m: float(v.mean()) for m, v in hs.evaluate(model, ys).items()}
                                   for k, ys in tests.items()}
            walls[(arm, seed)] = res.wall_time_s
            print(f"{arm:24s} seed {seed}: {res.optimizer_steps} Adam steps, {res.wall_time_s:.0f} s", flush=True)
    rows, extra = {}, {}
    for key, ys in tests.items():
        rows[f"bicubic ({key})"] = {m: [float(v.mean())] for m, v in hs.evaluate(None, ys).items()}
        for arm in arms:
            rows[f"{arm} ({key})"] = {m: [scores[(arm, s)][key][m] for s in seeds] for m in hs.METRICS}
            extra[f"{arm} ({key})"] = {"wall time (s)": mean_std([walls[(arm, s)] for s in seeds], ".0f")}
    print(summarize(rows, extra=extra,
                    caption=f"seeds {seeds}, {args.iters} iterations, total {time.perf_counter() - t0:.0f} s"))
    for base in ("baseline, paper protocol", "baseline, equal steps"):
        for key in tests:
            d = np.array([scores[("+ Spectral Mixup", s)][key]["SAM"] - scores[(base, s)][key]["SAM"] for s in seeds])
            dp = np.array([scores[("+ Spectral Mixup", s)][key]["MPSNR"] - scores[(base, s)][key]["MPSNR"] for s in seeds])
            print(f"mixup - {base}, {key}: SAM {np.round(d, 3).tolist()} deg (lower in {int((d < 0).sum())} of "
                  f"{len(seeds)}), MPSNR {np.round(dp, 3).tolist()} dB")


if __name__ == "__main__":
    main()
