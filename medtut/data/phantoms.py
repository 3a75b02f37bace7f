"""Chapter 0's offline data: 2-D "organ" phantoms with exact segmentation masks.

Each image holds a body ellipse (label 1) containing a smaller bright organ (label 2) and sometimes a
dark lesion inside the organ (label 3), with a smooth bias field, Gaussian noise and random shapes, so a
segmentation network has something real to learn but the ground truth is known exactly.
"""
from __future__ import annotations

import numpy as np
import torch

from .imaging import ellipse_mask

LABELS = {0: "background", 1: "body", 2: "organ", 3: "lesion"}


def make_phantom(rng: np.random.Generator, size: int = 64, noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """One phantom. Returns image (size, size) float32 in about [0, 1] and labels (size, size) int64."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    labels = np.zeros((size, size), dtype=np.int64)
    body = ellipse_mask(yy, xx, 0.5 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.04, 0.04),
                    rng.uniform(0.33, 0.44), rng.uniform(0.3, 0.44), rng.uniform(0, np.pi))
    labels[body] = 1
    cy, cx = 0.5 + rng.uniform(-0.12, 0.12, size=2)
    organ = ellipse_mask(yy, xx, cy, cx, rng.uniform(0.09, 0.17), rng.uniform(0.09, 0.17), rng.uniform(0, np.pi)) & body
    labels[organ] = 2
    if rng.random() < 0.7:
        ly, lx = cy + rng.uniform(-0.04, 0.04), cx + rng.uniform(-0.04, 0.04)
        lesion = ellipse_mask(yy, xx, ly, lx, rng.uniform(0.025, 0.05), rng.uniform(0.025, 0.05), 0.0) & organ
        labels[lesion] = 3
    intensity = np.array([0.0, rng.uniform(0.35, 0.5), rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.6)])
    image = intensity[labels]
    # A distractor blob with organ-like brightness outside the organ teaches shape, not just intensity.
    if rng.random() < 0.5:
        blob = ellipse_mask(yy, xx, *rng.uniform(0.25, 0.75, size=2), 0.04, 0.06, rng.uniform(0, np.pi)) & body & ~organ
        image[blob] = intensity[2] * 0.9
    bias = 1.0 + 0.25 * (rng.uniform(-1, 1) * (yy - 0.5) + rng.uniform(-1, 1) * (xx - 0.5))
    image = image * bias + rng.normal(0, noise, size=image.shape)
    return image.astype(np.float32), labels


def make_phantom_dataset(n: int, size: int = 64, seed: int = 0, noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` phantoms: images (n, 1, size, size) float32 and labels (n, size, size) int64."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels; got {size}")
    rng = np.random.default_rng(seed)
    pairs = [make_phantom(rng, size, noise) for _ in range(n)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
    labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return images, labels
