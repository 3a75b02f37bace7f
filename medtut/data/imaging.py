"""Small image helpers shared by the data generators and loaders (one home each).

* :func:`ellipse_mask`, :func:`ellipse_radius` — rotated ellipses on a pixel grid, the building block
  of every synthetic phantom in the book;
* :func:`centre_square`, :func:`resize_square`, :func:`to_unit_range` — how a real image of any size
  becomes a square ``(size, size)`` float image in [0, 1].
"""
from __future__ import annotations

import numpy as np


def _ellipse_q(yy, xx, cy, cx, ry, rx, angle):
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2


def ellipse_mask(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
                 angle: float) -> np.ndarray:
    """Boolean mask of the ellipse with centre (cy, cx), radii (ry, rx) and rotation ``angle`` (radians),
    on the coordinate grids ``yy, xx`` (e.g. ``np.mgrid[0:H, 0:W] / H``). Boundary included."""
    return _ellipse_q(yy, xx, cy, cx, ry, rx, angle) <= 1.0


def ellipse_radius(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
                   angle: float) -> np.ndarray:
    """Normalised elliptic radius on the grid: < 1 inside the ellipse, 1 on it, > 1 outside (for nested
    structures such as a myocardial ring between two radii)."""
    return np.sqrt(_ellipse_q(yy, xx, cy, cx, ry, rx, angle))


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of a (H, W) image."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) image; got shape {image.shape}")
    h, w = image.shape
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return image[top:top + m, left:left + m]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) → (size, size) float64, bilinear with anti-aliasing (scikit-image), values preserved."""
    from skimage.transform import resize

    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int; got {size!r}")
    return resize(np.asarray(image, dtype=np.float64), (size, size), order=1, anti_aliasing=True,
                  mode="reflect", preserve_range=True)


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] as float32 (a constant image becomes zeros); NaN or inf is an error."""
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    if not np.isfinite([lo, hi]).all():
        raise ValueError("the image holds NaN or inf values")
    return ((image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)).astype(np.float32)


__all__ = ["ellipse_mask", "ellipse_radius", "centre_square", "resize_square", "to_unit_range"]
