"""Smoke test of the speed benchmark (issue 23): at tiny sizes, every medtut kernel and the transcription of
the official algorithm (``benchmarks/official_kernels.py``) give the same value on the same inputs.

Timing is not asserted (CI machines are shared); ``python benchmarks/speed.py`` produces the table of the
appendix page ``book/appendix/speed.md``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


speed = _load("speed")
ok = _load("official_kernels")


@pytest.mark.parametrize("kernel", list(speed.BENCHES))
def test_medtut_and_official_algorithm_agree_at_tiny_size(kernel):
    row = speed.BENCHES[kernel]("tiny", 1, 0.0)
    assert row.agree, f"{kernel}: {row.check}"
    assert row.medtut_ms > 0 and row.official_ms > 0


def test_benchmark_leaves_the_global_random_state_alone():
    before = torch.random.get_rng_state().clone()
    speed._mala_problem(speed.MALA_SIZES["tiny"])          # draws the decoder's weights from seed 0
    assert torch.equal(before, torch.random.get_rng_state())


def test_official_normalisation_bug_changes_the_local_contrastive_value():
    # the transcription reproduces the official loss normalisation (inside the pair loop) on request;
    # it must differ from the intended mean, which is what medtut computes
    g = torch.Generator().manual_seed(0)
    b, hw, d, k = 3, 12, 4, 3
    z = torch.randn(2 * b, hw, hw, d, generator=g)
    y = speed._block_labels(2 * b, hw, hw, k, 3, seed=1)
    onehot = torch.nn.functional.one_hot(y, k).float()
    pos, _ = ok.lc_sample_anchors(onehot.numpy(), b, k, 3, 3, np.random.RandomState(0))
    intended = float(ok.lc_loss(z, onehot, pos, b, 0.1, 1, "intended"))
    official = float(ok.lc_loss(z, onehot, pos, b, 0.1, 1, "official"))
    assert np.isfinite(intended) and np.isfinite(official)
    assert abs(intended - official) > 0.1 * abs(intended)


def test_official_mh_rule_differs_from_the_textbook_rule():
    # the official MH test scales the proposal term by 1/scl: on the same proposals its decisions differ
    s = dict(speed.MALA_SIZES["tiny"], eps=0.1, steps=3)
    vae, y, mask, sigma, z0, _ = speed._mala_problem(s)
    post = ok.TezcanPosterior(vae.decode, speed.official_kspace(y), mask, 1 / sigma ** 2, vae.decoder_precision, 20)
    runs = {mh: ok.tezcan_mala_steps(post, z0, s["steps"], s["eps"] * post.scl,
                                     generator=torch.Generator().manual_seed(0), estimate_scale=False, mh=mh)
            for mh in ("official", "textbook")}
    assert runs["official"][1] != runs["textbook"][1]


def test_pooled_psd_scores_equal_the_per_metric_functions():
    p = speed.bench_psd_proposal("tiny", 1, 0.0)
    assert p["max_rel_diff"] < 1e-9


def test_transcriptions_reject_bad_options():
    with pytest.raises(ValueError, match="normalisation"):
        ok.lc_loss(torch.zeros(2, 4, 4, 2), torch.zeros(2, 4, 4, 3), np.zeros((2, 2, 1, 2), int), 1, 0.1, 1, "mean")
    with pytest.raises(ValueError, match="mh must be"):
        ok.tezcan_mala_steps(None, torch.zeros(1, 1), 1, 0.1, mh="metropolis")
