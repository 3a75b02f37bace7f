"""Steps per second of the same training on 1 and 2 processes (torchrun, CPU, gloo): the appendix's table.

The workload is chapter 7's trainer (:func:`medtut.auc_alm.train_binary_classifier`, ResNet-10, BCE) for
one epoch over synthetic CIFAR-sized images (3×32×32, offline), launched

* as a plain process with 1 thread, and with 2 threads (intra-op parallelism, for comparison);
* under ``torchrun --nproc_per_node=1`` (DistributedDataParallel overhead alone);
* under ``torchrun --nproc_per_node=2`` with the same batch per process (the global batch doubles, an
  epoch has half the steps) and with half the batch per process (the same global batch and steps as one
  process).

Every process uses one thread unless stated. The training wall time is :func:`medtut.train.fit`'s (start-up,
data generation and evaluation excluded); the table also gives the CPU time rank 0 spent in training (what the
work costs, whatever else the machine runs) and each launch's total wall time. The machine
load (``uptime``) is printed before and after, because the timings mean little on a busy machine.

    python benchmarks/scaling.py                       # the appendix's table (a few minutes on 2 cores)
    python benchmarks/scaling.py --images 256 --repeats 1   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load: unknown (no uptime)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def worker(args) -> None:
    """One launch's training (run by each process); rank 0 writes the timings to ``args.result``."""
    from medtut import auc_alm, distributed

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    y = (torch.arange(args.images) % 4 == 0).float()          # 1 positive in 4
    X = torch.randn(args.images, 3, 32, 32, generator=g) + 0.5 * y[:, None, None, None]
    model = auc_alm.resnet10(3)
    cpu0 = time.process_time()
    _, result = auc_alm.train_binary_classifier(model, X, y, seed=0, loss="bce", num_epochs=1,
                                                batch_size=args.batch_size, progress=False, device="cpu")
    steps = int(result.history.last_step)
    if distributed.is_main():
        Path(args.result).write_text(json.dumps({"steps": steps, "train_s": result.history.wall_time_s,
                                                 "cpu_s": time.process_time() - cpu0,
                                                 "world_size": distributed.world_size(),
                                                 "threads": torch.get_num_threads()}))


def _launch(processes: int | None, threads: int, batch_size: int, images: int, folder: Path) -> dict:
    result = folder / f"p{processes}_t{threads}_b{batch_size}.json"
    script = [str(Path(__file__).resolve()), "--worker", "--result", str(result), "--threads", str(threads),
              "--batch-size", str(batch_size), "--images", str(images)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    if processes is None:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               *script]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(result.read_text())
    out["total_s"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training images (one epoch)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the one-process run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per launch (the fastest is kept)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    b = args.batch_size
    launches = [  # (label, processes (None: plain python), threads per process, batch per process)
        ("plain python, 1 thread", None, 1, b),
        ("plain python, 2 threads", None, 2, b),
        ("torchrun, 1 process", 1, 1, b),
        ("torchrun, 2 processes, same batch per process", 2, 1, b),
        ("torchrun, 2 processes, same global batch", 2, 1, b // 2),
    ]
    print(f"machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"Python {platform.python_version()}, no GPU" if not torch.cuda.is_available() else
          f"machine: {_cpu_name()}, GPU {torch.cuda.get_device_name(0)} (this benchmark runs on the CPU)")
    print(f"workload: chapter 7 ResNet-10, BCE, 1 epoch of {args.images} synthetic 3x32x32 images, "
          f"best of {args.repeats}")
    print(f"load before: {_load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, threads, batch in launches:
            runs = [_launch(processes, threads, batch, args.images, Path(tmp)) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["train_s"])
            rows.append((label, processes or 1, threads, batch, best))
            print(f"  done: {label} ({best['train_s']:.1f} s)", file=sys.stderr, flush=True)
    print(f"load after: {_load()}\n")
    base = rows[0][4]["train_s"] / args.images
    print("| launch | processes × threads | batch per process (global) | steps | training s | steps/s | "
          "images/s | speed-up (images/s) | CPU s of rank 0 | launch total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, processes, threads, batch, r in rows:
        steps_per_s = r["steps"] / r["train_s"]
        images_per_s = args.images / r["train_s"]
        print(f"| {label} | {processes} × {threads} | {batch} ({batch * processes}) | {r['steps']} | "
              f"{r['train_s']:.1f} | {steps_per_s:.2f} | {images_per_s:.0f} | {base * images_per_s:.2f} | "
              f"{r['cpu_s']:.1f} | {r['total_s']:.1f} |")


if __name__ == "__main__":
    main()
