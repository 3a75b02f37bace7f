"""Chapter 3's central claim as a plain script: quality-guided vs random / oracle / uniform slice selection.

Runs the notebook's full-mode experiment (same data, networks, steps, seeds, sessions) and prints the
3-D Dice and worst-5-slice Dice per round and strategy (mean ± std over seeds of the mean over test
volumes), the paired quality − random differences, Spearman ρ of the quality head, and wall times.
Use it to re-run the claim under another condition, e.g.

    ATEN_CPU_CAPABILITY=default nice -n 5 python benchmarks/mem3d_claim.py
    python benchmarks/mem3d_claim.py --gpu-timing     # time per round on a 128x128 spleen-sized volume

Sizes follow ``MEDTUT_QUICK`` through ``medtut.budget`` exactly as the notebook's parameters cell.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

import medtut
from medtut import mem3d as m3
from medtut.data.tubes import make_tube_dataset
from medtut.metrics import mean_std

SIZE, DEPTH = medtut.budget(full=(96, 48), quick=(64, 32))
N_TRAIN = medtut.budget(full=32, quick=12)
N_TEST = medtut.budget(full=4, quick=2)
MEM_STEPS = medtut.budget(full=700, quick=40)
IN_STEPS = medtut.budget(full=300, quick=40)
SEEDS = medtut.budget(full=[0, 1, 2], quick=[0])
USERS = medtut.budget(full=list(m3.USER_KINDS), quick=["click"])
ROUNDS = 6


def main(gpu_timing: bool = False) -> None:
    device = medtut.get_device()
    print(medtut.describe_environment())
    if gpu_timing:
        # time per round at a Spleen-like in-plane size (128², 64 slices): untrained weights, same compute
        vols = make_tube_dataset(2, 128, 64, seed=0)
        f_mem, _ = m3.train_memory_network(vols, num_steps=1, seed=0, device=device, progress=False)
        f_in, _ = m3.train_interaction_network(vols, num_steps=1, pool_size=4, seed=0, device=device, progress=False)
        res = [m3.run_session(v, f_in, f_mem, m3.SimulatedUser("click"), "quality", rounds=ROUNDS) for v in vols]
        print(f"{device}: {np.mean([r.wall_time_s for r in res]) / ROUNDS:.3f} s per round (128x128x64)")
        return
    train = make_tube_dataset(N_TRAIN, SIZE, DEPTH, seed=1)
    test = make_tube_dataset(N_TEST, SIZE, DEPTH, seed=2)
    t0 = time.perf_counter()
    f_in, r_in = m3.train_interaction_network(train, num_steps=IN_STEPS, seed=0, device=device, progress=False)
    print(f"f_In: {r_in.wall_time_s:.0f} s")
    dice, worst, rho = {}, {}, {}
    for seed in SEEDS:
        f_mem, r = m3.train_memory_network(train, num_steps=MEM_STEPS, seed=seed, device=device, progress=False)
        print(f"f_Mem seed {seed}: {r.wall_time_s:.0f} s")
        qs, ious = [], []
        for i, vol in enumerate(test):
            s = m3.run_session(vol, f_in, f_mem, m3.SimulatedUser("click", seed=i), "quality", rounds=1)
            sel = (s.q_hat[0] < 1) & ~np.isin(np.arange(DEPTH), s.slices)
            qs += list(s.q_hat[0][sel])
            ious += list(s.true_iou[0][sel])
        rho[seed] = spearmanr(qs, ious).statistic
        for kind in USERS:
            for strategy in m3.STRATEGIES:
                res = [m3.run_session(vol, f_in, f_mem, m3.SimulatedUser(kind, seed=100 * seed + i), strategy,
                                      rounds=ROUNDS, seed=100 * seed + i) for i, vol in enumerate(test)]
                dice[seed, kind, strategy] = np.mean([x.dice for x in res], 0)
                worst[seed, kind, strategy] = np.mean([x.worst5 for x in res], 0)
    print(f"Spearman rho(q_hat, true IoU): {mean_std(list(rho.values()), '.2f')} ({rho})")
    for kind in USERS:
        for name, table in (("3-D Dice", dice), ("worst-5 Dice", worst)):
            print(f"\n{kind} user, {name} per round (mean ± std over seeds {SEEDS})")
            for strategy in m3.STRATEGIES:
                v = np.array([table[s, kind, strategy] for s in SEEDS])
                print(f"  {strategy:8s} " + "  ".join(mean_std(v[:, r]) for r in range(ROUNDS)))
            diff = np.array([table[s, kind, "quality"] - table[s, kind, "random"] for s in SEEDS])
            print("  quality − random, rounds 2-6: " + "  ".join(mean_std(diff[:, r], "+.3f") for r in range(1, ROUNDS)))
            print("  oracle − quality, rounds 2-6: " + "  ".join(
                mean_std(np.array([table[s, kind, "oracle"] - table[s, kind, "quality"] for s in SEEDS])[:, r], "+.3f")
                for r in range(1, ROUNDS)))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-timing", action="store_true", help="only time one session per round")
    main(parser.parse_args().gpu_timing)
