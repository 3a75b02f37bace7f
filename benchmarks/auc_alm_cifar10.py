"""Time chapter 7's CIFAR10 set-up (ResNet-10, cars vs trucks at 1:100 / 1:200) with and without the ALM.

Prints a Markdown table: seconds per epoch and the projected time of the paper's full protocol (100 epochs
× 10 seeds per method). With ``--data real`` it trains on the real split (downloads CIFAR-10, 170 MB,
md5-checked) and also reports the test AUC and FPR at TPR 0.90/0.95/0.98 after ``--epochs`` epochs; with
``--data synthetic`` (default, offline) it times random tensors of exactly the paper's sizes
(4,410 cars + 44 or 22 trucks, 32×32×3).

    python benchmarks/auc_alm_cifar10.py                      # offline timing on the default device
    python benchmarks/auc_alm_cifar10.py --data real --epochs 100 --seeds 1 2 3
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import medtut
from medtut import auc_alm
from medtut.data.imbalanced import ImbalancedSplit, crop_and_flip, make_cifar10_cars_vs_trucks


def synthetic_split(ratio: float, seed: int) -> ImbalancedSplit:
    g = torch.Generator().manual_seed(seed)
    n_maj = 4410
    n_min = int(n_maj / ratio)
    y = torch.cat([torch.zeros(n_maj), torch.ones(n_min)])
    X = torch.randn(len(y), 3, 32, 32, generator=g) + 0.5 * y[:, None, None, None]
    yv = torch.cat([torch.zeros(100), torch.ones(100)])
    Xv = torch.randn(200, 3, 32, 32, generator=g) + 0.5 * yv[:, None, None, None]
    yt = torch.cat([torch.zeros(1000), torch.ones(1000)])
    Xt = torch.randn(2000, 3, 32, 32, generator=g) + 0.5 * yt[:, None, None, None]
    return ImbalancedSplit(X, y, Xv, yv, Xt, yt, description=f"synthetic CIFAR-sized, 1:{ratio:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["synthetic", "real"], default="synthetic")
    parser.add_argument("--ratios", type=float, nargs="+", default=[100, 200])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    # BCE + ALM at 1:100 in the official README: config ALM_17_beg (mu0 = 1e-7, rho = 2), delta = 0.25
    parser.add_argument("--mu0", type=float, default=1e-7)
    parser.add_argument("--delta", type=float, default=0.25)
    parser.add_argument("--limit", type=int, default=None,
                        help="keep only the first N training images (a smoke test on a CPU)")
    args = parser.parse_args()

    device = medtut.get_device()
    env = medtut.describe_environment()
    rows = []
    for ratio in args.ratios:
        for seed in args.seeds:
            split = (make_cifar10_cars_vs_trucks(ratio=ratio, seed=seed) if args.data == "real"
                     else synthetic_split(ratio, seed))
            if args.limit:
                keep = torch.cat([torch.nonzero(split.y_train == 1).flatten(),
                                  torch.nonzero(split.y_train == 0).flatten()[:args.limit]])
                split.X_train, split.y_train = split.X_train[keep], split.y_train[keep]
            for name, alm in (("BCE", None), ("BCE + ALM", {"delta": args.delta, "mu0": args.mu0})):
                medtut.seed_everything(seed)
                net = auc_alm.resnet10(3)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                net, info = auc_alm.train_binary_classifier(
                    net, split.X_train, split.y_train, loss="bce", alm=alm, num_epochs=args.epochs, seed=seed,
                    augment=crop_and_flip, X_val=split.X_val, y_val=split.y_val, optimizer="sgd", lr=0.01,
                    weight_decay=2e-4, select_best=True, device=device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
                scores = auc_alm.evaluate_scores(split.y_test, auc_alm.predict_logits(net, split.X_test))
                rows.append((f"1:{ratio:g}", seed, name, seconds / args.epochs, scores))
    print(f"device: {env.get('gpu', env['device'])}, torch {env['torch']}, data: {args.data}, "
          f"epochs per run: {args.epochs}")
    print("| ratio | seed | method | s/epoch | projected 100 epochs × 10 seeds | AUC | FPR@TPR90 | FPR@TPR95 | FPR@TPR98 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ratio, seed, name, spe, s in rows:
        print(f"| {ratio} | {seed} | {name} | {spe:.2f} | {spe * 1000 / 60:.1f} min | {s['AUC']:.3f} | "
              f"{s['FPR@TPR90']:.3f} | {s['FPR@TPR95']:.3f} | {s['FPR@TPR98']:.3f} |")
    if args.data == "synthetic":
        print("(synthetic data: the metrics only show that the pipeline runs; use --data real for results)")
    print(f"mean s/epoch: BCE {np.mean([r[3] for r in rows if r[2] == 'BCE']):.2f}, "
          f"BCE + ALM {np.mean([r[3] for r in rows if r[2] != 'BCE']):.2f}")


if __name__ == "__main__":
    main()
