"""The one training loop of the book (defined in chapter 0).

Chapters do not copy loops: they write a *step function* holding what is particular to their method
and hand it to :func:`fit`, which owns iteration, the progress bar, evaluation, the history of
metrics and checkpoints.

>>> def step(batch):
...     x, y = batch
...     return {"loss": loss_fn(net(x), y)}
>>> history = fit(step, optimizer, data=loader, num_epochs=5, eval_fn=evaluate, eval_every=100)
>>> history["loss"], history["val_dice"]
"""
from __future__ import annotations

import itertools
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import is_quick

StepOutput = torch.Tensor | Mapping[str, Any]


class History:
    """Metrics recorded during :func:`fit`, one record per logged step.

    ``history["loss"]`` is a float array of that metric over the records holding it and
    ``history.steps("loss")`` the matching step numbers (1-based: the step just completed).
    """

    def __init__(self, records: list[dict] | None = None):
        self.records: list[dict] = list(records or [])

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

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"History({len(self.records)} records, metrics={self.keys()})"


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
    return dict(modules)


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
    models:
        Module(s) whose ``train()``/``eval()`` mode is switched around evaluation and whose weights are
        checkpointed.
    checkpoint, checkpoint_every:
        A file path. If it exists, training resumes from it (weights, optimizer, step, history and
        random state, so the resumed run repeats the uninterrupted one); it is written every
        ``checkpoint_every`` steps and at the end. Point it at Google Drive on Colab to survive a
        disconnect.

    Returns
    -------
    History of the logged metrics (``"loss"`` every step, evaluation metrics every ``eval_every``).
    """
    if (num_steps is None) == (num_epochs is None):
        raise ValueError(f"give exactly one of num_steps and num_epochs; got num_steps={num_steps}, "
                         f"num_epochs={num_epochs}")
    if num_epochs is not None:
        if data is None:
            raise ValueError("num_epochs needs data to iterate over")
        try:
            steps_per_epoch = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("num_epochs needs data with a length; pass num_steps instead") from None
        if steps_per_epoch == 0:
            raise ValueError("data is empty: nothing to train on")
        num_steps = num_epochs * steps_per_epoch
    else:
        steps_per_epoch = None
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0; got {num_steps}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1; got {eval_every}")

    modules = _modules_of(models)
    history = history if history is not None else History()
    start_step = 0
    epoch_rng = _rng_state()
    resume_rng = None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        for name, module in modules.items():
            module.load_state_dict(state["models"][name])
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        history.records = list(state["history"])
        epoch_rng = state["epoch_rng"]
        resume_rng = state["rng"]

    def save(step: int, current_rng: dict) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({
            "step": step,
            "models": {name: m.state_dict() for name, m in modules.items()},
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history.records,
            "epoch_rng": epoch_rng,
            "rng": current_rng,
        }, tmp)
        os.replace(tmp, path)  # atomic: a disconnect mid-write leaves the previous checkpoint intact

    # Rebuild the data stream exactly where it stopped: replay the epoch's shuffle from the random state
    # saved when the epoch began, skip the batches already used, then restore the current random state.
    def batches():
        nonlocal epoch_rng
        if data is None:
            yield from itertools.count(start_step)
            return
        consumed = start_step
        per_epoch = steps_per_epoch
        if per_epoch is None:
            try:
                per_epoch = len(data)  # type: ignore[arg-type]
            except TypeError:
                per_epoch = None
        skip = consumed % per_epoch if (per_epoch and consumed) else 0
        # At an epoch boundary nothing needs replaying: the next epoch starts from the restored state.
        resumed = skip > 0
        while True:
            if resumed:
                current = _rng_state()
                _set_rng_state(epoch_rng)
                iterator = iter(data)
                for _ in range(skip):
                    next(iterator)
                _set_rng_state(current)
                resumed = False
            else:
                epoch_rng = _rng_state()
                iterator = iter(data)
            empty = True
            for batch in iterator:
                empty = False
                yield batch
            if empty:
                raise ValueError("data yielded no batches: nothing to train on")

    if resume_rng is not None:
        _set_rng_state(resume_rng)

    for m in modules.values():
        m.train()
    bar = tqdm(total=num_steps, initial=start_step, desc=desc, disable=not progress,
               leave=True, dynamic_ncols=True)
    stream = batches()
    t0 = time.perf_counter()
    for step in range(start_step, num_steps):
        batch = next(stream)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        out = step_fn(batch)
        loss, metrics = _split_step_output(out, needs_loss=optimizer is not None)
        if optimizer is not None:
            loss.backward()
            if grad_clip is not None:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        history.log(step + 1, **metrics)
        done = step + 1
        if eval_fn is not None and ((eval_every and done % eval_every == 0) or done == num_steps):
            for m in modules.values():
                m.eval()
            history.records[-1].update({k: _to_float(v) for k, v in eval_fn().items()})
            for m in modules.values():
                m.train()
        if done % checkpoint_every == 0 or done == num_steps:
            save(done, _rng_state())
        bar.update(1)
        if "loss" in metrics and (done % 10 == 0 or done == num_steps):
            bar.set_postfix(loss=f"{_to_float(metrics['loss']):.4g}")
    bar.close()
    history.wall_time_s = time.perf_counter() - t0  # type: ignore[attr-defined]
    for m in modules.values():
        m.eval()
    return history


__all__ = ["History", "fit", "is_quick"]
