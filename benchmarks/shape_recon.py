"""Chapter 9's central claim as a plain script: deterministic vs NLL vs NLL + slice dropout, several seeds.

    python benchmarks/shape_recon.py [--n-train 3000] [--n-test 500] [--epochs 15] [--width 8] [--seeds 0 1 2]
    ATEN_CPU_CAPABILITY=default python benchmarks/shape_recon.py      # the "second condition" re-run
    python benchmarks/shape_recon.py --n-train 20000 --epochs 40 --width 32 --batch-size 128   # on a GPU

Same data, shape model, configurations and evaluation as the notebook's full mode (its defaults are
the notebook's full-mode values), on ``medtut.get_device()``. Prints the device, the Markdown table of
each arm under each test condition (mean ± std over seeds) and the wall time per model, so that a run
on another machine, another SIMD level or a GPU can be compared with the chapter's table. On a GPU the
larger settings above show what more data, epochs and width buy; they have not been run (no GPU was lent
to the session that wrote the chapter).
"""
from __future__ import annotations

import argparse
import time

import torch

import medtut
from medtut import shape_recon as sr
from medtut.data.cup_shapes import make_cup_dataset
from medtut.metrics import mean_std, summarize


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--heavy-noise", type=float, default=0.6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)

    device = medtut.get_device()
    print(medtut.describe_environment())
    t0 = time.perf_counter()
    train_data, test_data = make_cup_dataset(args.n_train, seed=0), make_cup_dataset(args.n_test, seed=1)
    print(f"data: {time.perf_counter() - t0:.1f} s")
    shape_model = sr.PCAShapeModel.fit(train_data.canonical, args.modes)
    common = dict(num_epochs=args.epochs, width=args.width, batch_size=args.batch_size)
    arms = {"deterministic (MSE)": sr.Config(probabilistic=False, **common),
            "probabilistic (NLL)": sr.Config(**common),
            "NLL + slice dropout": sr.Config(slice_dropout=args.dropout, **common)}
    gen = torch.Generator().manual_seed(100)
    conditions = {"complete": test_data.images, "2CH missing": sr.replace_view(test_data.images, 1, gen),
                  "SAX missing": sr.replace_view(test_data.images, 0, gen),
                  "4CH missing": sr.replace_view(test_data.images, 2, gen),
                  "heavy noise": test_data.images + args.heavy_noise * torch.randn(test_data.images.shape, generator=gen)}
    names = {"error_mm": "vertex error (mm)", "cov68": "coverage 68 %", "cov95": "coverage 95 %",
             "sigma_mm": "mean sigma (mm)", "spearman": "Spearman rho"}
    rows, walls = {}, {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, cfg in arms.items():
            model, result = sr.train(train_data, shape_model, cfg, seed=seed, device=device, progress=False)
            walls[arm].append(result.wall_time_s)
            for cond, x in conditions.items():
                m = sr.evaluate(sr.predict(model, x), test_data.vertices)
                row = rows.setdefault(f"{arm}, {cond}", {v: [] for k, v in names.items() if k in m})
                for k, v in names.items():
                    if k in m:
                        row[v].append(m[k])
            print(f"seed {seed} {arm}: {result.wall_time_s:.1f} s", flush=True)
    extra = {name: {"wall time / model (s)": mean_std(walls[name.split(",")[0]], ".1f"), "device": str(device)}
             for name in rows}
    print(summarize(rows, fmt=".2f", extra=extra,
                    caption=f"{args.n_train} train / {args.n_test} test cups, {args.epochs} epochs, width {args.width}, "
                            f"seeds {args.seeds}").to_markdown())


if __name__ == "__main__":
    main()
