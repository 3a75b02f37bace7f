"""The conventions every chapter follows (CONTRIBUTING.md), checked on every chapter's public trainers.

1. Randomness: library code draws from local generators; calling it leaves torch's, NumPy's and Python's
   global random state exactly as it was, so a notebook's next draw does not depend on which library
   functions ran before it.
2. Device: every function that builds or trains a model takes ``device``; ``None`` means
   :func:`medtut.get_device`, anything else goes through :func:`medtut.resolve_device`.
3. Trainers return ``(model, result)`` with ``result`` a :class:`medtut.train.TrainResult`.
"""
import random

import numpy as np
import pytest
import torch

import medtut
from medtut import auc_alm, dip_nas, gradient_flow, local_contrastive, mr_sampling
from medtut.train import TrainResult


def _tiny_digits():
    from medtut.data.imbalanced import make_imbalanced_digits
    return make_imbalanced_digits(3, ratio=30, seed=0)


def _tiny_split():
    from medtut.data.cardiac import make_cardiac_dataset
    x, y = make_cardiac_dataset(6, size=32, n_slices=4, seed=0)
    return local_contrastive.make_split(x, y, n_labelled=1, n_val=1, n_test=1, draw=0)


def _tiny_problem():
    from medtut.data.dip_images import load_test_image, make_problem
    return make_problem(load_test_image("camera", 16), "denoise", seed=0)


def _digits_pixels():
    g = torch.Generator().manual_seed(0)
    return torch.rand(20, 8, generator=g), torch.rand(6, 8, generator=g)


def _model(make):
    # the caller builds the model: seeded here without touching the global state, so the tests below see
    # only what the trainer itself does
    with medtut.config.isolated_rng(0):
        return make()


def _train_auc(device=None):
    d = _tiny_digits()
    return auc_alm.train_binary_classifier(_model(auc_alm.TinyCNN), d.X_train[:120], d.y_train[:120].clone().index_fill_(
        0, torch.tensor([0]), 1), num_epochs=1, seed=0, device=device)


def _train_gfe(device=None):
    xtr, xte = _digits_pixels()
    return gradient_flow.data_efficiency_curve("GFE", xtr, xte, [10], latent_dim=2, hidden=(4,), seed=0,
                                               train_flow={"max_evals": 3}, test_flow={"max_evals": 3},
                                               progress=False, device=device)


def _train_lc(device=None):
    net = _model(lambda: local_contrastive.UNetWithProjection(features=(4, 8, 16)))
    cfg = local_contrastive.Config("local contrastive", num_steps=2, batch_labelled=2, batch_unlabelled=2,
                                   n_same=1, eval_every=2)
    return local_contrastive.train_semi_supervised(net, _tiny_split(), cfg, progress=False, device=device)


def _train_baseline(device=None):
    net = _model(lambda: local_contrastive.UNetWithProjection(features=(4, 8, 16)))
    return local_contrastive.train_baseline(net, _tiny_split(), num_steps=2, batch_size=2, eval_every=2,
                                            progress=False, device=device)


def _train_vae(device=None):
    from medtut.data.brain_phantoms import make_head_phantoms
    return mr_sampling.train_vae(make_head_phantoms(8, 16, seed=0), num_steps=3, batch_size=4, latent_channels=2,
                                 n_down=2, width=4, progress=False, device=device)


TRAINERS = {"auc_alm.train_binary_classifier": _train_auc, "gradient_flow.data_efficiency_curve": _train_gfe,
            "local_contrastive.train_semi_supervised": _train_lc, "local_contrastive.train_baseline": _train_baseline,
            "mr_sampling.train_vae": _train_vae}


def _sample_mr():
    vae, _ = _train_vae()
    mask = mr_sampling.cartesian_mask((16, 16), 4, center_lines=2, seed=0)
    y = mr_sampling.forward_op(torch.rand(16, 16, generator=torch.Generator().manual_seed(0)).to(torch.complex64), mask)
    before = _global_state()
    mr_sampling.sample_reconstructions(y, mask, vae, noise_std=0.01, num_chains=2, num_steps=6, burn_in=2, thin=2)
    return before


def _fit_dip():
    problem = _tiny_problem()
    before = _global_state()
    dip_nas.fit_dip(dip_nas.default_dip_arch(2), problem, 2, width=4, seed=0, device="cpu")
    dip_nas.score_architecture(dip_nas.default_dip_arch(2), problem, num_inits=1, width=4, device="cpu")
    return before


def _global_state():
    return (torch.random.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())


def _same(a, b):
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trainers_leave_the_global_random_state_alone(name):
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    before = _global_state()
    TRAINERS[name]()
    assert _same(before, _global_state()), f"{name} changed the global random state"


@pytest.mark.parametrize("run", [_sample_mr, _fit_dip], ids=["mr_sampling.sample_reconstructions", "dip_nas.fit_dip"])
def test_samplers_and_searches_leave_the_global_random_state_alone(run):
    before = run()
    assert _same(before, _global_state())


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trainers_return_model_and_result_and_are_seeded(name):
    model, result = TRAINERS[name]()
    assert isinstance(result, TrainResult) and result.wall_time_s > 0 and len(result.history) > 0
    assert not hasattr(model, "training_info") and not hasattr(result.history, "models")
    torch.manual_seed(999)                   # a different global state: the result must not depend on it
    model2, result2 = TRAINERS[name]()
    assert np.array_equal(result.history["loss"], result2.history["loss"])


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trainers_honour_the_device_rule(name, monkeypatch):
    calls = []
    real = medtut.config.get_device

    def spy():
        calls.append(1)
        return real()

    monkeypatch.setattr(medtut.config, "get_device", spy)
    model, _ = TRAINERS[name](None)
    assert calls, f"{name}(device=None) did not ask medtut.get_device()"
    params = model.values() if isinstance(model, dict) else [model]
    assert all(p.device.type == real().type for m in params for p in m.parameters())
    calls.clear()
    TRAINERS[name]("cpu")
    assert not calls
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            TRAINERS[name]("cuda")
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device name"):
        TRAINERS[name]("gpu")


def test_resolve_device_messages():
    assert medtut.resolve_device("cpu") == torch.device("cpu")
    assert medtut.resolve_device(None) == medtut.get_device()
    with pytest.raises(ValueError, match="device must name a torch device .*got 'tpu-ish'"):
        medtut.resolve_device("tpu-ish")
    with pytest.raises(ValueError, match="device must be None, a string .* got int"):
        medtut.resolve_device(0)
    if not getattr(torch.backends, "mps", None) or not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="'mps' asked for, but Apple's MPS backend is not available"):
            medtut.resolve_device("mps")


def test_isolated_rng_restores_the_callers_state():
    torch.manual_seed(5)
    before = torch.random.get_rng_state().clone()
    with medtut.config.isolated_rng(7):
        inside = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    with medtut.config.isolated_rng(7):
        assert torch.equal(torch.rand(3), inside)
    with pytest.raises(ValueError, match="seed must be a non-negative int; got -1"):
        with medtut.config.isolated_rng(-1):
            pass


def test_no_library_module_seeds_globally():
    """Only notebooks seed globally: no medtut module calls seed_everything or reseeds a global generator."""
    import re
    from pathlib import Path

    root = Path(medtut.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "config.py":
            continue
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines, 1):
            code = line.split("#")[0]
            if re.search(r"seed_everything\(|(?<!\.)\btorch\.manual_seed\(|np\.random\.seed\(|\brandom\.seed\(", code):
                # allowed right inside `with torch.random.fork_rng(...)` (the caller's state is restored)
                if not any("fork_rng(" in above for above in lines[max(0, n - 3):n - 1]):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_data_modules_import_no_chapter_module():
    """Dependencies point one way: medtut.data never imports a chapter module."""
    import re
    from pathlib import Path

    chapters = {"local_contrastive", "dip_nas", "gradient_flow", "auc_alm", "mr_sampling", "pixel_contrast",
                "mem3d", "cell_profiling", "hsi_sr", "shape_recon"}
    data_dir = Path(medtut.__file__).parent / "data"
    bad = []
    for path in data_dir.glob("*.py"):
        for m in re.finditer(r"from\s+(?:\.\.|medtut\.)(\w+)\s+import|import\s+medtut\.(\w+)", path.read_text()):
            name = m.group(1) or m.group(2)
            if name in chapters:
                bad.append(f"{path.name} imports {name}")
    assert not bad, bad
