"""medtut.config: device selection, threads, seeding, the quick switch."""
import numpy as np
import pytest
import torch

import medtut
from medtut import config


def test_budget_follows_quick_flag(monkeypatch):
    monkeypatch.setenv("MEDTUT_QUICK", "1")
    assert medtut.is_quick() and medtut.budget(full=1000, quick=10) == 10
    monkeypatch.setenv("MEDTUT_QUICK", "0")
    assert not medtut.is_quick() and medtut.budget(full=1000, quick=10) == 1000
    monkeypatch.delenv("MEDTUT_QUICK")
    assert medtut.budget(full="full", quick="quick") == "full"


def test_quick_flag_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("MEDTUT_QUICK", "yes please")
    with pytest.raises(ValueError, match="MEDTUT_QUICK"):
        medtut.is_quick()


def test_device_override_and_default(monkeypatch):
    monkeypatch.setenv("MEDTUT_DEVICE", "cpu")
    assert medtut.get_device() == torch.device("cpu")
    monkeypatch.delenv("MEDTUT_DEVICE")
    mps = getattr(torch.backends, "mps", None)
    expected = ("cuda" if torch.cuda.is_available()
                else "mps" if mps is not None and mps.is_available() else "cpu")
    assert medtut.get_device().type == expected
    if not torch.cuda.is_available():
        monkeypatch.setenv("MEDTUT_DEVICE", "cuda")
        with pytest.raises(ValueError, match="no CUDA"):
            medtut.get_device()
    monkeypatch.setenv("MEDTUT_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="MEDTUT_DEVICE"):
        medtut.get_device()


def test_thread_count_rules(monkeypatch):
    assert config.default_num_threads(2) == 1
    assert config.default_num_threads(4) == 1
    assert config.default_num_threads(16) == 8
    assert config.default_num_threads(64) == 8
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("MEDTUT_THREADS", "1")
        assert config.configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("MEDTUT_THREADS", "two")
        with pytest.raises(ValueError, match="MEDTUT_THREADS"):
            config.configure_threads()
        with pytest.raises(ValueError, match="the number of threads must be >= 1; got 0"):
            config.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def _train_once(seed):
    medtut.seed_everything(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(32, 4)
    y = torch.randn(32, 1) + np.random.rand() + float(torch.rand(()))
    for _ in range(5):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()], loss.item()


def test_seed_everything_reproduces_training():
    params_a, loss_a = _train_once(3)
    params_b, loss_b = _train_once(3)
    params_c, loss_c = _train_once(4)
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    assert loss_a != loss_c


def test_seed_must_be_non_negative_int():
    with pytest.raises(ValueError, match="seed"):
        medtut.seed_everything(-1)
    with pytest.raises(ValueError, match="seed"):
        medtut.seed_everything(1.5)


def test_describe_environment_keys():
    info = medtut.describe_environment()
    assert {"device", "torch", "threads", "quick"} <= set(info)
