"""Chapter 2's data: "texture-defined tissues", and 2-D slices of MSD Hippocampus / Prostate.

Offline (quick mode, tests, the book's CPU run)
    :func:`make_texture_image` / :func:`make_texture_dataset` draw 64×64 images with ``NUM_CLASSES`` = 5
    tissues. The label map is the argmax of five smoothed random fields (blobby regions); each tissue has
    its own *texture* (smooth noise, horizontal stripes, vertical stripes, a checkerboard, fine diagonal
    stripes), while its **mean brightness and contrast are drawn afresh for every image**. Intensity
    therefore says nothing about the class; only the texture, shared across images, does. That is the
    situation the chapter's cross-image contrast is built for.

Real data (Colab / GPU)
    :func:`load_decathlon_slices` reads MSD Task04_Hippocampus (labels 0 background, 1 anterior,
    2 posterior) or Task05_Prostate (0 background, 1 PZ, 2 TZ; T2 channel) through MONAI's
    ``DecathlonDataset`` (which downloads the archive from MONAI's mirror and checks its md5) and returns
    2-D axial slices that hold foreground, resized to ``size``. Tests parse tiny NIfTI fixtures they write;
    nothing is downloaded in tests.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from scipy import ndimage

from .msd import decathlon_cases, decathlon_dataset, volume_to_slices

TEXTURE_LABELS = {0: "smooth noise", 1: "horizontal stripes", 2: "vertical stripes", 3: "checkerboard",
                  4: "fine diagonal stripes"}
NUM_CLASSES = 5
DECATHLON_TASKS = {
    "Task04_Hippocampus": {0: "background", 1: "anterior", 2: "posterior"},
    "Task05_Prostate": {0: "background", 1: "PZ", 2: "TZ"},
}


# ------------------------------------------------------------------------------------------------
# texture-defined tissues
# ------------------------------------------------------------------------------------------------
def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(rng).__name__}")


def _check_size(size, low: int = 16) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < low:
        raise ValueError(f"size must be an int >= {low} pixels; got {size!r}")


def _check_range(name: str, value) -> None:
    ok = isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                    and np.isfinite(v) for v in value)
    if not ok or not 0 <= value[0] <= value[1]:
        raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, finite; got {value!r}")


def _unit_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def texture_bank(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """The five textures at one random phase: (5, size, size) float64, each roughly in [-1, 1].

    0 smooth noise (σ = 2 px), 1 horizontal stripes (period 8 px), 2 vertical stripes (period 8 px),
    3 checkerboard (4-px squares), 4 fine diagonal stripes (period ≈ 4 px). Lengths are for size 64 and
    stay fixed in pixels (a texture is a local pattern, not a fraction of the field of view).
    rng: a numpy Generator; size: pixels per side (>= 16).
    """
    _check_rng(rng)
    _check_size(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    ph = rng.uniform(0, 2 * np.pi, size=4)
    smooth = np.clip(_unit_field(rng, size, 2.0) / 2.0, -1, 1)
    horizontal = np.sin(2 * np.pi * yy / 8.0 + ph[0])
    vertical = np.sin(2 * np.pi * xx / 8.0 + ph[1])
    checker = np.sign(np.sin(2 * np.pi * yy / 8.0 + ph[2]) * np.sin(2 * np.pi * xx / 8.0 + ph[3]))
    diagonal = np.sin(2 * np.pi * (xx + yy) / (4.0 * np.sqrt(2)) + ph[0] + ph[1])
    return np.stack([smooth, horizontal, vertical, checker, diagonal])


def make_texture_image(rng: np.random.Generator, size: int = 64, blob_sigma: float = 8.0,
                       noise: tuple[float, float] = (0.2, 0.6), contrast: tuple[float, float] = (0.6, 1.2)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One image of texture-defined tissues.

    rng: a numpy Generator (all randomness comes from it); size: pixels per side (>= 16);
    blob_sigma: smoothing of the five random fields whose argmax is the label map (pixels; larger = bigger
    regions); noise: range of the Gaussian noise std, drawn per image (in units of the texture amplitude);
    contrast: range of each class's texture amplitude, drawn per image and class.

    For every image and class, mean ~ U(-1, 1) and amplitude ~ U(*contrast) are drawn, so two images show
    the same tissue at unrelated brightness. Returns image (size, size) float32 (z-scored) and label
    (size, size) int64 in [0, 5).
    """
    _check_rng(rng)
    _check_size(size)
    if isinstance(blob_sigma, bool) or not isinstance(blob_sigma, (int, float, np.integer, np.floating)) \
            or not np.isfinite(blob_sigma) or not blob_sigma > 0:
        raise ValueError(f"blob_sigma must be > 0 pixels (finite); got {blob_sigma!r}")
    _check_range("noise", noise)
    _check_range("contrast", contrast)
    lo, hi = noise
    fields = np.stack([_unit_field(rng, size, blob_sigma) for _ in range(NUM_CLASSES)])
    label = fields.argmax(0).astype(np.int64)
    textures = texture_bank(rng, size)
    mean = rng.uniform(-1.0, 1.0, size=NUM_CLASSES)
    amplitude = rng.uniform(contrast[0], contrast[1], size=NUM_CLASSES)
    image = np.zeros((size, size))
    for c in range(NUM_CLASSES):
        region = label == c
        image[region] = mean[c] + amplitude[c] * textures[c][region]
    image = image + rng.normal(0, rng.uniform(lo, hi), size=image.shape)
    image = (image - image.mean()) / (image.std() + 1e-8)
    return image.astype(np.float32), label


def make_texture_dataset(n_images: int, size: int = 64, seed: int = 0, blob_sigma: float = 8.0,
                         noise: tuple[float, float] = (0.2, 0.6), contrast: tuple[float, float] = (0.6, 1.2)
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_images`` independent images: (N, size, size) float32 and labels (N, size, size) int64.

    Same seed, same data. Use different seeds for the training and the test set.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be an int >= 1; got {n_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    _check_size(size)
    _check_range("noise", noise)
    _check_range("contrast", contrast)
    rng = np.random.default_rng(seed)
    pairs = [make_texture_image(rng, size, blob_sigma, noise, contrast) for _ in range(n_images)]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs])))


# ------------------------------------------------------------------------------------------------
# real data: MSD Task04_Hippocampus / Task05_Prostate as 2-D slices
# ------------------------------------------------------------------------------------------------
def load_decathlon_slices(root_dir: str | os.PathLike, task: str = "Task04_Hippocampus",
                          section: str = "training", size: int = 64, download: bool = False,
                          val_frac: float = 0.2, seed: int = 0, min_foreground: int = 1
                          ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """2-D slices of an MSD task, for fully supervised training.

    root_dir: folder holding ``<task>/`` (``download=True`` fetches the archive there with MONAI's md5
    check: Hippocampus ~27 MB, Prostate ~230 MB); task: ``"Task04_Hippocampus"`` or
    ``"Task05_Prostate"``; section: ``"training"`` or ``"validation"`` (MONAI's split of the labelled
    cases by ``val_frac`` and ``seed``; the MSD test cases have no labels); size: the slices' side after
    resizing the in-plane field of view (area interpolation for the image, nearest for the labels);
    min_foreground: keep slices with at least this many labelled (non-zero) pixels after resizing.

    Returns images (N, size, size) float32 (channel 0 = T2 for the prostate; each slice z-scored after
    clipping the volume to its 1st-99th percentiles), labels (N, size, size) int64 in [0, 3), and one
    name per slice (``<case file>:<slice index>``). Slices are axial (the last axis after RAS orientation).
    """
    if task not in DECATHLON_TASKS:
        raise ValueError(f"task must be one of {sorted(DECATHLON_TASKS)}; got {task!r}")
    if section not in {"training", "validation"}:
        raise ValueError(f"section must be 'training' or 'validation' (the test set has no labels); "
                         f"got {section!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels; got {size!r}")
    if isinstance(min_foreground, bool) or not isinstance(min_foreground, (int, np.integer)) or min_foreground < 0:
        raise ValueError(f"min_foreground must be an int >= 0 pixels; got {min_foreground!r}")
    ds = decathlon_dataset(root_dir, task, section, download=download, val_frac=val_frac, seed=seed)
    images, labels, names = [], [], []
    for name, image, label in decathlon_cases(ds, len(DECATHLON_TASKS[task]), channel=0, task=task):
        stack = volume_to_slices(image, label, size)
        for z in range(stack["label"].shape[0]):
            if int((stack["label"][z] > 0).sum()) >= min_foreground:
                images.append(stack["image"][z])
                labels.append(stack["label"][z])
                names.append(f"{name}:{z}")
    if not images:
        raise ValueError(f"no {section} slice of {task} under {root_dir} has >= {min_foreground} foreground "
                         f"pixels")
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)), names


__all__ = ["TEXTURE_LABELS", "NUM_CLASSES", "DECATHLON_TASKS", "texture_bank", "make_texture_image",
           "make_texture_dataset", "load_decathlon_slices"]
