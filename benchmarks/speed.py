"""Speed of medtut's method kernels against transcriptions of the official implementations' algorithms.

    nice -n 5 python benchmarks/speed.py [--sizes chapter paper] [--kernels ...] [--threads 1]

For each kernel that is a paper's contribution, the same inputs go through medtut's function and through
a transcription of the official code's algorithm (``benchmarks/official_kernels.py``: loops and all,
written afresh in PyTorch/NumPy, each with its source and deviations in its docstring), in the same
process, interleaved, at the chapter's sizes and at the paper's sizes (reduced where a CPU would take
minutes; the table says so). Printed per row: median wall-clock milliseconds per call of each, the ratio
official / medtut (> 1: medtut is faster), and whether both give the same value within the stated
tolerance. Where the official algorithm draws at random, the value check either feeds both the same
random choices (same anchors / same generator) or disables the random part, as the row's note says.
What each kernel call contains (forward only, or forward + backward) is in ``KERNEL_NOTES``.

``run(sizes)`` returns the rows; ``tests/test_speed_smoke.py`` calls each ``BENCHES[kernel]("tiny", 1, 0.0)``
(tiny sizes, one timed pair) and asserts that the values agree.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import official_kernels as ok  # the transcriptions, next to this file (the script's folder is on sys.path)
from medtut import auc_alm, dip_nas, local_contrastive as lc, mr_sampling as mr, pixel_contrast as pc

KERNEL_NOTES = {
    "local contrastive": "loss + backward w.r.t. the embeddings, anchor sampling included "
                         "(official: NumPy calc_pos_neg_index + the unrolled pair x class x anchor loops)",
    "pixel contrast": "hard/easy anchor sampling + loss + backward w.r.t. the embeddings",
    "PSD scoring": "three scores (PSD-dB MSE, strip MSE, 99 % bandwidth) of one untrained network's output "
                   "against the observed image; the network's forward pass (the same for both) is not timed",
    "AUC constraint (ALM)": "one epoch of batch terms: constraints, multiplier update, backward to the logits "
                            "(network excluded)",
    "MALA step": "one MALA step per chain on the latent MR posterior, decoder forward/backward included",
}


@dataclass
class Row:
    kernel: str
    size: str
    shape: str
    medtut_ms: float
    official_ms: float
    agree: bool
    check: str
    reduced: str = ""

    @property
    def ratio(self) -> float:
        return self.official_ms / self.medtut_ms


def _time_pair(f_medtut: Callable[[], object], f_official: Callable[[], object], repeats: int,
               budget_s: float) -> tuple[float, float]:
    """Median ms per call of each function: one warm-up call each, then interleaved calls (medtut,
    official, medtut, ...) until ``repeats`` pairs or ``budget_s`` seconds, at least min(3, repeats)."""
    f_medtut()
    f_official()
    tm, to = [], []
    start = time.perf_counter()
    while len(tm) < repeats and (len(tm) < min(3, repeats) or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        f_medtut()
        t1 = time.perf_counter()
        f_official()
        t2 = time.perf_counter()
        tm.append(t1 - t0)
        to.append(t2 - t1)
    return 1e3 * statistics.median(tm), 1e3 * statistics.median(to)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def _block_labels(n: int, h: int, w: int, num_classes: int, block: int, seed: int, background: bool = True
                  ) -> torch.Tensor:
    """(n, h, w) int64 label maps of random ``block``-pixel squares in which every class appears."""
    g = torch.Generator().manual_seed(seed)
    bh, bw = h // block, w // block
    out = []
    for _ in range(n):
        cells = torch.randint(0, num_classes, (bh * bw,), generator=g)
        cells[torch.randperm(bh * bw, generator=g)[:num_classes]] = torch.arange(num_classes)
        out.append(cells.view(bh, bw).repeat_interleave(block, 0).repeat_interleave(block, 1))
    return torch.stack(out)


# -------------------------------------------------------------------------------------------------------
# 1. local contrastive loss
# -------------------------------------------------------------------------------------------------------
LC_SIZES = {
    # pairs, H (= W), D, classes (incl. background), anchors per class
    "tiny": dict(pairs=2, hw=16, dim=8, k=4, p=3),
    "chapter": dict(pairs=15, hw=64, dim=16, k=4, p=3),     # 8 labelled + 6 unlabelled + 1+1 second views
    "paper": dict(pairs=10, hw=192, dim=16, k=4, p=3),      # ACDC: 10 pairs of 192x192 slices, RV/MYO/LV
}


def bench_local_contrastive(size: str, repeats: int, budget_s: float) -> Row:
    s = LC_SIZES[size]
    b, hw, d, k, p = s["pairs"], s["hw"], s["dim"], s["k"], s["p"]
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2 * b, d, hw, hw, generator=g)
    z = z / z.norm(dim=1, keepdim=True)            # unit embeddings: see the value check's note
    y = _block_labels(2 * b, hw, hw, k, max(2, hw // 16), seed=2)
    onehot = torch.nn.functional.one_hot(y, k).float()                  # (2B, H, W, K), official layout
    onehot_np = onehot.numpy()
    z_nhwc = z.permute(0, 2, 3, 1).contiguous()                         # the official network is NHWC

    def f_medtut():
        zz = z.clone().requires_grad_(True)
        loss = lc.local_contrastive_loss(zz[:b], zz[b:], y[:b], y[b:], temperature=0.1, n_anchors=p,
                                         generator=torch.Generator().manual_seed(0))
        loss.backward()
        return loss

    def f_official():
        zz = z_nhwc.clone().requires_grad_(True)
        pos, _neg = ok.lc_sample_anchors(onehot_np, b, k, p, 3, np.random.RandomState(0))
        loss = ok.lc_loss(zz, onehot, pos, b, 0.1, 1, "official")
        loss.backward()
        return loss

    tm, to = _time_pair(f_medtut, f_official, repeats, budget_s)

    # value check: medtut's own anchors (same generator) handed to the transcription, intended mean
    gen = torch.Generator().manual_seed(0)
    shared = torch.ones(b, k, dtype=torch.bool)
    shared[:, 0] = False
    idx_a, _ = lc._anchors(y[:b], shared, k, p, gen)
    idx_b, _ = lc._anchors(y[b:], shared, k, p, gen)
    idx = torch.cat([idx_a, idx_b]).view(2 * b, k, p)[:, 1:]                  # foreground classes
    pos_indx = torch.stack([idx // hw, idx % hw], dim=-1).numpy()
    v_med = float(lc.local_contrastive_loss(z[:b], z[b:], y[:b], y[b:], 0.1, p,
                                            generator=torch.Generator().manual_seed(0)))
    v_off = float(ok.lc_loss(z_nhwc, onehot, pos_indx, b, 0.1, 1, "intended"))
    v_bug = float(ok.lc_loss(z_nhwc, onehot, pos_indx, b, 0.1, 1, "official"))
    err = _rel(v_med, v_off)
    # the same on raw embeddings (lengths 0.5-2): medtut averages unit vectors into class means, the
    # official code averages the raw vectors and normalises the mean
    z_raw = z * (0.5 + 1.5 * torch.rand(2 * b, 1, hw, hw, generator=g))
    r_med = float(lc.local_contrastive_loss(z_raw[:b], z_raw[b:], y[:b], y[b:], 0.1, p,
                                            generator=torch.Generator().manual_seed(0)))
    r_off = float(ok.lc_loss(z_raw.permute(0, 2, 3, 1).contiguous(), onehot, pos_indx, b, 0.1, 1, "intended"))
    tol = 1e-5
    return Row("local contrastive", size, f"{b} pairs, {hw}x{hw}, D={d}, {k - 1} fg classes, P={p}", tm, to,
               err <= tol, f"rel. diff {err:.1e} <= {tol:g} on unit-length embeddings, same anchors, official "
               f"normalisation bug off (with it: {v_bug:.4g} vs {v_off:.4g}); on raw embeddings of lengths "
               f"0.5-2: {r_med:.4g} vs {r_off:.4g} (class means of unit vectors vs of raw vectors)")


# -------------------------------------------------------------------------------------------------------
# 2. pixel contrast loss and its hard/easy sampler
# -------------------------------------------------------------------------------------------------------
PC_SIZES = {
    # batch, h, w, D, classes, max_samples, max_views
    "tiny": dict(b=2, h=32, w=32, dim=8, k=3, max_samples=64, max_views=10),
    "chapter": dict(b=8, h=64, w=64, dim=32, k=5, max_samples=1024, max_views=100),
    # Cityscapes, HRNet-W48: 1024x512 crops -> stride-4 embeddings 256x128, D=256, 19 classes;
    # batch 8 over 4 GPUs with --distributed --gathered n, so each process's loss sees 2 images
    "paper": dict(b=2, h=128, w=256, dim=256, k=19, max_samples=1024, max_views=100),
}


def bench_pixel_contrast(size: str, repeats: int, budget_s: float) -> Row:
    s = PC_SIZES[size]
    b, h, w, d, k = s["b"], s["h"], s["w"], s["dim"], s["k"]
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(b, d, h, w, generator=g)
    feats = feats / feats.norm(dim=1, keepdim=True)           # the official ProjectionHead normalises
    labels = _block_labels(b, h, w, k, 4 if size == "tiny" else 8, seed=4)
    flip = torch.rand(b, h, w, generator=g) < 0.35             # 35 % of pixels mis-predicted: hard anchors
    preds = torch.where(flip, (labels + torch.randint(1, k, (b, h, w), generator=g)) % k, labels)
    kw = dict(temperature=0.1, base_temperature=0.07, max_samples=s["max_samples"], max_views=s["max_views"])

    def f_medtut():
        f = feats.clone().requires_grad_(True)
        loss = pc.pixel_contrast_loss(f, labels, preds, generator=torch.Generator().manual_seed(0), **kw)
        loss.backward()
        return loss

    def f_official():
        f = feats.clone().requires_grad_(True)
        loss = ok.pc_loss(f, labels, preds, generator=torch.Generator().manual_seed(0), **kw)
        loss.backward()
        return loss

    tm, to = _time_pair(f_medtut, f_official, repeats, budget_s)
    v_med, v_off = float(f_medtut().detach()), float(f_official().detach())
    err = _rel(v_med, v_off)
    tol = 1e-5
    return Row("pixel contrast", size, f"B={b}, {h}x{w}, D={d}, {k} classes, max_samples {s['max_samples']}",
               tm, to, err <= tol, f"rel. diff {err:.1e} <= {tol:g} (same generator: the same anchors are drawn)")


# -------------------------------------------------------------------------------------------------------
# 3. PSD scoring of an untrained network
# -------------------------------------------------------------------------------------------------------
PSD_SIZES = {
    # channels, image side, random outputs scored per call (the pool)
    "tiny": dict(c=1, hw=32, pool=2),
    "chapter": dict(c=1, hw=64, pool=8),
    "paper": dict(c=3, hw=512, pool=4),      # ISNAS-DIP: 512x512 colour images (pool: 5000 models there)
}


def _psd_inputs(s: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """The observed image (C, H, W) float32 (a smooth pattern + σ = 25/255 noise) and ``pool`` untrained
    outputs (1, C, H, W) float32 of medtut's search space (computed here, not timed)."""
    c, hw, pool = s["c"], s["hw"], s["pool"]
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:hw, 0:hw] / hw
    clean = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy) * np.cos(4 * yy)
    noisy = np.clip(np.repeat(clean[None], c, 0) + 25 / 255 * rng.standard_normal((c, hw, hw)), 0, 1)
    outs = []
    for i, name in enumerate(dip_nas.sample_architectures(pool, seed=6)):
        out = dip_nas._untrained_output(name, (c, hw, hw), seed=i, in_channels=8, width=8, device="cpu")
        outs.append(out.detach().numpy().astype(np.float32))
    return noisy.astype(np.float32), outs


def bench_psd_scoring(size: str, repeats: int, budget_s: float) -> Row:
    s = PSD_SIZES[size]
    c, hw, pool = s["c"], s["hw"], s["pool"]
    noisy, outs = _psd_inputs(s)
    maps = ok.IsnasMaps((hw, hw))              # built once per image size, as random_search.py does

    def f_medtut():
        return _pooled_scores(noisy, outs)

    def f_official():
        cache = ok.IsnasCache()
        cache.register(noisy)                  # the observed image is registered once for the whole pool
        return [ok.isnas_scores(noisy, o, maps, cache) for o in outs]

    tm, to = _time_pair(f_medtut, f_official, repeats, budget_s)
    ln10_sq = np.log(10) ** 2                  # official dB use ln: its MSEs are (ln 10)^2 times medtut's
    maps_floor = ok.IsnasMaps((hw, hw), db_floor=1e-12)

    def official_with(m):
        cache = ok.IsnasCache()
        cache.register(noisy)
        return [ok.isnas_scores(noisy, o, m, cache) for o in outs]

    err_floor, err_raw = 0.0, 0.0
    for (m_all, m_strip, m_bw), off, off_floor in zip(f_medtut(), official_with(maps), official_with(maps_floor)):
        for m, key in ((m_all * ln10_sq, "psd db mse"), (m_strip * ln10_sq, "psd db strip mse"),
                       (m_bw, "psd 99_per_bw")):
            err_floor = max(err_floor, _rel(m, off_floor[key]))
            err_raw = max(err_raw, _rel(m, off[key]))
    tol = 1e-4
    return Row("PSD scoring", size, f"{pool} outputs, {c}x{hw}x{hw}", tm / pool, to / pool, err_floor <= tol,
               f"max rel. diff {err_floor:.1e} <= {tol:g} over the 3 scores when the transcription takes "
               f"medtut's dB floor (10 log(p + 1e-12)); with the official 10 ln(p): {err_raw:.1e} "
               f"(untrained outputs have PSD values near 1e-12); official MSEs divided by (ln 10)^2; "
               f"float32 inputs; deterministic")


# -------------------------------------------------------------------------------------------------------
# 4. AUC constraint terms (ALM)
# -------------------------------------------------------------------------------------------------------
ALM_SIZES = {
    # training negatives, positives, batch size
    "tiny": dict(neg=120, pos=8, batch=32),
    "chapter": dict(neg=1000, pos=33, batch=64),     # sklearn digits, digit 3 vs rest, 1:30
    "paper": dict(neg=4410, pos=44, batch=64),       # CIFAR-10 automobile vs truck, 1:100
}


def bench_alm(size: str, repeats: int, budget_s: float) -> Row:
    s = ALM_SIZES[size]
    n = s["neg"] + s["pos"]
    rng = np.random.default_rng(7)
    targets = torch.zeros(n)
    targets[rng.choice(n, s["pos"], replace=False)] = 1
    logits0 = torch.from_numpy(rng.normal(size=(n, 1)).astype(np.float32)) + 0.8 * targets[:, None]
    order = rng.permutation(n)
    lam0 = np.where(targets.numpy() == 1, rng.uniform(0, 1, n), 0.0)
    mu, delta, batch = 0.02, 1.0, s["batch"]

    def f_medtut():
        logits = logits0.clone().requires_grad_(True)
        alm = auc_alm.AugmentedLagrangian(n, delta=delta, mu0=mu)
        alm.lambdas = torch.from_numpy(lam0.copy())
        total = 0.0
        for start in range(0, n, batch):
            idx = torch.from_numpy(order[start:start + batch])
            term, _ = alm.penalty(logits[idx], targets[idx], idx)
            term.backward()
            total += float(term.detach())
        return alm.lambdas.numpy(), total, logits.grad

    def f_official():
        logits = logits0.clone().requires_grad_(True)
        return ok.alm_epoch(logits, targets, order, batch, delta, mu, lam0.copy())

    tm, to = _time_pair(f_medtut, f_official, repeats, budget_s)
    (lm, tot_m, gm), (lo, tot_o, go) = f_medtut(), f_official()
    err = max(_rel(tot_m, tot_o), float(np.max(np.abs(lm - lo)) / max(np.max(np.abs(lo)), 1e-30)),
              float((gm - go).abs().max() / go.abs().max().clamp(min=1e-30)))
    tol = 1e-5
    return Row("AUC constraint (ALM)", size, f"{n} samples ({s['pos']} positive), batch {batch}", tm, to,
               err <= tol, f"max rel. diff {err:.1e} <= {tol:g} over the epoch's terms, multipliers and "
               "logit gradients (deterministic)")


# -------------------------------------------------------------------------------------------------------
# 5. one MALA step on the MR latent posterior
# -------------------------------------------------------------------------------------------------------
MALA_SIZES = {
    # image side, latent channels, downsamplings, decoder width, chains, timed steps, medtut's step size ε
    # (chosen so that some proposals are rejected: the value check then exercises the MH test)
    "tiny": dict(hw=16, lat=4, n_down=2, width=4, chains=2, steps=4, eps=0.1),
    "chapter": dict(hw=32, lat=8, n_down=3, width=8, chains=8, steps=3, eps=0.1),
    # the paper: 252x308 images, an 18x22x60 latent, one chain; here 256x256, 16x16x60, a width-16
    # decoder of medtut's family (the paper's decoder runs six 60-channel convolutions at full resolution)
    "paper": dict(hw=256, lat=60, n_down=4, width=16, chains=1, steps=2, eps=0.005),
}


def _mala_problem(s: dict, dtype=torch.float32):
    with torch.random.fork_rng(devices=[]):  # decoder weights from seed 0, caller's RNG state untouched
        torch.manual_seed(0)
        vae = mr.SpatialVAE(image_size=s["hw"], latent_channels=s["lat"], n_down=s["n_down"], width=s["width"])
    with torch.no_grad():
        vae.decoder[-1].bias += 0.5          # μ_θ(z) > 0: the official CG takes |μ| as its right-hand side
    vae = vae.to(dtype).eval()
    g = torch.Generator().manual_seed(8)
    z_true = 0.5 * torch.randn(1, *vae.latent_shape, generator=g, dtype=dtype)
    mask = mr.cartesian_mask((s["hw"], s["hw"]), acceleration=4, seed=9)
    sigma = 0.01
    x = vae.decode(z_true)[:, 0].detach()
    y = mr.add_complex_noise(mr.forward_op(x.to(torch.complex64), mask), sigma, mask, generator=g)[0]  # (1,H,W)
    z0 = z_true + 0.3 * torch.randn(s["chains"], *vae.latent_shape, generator=g, dtype=dtype)
    return vae, y, mask, sigma, z0, x


def bench_mala(size: str, repeats: int, budget_s: float) -> Row:
    s = MALA_SIZES[size]
    vae, y, mask, sigma, z0, x = _mala_problem(s)
    log_prob = mr.latent_log_posterior(vae, y, mask, noise_std=sigma)
    post = ok.TezcanPosterior(vae.decode, official_kspace(y), mask, noise_precision=1 / sigma ** 2,
                              model_precision=vae.decoder_precision, numinversioniters=20)
    eps = s["eps"]                            # medtut's ε; the official "step" is ε·scl
    steps = s["steps"]

    def f_medtut():
        return mr.mala(log_prob, z0, num_steps=steps, step_size=eps, burn_in=0, adapt=False,
                       generator=torch.Generator().manual_seed(0))

    def f_official():
        return ok.tezcan_mala_steps(post, z0, steps, step=eps * post.scl, generator=torch.Generator().manual_seed(0),
                                    estimate_scale=True, mh="official")

    tm, to = _time_pair(f_medtut, f_official, max(min(3, repeats), repeats // 3), budget_s)
    # value check: the same noise and uniforms, scale factor fixed to 1, textbook MH in the transcription,
    # which runs in float64 here: its completed-square likelihood subtracts terms of ~1e5-1e6 nats, so in
    # float32 its log-density differences carry errors of tenths of a nat at the paper's size (see d_lp32)
    res = f_medtut()
    vae64 = copy.deepcopy(vae).double()
    post64 = ok.TezcanPosterior(lambda zz: vae64.decode(zz.double()), official_kspace(y).to(torch.complex128), mask,
                                noise_precision=1 / sigma ** 2, model_precision=vae.decoder_precision,
                                numinversioniters=20)
    z_off, acc_off = ok.tezcan_mala_steps(post64, z0.double(), steps, step=eps * post.scl,
                                          generator=torch.Generator().manual_seed(0), estimate_scale=False,
                                          mh="textbook", draw_dtype=z0.dtype)
    z_off = z_off.to(z0.dtype)
    z_med = res.samples[:, -1]
    acc_med = round(res.acceptance_rate * steps * s["chains"])
    err = float((z_med - z_off).abs().max() / z_off.abs().max())
    # and the gradient of log π at the start (independent of the accept decisions): official ∇U · scl,
    # plus the float32 error of the official log-density difference between z0 and a nearby point
    post.sclfactor = 1.0
    lp_a, g_med = mr._value_and_grad(log_prob, z0[:1])
    _, g_up, _ = post.evaluate(z0[:1])
    g_off = post.scl * g_up - z0[:1]
    err_g = float((g_med - g_off).abs().max() / g_off.abs().max())
    z_b = z0[:1] + 0.01 * torch.randn(z0[:1].shape, generator=torch.Generator().manual_seed(1))
    d32 = post.evaluate(z_b)[0] - post.evaluate(z0[:1])[0]
    d64 = post64.evaluate(z_b.double())[0] - post64.evaluate(z0[:1].double())[0]
    d_lp32 = post.scl * abs(d32 - d64)                       # nats
    tol, tol_g = 1e-4, 1e-3
    agree = err <= tol and acc_med == acc_off and err_g <= tol_g
    return Row("MALA step", size, f"{s['chains']} chain(s), {s['hw']}x{s['hw']} image, latent "
               f"{'x'.join(map(str, vae.latent_shape))}", tm / steps, to / steps, agree,
               f"chains after {steps} steps: max rel. diff {err:.1e} <= {tol:g}, accepted {acc_med} vs {acc_off} "
               f"(same noise and uniforms; official scale re-estimate off and textbook MH for this check); "
               f"gradient of log p(z|y) at the start: max rel. diff {err_g:.1e} <= {tol_g:g}; the transcription "
               f"runs in float64 for this check: in float32 its log-likelihood difference is off by {d_lp32:.2g} nats")


def official_kspace(y_medtut: torch.Tensor) -> torch.Tensor:
    """medtut's centred k-space (1, H, W) → the official convention (fft2/√N then a roll by N/2, no
    shift in image space). The two differ by a unimodular diagonal in k-space, so the mask is kept."""
    img = mr.ifft2c(y_medtut[0])
    h, w = img.shape
    return torch.roll(torch.fft.fft2(img), (h // 2, w // 2), dims=(-2, -1)) / (h * w) ** 0.5


# -------------------------------------------------------------------------------------------------------
# medtut's pooled PSD scorer against its one-function-per-metric reference
# -------------------------------------------------------------------------------------------------------
PSD_KEYS = ("psd db mse", "strip mse", "bandwidth 99%")


def _pooled_scores(noisy: np.ndarray, outs: list[np.ndarray]) -> list[tuple[float, float, float]]:
    """The three scores of every output through :func:`medtut.dip_nas.psd_scores` (what
    ``score_architecture`` uses): the corrupted image's spectrum, the strip and the disc index once per
    pool, each output's PSD once, the 99 % bandwidth from one cumulative radial sum."""
    return [tuple(d[k] for k in PSD_KEYS) for d in dip_nas.psd_scores(noisy, [o[0] for o in outs], PSD_KEYS)]


def _per_metric_scores(noisy: np.ndarray, outs: list[np.ndarray]) -> list[tuple[float, float, float]]:
    """The same scores through the one-function-per-metric reference (``psd_db_mse``, ``strip_mse``,
    ``bandwidth_99``: each recomputes both spectra; the bandwidth sums 100 masked discs)."""
    return [(dip_nas.psd_db_mse(noisy, o[0]), dip_nas.strip_mse(noisy, o[0]), dip_nas.bandwidth_99(o[0]))
            for o in outs]


def bench_psd_proposal(size: str, repeats: int, budget_s: float) -> dict:
    """ms per output of medtut's per-metric reference functions and of its pooled scorer
    :func:`medtut.dip_nas.psd_scores`, and their largest relative difference (must be round-off)."""
    s = PSD_SIZES[size]
    noisy, outs = _psd_inputs(s)
    tm, tn = _time_pair(lambda: _per_metric_scores(noisy, outs), lambda: _pooled_scores(noisy, outs),
                        repeats, budget_s)
    err = max(_rel(a, b) for ra, rb in zip(_per_metric_scores(noisy, outs), _pooled_scores(noisy, outs))
              for a, b in zip(ra, rb))
    return {"size": size, "per_metric_ms": tm / s["pool"], "pooled_ms": tn / s["pool"], "max_rel_diff": err}


BENCHES = {
    "local contrastive": bench_local_contrastive,
    "pixel contrast": bench_pixel_contrast,
    "PSD scoring": bench_psd_scoring,
    "AUC constraint (ALM)": bench_alm,
    "MALA step": bench_mala,
}

REDUCED = {
    ("pixel contrast", "paper"): "per-process batch (2 of 8)",
    ("PSD scoring", "paper"): "4 of 5000 models per pool",
    ("MALA step", "paper"): "256x256, 16x16x60 latent, width-16 decoder",
}


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = [f"{x:.2f}" for x in os.getloadavg()]
    return {"cpu": cpu, "logical cores": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "load (1/5/15 min)": " ".join(load),
            "python": platform.python_version(), "gpu": "none (CPU only)"}


def run(sizes=("chapter", "paper"), kernels=tuple(BENCHES), repeats: int = 7, budget_s: float = 8.0,
        progress: bool = False) -> list[Row]:
    rows = []
    for kernel in kernels:
        for size in sizes:
            t0 = time.perf_counter()
            row = BENCHES[kernel](size, repeats, budget_s)
            row.reduced = REDUCED.get((kernel, size), "")
            rows.append(row)
            if progress:
                print(f"  {kernel} / {size}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[Row]) -> str:
    lines = ["| kernel | size | inputs | medtut ms | official-algorithm ms | ratio (official / medtut) | "
             "values agree | check |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = r.size + (f" (reduced: {r.reduced})" if r.reduced else "")
        lines.append(f"| {r.kernel} | {size} | {r.shape} | {r.medtut_ms:.3g} | {r.official_ms:.3g} | "
                     f"{r.ratio:.2f} | {'yes' if r.agree else 'NO'} | {r.check} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["chapter", "paper"], choices=["tiny", "chapter", "paper"])
    ap.add_argument("--kernels", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timing per row, at least 3 pairs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    before = machine_info()
    t0 = time.perf_counter()
    rows = run(args.sizes, args.kernels, args.repeats, args.budget, progress=True)
    wall = time.perf_counter() - t0
    after = machine_info()
    print(format_table(rows))
    print()
    for k, v in before.items():
        if k != "load (1/5/15 min)":
            print(f"- {k}: {v}")
    print(f"- load (1/5/15 min) before: {before['load (1/5/15 min)']}, after: {after['load (1/5/15 min)']}")
    print(f"- whole benchmark: {wall:.0f} s wall")
    for kernel, note in KERNEL_NOTES.items():
        if kernel in args.kernels:
            print(f"- {kernel}: {note}")
    if "PSD scoring" in args.kernels:
        print()
        print("PSD scoring inside medtut: per-metric reference functions vs the pooled scorer "
              "medtut.dip_nas.psd_scores (used by score_architecture), ms per output:")
        print("| size | per-metric functions ms | psd_scores ms | speed-up | max rel. diff |")
        print("|---|---|---|---|---|")
        for size in args.sizes:
            p = bench_psd_proposal(size, args.repeats, args.budget)
            print(f"| {size} | {p['per_metric_ms']:.3g} | {p['pooled_ms']:.3g} | "
                  f"{p['per_metric_ms'] / p['pooled_ms']:.1f} | {p['max_rel_diff']:.1e} |")
    return 0 if all(r.agree for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
