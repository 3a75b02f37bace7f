"""Time chapter 5's MNIST set-up (the paper's): GFE vs AE, one training step and one test encoding.

    python benchmarks/gradient_flow_mnist.py [--steps 50] [--train-evals 60] [--test-evals 120] [--data auto]

Set-up: latent 20, decoder 20→150→300→600→784 (ELU, sigmoid), BCE, batch 5, RMSprop 5e-4, as in the
paper's MNIST run. The full run is one epoch over 50,000 images = 10,000 steps; this script times
``--steps`` steps and extrapolates. ``--data auto`` uses MNIST when its files are already in the data
folder (``medtut.data.data_root()``) and random images of the same shape otherwise. Random data time the
same as real data for the AE; for GFE they give the time at a fixed number of solver evaluations, and the
adaptive solver stops earlier on real digits only if ``conv_tol`` triggers, so the table is an upper bound.
Prints a Markdown table with the device.
"""
from __future__ import annotations

import argparse
import time

import torch

import medtut
from medtut import gradient_flow as gf
from medtut.data import REGISTRY, data_root
from medtut.data.mnist import load_mnist  # registers the MNIST files
from medtut.train import fit


def load_data(kind: str, device) -> tuple[torch.Tensor, torch.Tensor, str]:
    have_mnist = all((data_root(create=False) / REGISTRY[f"mnist-{s}-{k}"].local_name).exists()
                     for s in ("train", "test") for k in ("images", "labels"))
    if kind == "mnist" or (kind == "auto" and have_mnist):
        x_train, x_test = load_mnist("mnist", "train")[0][:50_000], load_mnist("mnist", "test")[0][:1000]
        source = "MNIST"
    else:
        gen = torch.Generator().manual_seed(0)
        x_train, x_test = torch.rand(5_000, 784, generator=gen), torch.rand(1000, 784, generator=gen)
        source = "random images of MNIST shape"
    return x_train.to(device), x_test.to(device), source


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(method: str, x_train, steps: int, train_evals: int, device) -> float:
    gen = medtut.seed_everything(0)
    decoder = gf.make_decoder(20, 784, (150, 300, 600)).to(device)
    params = list(decoder.parameters())
    if method == "AE":
        encoder = gf.make_encoder(784, 20, (600, 300, 150)).to(device)
        params += list(encoder.parameters())
        step = gf.make_ae_step(encoder, decoder, "bce")
    else:
        step = gf.make_gfe_step(decoder, "bce", generator=gen, max_evals=train_evals)
    optimizer = torch.optim.RMSprop(params, lr=5e-4, alpha=0.9, eps=1e-6)
    batches = [x_train[i * 5:(i + 1) * 5] for i in range(steps + 2)]
    fit(step, optimizer, data=batches[:2], num_steps=2, progress=False)  # warm-up
    synchronize(device)
    t0 = time.perf_counter()
    fit(step, optimizer, data=batches[2:], num_steps=steps, progress=False)
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def time_test_encoding(x_test, test_evals: int, device) -> float:
    medtut.seed_everything(0)
    decoder = gf.make_decoder(20, 784, (150, 300, 600)).to(device)
    synchronize(device)
    t0 = time.perf_counter()
    gf.evaluate_gfe(decoder, x_test, "bce", max_evals=test_evals)
    synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--train-evals", type=int, default=60)
    parser.add_argument("--test-evals", type=int, default=120)
    parser.add_argument("--data", choices=["auto", "mnist", "random"], default="auto")
    args = parser.parse_args()
    device = medtut.get_device()
    x_train, x_test, source = load_data(args.data, device)
    env = medtut.describe_environment()
    print(f"device: {env.get('gpu', env['device'])}, torch {env['torch']}, threads {env['threads']}; data: {source}")
    print("| method | s / step | one epoch (10,000 steps) | test encoding of 1,000 images |")
    print("|---|---|---|---|")
    test_s = time_test_encoding(x_test, args.test_evals, device)
    for method in ("AE", "GFE"):
        per_step = time_training(method, x_train, args.steps, args.train_evals, device)
        test = f"{test_s:.2f} s (AMD ≤ {args.test_evals} evals)" if method == "GFE" else "one forward pass"
        budget = f" (AMD ≤ {args.train_evals} evals)" if method == "GFE" else ""
        print(f"| {method}{budget} | {per_step * 1e3:.1f} ms | {per_step * 10_000 / 60:.1f} min | {test} |")


if __name__ == "__main__":
    main()
