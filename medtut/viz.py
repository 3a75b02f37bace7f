"""Figures shared by the chapters (defined in chapter 0).

One colour per method across the whole book: :func:`method_color` maps a method's name to a fixed
colour, so "baseline" is the same grey in chapter 1 and chapter 7. Never calls ``matplotlib.use``.

**Colour choices (colour-vision deficiency).** About one man in twelve sees red and green alike,
so no figure of the book may tell two things apart by a red/green difference alone:

* methods: the Okabe-Ito palette (:data:`METHOD_COLORS`, ``#0072B2`` blue for a chapter's method, greys
  for baselines, orange, bluish green, vermillion and reddish purple for the others), which stays
  distinguishable under protanopia, deuteranopia and tritanopia; line styles, markers or hatching add a
  second cue where two hues of one family appear together (chapter 7's light/dark pairs);
* continuous values: perceptually uniform, colour-blind-safe maps, :data:`SEQUENTIAL_CMAP` (viridis) for
  magnitudes such as a standard deviation, :data:`ERROR_CMAP` (magma) for absolute errors and spectra,
  :data:`DIVERGING_CMAP` (blue-red ``RdBu_r``, symmetric limits) for signed differences, grey levels for
  images; never ``jet``/``hsv``/``rainbow``. :data:`CVD_SAFE_CMAPS` lists the maps figures may use
  (``tests/test_accessibility.py`` checks every notebook against it);
* label overlays: :data:`LABEL_COLORS`, Okabe-Ito again, on a grey image;
* a one-value mask (the "wrong pixels" of :func:`show_segmentations`) has a single colour and no scale,
  so its map carries no comparison; it is drawn opaque enough (``alpha=0.8``) to read by lightness too.

Every figure in the book also has alt text (cell metadata ``mystnb.image.alt``) saying what it shows.
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

# Colour-blind-safe (Okabe-Ito + grey). Keys are lower-case method names used across the book.
METHOD_COLORS: dict[str, str] = {
    "baseline": "#7f7f7f",
    "labelled-only": "#7f7f7f",
    "bce": "#7f7f7f",
    "ae": "#7f7f7f",
    "default dip": "#7f7f7f",
    "zero-filled": "#7f7f7f",
    "self-training": "#E69F00",
    "random cohort": "#E69F00",
    "ae + refinement": "#E69F00",
    "ours": "#0072B2",
    "method": "#0072B2",
    "local contrastive": "#0072B2",
    "gfe": "#0072B2",
    "alm": "#0072B2",
    "isnas pick": "#0072B2",
    "posterior mean": "#0072B2",
    "local contrastive + refresh": "#009E73",
    # chapter 7: one hue per base loss, light without and dark with the ALM constraint
    "bce + alm": "#0072B2",
    "w-bce": "#F0B45A",
    "w-bce + alm": "#D55E00",
    "s-fl": "#A6DBA0",
    "s-fl + alm": "#009E73",
    "a-fl": "#E7B5D6",
    "a-fl + alm": "#9C4F7E",
    "mbauc": "#C9B77E",
    "mbauc + alm": "#7A5C12",
    "oracle": "#000000",
    "ground truth": "#000000",
}
_FALLBACK = ["#56B4E9", "#D55E00", "#CC79A7", "#F0E442", "#009E73", "#E69F00", "#0072B2"]

# Colour maps (see the module docstring): perceptually uniform and colour-blind safe.
SEQUENTIAL_CMAP = "viridis"     # magnitudes: standard deviations, ranks, similarities
ERROR_CMAP = "magma"            # absolute errors, power spectra
DIVERGING_CMAP = "RdBu_r"       # signed differences, with limits symmetric about 0
_SAFE_BASE = ("viridis", "cividis", "magma", "inferno", "plasma", "gray", "Greys", "binary", "bone",
              "Blues", "Oranges", "Purples", "RdBu", "PuOr", "BrBG", "coolwarm")
#: Every colour map a figure of the book may use (each also reversed, ``_r``). ``autumn`` only for a
#: one-value mask, which shows a single colour and no scale (see the module docstring).
CVD_SAFE_CMAPS: frozenset[str] = frozenset(_SAFE_BASE + tuple(f"{c}_r" for c in _SAFE_BASE) + ("autumn",))

# Label colours for segmentation overlays (class 0 = background is transparent).
LABEL_COLORS = ["#00000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]


def method_color(name: str) -> str:
    """The book-wide colour of a method; unknown names get a stable colour derived from the name."""
    key = name.strip().lower()
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    digest = int(hashlib.md5(key.encode()).hexdigest(), 16)
    return _FALLBACK[digest % len(_FALLBACK)]


def to_numpy_image(x) -> np.ndarray:
    """(H, W), (1, H, W), (C, H, W) tensor/array → (H, W) or (H, W, C) numpy for ``imshow``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D image (H, W) or (C, H, W); got shape {x.shape}")
    return x


def label_cmap(num_classes: int):
    from matplotlib.colors import ListedColormap
    return ListedColormap(LABEL_COLORS[:max(num_classes, 2)])


def overlay(ax, image, mask=None, num_classes: int | None = None, alpha: float = 0.45, title: str = ""):
    """Show a grey image with an integer label mask on top (background transparent)."""
    image = to_numpy_image(image)
    ax.imshow(image, cmap="gray")
    if mask is not None:
        mask = to_numpy_image(mask).astype(int)
        k = num_classes or int(mask.max()) + 1
        ax.imshow(np.ma.masked_equal(mask, 0), cmap=label_cmap(k), vmin=0, vmax=k - 1,
                  alpha=alpha, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return ax


def show_segmentations(images, targets, predictions: Mapping[str, Sequence], num_classes: int,
                       rows: int | None = None, titles: Sequence[str] | None = None):
    """Rows of image | ground truth | one column per method | error of the last method.

    images, targets: sequences of (H, W); predictions: ``{method: sequence of (H, W) label maps}``.
    The error column marks every pixel whose label is wrong (red).
    """
    n = len(images) if rows is None else min(rows, len(images))
    methods = list(predictions)
    cols = 2 + len(methods) + 1
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    for i in range(n):
        overlay(axes[i, 0], images[i], title="image" if i == 0 else "")
        overlay(axes[i, 1], images[i], targets[i], num_classes, title="ground truth" if i == 0 else "")
        for j, m in enumerate(methods):
            overlay(axes[i, 2 + j], images[i], predictions[m][i], num_classes, title=m if i == 0 else "")
        wrong = to_numpy_image(predictions[methods[-1]][i]) != to_numpy_image(targets[i])
        axes[i, -1].imshow(to_numpy_image(images[i]), cmap="gray")
        axes[i, -1].imshow(np.ma.masked_equal(wrong.astype(int), 0), cmap="autumn", alpha=0.8,
                           interpolation="nearest")
        axes[i, -1].set_title(f"errors: {methods[-1]}" if i == 0 else "")
        axes[i, -1].axis("off")
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i])
    fig.tight_layout()
    return fig


def show_reconstructions(images: Mapping[str, object], reference=None, cmap: str = "gray",
                         error_scale: float | None = None, suptitle: str = ""):
    """One row: each named image, then |image − reference| of the last one (with a colour bar).

    images: ``{title: (H, W) or (C, H, W)}``; reference: the ground truth, shown first when given.
    """
    panels = ([("ground truth", reference)] if reference is not None else []) + list(images.items())
    with_error = reference is not None and len(images) > 0
    cols = len(panels) + int(with_error)
    fig, axes = plt.subplots(1, cols, figsize=(2.8 * cols, 3.0), squeeze=False)
    axes = axes[0]
    ref = to_numpy_image(reference) if reference is not None else None
    vmin = float(ref.min()) if ref is not None else None
    vmax = float(ref.max()) if ref is not None else None
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(to_numpy_image(img), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title)
        ax.axis("off")
    if with_error:
        last_title, last = list(images.items())[-1]
        err = np.abs(to_numpy_image(last) - ref)
        if err.ndim == 3:
            err = err.mean(-1)
        im = axes[-1].imshow(err, cmap=ERROR_CMAP, vmin=0, vmax=error_scale or float(err.max()) or 1.0)
        axes[-1].set_title(f"|error| ({last_title})")
        axes[-1].axis("off")
        fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_history(histories: Mapping[str, object], keys: Sequence[str] = ("loss",), smooth: int = 1,
                 logy: bool = False, xlabel: str = "step"):
    """Training curves: one panel per metric, one line per method (book-wide colours).

    histories: ``{method: medtut.train.History}``; ``smooth`` is a moving-average window in records.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            if key not in hist.keys():
                continue
            y, x = hist[key], hist.steps(key)
            if smooth > 1 and len(y) >= smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                x = x[smooth - 1:]
            ax.plot(x, y, label=name, color=method_color(name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def bar_with_errors(ax, results: Mapping[str, Sequence[float]], ylabel: str, title: str = ""):
    """Bars of the mean with ± std error bars and the individual seeds as dots."""
    names = list(results)
    for i, name in enumerate(names):
        vals = np.asarray(results[name], dtype=float)
        ax.bar(i, np.nanmean(vals), yerr=np.nanstd(vals, ddof=1) if len(vals) > 1 else 0,
               color=method_color(name), alpha=0.8, capsize=4)
        ax.plot(np.full(len(vals), i), vals, "k.", alpha=0.6)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return ax


__all__ = ["METHOD_COLORS", "LABEL_COLORS", "SEQUENTIAL_CMAP", "ERROR_CMAP", "DIVERGING_CMAP", "CVD_SAFE_CMAPS",
           "method_color", "overlay", "show_segmentations", "show_reconstructions",
           "plot_history", "bar_with_errors", "to_numpy_image", "label_cmap"]
