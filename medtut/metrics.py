"""Metrics as thin wrappers over MONAI, scikit-image and scikit-learn, plus the results table.

Defined in chapter 0. Segmentation metrics accept integer label maps, which is what a reader holds
after ``argmax``; they one-hot encode and call MONAI. Image metrics accept numpy arrays or tensors.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_label_maps(pred, target, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (background included); got {num_classes!r}")
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must be label maps of the same shape (B, *spatial); "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.ndim < 3:
        raise ValueError(f"label maps must be (B, H, W) or (B, D, H, W); got shape {tuple(pred.shape)}")
    for name, t in (("pred", pred), ("target", target)):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer label map; got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} values must lie in [0, {num_classes - 1}]; got range "
                             f"[{int(t.min())}, {int(t.max())}]")
    return pred.long(), target.long()


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).float()


def dice(pred, target, num_classes: int, include_background: bool = False) -> np.ndarray:
    """Dice per sample and class, via ``monai.metrics.DiceMetric``.

    pred, target: (B, H, W) or (B, D, H, W) integer label maps in ``[0, num_classes)``.
    Returns (B, C') float array, C' = num_classes - 1 without background. A class absent from both the
    prediction and the target gives NaN (MONAI's convention: no evidence either way), so average with
    ``np.nanmean``.
    """
    from monai.metrics import DiceMetric

    pred, target = _check_label_maps(pred, target, num_classes)
    if num_classes < 2 and not include_background:
        raise ValueError(f"num_classes={num_classes} leaves no foreground class to score; count the background "
                         "too (num_classes=2 for a binary mask) or pass include_background=True")
    metric = DiceMetric(include_background=include_background, reduction="none", ignore_empty=True)
    return metric(_one_hot(pred, num_classes), _one_hot(target, num_classes)).cpu().numpy()


def psnr(image, reference, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)`` (``skimage.metrics.peak_signal_noise_ratio``).

    image, reference: real arrays or tensors of one shape; ``data_range`` (> 0) defaults to the
    reference's max − min. Identical images give ``inf``. The one PSNR of the book; :func:`batch_psnr`
    is its per-image twin for a batch of torch tensors inside a training step.
    """
    from skimage.metrics import peak_signal_noise_ratio

    for name, x in (("image", image), ("reference", reference)):
        if np.iscomplexobj(x) or (isinstance(x, torch.Tensor) and x.is_complex()):
            raise ValueError(f"{name} is complex: PSNR is defined for real images; pass its magnitude (x.abs())")
    image, reference = _as_numpy(image).astype(np.float64), _as_numpy(reference).astype(np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference must have the same shape; got {image.shape} and {reference.shape}")
    if image.size == 0:
        raise ValueError("image and reference are empty")
    if not (np.isfinite(image).all() and np.isfinite(reference).all()):
        raise ValueError("image or reference contains NaN or inf")
    if data_range is None:
        data_range = float(reference.max() - reference.min()) or 1.0
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number; got {data_range!r}")
    if np.array_equal(image, reference):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, image, data_range=data_range))


def batch_psnr(images: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image of a batch, as a torch tensor on the batch's device (no sync, no copy).

    images: (B, ...) real; reference: the same shape, or one image broadcast over the batch
    (``reference.shape == images.shape[1:]`` or with a leading 1). Returns (B,).
    """
    if not isinstance(images, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise ValueError("images and reference must be torch tensors")
    if images.ndim < 2 or images.is_complex() or reference.is_complex():
        raise ValueError(f"images must be a real batch (B, ...); got shape {tuple(images.shape)} dtype {images.dtype}")
    if reference.shape != images.shape and reference.shape[-(images.ndim - 1):] != images.shape[1:]:
        raise ValueError(f"reference must be {tuple(images.shape)} or {tuple(images.shape[1:])}; got "
                         f"{tuple(reference.shape)}")
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number; got {data_range!r}")
    mse = torch.mean((images - reference) ** 2, dim=tuple(range(1, images.ndim)))
    # written as -10 log10(MSE) + 20 log10(range) so that range 1 adds an exact 0
    return -10 * torch.log10(mse) + 20 * math.log10(data_range)


def _check_binary(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y_true, scores = _as_numpy(y_true).ravel(), _as_numpy(scores).astype(np.float64).ravel()
    if y_true.shape != scores.shape:
        raise ValueError(f"y_true and scores must have the same length; got {y_true.size} and {scores.size}")
    if not np.isin(y_true, [0, 1]).all():
        raise ValueError(f"y_true must hold only 0 and 1; got values {np.unique(y_true)[:10]}")
    if not (y_true == 1).any() or not (y_true == 0).any():
        raise ValueError("y_true needs at least one positive and one negative for a ROC curve")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return y_true.astype(int), scores


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); y_true in {0, 1}."""
    from sklearn.metrics import roc_auc_score

    y_true, scores = _check_binary(y_true, scores)
    return float(roc_auc_score(y_true, scores))


def fpr_at_tpr(y_true, scores, tpr: float | Sequence[float]) -> float | np.ndarray:
    """False-positive rate where the ROC curve reaches true-positive rate ``tpr``.

    The ROC is linearly interpolated between its vertices (``sklearn.metrics.roc_curve`` with every
    threshold kept), the usual convention for "FPR at 95 % TPR". Accepts one target or a sequence.
    """
    from sklearn.metrics import roc_curve

    y_true, scores = _check_binary(y_true, scores)
    fprs, tprs, _ = roc_curve(y_true, scores, drop_intermediate=False)
    targets = np.atleast_1d(np.asarray(tpr, dtype=float))
    if targets.size == 0 or not np.isfinite(targets).all() or ((targets < 0) | (targets > 1)).any():
        raise ValueError(f"tpr must lie in [0, 1]; got {targets}")
    out = []
    for t in targets:
        i = int(np.searchsorted(tprs, t, side="left"))  # first vertex with TPR >= t
        if i == 0:
            out.append(float(fprs[0]))
        else:
            # tprs[i-1] < t <= tprs[i]: interpolate along the ROC segment between the two vertices
            w = (t - tprs[i - 1]) / (tprs[i] - tprs[i - 1])
            out.append(float(fprs[i - 1] + w * (fprs[i] - fprs[i - 1])))
    return out[0] if np.ndim(tpr) == 0 else np.array(out)


def mean_std(values: Sequence[float], fmt: str = ".3f") -> str:
    """``'0.812 ± 0.031'`` (sample std, ddof=1), or just ``'0.812'`` for a value measured once (a spread
    of one value is unknown, not zero). NaNs are ignored."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return "n/a"
    if arr.size == 1:
        return f"{arr[0]:{fmt}}"
    return f"{arr.mean():{fmt}} ± {float(arr.std(ddof=1)):{fmt}}"


@dataclass(frozen=True)
class PairedDifference:
    """Summary of paired differences d_i = a_i − b_i (one per draw/seed), from :func:`paired_difference`."""
    differences: tuple
    mean: float
    std: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    sign_test_p: float

    def __str__(self) -> str:
        n = len(self.differences)
        return (f"{self.mean:+.3f} ± {self.std:.3f} (n = {n}; 95 % bootstrap CI [{self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}]; a ahead in {self.wins}/{n}, behind in {self.losses}/{n}; "
                f"two-sided sign test p = {self.sign_test_p:.3f})")


def paired_difference(a: Sequence[float], b: Sequence[float], *, n_boot: int = 10_000, seed: int = 0,
                      tie: float = 0.0) -> PairedDifference:
    """Paired comparison of two arms measured on the same draws: d_i = a_i − b_i.

    Returns the mean and sample std (ddof=1) of d, a 95 % percentile bootstrap interval of the mean
    (``n_boot`` resamples of the draws, from ``numpy.random.default_rng(seed)``), the number of draws
    where a is ahead (d_i > ``tie``) or behind (d_i < −``tie``), and the two-sided exact sign test p-value
    over the untied draws (``scipy.stats.binomtest``; 1.0 when all are tied).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be 1-D sequences of the same length >= 2 (one value per draw); got "
                         f"shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite; got NaN or inf (drop or explain failed draws first)")
    if n_boot < 100 or tie < 0:
        raise ValueError(f"need n_boot >= 100 and tie >= 0; got n_boot={n_boot}, tie={tie}")
    from scipy.stats import binomtest

    d = a - b
    boot = d[np.random.default_rng(seed).integers(0, d.size, size=(int(n_boot), d.size))].mean(1)
    wins, losses = int((d > tie).sum()), int((d < -tie).sum())
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return PairedDifference(tuple(float(x) for x in d), float(d.mean()), float(d.std(ddof=1)),
                            float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)), wins, losses,
                            float(p))


class ResultsTable:
    """A table of mean ± std over seeds that renders as HTML in a notebook and as Markdown in text.

    ``rows``: list of dicts of already-formatted cells; ``columns``: their order.
    """

    def __init__(self, rows: list[dict], columns: list[str], caption: str = ""):
        self.rows, self.columns, self.caption = rows, columns, caption

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(str(row.get(c, "")) for c in self.columns) + " |")
        return (self.caption + "\n\n" if self.caption else "") + "\n".join(lines)

    __str__ = to_markdown

    def __repr__(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in self.columns)
                       + "</tr>" for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summarize(results: Mapping[str, Mapping[str, Sequence[float]]], *, fmt: str = ".3f",
              extra: Mapping[str, Mapping[str, object]] | None = None, caption: str = "") -> ResultsTable:
    """Turn per-seed results into a ``mean ± std`` table.

    results: ``{method: {metric: [value per seed, ...]}}``.
    extra: ``{method: {column: value}}`` for non-averaged columns such as the paper's number, the
    budget, the device or the wall time.

    >>> summarize({"baseline": {"Dice": [0.70, 0.74]}, "ours": {"Dice": [0.80, 0.78]}},
    ...           extra={"ours": {"paper": "0.82"}})
    """
    if not results:
        raise ValueError("results is empty: nothing to summarise")
    metric_names: list[str] = []
    for per_metric in results.values():
        for m in per_metric:
            if m not in metric_names:
                metric_names.append(m)
    extra_cols: list[str] = []
    for cols in (extra or {}).values():
        for c in cols:
            if c not in extra_cols:
                extra_cols.append(c)
    rows = []
    for method, per_metric in results.items():
        row: dict = {"method": method}
        n = 0
        for m in metric_names:
            vals = per_metric.get(m, [])
            row[m] = mean_std(vals, fmt) if len(vals) else ""
            n = max(n, len(vals))
        row["n"] = n
        row.update({c: (extra or {}).get(method, {}).get(c, "") for c in extra_cols})
        rows.append(row)
    return ResultsTable(rows, ["method", *metric_names, "n", *extra_cols], caption)


__all__ = ["dice", "psnr", "batch_psnr", "roc_auc", "fpr_at_tpr", "mean_std", "summarize", "ResultsTable",
           "paired_difference", "PairedDifference"]
