"""Chapter 3's data: synthetic volumes for interactive 3-D segmentation, and loaders for MSD Spleen / Heart.

Offline (quick mode, tests, the book's CPU run)
    :func:`make_tube_volume` / :func:`make_tube_dataset` draw (D, H, W) volumes holding one *target*: a
    tube whose elliptic cross-section, centre and orientation drift smoothly along z, that **splits into
    two lobes** over a random z-range and closes at both ends. Beside it run ``num_distractors``
    look-alike tubes of the same brightness and similar width that approach and **touch** the target in
    some slices, so that a network cannot tell from one slice which object the user means: the
    information "which object" has to come from the annotation, through the memory. A few *hard* slices
    (low contrast, blur, more noise) stand for partial-volume and motion artefacts. Background: a smooth
    texture and Gaussian noise.

Real data (Colab / GPU)
    MSD Task09_Spleen (41 CT volumes, window [-160, 240] HU) and Task02_Heart (20 MRI volumes, left
    atrium) through MONAI's ``DecathlonDataset``, which downloads from MONAI's mirror and checks the md5
    MONAI ships: :func:`load_decathlon_volumes`.

Every volume is a dict: ``image`` (D, H, W) float32 in about [0, 1], ``label`` (D, H, W) int64 in {0, 1}
(the target), ``hard_slices`` (sorted list of int), ``split_range`` ((first, last) slices where the target
is two separate components, inclusive, or None) and ``name``. Slices run along axis 0.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from .imaging import ellipse_mask

#: CT window of the spleen task, in HU (the reference notes' recommendation)
SPLEEN_WINDOW = (-160.0, 240.0)
DECATHLON_TASKS = {"Task09_Spleen": "CT", "Task02_Heart": "MRI"}


# ------------------------------------------------------------------------------------------------
# synthetic tubes
# ------------------------------------------------------------------------------------------------
def _smooth_curve(rng: np.random.Generator, n: int, sigma: float, scale: float) -> np.ndarray:
    """A smooth random curve of length n, zero mean, max |value| = scale."""
    c = ndimage.gaussian_filter1d(rng.normal(size=n + 4 * int(sigma) + 4), sigma, mode="reflect")
    c = c[2 * int(sigma) + 2:2 * int(sigma) + 2 + n]
    c = c - c.mean()
    return scale * c / (np.abs(c).max() + 1e-8)


def _check_sizes(size: int, depth: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 8:
        raise ValueError(f"size must be an int >= 32 divisible by 8; got {size!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 12:
        raise ValueError(f"depth must be an int >= 12 slices; got {depth!r}")


def make_tube_volume(rng: np.random.Generator, size: int = 96, depth: int = 48, num_distractors: int = 2,
                     num_hard: tuple[int, int] = (2, 4)) -> dict:
    """One synthetic volume (see the module docstring for what it holds).

    rng: a ``np.random.Generator`` (the only source of randomness); size: H = W in pixels (>= 32, a
    multiple of 8); depth: D slices (>= 12); num_distractors: look-alike tubes touching the target
    (0-3); num_hard: (min, max) number of hard slices inside the target's z-range.
    Returns the volume dict: image (D, H, W) float32, label (D, H, W) int64, hard_slices, split_range, name.
    """
    _check_sizes(size, depth)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    if isinstance(num_distractors, bool) or not isinstance(num_distractors, (int, np.integer)) \
            or not 0 <= num_distractors <= 3:
        raise ValueError(f"num_distractors must be an int in [0, 3]; got {num_distractors!r}")
    if len(num_hard) != 2 or not 0 <= num_hard[0] <= num_hard[1]:
        raise ValueError(f"num_hard must be (min, max) with 0 <= min <= max; got {num_hard!r}")
    D, S = depth, size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    z = np.arange(D)
    # --- the target: z-range, radius profile, centre walk, orientation -----------------------------
    z0 = int(rng.integers(int(0.08 * D), int(0.18 * D) + 1))
    z1 = int(rng.integers(int(0.82 * D), int(0.92 * D) + 1))
    t = np.clip((z - z0 + 0.5) / (z1 - z0 + 1), 0, 1)
    envelope = np.sqrt(np.sin(np.pi * t)).clip(0, 1)
    r_max = rng.uniform(0.085, 0.12) * S
    ry = r_max * envelope * (1 + _smooth_curve(rng, D, 3, 0.15))
    rx = r_max * envelope * rng.uniform(0.65, 0.95) * (1 + _smooth_curve(rng, D, 3, 0.15))
    cy = S / 2 + rng.uniform(-0.08, 0.08) * S + _smooth_curve(rng, D, 5, 0.12 * S)
    cx = S / 2 + rng.uniform(-0.08, 0.08) * S + _smooth_curve(rng, D, 5, 0.12 * S)
    angle = rng.uniform(0, np.pi) + _smooth_curve(rng, D, 6, 0.6)
    # --- the split: two lobes separating along the long axis over [s0, s1] ---------------------------
    span = z1 - z0
    length = int(rng.integers(max(4, int(0.22 * span)), max(5, int(0.32 * span)) + 1))
    s0 = int(rng.integers(z0 + int(0.2 * span), max(z0 + int(0.2 * span) + 1, z1 - int(0.15 * span) - length)))
    s1 = min(s0 + length, z1 - 2)
    split = np.zeros(D)
    inside = (z >= s0) & (z <= s1)
    split[inside] = np.sin(np.pi * (z[inside] - s0 + 0.5) / (s1 - s0 + 1))
    label = np.zeros((D, S, S), dtype=bool)
    for k in range(z0, z1 + 1):
        if ry[k] < 1.0 or rx[k] < 1.0:
            continue
        if split[k] <= 0:
            label[k] = ellipse_mask(yy, xx, cy[k], cx[k], ry[k], rx[k], angle[k])
            continue
        # each lobe: radius shrinks to 0.62, centres move apart along the ellipse's long (ry) axis
        lr_y, lr_x = ry[k] * (1 - 0.38 * split[k]), rx[k] * (1 - 0.2 * split[k])
        d = split[k] * (ry[k] * 0.62 + 0.62 * ry[k] + 3.0)
        dy, dx = np.cos(angle[k]) * d, -np.sin(angle[k]) * d
        for sign in (-1, 1):
            label[k] |= ellipse_mask(yy, xx, cy[k] + sign * dy, cx[k] + sign * dx, lr_y, lr_x, angle[k])
    # --- look-alike distractors that approach and touch the target ------------------------------------
    distractors = np.zeros((D, S, S), dtype=bool)
    obj_z = np.flatnonzero(label.any(axis=(1, 2)))
    for _ in range(num_distractors):
        rd = rng.uniform(0.7, 1.0) * r_max
        zt = int(rng.integers(obj_z[0] + 2, obj_z[-1] - 1))            # the slice where it touches
        width = rng.uniform(0.12, 0.25) * D
        phi = rng.uniform(0, 2 * np.pi) + _smooth_curve(rng, D, 6, 0.5)
        for k in range(D):
            r_t = max(ry[k], rx[k], 0.0) if k in obj_z else 0.0
            gap = -1.5 + rng.uniform(0, 0.3) + 0.30 * S * (1 - np.exp(-((k - zt) / width) ** 2))
            dist = r_t + rd + gap
            ccy, ccx = cy[k] + dist * np.sin(phi[k]), cx[k] + dist * np.cos(phi[k])
            distractors[k] |= ellipse_mask(yy, xx, ccy, ccx, rd, rd * 0.8, phi[k])
    # --- appearance -----------------------------------------------------------------------------------
    texture = ndimage.gaussian_filter(rng.normal(size=(D, S, S)), (2, 3, 3))
    texture /= texture.std() + 1e-8
    fg = rng.uniform(0.62, 0.8) * (1 + _smooth_curve(rng, D, 8, 0.08))[:, None, None]
    bg = rng.uniform(0.22, 0.32)
    image = bg + 0.05 * texture
    image = np.where(distractors | label, fg + 0.03 * texture, image)
    image = ndimage.gaussian_filter(image, (0, 0.7, 0.7))
    noise = rng.uniform(0.03, 0.05)
    lo, hi = num_hard
    n_hard = int(rng.integers(lo, hi + 1))
    inner = obj_z[2:-2] if len(obj_z) > 6 else obj_z
    hard = sorted(int(k) for k in rng.choice(inner, size=min(n_hard, len(inner)), replace=False)) if n_hard else []
    image = image + rng.normal(scale=noise, size=image.shape)
    for k in hard:
        contrast = rng.uniform(0.45, 0.65)
        image[k] = bg + contrast * (ndimage.gaussian_filter(image[k], rng.uniform(1.5, 2.5)) - bg)
        image[k] += rng.normal(scale=1.3 * noise, size=(S, S))
    # --- the split range as measured: the slices where the target is two components -------------------
    two = [k for k in range(D) if ndimage.label(label[k])[1] == 2]
    split_range = None
    if two:
        runs = np.split(np.array(two), np.flatnonzero(np.diff(two) > 1) + 1)
        longest = max(runs, key=len)
        split_range = (int(longest[0]), int(longest[-1]))
    return {"image": image.astype(np.float32), "label": label.astype(np.int64), "hard_slices": hard,
            "split_range": split_range, "name": "tube"}


def make_tube_dataset(num_volumes: int, size: int = 96, depth: int = 48, seed: int = 0,
                      num_distractors: int = 2) -> list[dict]:
    """``num_volumes`` volumes from :func:`make_tube_volume`, deterministic in ``seed``.

    Use different seeds for the training and test sets (the notebook uses seed 1 / seed 2). Names are
    ``tube{seed}-{i}``.
    """
    if isinstance(num_volumes, bool) or not isinstance(num_volumes, (int, np.integer)) or num_volumes < 1:
        raise ValueError(f"num_volumes must be an int >= 1; got {num_volumes!r}")
    _check_sizes(size, depth)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num_volumes):
        vol = make_tube_volume(rng, size, depth, num_distractors=num_distractors)
        vol["name"] = f"tube{seed}-{i}"
        out.append(vol)
    return out


# ------------------------------------------------------------------------------------------------
# MSD Task09_Spleen / Task02_Heart through MONAI's DecathlonDataset
# ------------------------------------------------------------------------------------------------
def _resize_volume(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, D) image and label → (D, size, size) each (area / nearest)."""
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))[:, None]
    lab = torch.from_numpy(np.ascontiguousarray(np.moveaxis(label, -1, 0)).astype(np.float32))[:, None]
    img = F.interpolate(img, size=(size, size), mode="area")[:, 0].numpy()
    lab = F.interpolate(lab, size=(size, size), mode="nearest")[:, 0].numpy()
    return img, lab


def scale_intensity(image: np.ndarray, modality: str) -> np.ndarray:
    """CT: clip to :data:`SPLEEN_WINDOW` (HU) and map to [0, 1]; MRI: clip to the 1st-99th percentile of
    the volume and map to [0, 1]. Returns float32 of the same shape."""
    image = np.asarray(image, dtype=np.float64)
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or inf values")
    if modality == "CT":
        lo, hi = SPLEEN_WINDOW
    elif modality == "MRI":
        lo, hi = np.percentile(image, [1, 99])
        hi = hi if hi > lo else lo + 1.0
    else:
        raise ValueError(f"modality must be 'CT' or 'MRI'; got {modality!r}")
    return ((np.clip(image, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def load_decathlon_volumes(root_dir: str | os.PathLike, task: str = "Task09_Spleen", section: str = "training",
                           size: int = 128, download: bool = False, val_frac: float = 0.2, seed: int = 0,
                           crop_to_object: int | None = 4) -> list[dict]:
    """MSD Task09_Spleen (CT) or Task02_Heart (MRI, left atrium) as a list of volume dicts.

    ``monai.apps.DecathlonDataset`` reads ``<root_dir>/<task>/dataset.json``; ``download=True`` fetches the
    archive from MONAI's mirror first (Spleen about 1.5 GB, Heart about 435 MB) and checks its md5.
    Each volume: ``image`` (D, size, size) float32 in [0, 1] (CT windowed to [-160, 240] HU, MRI to its
    1st-99th percentiles), ``label`` (D, size, size) int64 in {0, 1}, ``hard_slices`` = [],
    ``split_range`` = None, ``name``. The in-plane field of view is resized to ``size``; with
    ``crop_to_object`` = m, only the slices holding the object, plus m on each side, are kept (the
    interactive setting: the user starts inside the object's z-range).
    """
    from monai.apps import DecathlonDataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    if task not in DECATHLON_TASKS:
        raise ValueError(f"task must be one of {sorted(DECATHLON_TASKS)}; got {task!r}")
    if section not in {"training", "validation"}:
        raise ValueError(f"section must be 'training' or 'validation' (the test set has no labels); "
                         f"got {section!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16 or size % 8:
        raise ValueError(f"size must be an int >= 16 divisible by 8; got {size!r}")
    root_dir = Path(root_dir)
    root_dir.mkdir(parents=True, exist_ok=True)
    transform = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"]),
                         Orientationd(["image", "label"], axcodes="RAS",
                                      labels=(("L", "R"), ("P", "A"), ("I", "S")))])
    ds = DecathlonDataset(root_dir, task=task, section=section, transform=transform, download=download,
                          val_frac=val_frac, seed=seed, cache_rate=0.0, progress=False)
    volumes = []
    for i in range(len(ds)):
        item = ds[i]
        image = np.asarray(item["image"])[0]
        label = np.rint(np.asarray(item["label"])[0])
        if label.min() < 0 or label.max() > 1:
            raise ValueError(f"{task} labels must lie in {{0, 1}}; got [{label.min()}, {label.max()}]")
        img, lab = _resize_volume(scale_intensity(image, DECATHLON_TASKS[task]), label, size)
        lab = (lab > 0.5).astype(np.int64)
        if crop_to_object is not None:
            zs = np.flatnonzero(lab.any(axis=(1, 2)))
            if len(zs):
                lo, hi = max(0, zs[0] - crop_to_object), min(len(lab), zs[-1] + crop_to_object + 1)
                img, lab = img[lo:hi], lab[lo:hi]
        name = Path(str(item["image"].meta.get("filename_or_obj", f"case{i}"))).name
        volumes.append({"image": img.astype(np.float32), "label": lab, "hard_slices": [], "split_range": None,
                        "name": name})
    return volumes


__all__ = ["make_tube_volume", "make_tube_dataset", "load_decathlon_volumes", "scale_intensity",
           "SPLEEN_WINDOW", "DECATHLON_TASKS"]
