"""medtut.train.fit: learning, evaluation, history, checkpoint/resume, errors."""
import numpy as np
import pytest
import torch

import medtut
from medtut.train import History, fit


def _problem(seed=0):
    medtut.seed_everything(seed)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.05 * torch.randn(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    def step(batch):
        xb, yb = batch
        # a random augmentation inside the step checks that resuming restores the random state too
        noise = 0.01 * torch.randn_like(xb)
        return {"loss": ((net(xb + noise).squeeze(-1) - yb) ** 2).mean(), "draw": torch.rand(())}

    def evaluate():
        with torch.no_grad():
            return {"val_mse": float(((net(x).squeeze(-1) - y) ** 2).mean())}

    return net, opt, loader, step, evaluate


def test_loss_decreases_and_eval_is_logged():
    net, opt, loader, step, evaluate = _problem()
    hist = fit(step, opt, data=loader, num_epochs=6, eval_fn=evaluate, eval_every=10, models=net,
               progress=False)
    assert len(hist["loss"]) == 6 * len(loader)
    assert hist["loss"][-8:].mean() < 0.1 * hist["loss"][:8].mean()
    assert list(hist.steps("val_mse")) == [10, 20, 30, 40, 48]
    assert hist["val_mse"][-1] < hist["val_mse"][0]
    assert hist.last("val_mse") == hist["val_mse"][-1]


def test_resume_from_checkpoint_repeats_the_uninterrupted_run(tmp_path):
    net, opt, loader, step, _ = _problem()
    full = fit(step, opt, data=loader, num_steps=21, models=net, progress=False)
    ckpt = tmp_path / "run.pt"
    for stop in (13, 21):  # stop mid-epoch at 13 (a "disconnect"), then resume to the end
        net, opt, loader, step, _ = _problem()
        resumed = fit(step, opt, data=loader, num_steps=stop, models=net, progress=False,
                      checkpoint=ckpt, checkpoint_every=5)
    assert len(resumed) == 21
    np.testing.assert_array_equal(resumed["loss"], full["loss"])
    np.testing.assert_array_equal(resumed["draw"], full["draw"])


def test_resume_at_epoch_boundary(tmp_path):
    net, opt, loader, step, _ = _problem()
    full = fit(step, opt, data=loader, num_steps=20, models=net, progress=False)
    ckpt = tmp_path / "run.pt"
    for stop in (16, 20):
        net, opt, loader, step, _ = _problem()
        resumed = fit(step, opt, data=loader, num_steps=stop, models=net, progress=False, checkpoint=ckpt)
    np.testing.assert_array_equal(resumed["loss"], full["loss"])


def test_step_index_when_no_data_and_self_updating_step():
    seen = []

    def step(i):
        seen.append(i)
        return {"loss": float(i)}

    hist = fit(step, None, num_steps=4, progress=False)
    assert seen == [0, 1, 2, 3]
    assert list(hist["loss"]) == [0.0, 1.0, 2.0, 3.0]


def test_bad_arguments_raise_clear_errors():
    net, opt, loader, step, _ = _problem()
    with pytest.raises(ValueError, match="exactly one"):
        fit(step, opt, data=loader, progress=False)
    with pytest.raises(ValueError, match="needs data"):
        fit(step, opt, num_epochs=1, progress=False)
    with pytest.raises(ValueError, match="differentiable"):
        fit(lambda b: {"loss": 1.0}, opt, data=loader, num_steps=1, progress=False)
    with pytest.raises(FloatingPointError, match="nan"):
        fit(lambda b: {"loss": net(b[0]).sum() * float("nan")}, opt, data=loader, num_steps=1, progress=False)
    with pytest.raises(KeyError, match="no metric"):
        History()["loss"]


def test_fit_continues_a_history_with_tags_and_wall_time():
    from medtut.train import History, fit

    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    history = History()
    fit(lambda i: ((w - 1) ** 2).sum(), opt, num_steps=3, progress=False, history=history, tags={"round": 1})
    first = history.wall_time_s
    fit(lambda i: ((w - 1) ** 2).sum(), opt, num_steps=2, progress=False, history=history, tags={"round": 2})
    assert history.steps("loss").tolist() == [1, 2, 3, 4, 5]
    assert history["round"].tolist() == [1, 1, 1, 2, 2]
    assert history.wall_time_s > first > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_steps=2.5), "num_steps must be an int >= 0; got 2.5"),
    (dict(num_steps=-1), "num_steps must be an int >= 0; got -1"),
    (dict(num_steps=3, grad_clip=-1.0), "grad_clip must be a positive number or None; got -1.0"),
    (dict(num_steps=3, checkpoint_every=0), "checkpoint_every must be an int >= 1; got 0"),
    (dict(num_steps=3, eval_every=0), "eval_every must be an int >= 1; got 0"),
    (dict(num_steps=3, num_epochs=1), "give exactly one of num_steps and num_epochs"),
])
def test_fit_rejects_bad_arguments(kwargs, message):
    from medtut.train import fit

    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        fit(lambda i: (w ** 2).sum(), torch.optim.SGD([w], lr=0.1), progress=False, **kwargs)


def test_predict_batches_in_eval_mode_and_restores_the_mode():
    from medtut.train import predict

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    net.train()
    x = torch.randn(10, 3)
    out = predict(net, x, batch_size=3)
    assert out.shape == (10, 4) and net.training
    assert torch.allclose(out, net.eval()(x))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1; got 0"):
        predict(net, x, batch_size=0)


def test_a_plain_launch_never_touches_torch_distributed(monkeypatch):
    """Without torchrun's variables fit runs its single-process loop: no process group, no collective."""
    import torch.distributed as dist

    from medtut import distributed

    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")       # exported by some clusters for every job: not a launch

    def forbidden(*args, **kwargs):
        raise AssertionError("a plain launch called torch.distributed")

    for name in ("init_process_group", "all_reduce", "broadcast", "broadcast_object_list", "barrier"):
        monkeypatch.setattr(dist, name, forbidden)
    net, opt, loader, step, evaluate = _problem()
    hist = fit(step, opt, data=loader, num_epochs=1, eval_fn=evaluate, eval_on="main", models=net, progress=False)
    assert len(hist["loss"]) == len(loader) and not dist.is_initialized()


def test_eval_on_is_checked():
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="eval_on must be 'all' or 'main'; got 'rank0'"):
        fit(lambda i: (w ** 2).sum(), torch.optim.SGD([w], lr=0.1), num_steps=1, eval_on="rank0", progress=False)
