"""Re-run chapter 2's central comparison outside the notebook, e.g. under another CPU code path:

    ATEN_CPU_CAPABILITY=default python benchmarks/pixel_contrast_claim.py

Same settings as the notebook's full run (16 training / 100 test texture images, 3 arms x 3 seeds x 600
steps of 8 images, diagnostics on 400 held-out pixels per class). Prints one line per run and the paired
differences to CE, so the conclusions can be compared with the committed notebook's.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from medtut import pixel_contrast as pc
from medtut.data.textures import make_texture_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(pc.ARMS), choices=pc.ARMS)
    args = parser.parse_args(argv)
    x_tr, y_tr = make_texture_dataset(16, seed=1)
    x_te, y_te = make_texture_dataset(100, seed=2)
    print(f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '(unset)')}")
    res = {}
    for seed in args.seeds:
        for arm in args.arms:
            model, r = pc.train(x_tr, y_tr, pc.Config(arm=arm, num_steps=args.steps, seed=seed), 5, progress=False)
            s = pc.evaluate(model, x_te, y_te, 5)
            d = pc.diagnose(model, x_tr, y_tr, x_te, y_te, 5, per_class=400, seed=0)
            res[(arm, seed)] = (s["mIoU"], s["Dice"], d["ratio"], d["prototype_acc"], r.wall_time_s)
            print(f"{arm:9s} seed {seed}: mIoU {s['mIoU']:.3f} Dice {s['Dice']:.3f} ratio {d['ratio']:.2f} "
                  f"proto {d['prototype_acc']:.3f} ({r.wall_time_s:.0f} s)", flush=True)
    for arm in args.arms:
        v = np.array([res[(arm, s)][:4] for s in args.seeds])
        print(f"{arm:9s} mean over seeds: mIoU {v[:, 0].mean():.3f} ± {v[:, 0].std(ddof=1):.3f}, "
              f"ratio {v[:, 2].mean():.2f} ± {v[:, 2].std(ddof=1):.2f}, proto {v[:, 3].mean():.3f} ± {v[:, 3].std(ddof=1):.3f}, "
              f"wall {np.mean([res[(arm, s)][4] for s in args.seeds]):.0f} s/run")
    for arm in [a for a in args.arms if a != "ce"] if "ce" in args.arms else []:
        d = np.array([[res[(arm, s)][i] - res[("ce", s)][i] for i in (0, 2, 3)] for s in args.seeds])
        print(f"{arm} - ce (paired): mIoU {d[:, 0].mean():+.3f} ± {d[:, 0].std(ddof=1):.3f} "
              f"(> 0 on {int((d[:, 0] > 0).sum())}/{len(args.seeds)}), ratio {d[:, 1].mean():+.2f} "
              f"(> 0 on {int((d[:, 1] > 0).sum())}), proto {d[:, 2].mean():+.3f} (> 0 on {int((d[:, 2] > 0).sum())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
