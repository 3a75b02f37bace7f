"""Shared reading of Medical Segmentation Decathlon (MSD) tasks through MONAI's ``DecathlonDataset``.

Several chapters read MSD tasks (Task02_Heart, Task04_Hippocampus, Task05_Prostate, ...) the same way:
MONAI downloads the archive from its mirror and checks the md5 it ships, every case is loaded as NIfTI,
given a channel axis and re-oriented to RAS, and the volumes are then cut into 2-D slices. This module
holds those steps once:

* :func:`decathlon_transform`: the MONAI transform chain (load, channel first, RAS orientation);
* :func:`decathlon_dataset`: a ``DecathlonDataset`` of one task's labelled ``training`` or
  ``validation`` cases with that transform (the MSD test cases have no labels);
* :func:`decathlon_cases`: iterate over a dataset's cases as ``(name, image, label)`` numpy volumes, one
  image channel, integer labels checked against the number of classes;
* :func:`zscore_slices`, :func:`volume_to_slices`: (H, W, D) volumes → (D, size, size) slices, resized
  in-plane and z-scored per slice;
* :func:`write_decathlon_fixture`: write a tiny task in the MSD layout (``dataset.json``, ``imagesTr``,
  ``labelsTr``) from arrays, for tests that parse a loader without downloading anything.

Shapes follow MONAI after ``EnsureChannelFirstd``: images (C, H, W, D) with the slice axis last. Nothing
here downloads unless ``download=True`` is passed; tests parse tiny NIfTI fixtures they write.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

SECTIONS = ("training", "validation")
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")


def decathlon_transform(keys: tuple[str, ...] = ("image", "label")):
    """MONAI transform chain for MSD cases: ``LoadImaged`` → ``EnsureChannelFirstd`` → ``Orientationd``
    to RAS (with explicit axis labels, so it does not depend on MONAI's default). Applied to a dict with
    ``keys`` (file paths), it returns MetaTensors (C, H, W, D)."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    if isinstance(keys, str) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"keys must be a non-empty tuple of key names such as ('image', 'label'); got {keys!r}")
    keys = list(keys)
    return Compose([LoadImaged(keys), EnsureChannelFirstd(keys),
                    Orientationd(keys, axcodes="RAS", labels=_RAS_LABELS)])


def decathlon_dataset(root_dir: str | os.PathLike, task: str, section: str = "training", download: bool = False,
                      val_frac: float = 0.2, seed: int = 0):
    """``monai.apps.DecathlonDataset`` of ``task`` (e.g. ``"Task04_Hippocampus"``) under ``root_dir``.

    section: ``"training"`` or ``"validation"``, MONAI's split of the labelled cases by ``val_frac`` (in
    [0, 1)) and ``seed``; download: fetch and md5-check the archive into ``root_dir`` (else ``<root_dir>/
    <task>`` must already hold the extracted task). No caching (``cache_rate=0``): items are loaded on
    access with :func:`decathlon_transform`.
    """
    from monai.apps import DecathlonDataset

    if not isinstance(task, str) or not task.startswith("Task"):
        raise ValueError(f"task must be an MSD task name such as 'Task04_Hippocampus'; got {task!r}")
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS} (the test set has no labels); got {section!r}")
    if isinstance(val_frac, bool) or not isinstance(val_frac, (int, float)) or not 0 <= val_frac < 1:
        raise ValueError(f"val_frac must be a number in [0, 1); got {val_frac!r}")
    root_dir = Path(root_dir)
    root_dir.mkdir(parents=True, exist_ok=True)
    return DecathlonDataset(root_dir, task=task, section=section, transform=decathlon_transform(),
                            download=download, val_frac=val_frac, seed=seed, cache_rate=0.0, progress=False)


def decathlon_cases(dataset, num_classes: int, channel: int = 0, task: str = "MSD"
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(name, image, label)`` for every case of ``dataset`` (items with ``"image"`` (C, H, W, D)
    and ``"label"`` (1, H, W, D), as :func:`decathlon_dataset` returns them).

    image: channel ``channel`` as (H, W, D) float32 (e.g. 0 = T2 for Task05_Prostate); label: (H, W, D)
    int64, rounded; name: the image's file name. Raises ``ValueError`` naming the case when a label lies
    outside [0, num_classes − 1] or the image has no channel ``channel``.
    """
    _check_int("num_classes", num_classes, 2)
    _check_int("channel", channel, 0)
    for i in range(len(dataset)):
        item = dataset[i]
        raw = item["image"]
        name = Path(str(getattr(raw, "meta", {}).get("filename_or_obj", f"case{i}"))).name
        image = np.asarray(raw)
        if image.ndim != 4 or channel >= image.shape[0]:
            raise ValueError(f"{name}: {task} images must be (C, H, W, D) with channel {channel}; got shape "
                             f"{image.shape}")
        label = np.rint(np.asarray(item["label"])[0]).astype(np.int64)
        if label.size and (label.min() < 0 or label.max() >= num_classes):
            raise ValueError(f"{name}: {task} labels must lie in [0, {num_classes - 1}]; "
                             f"got [{label.min()}, {label.max()}]")
        yield name, image[channel].astype(np.float32), label


def zscore_slices(volume: np.ndarray) -> np.ndarray:
    """Per-slice z-score of a (D, H, W) volume after clipping it to its 1st-99th percentiles: float32,
    every slice with mean 0 and std ≈ 1 (a constant slice becomes 0)."""
    volume = np.asarray(volume)
    if volume.ndim != 3 or volume.size == 0 or not np.issubdtype(volume.dtype, np.number):
        raise ValueError(f"volume must be a non-empty numeric (D, H, W) array; got shape {volume.shape} "
                         f"{volume.dtype}")
    if not np.isfinite(volume).all():
        raise ValueError("volume must be finite; got NaN or inf")
    lo, hi = np.percentile(volume, [1, 99])
    volume = np.clip(volume, lo, hi).astype(np.float32)
    mean = volume.mean(axis=(1, 2), keepdims=True)
    std = volume.std(axis=(1, 2), keepdims=True)
    return (volume - mean) / (std + 1e-6)


def volume_to_slices(image: np.ndarray, label: np.ndarray, size: int) -> dict:
    """(H, W, D) image and label volumes → ``{"image": (D, size, size) float32, "label": (D, size, size)
    int64}``, slices along axis 0.

    The in-plane field of view is resized to size × size (area interpolation for the image, nearest
    neighbour for the labels), then the image is z-scored per slice (:func:`zscore_slices`).
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 3 or image.shape != label.shape:
        raise ValueError(f"image and label must be (H, W, D) volumes of the same shape; "
                         f"got {image.shape} and {label.shape}")
    if image.size == 0:
        raise ValueError(f"image must not be empty; got shape {image.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label must be an integer volume; got {label.dtype}")
    _check_int("size", size, 1)
    img = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))[:, None]
    lab = torch.from_numpy(np.ascontiguousarray(np.moveaxis(label, -1, 0)).astype(np.int64))[:, None]
    img = F.interpolate(img, size=(size, size), mode="area")[:, 0].numpy()
    lab = F.interpolate(lab.float(), size=(size, size), mode="nearest")[:, 0].long().numpy()
    return {"image": zscore_slices(img), "label": lab}


def write_decathlon_fixture(root_dir: str | os.PathLike, task: str, images, labels, label_names: dict,
                            spacing=(1.0, 1.0, 1.0)) -> Path:
    """Write ``<root_dir>/<task>`` in the MSD layout that ``DecathlonDataset`` reads, and return it.

    images: a list of (H, W, D) or (H, W, D, C) float arrays (C modalities, as MSD's 4-D tasks); labels: a
    list of (H, W, D) integer arrays, one per image; label_names: ``{class index: name}``; spacing: voxel
    size in mm (the affine's diagonal). Cases are named ``<task suffix>_<i>.nii.gz``; all are labelled
    ``training`` cases (MONAI splits them into training/validation), there are no test cases.
    """
    import json

    import nibabel as nib

    if not isinstance(task, str) or not task.startswith("Task"):
        raise ValueError(f"task must be an MSD task name such as 'Task04_Hippocampus'; got {task!r}")
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"images and labels must be equally long, non-empty lists; got {len(images)} and {len(labels)}")
    shapes = {np.asarray(im).shape[3:] for im in images}
    if len(shapes) != 1 or any(np.asarray(im).ndim not in (3, 4) for im in images):
        raise ValueError("images must all be (H, W, D) or all (H, W, D, C) with the same C")
    folder = Path(root_dir) / task
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    affine = np.diag([*map(float, spacing), 1.0])
    training = []
    for i, (image, label) in enumerate(zip(images, labels)):
        image, label = np.asarray(image, dtype=np.float32), np.asarray(label)
        if image.shape[:3] != label.shape or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"labels[{i}] must be an integer (H, W, D) array of images[{i}]'s shape "
                             f"{image.shape[:3]}; got {label.shape} {label.dtype}")
        name = f"{task.split('_', 1)[-1].lower()}_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), str(folder / "imagesTr" / name))
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), str(folder / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    channels = 1 if images[0].ndim == 3 else np.asarray(images[0]).shape[3]
    meta = {"name": task, "description": "test fixture", "reference": "", "licence": "CC-BY-SA 4.0",
            "tensorImageSize": "3D" if np.asarray(images[0]).ndim == 3 else "4D",
            "modality": {str(c): f"MR{c}" for c in range(channels)},
            "labels": {str(k): v for k, v in label_names.items()}, "numTraining": len(images), "numTest": 0,
            "training": training, "test": []}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


__all__ = ["SECTIONS", "decathlon_transform", "decathlon_dataset", "decathlon_cases", "zscore_slices",
           "volume_to_slices", "write_decathlon_fixture"]
