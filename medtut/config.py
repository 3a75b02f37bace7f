"""Run-time configuration shared by every chapter: device, threads, seeding and the quick switch.

Defined in chapter 0 ("Getting started"). Every notebook reads its scale through :func:`is_quick` /
:func:`budget` and its device through :func:`get_device`; nothing else parses environment variables.

Environment variables
---------------------
``MEDTUT_QUICK``   ``1`` shrinks data and steps so that a notebook runs in minutes on two CPU cores.
``MEDTUT_DEVICE``  forces a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
``MEDTUT_THREADS`` forces the number of torch CPU threads (see :func:`configure_threads`).
``MEDTUT_DATA``    where downloaded data sets live (see :mod:`medtut.data`).
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """``True`` when ``MEDTUT_QUICK`` is set to 1/true/yes/on.

    Raises ``ValueError`` for any other non-empty value, so a typo cannot silently start a
    30-minute run on a CI machine.
    """
    raw = os.environ.get("MEDTUT_QUICK", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"MEDTUT_QUICK must be one of 1/0/true/false/yes/no/on/off; got {raw!r}")


def budget(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise.

    >>> num_steps = budget(full=2000, quick=150)
    """
    return quick if is_quick() else full


def default_num_threads(cpu_count: int | None = None) -> int:
    """The torch CPU thread count medtut chooses when ``MEDTUT_THREADS`` is unset.

    Measured on the 2-core CI machine (``benchmarks/threads.py``): with both cores idle, 2 threads run
    the book's small networks 1.3-1.5x faster than 1; as soon as another process keeps the second core
    busy (CI runs one notebook per core) 2 threads are 2.7-2.8x *slower*, and 10-30x slower when that
    process is itself a multi-threaded torch job. The safe choice is 1 thread on machines with at most 4
    cores; larger machines get half their cores (at most 8). ``MEDTUT_THREADS`` overrides it.
    """
    n = os.cpu_count() if cpu_count is None else cpu_count
    n = n or 1
    return 1 if n <= 4 else min(n // 2, 8)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count once, and return it.

    Priority: the argument, then ``MEDTUT_THREADS``, then :func:`default_num_threads`.
    Called when medtut is imported; call again to change it.
    """
    if num_threads is None:
        raw = os.environ.get("MEDTUT_THREADS", "").strip()
        if raw:
            try:
                num_threads = int(raw)
            except ValueError:
                raise ValueError(f"MEDTUT_THREADS must be a positive integer; got {raw!r}") from None
        else:
            num_threads = default_num_threads()
    if num_threads < 1:
        raise ValueError(f"the number of threads must be >= 1; got {num_threads}")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


def get_device() -> torch.device:
    """The device to compute on: ``MEDTUT_DEVICE`` if set, else CUDA, else Apple MPS, else CPU."""
    forced = os.environ.get("MEDTUT_DEVICE", "").strip()
    if forced:
        try:
            device = torch.device(forced)
        except RuntimeError as err:
            raise ValueError(f"MEDTUT_DEVICE must name a torch device such as 'cpu' or 'cuda:0'; "
                             f"got {forced!r}") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"MEDTUT_DEVICE={forced!r} but torch sees no CUDA device")
        if device.type == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise ValueError(f"MEDTUT_DEVICE={forced!r} but Apple's MPS backend is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The one device rule of the book: ``None`` means :func:`get_device`; anything else is checked.

    Every function of medtut that builds or trains a model takes ``device=None`` and calls this, so a
    notebook that passes nothing runs on Colab's GPU, and a wrong name fails here with a message that says
    what is available, not deep inside torch.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        return get_device()
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be None, a string such as 'cpu' or 'cuda:0', or a torch.device; "
                         f"got {type(device).__name__}")
    if isinstance(device, str) and device.strip().lower() == "gpu":
        raise ValueError("device 'gpu' is not a torch device name: use 'cuda' (NVIDIA), 'mps' (Apple) or None "
                         "(the best available)")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps'; "
                         f"got {device!r}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(resolved)!r} asked for, but torch sees no CUDA device here; pass "
                             "device=None to use the best available device (on Colab: Runtime > Change "
                             "runtime type > GPU)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(resolved)!r} asked for, but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist")
    if resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' asked for, but Apple's MPS backend is not available here; pass "
                             "device=None to use the best available device")
    return resolved


@contextlib.contextmanager
def isolated_rng(seed: int, device: str | torch.device | None = None):
    """Run a block with torch's global generator seeded to ``seed``, then put the caller's state back.

    This is how library code seeds what only draws from the global generator (a module's weight
    initialisation, ``torch.randn_like`` inside a model): the block is reproducible, and the notebook's
    next random draw is the one it would have been without the call. Also forks the CUDA generator of
    ``device`` when that is a CUDA device.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    device = torch.device(device) if device is not None else None
    cuda = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        yield


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every CUDA device) and return a seeded CPU generator.

    With ``deterministic=True`` cuDNN autotuning is switched off and torch is asked for deterministic
    kernels where they exist (``warn_only`` so that ops without one still run). Same seed, same
    device, same numbers.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def describe_environment() -> dict:
    """A small dict saying where a result came from (printed in notebooks, stored by the stamp)."""
    device = get_device()
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": is_quick(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
