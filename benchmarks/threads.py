"""How many torch CPU threads should medtut use? Prints a table of seconds per run.

    python benchmarks/threads.py [--threads 1 2 4] [--steps 200]

Times (a) a tiny conv net for ``--steps`` optimiser steps on 16x1x28x28 inputs and (b) 20 steps of the
64x64 MONAI UNet of chapter 0 (batch 8), once per thread count. medtut's default
(:func:`medtut.config.default_num_threads`) was chosen from this table on the 2-core CI machine.
Run it on an otherwise idle machine: another busy process on a second core makes 2 threads look worse.
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def tiny_convnet_seconds(steps: int) -> float:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def unet_seconds(steps: int = 20) -> float:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=4, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(8, 1, 64, 64), torch.randint(0, 4, (8, 64, 64))
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"cpu_count={os.cpu_count()}, torch {torch.__version__}")
    print(f"| threads | tiny conv net, {args.steps} steps (s) | MONAI UNet 64x64, 20 steps (s) |")
    print("|---|---|---|")
    for n in args.threads:
        torch.set_num_threads(n)
        print(f"| {n} | {tiny_convnet_seconds(args.steps):.2f} | {unet_seconds():.2f} |", flush=True)


if __name__ == "__main__":
    main()
