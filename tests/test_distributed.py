"""medtut.train.fit under torchrun: two CPU processes (gloo) against one process over the same global batch.

One torchrun launch (module fixture) runs every distributed scenario of WORKER and saves what each rank
ends with; the tests compare those files with single-process runs made here. Bad launches are checked
without torchrun: the environment is what torchrun would set, minus what the test breaks.
"""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from medtut import distributed
from medtut.train import fit

PROBLEM = textwrap.dedent('''
    import torch

    def problem(batch_size, loose=True, twice=False):
        """Regression with a small MLP; ``scale`` is an optimised parameter outside the model; with ``twice``
        the step calls the model twice (as contrastive methods do with two views)."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(32, generator=g)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        scale = torch.nn.Parameter(torch.ones(()), requires_grad=loose)
        opt = torch.optim.SGD(list(net.parameters()) + [scale] * loose, lr=0.1, momentum=0.9)

        def step(batch):
            out = (net(batch[0]) + net(0.5 * batch[0])) / 2 if twice else net(batch[0])
            return {"loss": ((scale * out.squeeze(-1) - batch[1]) ** 2).mean()}

        def evaluate():
            with torch.no_grad():
                return {"val": float(((scale * net(x).squeeze(-1) - y) ** 2).mean())}
        return net, scale, opt, loader, step, evaluate
''')

WORKER = PROBLEM + textwrap.dedent('''
    import sys
    from pathlib import Path
    from medtut import distributed
    from medtut.train import fit

    out = Path(sys.argv[1])
    rank = distributed.detect().rank

    def save(name, net, scale, hist):
        torch.save({"params": [p.detach() for p in net.parameters()] + [scale.detach()],
                    "records": hist.records, "world_size": distributed.world_size()},
                   out / f"{name}_rank{rank}.pt")

    # 1. a DataLoader, batch 4 per process, evaluation every 3 steps, a checkpoint path per rank
    net, scale, opt, loader, step, evaluate = problem(4)
    hist = fit(step, opt, data=loader, num_steps=6, eval_fn=evaluate, eval_every=3, models=net,
               progress=False, checkpoint=out / f"ckpt_rank{rank}.pt", checkpoint_every=2)
    save("loader", net, scale, hist)
    # 2. a list of batches, by epochs, evaluated on rank 0 only (the same fit, later in the process)
    net, scale, opt, loader, step, evaluate = problem(4)
    hist = fit(step, opt, data=list(loader), num_epochs=1, eval_fn=evaluate, eval_on="main", models=net,
               progress=False)
    save("list", net, scale, hist)
    # 3. resume a single-process checkpoint (step 3 of 6, batch 8) on two processes
    net, scale, opt, loader, step, evaluate = problem(4, loose=False)
    hist = fit(step, opt, data=loader, num_steps=6, models=net, progress=False, checkpoint=out / "plain.pt")
    save("resumed", net, scale, hist)
    # 4. a step that calls the model twice
    net, scale, opt, loader, step, evaluate = problem(4, twice=True)
    hist = fit(step, opt, data=loader, num_steps=6, models=net, progress=False)
    save("twice", net, scale, hist)
    # 5. a step that calls the model's layers one by one bypasses DistributedDataParallel
    net, scale, opt, loader, step, evaluate = problem(4, loose=False)
    try:
        fit(lambda b: ((net[2](net[1](net[0](b[0]))).squeeze(-1) - b[1]) ** 2).mean(), opt, data=loader,
            num_steps=3, models=net, progress=False)
    except RuntimeError as error:
        (out / f"bypass_rank{rank}.txt").write_text(str(error))
''')

namespace: dict = {}
exec(PROBLEM, namespace)
problem = namespace["problem"]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    net, _, opt, loader, step, _ = problem(8, loose=False)
    fit(step, opt, data=loader, num_steps=3, models=net, progress=False, checkpoint=out / "plain.pt")
    (out / "worker.py").write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(out / "worker.py"), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def _ranks(out, name):
    return [torch.load(out / f"{name}_rank{r}.pt") for r in (0, 1)]


def _reference(name):
    """The single-process run over the same global batch (8 = 2 processes x 4)."""
    net, scale, opt, loader, step, evaluate = problem(8, loose=name != "resumed", twice=name == "twice")
    if name == "loader":
        hist = fit(step, opt, data=loader, num_steps=6, eval_fn=evaluate, eval_every=3, models=net, progress=False)
    elif name == "list":
        hist = fit(step, opt, data=list(loader), num_epochs=1, eval_fn=evaluate, models=net, progress=False)
    else:
        hist = fit(step, opt, data=loader, num_steps=6, models=net, progress=False)
    return [p.detach() for p in net.parameters()] + [scale.detach()], hist


@pytest.mark.parametrize("name", ["loader", "list", "resumed", "twice"])
def test_two_processes_equal_one_process_over_the_global_batch(launched, name):
    rank0, rank1 = _ranks(launched, name)
    assert rank0["world_size"] == rank1["world_size"] == 2
    for a, b in zip(rank0["params"], rank1["params"]):
        assert torch.equal(a, b)                     # DDP keeps the replicas identical, bit for bit
    params, hist = _reference(name)
    for a, ref in zip(rank0["params"], params):
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-6)
    # the logged metrics are means over the processes: the same history on both, equal to the reference
    assert rank0["records"] == rank1["records"]
    assert [r["step"] for r in rank0["records"]] == [r["step"] for r in hist.records]
    for key in hist.keys():
        torch.testing.assert_close(torch.tensor([r[key] for r in rank0["records"] if key in r], dtype=torch.float64),
                                   torch.tensor(hist[key]), rtol=1e-5, atol=1e-6)


def test_an_epoch_has_one_step_per_global_batch(launched):
    rank0, _ = _ranks(launched, "list")
    assert [r["step"] for r in rank0["records"]] == [1, 2, 3, 4]    # 8 batches of 4 shared by 2 processes
    assert "val" in rank0["records"][-1]                           # rank 0's evaluation, sent to rank 1


def test_only_rank_0_writes_the_checkpoint_and_it_resumes_on_one_process(launched, tmp_path):
    assert (launched / "ckpt_rank0.pt").exists()
    assert not (launched / "ckpt_rank1.pt").exists()
    state = torch.load(launched / "ckpt_rank0.pt", weights_only=False)
    assert state["step"] == 6 and set(state["models"]) == {"model"}
    assert all(not k.startswith("module.") for k in state["models"]["model"])     # plain weights, no DDP prefix
    # a plain launch continues the two-process checkpoint with batches of 8
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes((launched / "ckpt_rank0.pt").read_bytes())
    net, _, opt, loader, step, _ = problem(8)
    hist = fit(step, opt, data=loader, num_steps=8, models=net, progress=False, checkpoint=ckpt)
    assert hist.steps("loss").tolist() == list(range(1, 9))
    assert hist.records[:6] == state["history"]             # steps 1-6 restored, 7-8 trained here


def test_a_step_that_bypasses_the_model_is_caught(launched):
    for r in (0, 1):
        message = (launched / f"bypass_rank{r}.txt").read_text()
        assert "weights diverged" in message and "fit(models=...)" in message


def test_a_plain_launch_is_not_a_torchrun_launch(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.detect() is None
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")    # some clusters export these for every job
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distributed.detect() is None and distributed.world_size() == 1 and distributed.is_main()


@pytest.mark.parametrize("env, message", [
    (dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0"), "incomplete torchrun launch: .* MASTER_ADDR, MASTER_PORT missing"),
    (dict(RANK="2", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1"),
     "world size mismatch: RANK=2 but WORLD_SIZE=2"),
    (dict(RANK="0", WORLD_SIZE="two", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1"),
     "WORLD_SIZE must be an integer"),
])
def test_a_bad_launch_fails_with_a_clear_message(monkeypatch, env, message):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        fit(lambda i: (w ** 2).sum(), torch.optim.SGD([w], lr=0.1), num_steps=1, progress=False)


def test_a_missing_process_fails_the_rendezvous_with_a_clear_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from medtut import distributed\nwith distributed.session(timeout_s=3):\n    pass\n"
    env = _clean_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "did not gather WORLD_SIZE=2 processes within 3 s" in proc.stderr, proc.stderr[-2000:]


def test_shard_splits_loaders_and_lists_and_reseeds_each_epoch():
    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    plain = torch.utils.data.DataLoader(data, batch_size=2)
    shuffled = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True)
    seen = []
    for r in (0, 1):
        launch = distributed.Launch(r, 2, r, "127.0.0.1", 1)
        part, ok = distributed.shard(plain, launch, seed=0)
        assert ok and len(part) == 3
        assert torch.cat([b[0] for b in part]).tolist() == [float(i) for i in range(r, 10, 2)]
        part, ok = distributed.shard(shuffled, launch, seed=5)
        distributed.set_epoch(part, 0)
        first = torch.cat([b[0] for b in part]).tolist()
        distributed.set_epoch(part, 1)
        assert torch.cat([b[0] for b in part]).tolist() != first        # a new shuffle each epoch
        seen += first
        # 5 batches for 2 ranks: 3 each, the last round wrapping around to the first batch
        part, ok = distributed.shard(list(plain), launch, seed=0)
        assert ok and [b[0][0].item() for b in part] == [[0.0, 4.0, 8.0], [2.0, 6.0, 0.0]][r]
        assert distributed.shard(None, launch, seed=0) == (None, False)
        stream = iter(list(plain))
        assert distributed.shard(stream, launch, seed=0) == (stream, False)        # no length: not split
    assert sorted(seen) == [float(i) for i in range(10)]                   # the ranks share out the data
