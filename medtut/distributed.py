"""Data-parallel training under ``torchrun``: what :func:`medtut.train.fit` does when launched that way.

A plain ``python`` launch never touches this module's collectives: :func:`detect` returns ``None`` and
:func:`medtut.train.fit` runs exactly its single-process loop. Under ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in every process) :func:`fit` asks
:class:`DataParallel` to

1. join the process group (:func:`join`: ``nccl`` on CUDA, ``gloo`` on CPU, one GPU per process), once
   per process: it is left at exit, or at the end of an enclosing :func:`session`;
2. wrap each model given to ``fit(models=...)`` in ``DistributedDataParallel``, so a call of the model
   inside the step function synchronises gradients during ``backward`` (weights start from rank 0's);
   gradients of optimised parameters outside those models are averaged explicitly;
3. shard the data: a ``DataLoader`` gets a ``DistributedSampler`` (re-seeded every epoch with
   ``set_epoch``), a list of batches is dealt out round-robin; each process keeps the loader's batch size,
   so one step consumes ``world_size`` batches (the *effective batch size*);
4. average the logged metrics over the processes, so every rank holds the same history;
5. check at the end that all ranks hold the same weights.

Only rank 0 shows progress, prints and writes checkpoints (see :func:`medtut.train.fit`).

>>> launch = detect()          # None in a plain launch
>>> launch.rank, launch.world_size, launch.is_main
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist

#: the variables torchrun sets in every process it starts (a plain launch sets none of them)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: seconds to wait for every process at the rendezvous before failing with a clear message
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a ``torchrun`` launch (read from the environment by :func:`detect`).

    rank: 0 … world_size-1 over all machines; local_rank: index on this machine (its GPU);
    master_addr, master_port: the rendezvous endpoint every process connects to.
    """
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, prints and writes files."""
        return self.rank == 0


def _int_variable(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer (set by torchrun); got {value!r}") from None


def detect(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` described by torchrun's environment variables, or ``None`` for a plain launch.

    A partial set of variables (``RANK`` without ``MASTER_ADDR``, say) or inconsistent values
    (``RANK >= WORLD_SIZE``) raise a ``ValueError`` that names what is missing or wrong, instead of a hang.
    """
    env = os.environ if environ is None else environ
    present = [k for k in TORCHRUN_VARIABLES if k in env]
    if not any(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return None     # MASTER_ADDR/MASTER_PORT alone (exported by some clusters) do not make a launch
    missing = [k for k in TORCHRUN_VARIABLES if k not in env]
    if missing:
        raise ValueError(
            f"incomplete torchrun launch: {', '.join(present)} set but {', '.join(missing)} missing "
            f"(no rendezvous to join). Launch with `torchrun --nproc_per_node=N -m ...`, or unset "
            f"{', '.join(present)} for a single-process run")
    rank, world, local = (_int_variable(env, k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    port = _int_variable(env, "MASTER_PORT")
    if world < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1; got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"world size mismatch: RANK={rank} but WORLD_SIZE={world} (ranks run 0..{world - 1}); "
                         "check --nnodes/--nproc_per_node and --node_rank on every machine")
    if not 0 <= local <= rank:
        raise ValueError(f"LOCAL_RANK must be in 0..RANK={rank}; got {local}")
    if not env["MASTER_ADDR"]:
        raise ValueError("MASTER_ADDR is empty: give torchrun --rdzv_endpoint=HOST:PORT (or --master_addr)")
    return Launch(rank, world, local, env["MASTER_ADDR"], port)


def current() -> Launch | None:
    """The launch of the process group this process has joined (``None`` when it has joined none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    launch = detect()
    if launch is None:      # a group set up by hand (tests, notebooks): describe it from the group itself
        return Launch(dist.get_rank(), dist.get_world_size(), 0, "", 0)
    return launch


def rank() -> int:
    """This process's rank (0 in a plain launch)."""
    launch = current() or detect()
    return launch.rank if launch is not None else 0


def world_size() -> int:
    """The number of processes (1 in a plain launch)."""
    launch = current() or detect()
    return launch.world_size if launch is not None else 1


def is_main() -> bool:
    """True in a plain launch and on rank 0 of a torchrun launch: the process that prints and writes."""
    return rank() == 0


def _device_for(launch: Launch) -> torch.device:
    if torch.cuda.is_available():
        if launch.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={launch.local_rank} but this machine has {torch.cuda.device_count()} "
                             f"GPU(s): start at most that many processes per machine (--nproc_per_node)")
        torch.cuda.set_device(launch.local_rank)   # so "cuda" (medtut.get_device()) means this rank's GPU
        return torch.device("cuda", launch.local_rank)
    return torch.device("cpu")


def _init(launch: Launch, timeout_s: float) -> None:
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds; got {timeout_s!r}")
    device = _device_for(launch)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
        # a first collective: init alone may return before every process has arrived
        dist.barrier()
    except Exception as error:  # noqa: BLE001 - re-raised with what to check
        if dist.is_initialized():
            dist.destroy_process_group()
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RuntimeError(
            f"rank {launch.rank}: the rendezvous at {launch.master_addr}:{launch.master_port} did not gather "
            f"WORLD_SIZE={launch.world_size} processes within {timeout_s:g} s ({type(error).__name__}: "
            f"{first_line}). Check that every machine runs torchrun with the same --nnodes and "
            f"--rdzv_endpoint and that the endpoint is reachable") from error


def _leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def join(timeout_s: float = DEFAULT_TIMEOUT_S) -> Launch | None:
    """Join the process group of a torchrun launch once for the life of the process (what :func:`fit` does).

    Returns the :class:`Launch`, or ``None`` in a plain launch (where nothing happens). The group is reused by
    later calls and left when the process exits (a group cannot be re-created under the same rendezvous).
    ``backend``: ``nccl`` when CUDA is available, else ``gloo``, one GPU per process (``LOCAL_RANK``). A
    rendezvous that does not complete within ``timeout_s`` seconds (a process missing, ``--nnodes`` differing
    between machines, a wrong endpoint) raises a ``RuntimeError`` saying so.
    """
    launch = detect()
    if launch is None or dist.is_initialized():
        return launch
    _init(launch, timeout_s)
    atexit.register(_leave)
    return launch


@contextlib.contextmanager
def session(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Launch | None]:
    """:func:`join` for the block, and leave the group at its end (a command-line entry point's frame).

    Yields the :class:`Launch` (``None`` in a plain launch). A group joined before the block is left to
    whoever joined it.
    """
    owner = detect() is not None and not dist.is_initialized()
    launch = join(timeout_s)
    try:
        yield launch
    finally:
        if owner:
            _leave()


# ------------------------------------------------------------------------------------------------
# sharding the data
# ------------------------------------------------------------------------------------------------


class _RoundRobin:
    """Batches ``rank``, ``rank + world``, ... of each pass over a sized re-iterable (a list of batches, a
    batch sampler), wrapping around to the first batches so that every rank gets ``ceil(len / world)``."""

    def __init__(self, batches, rank_: int, world: int):
        self.batches, self.rank, self.world = batches, rank_, world
        self.per_rank = -(-len(batches) // world)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        first, given, n = [], 0, len(self.batches)
        for i, batch in enumerate(self.batches):
            if i < self.world:
                first.append(batch)
            if i % self.world == self.rank and given < self.per_rank:
                given += 1
                yield batch
        while given < self.per_rank and first:       # the last round is short: wrap around
            yield first[(self.rank + given * self.world) % n]
            given += 1


def shard(data: Iterable | None, launch: Launch, seed: int) -> tuple[Iterable | None, bool]:
    """This rank's part of ``data``; returns ``(data, sharded)``.

    A ``DataLoader`` over a map-style data set is rebuilt with a ``DistributedSampler`` (shuffled when the
    original was, with ``seed``; the batch size per process is kept; ``drop_last`` as the loader's). Any
    other re-iterable with a length (a list of batches, a chapter's batch sampler) is dealt round-robin: each
    rank iterates it and keeps every ``world_size``-th batch, all ranks getting the same number. What has no
    length (``None``, an iterable data set, a generator) cannot be split and is returned unchanged with
    ``sharded=False``.
    """
    from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler

    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or data.batch_size is None:
            return data, False
        sampler = DistributedSampler(data.dataset, num_replicas=launch.world_size, rank=launch.rank,
                                     shuffle=isinstance(data.sampler, RandomSampler), seed=seed,
                                     drop_last=data.drop_last)
        return DataLoader(data.dataset, batch_size=data.batch_size, sampler=sampler,
                          num_workers=data.num_workers, collate_fn=data.collate_fn, pin_memory=data.pin_memory,
                          drop_last=data.drop_last, timeout=data.timeout, worker_init_fn=data.worker_init_fn,
                          persistent_workers=data.persistent_workers), True
    if data is not None and not isinstance(data, Iterator) and hasattr(data, "__len__") and len(data) > 0:
        return _RoundRobin(data, launch.rank, launch.world_size), True
    return data, False


def set_epoch(data: Iterable | None, epoch: int) -> None:
    """Re-seed a sharded loader's ``DistributedSampler`` for ``epoch`` (a new shuffle every epoch)."""
    sampler = getattr(data, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


# ------------------------------------------------------------------------------------------------
# models and gradients
# ------------------------------------------------------------------------------------------------


class _ThroughDDP:
    """Stands in for a module's ``forward`` while the step function runs.

    Chapter step functions call their model directly (``model(x)``), not a wrapper. While installed, such a
    call goes through the module's ``DistributedDataParallel`` wrapper (which prepares the gradient
    all-reduce of the coming ``backward``), and the wrapper's own call of the module reaches the original
    ``forward``.
    """

    def __init__(self, module: torch.nn.Module, wrapper: torch.nn.Module):
        self.original = module.forward
        self.wrapper = wrapper
        self.inside = False

    def __call__(self, *args, **kwargs):
        if self.inside:
            return self.original(*args, **kwargs)
        self.inside = True
        try:
            return self.wrapper(*args, **kwargs)
        finally:
            self.inside = False


def _comm_device() -> torch.device:
    """Where small tensors for a collective must live: the rank's GPU with nccl, the CPU with gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _average_(tensors: list[torch.Tensor], world: int) -> None:
    """In-place mean over the ranks of a list of tensors (one flat all-reduce)."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


class DataParallel:
    """The distributed side of one :func:`medtut.train.fit` call (used by ``fit``; see the module docstring).

    modules: the ``models`` given to ``fit`` (name -> module); optimizer: ``fit``'s optimizer (its parameters
    outside ``modules`` have their gradients averaged explicitly).
    """

    def __init__(self, launch: Launch, modules: Mapping[str, torch.nn.Module], optimizer: Any):
        self.launch = launch
        self.world = launch.world_size
        self.modules = dict(modules)
        self.wrappers: dict[str, torch.nn.Module] = {}
        for name, module in self.modules.items():
            params = [p for p in module.parameters() if p.requires_grad]
            if not params:
                continue
            on_cuda = params[0].device.type == "cuda"
            # DDP broadcasts rank 0's weights and buffers here. Unused parameters are allowed because a
            # chapter may leave a head idle in some steps (chapter 1's projection head without contrast).
            self.wrappers[name] = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=[params[0].device] if on_cuda else None, find_unused_parameters=True)
        in_wrappers = {id(p) for name in self.wrappers for p in self.modules[name].parameters()}
        optimised = [p for g in (optimizer.param_groups if optimizer is not None else []) for p in g["params"]]
        self.loose = [p for p in optimised if id(p) not in in_wrappers]
        with torch.no_grad():
            for p in self.loose:
                dist.broadcast(p.data, src=0)

    @contextlib.contextmanager
    def routing(self) -> Iterator[None]:
        """For the block (one step), calls of the models go through their DDP wrappers."""
        routes = {name: _ThroughDDP(self.modules[name], w) for name, w in self.wrappers.items()}
        for name, route in routes.items():
            self.modules[name].forward = route
        try:
            yield
        finally:
            for name in routes:
                del self.modules[name].forward      # the class's forward shows through again

    def average_loose_gradients(self) -> None:
        """Average, over the ranks, the gradients of optimised parameters that no DDP wrapper covers."""
        grads = [p.grad for p in self.loose if p.grad is not None]
        _average_(grads, self.world)

    def average_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The mean over the ranks of each logged scalar (every rank must log the same names)."""
        names = sorted(metrics)
        signature = float(zlib.crc32("\n".join(names).encode()))
        check = torch.tensor([signature, -signature], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(check, op=dist.ReduceOp.MAX)
        if check[0] != -check[1]:
            raise RuntimeError(f"rank {self.launch.rank}: the processes logged different metric names in the "
                               f"same step (this rank: {names}); a step function must return the same keys "
                               "on every rank")
        values = torch.tensor([float(metrics[k]) for k in names], dtype=torch.float64, device=_comm_device())
        if self.world > 1:
            _average_([values], self.world)
        return dict(zip(names, values.cpu().tolist()))

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (any picklable value) on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_weights_agree(self, rtol: float = 1e-5) -> None:
        """Raise if the ranks' weights differ (a step that bypassed the models' wrappers)."""
        params = [p.detach() for m in self.modules.values() for p in m.parameters()] + \
                 [p.detach() for p in self.loose]
        if not params:
            return
        total = sum(float(p.double().abs().sum()) for p in params)
        spread = torch.tensor([total, -total], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)
        high, low = float(spread[0]), -float(spread[1])
        if high - low > rtol * max(abs(high), 1.0):
            raise RuntimeError(
                f"the processes' weights diverged (sum of |w| from {low:.8g} to {high:.8g}): the step function "
                "must call the model(s) passed to fit(models=...) themselves, not only their submodules or "
                "methods, so that DistributedDataParallel synchronises the gradients")

    def close(self) -> None:
        self.wrappers.clear()


def warn_unsharded(launch: Launch, data: Iterable | None) -> None:
    """On rank 0, say that ``data`` could not be split, so every process computes the same step."""
    if launch.is_main:
        what = "data=None (the step draws its own batches)" if data is None else f"data of type {type(data).__name__}"
        warnings.warn(f"fit under torchrun with {what}: the batches cannot be sharded, so all "
                      f"{launch.world_size} processes compute the same step (correct, but no speed-up). Pass a "
                      "DataLoader or a list of batches as data=... to split the work", stacklevel=4)


__all__ = ["Launch", "TORCHRUN_VARIABLES", "DataParallel", "current", "detect", "is_main", "join", "rank", "session",
           "set_epoch", "shard", "world_size"]
