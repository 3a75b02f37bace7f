"""Does argument checking slow chapter 10's inner loops? (issue 24)

Times one VAE training step (forward + loss + backward + Adam) and one MALA step on the latent posterior
(decoder, closed-form likelihood, gradient, accept test), with the module as committed at a git revision
(default HEAD, before the checks) and with the working-tree module (with the checks). Reports the median of
interleaved repeats, so a busy machine affects both arms alike.

    python benchmarks/mr_sampling_validation.py [--rev HEAD] [--repeats 7]
"""
import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load(rev: str | None):
    if rev is None:
        import medtut.mr_sampling as mod
        return mod
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:medtut/mr_sampling.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path("/tmp") / f"mr_sampling_{rev.replace('/', '_')}.py"
    path.write_text(text.replace("from .config import", "from medtut.config import")
                    .replace("from .train import", "from medtut.train import"))
    spec = importlib.util.spec_from_file_location(f"mr_sampling_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


def time_steps(mr, n: int = 50) -> tuple[float, float]:
    torch.manual_seed(0)
    vae = mr.SpatialVAE(32, latent_channels=8, n_down=3, width=8)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = torch.rand(64, 1, 32, 32)
    t0 = time.perf_counter()
    for _ in range(n):
        x_mean, zm, zl = vae(x)
        loss = mr.negative_elbo(x, x_mean, zm, zl)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = (time.perf_counter() - t0) / n
    for p in vae.parameters():
        p.requires_grad_(False)
    mask = mr.cartesian_mask((32, 32), 4, center_lines=4, seed=0)
    y = mr.forward_op(x[0, 0].to(torch.complex64), mask)
    log_prob = mr.latent_log_posterior(vae, y, mask, noise_std=0.01)
    z0 = torch.randn(8, *vae.latent_shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    mr.mala(log_prob, z0, n + 1, step_size=0.01, burn_in=0, generator=torch.Generator().manual_seed(0))
    mala = (time.perf_counter() - t0) / (n + 1)
    return train, mala


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision of the module without the checks")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    arms = {f"{args.rev} (before)": load(args.rev), "working tree (with checks)": load(None)}
    times = {name: ([], []) for name in arms}
    for _ in range(args.repeats):
        for name, mod in arms.items():
            train, mala = time_steps(mod)
            times[name][0].append(train)
            times[name][1].append(mala)
    for name, (train, mala) in times.items():
        print(f"{name:30s} VAE step {1e3 * statistics.median(train):6.2f} ms   MALA step "
              f"{1e3 * statistics.median(mala):6.2f} ms   (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
