"""medtut: the code behind the executable book of ten medical and scientific imaging methods.

The shared core (chapter 0) is imported here; each chapter's method lives in its own module named after
the chapter (``medtut.local_contrastive``, ``medtut.dip_nas``, ``medtut.gradient_flow``,
``medtut.auc_alm``, ``medtut.mr_sampling``) and is imported explicitly by its notebook.

Importing medtut sets torch's CPU thread count once (see :func:`medtut.config.configure_threads`).
The conventions every module follows (randomness, the device rule, ``(model, result)`` from trainers,
config dataclasses, vocabulary) are written in CONTRIBUTING.md at the repository's root.
"""
from .config import (budget, configure_threads, describe_environment, get_device, is_quick,
                     resolve_device, seed_everything)

__version__ = "0.1.0"

configure_threads()

__all__ = ["__version__", "budget", "configure_threads", "describe_environment", "get_device", "is_quick",
           "resolve_device", "seed_everything"]
