"""How many torch CPU threads should medtut use? Prints a table of seconds per run.

    python benchmarks/threads.py [--threads 1 2 4] [--steps 200]

Times (a) a tiny conv net for ``--steps`` optimiser steps on 16x1x28x28 inputs and (b) 20 steps of the
64x64 MONAI UNet of chapter 0 (batch 8), once per thread count. medtut's default
(:func:`medtut.config.default_num_threads`) was chosen from this table on the 2-core CI machine.
Each thread count is timed twice: on an otherwise idle machine, and with one other process keeping a
core busy (as in CI, where pytest runs one notebook per core). Measured on the 2-core CI machine:

| threads | conv net idle | UNet idle | conv net, other core busy | UNet, other core busy |
|---|---|---|---|---|
| 1 | 0.80 s | 1.42 s | 1.03 s | 1.45 s |
| 2 | 0.64 s | 0.97 s | 2.79 s | 4.13 s |

Two threads win by 1.3-1.5x only when nothing else runs; as soon as the second core is shared they lose
by 2.7-2.8x (and by 10-30x when the other process is itself a multi-threaded torch job). Hence 1 thread
on machines with <= 4 cores.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch


def _seconds_for_steps(net, opt, x, y, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def tiny_convnet_seconds(steps: int) -> float:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    return _seconds_for_steps(net, torch.optim.SGD(net.parameters(), lr=0.1), x, y, steps)


def unet_seconds(steps: int = 20) -> float:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=4, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=1)
    x, y = torch.randn(8, 1, 64, 64), torch.randint(0, 4, (8, 64, 64))
    return _seconds_for_steps(net, torch.optim.Adam(net.parameters(), lr=1e-3), x, y, steps)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"cpu_count={os.cpu_count()}, torch {torch.__version__}")
    print(f"| threads | other core | tiny conv net, {args.steps} steps (s) | MONAI UNet 64x64, 20 steps (s) |")
    print("|---|---|---|---|")
    for busy in (False, True):
        for n in args.threads:
            torch.set_num_threads(n)
            spinner = mp.Process(target=_spin, args=(600.0,), daemon=True) if busy else None
            if spinner is not None:
                spinner.start()
            try:
                conv, unet = tiny_convnet_seconds(args.steps), unet_seconds()
            finally:
                if spinner is not None:
                    spinner.terminate()
            print(f"| {n} | {'busy' if busy else 'idle'} | {conv:.2f} | {unet:.2f} |", flush=True)


if __name__ == "__main__":
    main()
