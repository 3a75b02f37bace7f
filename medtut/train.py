"""The one training loop of the book (defined in chapter 0).

Chapters do not copy loops: they write a *step function* holding what is particular to their method
and hand it to :func:`fit`, which owns iteration, the progress bar, evaluation, the history of
metrics and checkpoints.

>>> def step(batch):
...     x, y = batch
...     return {"loss": loss_fn(net(x), y)}
>>> history = fit(step, optimizer, data=loader, num_epochs=5, eval_fn=evaluate, eval_every=100)
>>> history["loss"], history["val_dice"], history.wall_time_s

A chapter's trainer wraps :func:`fit` and returns ``(model, result)``, where ``result`` is a
:class:`TrainResult` (or a chapter's subclass of it adding its own fields): the one shape every chapter
shares.

Launched by ``torchrun``, the same :func:`fit` trains data-parallel (:mod:`medtut.distributed`): the models
given as ``models=`` are wrapped in ``DistributedDataParallel``, the data are sharded, metrics are averaged
over the processes and only rank 0 prints and writes checkpoints. A plain launch runs the loop below and
nothing else.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from medtut import distributed

StepOutput = torch.Tensor | Mapping[str, Any]


class History:
    """Metrics recorded during :func:`fit`, one record per logged step.

    ``history["loss"]`` is a float array of that metric over the records holding it and
    ``history.steps("loss")`` the matching step numbers (1-based: the step just completed).
    ``wall_time_s`` is the training time spent in :func:`fit` calls that wrote to this history (seconds,
    summed when a history is continued).
    """

    def __init__(self, records: list[dict] | None = None, wall_time_s: float = 0.0):
        self.records: list[dict] = list(records or [])
        self.wall_time_s: float = float(wall_time_s)

    def log(self, step: int, **metrics: float) -> None:
        self.records.append({"step": int(step), **{k: _to_float(v) for k, v in metrics.items()}})

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            for key in record:
                if key != "step":
                    seen.setdefault(key, None)
        return list(seen)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.keys():
            raise KeyError(f"no metric {key!r} in this history; it has {self.keys()}")
        return np.array([r[key] for r in self.records if key in r], dtype=float)

    def steps(self, key: str) -> np.ndarray:
        return np.array([r["step"] for r in self.records if key in r], dtype=int)

    def last(self, key: str) -> float:
        return float(self[key][-1])

    @property
    def last_step(self) -> int:
        """The step number of the last record (0 for an empty history)."""
        return int(self.records[-1]["step"]) if self.records else 0

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"History({len(self.records)} records, metrics={self.keys()}, {self.wall_time_s:.1f} s)"


@dataclass
class TrainResult:
    """What every chapter's trainer returns beside the model: ``(model, TrainResult)``.

    history: the metrics logged by :func:`fit`; wall_time_s: seconds of training (the number each
    comparison table prints beside its metric). A chapter that needs more (the Lagrangian of chapter 7,
    the pseudo-labels of chapter 1) subclasses this dataclass and adds named fields, never attributes
    bolted onto a model or a history.
    """
    history: History
    wall_time_s: float


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a logged metric must be a scalar; got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().cpu())
    return float(value)


def _split_step_output(out: StepOutput, needs_loss: bool) -> tuple[torch.Tensor | None, dict]:
    if isinstance(out, torch.Tensor):
        loss, metrics = out, {"loss": out}
    elif isinstance(out, Mapping):
        metrics = dict(out)
        loss = metrics.get("loss")
    else:
        raise TypeError(f"step_fn must return a loss tensor or a dict of metrics; got {type(out).__name__}")
    if needs_loss:
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise ValueError("with an optimizer, step_fn must return a differentiable 'loss' tensor "
                             "(or pass optimizer=None and update the parameters inside step_fn)")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()}; lower the learning rate or "
                                     "check the inputs for NaN")
    return loss, metrics


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _modules_of(modules: torch.nn.Module | Mapping[str, torch.nn.Module] | None) -> dict:
    if modules is None:
        return {}
    if isinstance(modules, torch.nn.Module):
        return {"model": modules}
    if not isinstance(modules, Mapping) or not all(isinstance(m, torch.nn.Module) for m in modules.values()):
        raise ValueError(f"models must be a torch.nn.Module or a dict of them; got {type(modules).__name__}")
    return dict(modules)


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")


def _steps_per_epoch(data: Iterable | None) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _restore(path: Path, modules: dict, optimizer, scheduler, history: History) -> tuple[int, dict, dict]:
    """Load a checkpoint written by :func:`fit`: weights, optimiser, scheduler and history in place;
    returns (step reached, random state at the start of that epoch, random state at the step)."""
    return _apply(torch.load(path, map_location="cpu", weights_only=False), modules, optimizer, scheduler,
                  history)


def _apply(state: dict, modules: dict, optimizer, scheduler, history: History) -> tuple[int, dict, dict]:
    for name, module in modules.items():
        module.load_state_dict(state["models"][name])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    history.records = list(state["history"])
    history.wall_time_s = float(state.get("wall_time_s", history.wall_time_s))
    return int(state["step"]), state["epoch_rng"], state["rng"]


def _save(path: Path, step: int, modules: dict, optimizer, scheduler, history: History,
          epoch_rng: dict, current_rng: dict, wall_time_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({
        "step": step,
        "models": {name: m.state_dict() for name, m in modules.items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history.records,
        "wall_time_s": wall_time_s,
        "epoch_rng": epoch_rng,
        "rng": current_rng,
    }, tmp)
    os.replace(tmp, path)  # atomic: a disconnect mid-write leaves the previous checkpoint intact


class _BatchStream:
    """The batches of ``data``, cycled, resumable at any step.

    On resume it replays the interrupted epoch's shuffle from the random state saved when that epoch began,
    skips the batches already used, then restores the current random state; so a resumed run draws
    exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(self, data: Iterable | None, start_step: int, epoch_rng: dict,
                 on_epoch: Callable[[int], None] | None = None):
        self.data, self.start_step, self.epoch_rng = data, start_step, epoch_rng
        self.on_epoch = on_epoch        # distributed: re-seed the DistributedSampler with the epoch number

    def __iter__(self) -> Iterator:
        if self.data is None:
            yield from itertools.count(self.start_step)
            return
        per_epoch = _steps_per_epoch(self.data)
        skip = self.start_step % per_epoch if (per_epoch and self.start_step) else 0
        # At an epoch boundary nothing needs replaying: the next epoch starts from the restored state.
        resumed = skip > 0
        epoch = self.start_step // per_epoch if per_epoch else 0
        while True:
            if self.on_epoch is not None:
                self.on_epoch(epoch)
            epoch += 1
            if resumed:
                current = _rng_state()
                _set_rng_state(self.epoch_rng)
                iterator = iter(self.data)
                for _ in range(skip):
                    next(iterator)
                _set_rng_state(current)
                resumed = False
            else:
                self.epoch_rng = _rng_state()
                iterator = iter(self.data)
            empty = True
            for batch in iterator:
                empty = False
                yield batch
            if empty:
                raise ValueError("data yielded no batches: nothing to train on")


def _optimizer_step(optimizer, scheduler, loss: torch.Tensor, grad_clip: float | None,
                    dp: distributed.DataParallel | None = None) -> None:
    loss.backward()
    if dp is not None:        # DDP averaged the models' gradients during backward; average the rest
        dp.average_loose_gradients()
    if grad_clip is not None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def _evaluate(eval_fn: Callable[[], Mapping[str, float]], modules: dict) -> dict:
    for m in modules.values():
        m.eval()
    record = {k: _to_float(v) for k, v in eval_fn().items()}
    for m in modules.values():
        m.train()
    return record


def fit(
    step_fn: Callable[[Any], StepOutput],
    optimizer: torch.optim.Optimizer | None,
    *,
    data: Iterable | None = None,
    num_steps: int | None = None,
    num_epochs: int | None = None,
    eval_fn: Callable[[], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    models: torch.nn.Module | Mapping[str, torch.nn.Module] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    desc: str = "training",
    progress: bool = True,
    history: History | None = None,
    tags: Mapping[str, float] | None = None,
    eval_on: str = "all",
) -> History:
    """Run ``step_fn`` for ``num_steps`` steps (or ``num_epochs`` passes over ``data``).

    Parameters
    ----------
    step_fn:
        Called once per step with the next batch of ``data`` (or the 0-based step index when ``data``
        is None). Returns the loss tensor or a dict of metrics holding ``"loss"``; every scalar in the
        dict is logged.
    optimizer:
        When given, :func:`fit` zeroes gradients, back-propagates ``loss`` and steps the optimizer (and
        ``scheduler``). With ``None`` the step function updates parameters itself (useful for methods
        with an inner optimisation) and only its metrics are logged.
    data:
        Any re-iterable (a ``DataLoader``, a list of batches). With ``num_steps`` it is cycled.
    eval_fn, eval_every:
        ``eval_fn()`` returns a dict of metrics, logged every ``eval_every`` steps and after the last step.
        The models are put in ``eval()`` mode (and ``torch.no_grad`` is *not* imposed, since some
        evaluations optimise).
    grad_clip:
        Clip the global gradient norm to this positive value (``None``: no clipping).
    models:
        Module(s) whose ``train()``/``eval()`` mode is switched around evaluation and whose weights are
        checkpointed.
    checkpoint, checkpoint_every:
        A file path. If it exists, training resumes from it (weights, optimizer, step, history and
        random state, so the resumed run repeats the uninterrupted one); it is written every
        ``checkpoint_every`` steps and at the end. Point it at Google Drive on Colab to survive a
        disconnect.
    history, tags:
        Continue an existing :class:`History`: new records are numbered after its last step and its
        ``wall_time_s`` grows by this call's time (a multi-round schedule calls :func:`fit` once per round
        on one history). ``tags`` are constant values added to every record of this call
        (e.g. ``{"round": 2}``).
    eval_on:
        Under ``torchrun`` only: ``"all"`` (default) runs ``eval_fn`` on every process, which keeps the state
        an evaluation may carry (a best-weights tracker, a schedule driven by the validation score) the same
        on every rank and costs no wall time, since the others would wait for rank 0 anyway; ``"main"`` runs
        it on rank 0 alone and sends its record to the others (for a stateless, costly evaluation).

    Under ``torchrun`` (see :mod:`medtut.distributed`): the process group is joined (once per process, or
    by an enclosing :func:`medtut.distributed.session`), ``models`` are wrapped in
    ``DistributedDataParallel`` and must be what ``step_fn`` calls, ``data`` is sharded (each process keeps
    the batch size, so a step sees ``world_size`` batches and an epoch has ``1/world_size`` of the steps),
    the logged metrics are means over the processes, only rank 0 shows progress, prints and writes
    ``checkpoint`` (which any world size, or a plain launch, can resume), and all ranks return the same
    history.

    Returns
    -------
    History of the logged metrics (``"loss"`` every step, evaluation metrics every ``eval_every``), with
    ``wall_time_s``. When the run ends, one plain-text line (steps, final loss, wall time) is printed if
    ``progress`` is on, so the outcome reads without a widget.
    """
    if (num_steps is None) == (num_epochs is None):
        raise ValueError(f"give exactly one of num_steps and num_epochs; got num_steps={num_steps}, "
                         f"num_epochs={num_epochs}")
    if not callable(step_fn):
        raise ValueError(f"step_fn must be a function of one batch; got {type(step_fn).__name__}")
    if num_epochs is not None:
        _check_count("num_epochs", num_epochs, 0)
        if data is None:
            raise ValueError("num_epochs needs data to iterate over")
        steps_per_epoch = _steps_per_epoch(data)
        if steps_per_epoch is None:
            raise ValueError("num_epochs needs data with a length; pass num_steps instead")
        if steps_per_epoch == 0:
            raise ValueError("data is empty: nothing to train on")
        num_steps = num_epochs * steps_per_epoch
    _check_count("num_steps", num_steps, 0)
    if eval_every is not None:
        _check_count("eval_every", eval_every, 1)
    _check_count("checkpoint_every", checkpoint_every, 1)
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and np.isfinite(grad_clip)
                                      and grad_clip > 0):
        raise ValueError(f"grad_clip must be a positive number or None; got {grad_clip!r}")
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn must be a function returning a dict of metrics; got {type(eval_fn).__name__}")
    if eval_on not in ("all", "main"):
        raise ValueError(f"eval_on must be 'all' or 'main'; got {eval_on!r}")

    modules = _modules_of(models)
    launch = distributed.join()           # None in a plain launch, which skips every `dp` line below
    dp, main, on_epoch = None, True, None
    if launch is not None:
        dp, main = distributed.DataParallel(launch, modules, optimizer), launch.is_main
        data = _shard(data, dp)
        if num_epochs is not None:
            num_steps = num_epochs * len(data)
        on_epoch = lambda epoch: distributed.set_epoch(data, epoch)  # noqa: E731
    history = history if history is not None else History()
    offset = history.last_step            # continuing a history: number the new records after it
    wall_before = history.wall_time_s
    tags = {k: _to_float(v) for k, v in (tags or {}).items()}
    start_step, epoch_rng, resume_rng = 0, _rng_state(), None
    path = Path(checkpoint) if checkpoint is not None else None
    if dp is not None and path is not None:
        # rank 0 reads the checkpoint (the others may not see its disk) and sends it to every rank
        state = dp.broadcast_object(torch.load(path, map_location="cpu", weights_only=False)
                                    if main and path.exists() else None)
        if state is not None:
            start_step, epoch_rng, resume_rng = _apply(state, modules, optimizer, scheduler, history)
            wall_before = history.wall_time_s
    elif path is not None and path.exists():
        start_step, epoch_rng, resume_rng = _restore(path, modules, optimizer, scheduler, history)
        wall_before = history.wall_time_s
    stream = _BatchStream(data, start_step, epoch_rng, on_epoch)
    batches = iter(stream)
    if resume_rng is not None:
        _set_rng_state(resume_rng)

    for m in modules.values():
        m.train()
    progress = progress and main
    bar = tqdm(total=num_steps, initial=start_step, desc=desc, disable=not progress,
               leave=True, dynamic_ncols=True)
    t0 = time.perf_counter()
    for step in range(start_step, num_steps):
        batch = next(batches)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        with dp.routing() if dp is not None else contextlib.nullcontext():
            out = step_fn(batch)
        loss, metrics = _split_step_output(out, needs_loss=optimizer is not None)
        if optimizer is not None:
            _optimizer_step(optimizer, scheduler, loss, grad_clip, dp)
        if dp is not None:
            metrics = dp.average_metrics({k: _to_float(v) for k, v in metrics.items()})
        history.log(offset + step + 1, **metrics, **tags)
        done = step + 1
        if eval_fn is not None and ((eval_every and done % eval_every == 0) or done == num_steps):
            if dp is None:
                record = _evaluate(eval_fn, modules)
            elif eval_on == "all":
                record = dp.average_metrics(_evaluate(eval_fn, modules))
            else:
                record = dp.broadcast_object(_evaluate(eval_fn, modules) if main else None)
            history.records[-1].update(record)
        if path is not None and main and (done % checkpoint_every == 0 or done == num_steps):
            _save(path, done, modules, optimizer, scheduler, history, stream.epoch_rng, _rng_state(),
                  wall_before + time.perf_counter() - t0)
        bar.update(1)
        if "loss" in metrics and (done % 10 == 0 or done == num_steps):
            bar.set_postfix(loss=f"{_to_float(metrics['loss']):.4g}")
    bar.close()
    if dp is not None:
        dp.check_weights_agree()
        dp.close()
    history.wall_time_s = wall_before + (time.perf_counter() - t0)
    for m in modules.values():
        m.eval()
    if progress and num_steps > start_step:
        final = f", final loss {history.last('loss'):.4g}" if "loss" in history.keys() else ""
        print(f"{desc}: {num_steps} steps{final}, {time.perf_counter() - t0:.1f} s", flush=True)
    return history


def _shard(data: Iterable | None, dp: distributed.DataParallel) -> Iterable | None:
    """This rank's part of ``data`` (a DataLoader shuffles with a seed drawn like its own, from rank 0)."""
    seed = None
    if isinstance(data, torch.utils.data.DataLoader):
        draw = torch.empty((), dtype=torch.int64).random_(generator=data.generator)
        seed = dp.broadcast_object(int(draw) % 2 ** 31)
    sharded, ok = distributed.shard(data, dp.launch, seed or 0)
    if not ok:
        distributed.warn_unsharded(dp.launch, data)
    return sharded


@torch.no_grad()
def predict(model: torch.nn.Module, x, batch_size: int = 256, device: str | torch.device | None = None
            ) -> torch.Tensor:
    """``model(x)`` for x (N, ...) in eval mode, ``batch_size`` inputs at a time, concatenated on the CPU.

    device: where to compute (default: where the model's parameters are). The model's train/eval mode is
    restored afterwards. Returns a tensor (N, ...) on the CPU.
    """
    x = torch.as_tensor(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...); got shape {tuple(x.shape)}")
    _check_count("batch_size", batch_size, 1)
    params = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (params.device if params is not None
                                                               else torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


__all__ = ["History", "TrainResult", "fit", "predict"]
