"""Chapter 1's data: ACDC-like synthetic short-axis cine stacks, and loaders for the real data sets.

Offline (quick mode, tests, the book's CPU run)
    :func:`make_cardiac_subject` / :func:`make_cardiac_dataset` draw *subjects*: stacks of short-axis
    slices from base to apex with an LV blood pool (label 3), a myocardial ring around it (label 2) and
    an RV crescent on one side (label 1), in ACDC's label order. Every subject has its own "scanner":
    blood and myocardium brightness, a textured background, bright distractor blobs, a multiplicative
    bias field and noise. With one or two labelled subjects that appearance is under-sampled, which is
    what makes the semi-supervised setting of the chapter hard, as it is on ACDC with 1-2 volumes.

Real data (Colab / GPU)
    * MSD Task05_Prostate (the paper's prostate data) through MONAI's ``DecathlonDataset``, which
      downloads the archive from MONAI's mirror and checks its md5: :func:`load_prostate_decathlon`.
    * ACDC (the paper's cardiac data) from its public download, parsed from the NIfTI folder layout
      ``<root>/**/patientXXX/{Info.cfg, patientXXX_frameYY.nii.gz, patientXXX_frameYY_gt.nii.gz}``:
      :func:`load_acdc`. The ACDC server publishes no checksum, so :func:`download_acdc` cannot verify
      the archive (it says so); it is not in :data:`medtut.data.REGISTRY` for that reason.

All loaders return the same thing as the generator: a list of subjects, each a dict with
``image`` (D, H, W) float32 (per-slice z-scored) and ``label`` (D, H, W) int64, slices along axis 0.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .imaging import ellipse_radius

LABELS = {0: "background", 1: "RV", 2: "MYO", 3: "LV"}
NUM_CLASSES = 4
PROSTATE_LABELS = {0: "background", 1: "PZ", 2: "TZ"}

# The ACDC data set as served by the CREATIS "humanheart-project" database (CC BY-NC-SA 4.0; download,
# do not redistribute). No checksum is published for this archive.
ACDC_URL = ("https://humanheart-project.creatis.insa-lyon.fr/database/api/v1/folder/"
            "637218e573e9f0047faa00fc/download")


# ------------------------------------------------------------------------------------------------
# synthetic ACDC-like subjects
# ------------------------------------------------------------------------------------------------
def _smooth_field(rng, size, sigma):
    """A zero-mean, unit-std smooth random field (size, size)."""
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def make_cardiac_subject(rng: np.random.Generator, size: int = 64, n_slices: int = 8
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic subject: a short-axis stack from base (slice 0) to apex (slice n_slices-1).

    Returns image (n_slices, size, size) float32, each slice z-scored, and labels
    (n_slices, size, size) int64 with 0 background, 1 RV, 2 MYO, 3 LV. Lengths are in pixels at
    size 64 and scale with ``size``.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels; got {size}")
    if n_slices < 3:
        raise ValueError(f"n_slices must be >= 3; got {n_slices}")
    k = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # geometry of this subject (at the base)
    cy, cx = size / 2 + rng.uniform(-5, 5, size=2) * k
    r_lv = rng.uniform(6, 10) * k
    wall = rng.uniform(2.5, 4.5) * k
    ecc = rng.uniform(0.8, 1.0)
    rot = rng.uniform(0, np.pi)
    rv_angle = np.deg2rad(rng.uniform(150, 210))
    rv_long, rv_short = rng.uniform(1.2, 1.5), rng.uniform(0.55, 0.8)
    # appearance of this subject ("scanner")
    blood = rng.uniform(0.65, 1.0)
    rv_blood = blood * rng.uniform(0.85, 1.0)
    myo = rng.uniform(0.2, 0.45)
    bg_level, bg_contrast = rng.uniform(0.2, 0.4), rng.uniform(0.05, 0.15)
    background = bg_level + bg_contrast * _smooth_field(rng, size, 2.0 * k)
    n_blobs = int(rng.integers(1, 4))
    blobs = []
    for _ in range(n_blobs):  # bright distractors, away from the heart
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(18, 26) * k
        blobs.append((cy + dist * np.sin(ang), cx + dist * np.cos(ang), rng.uniform(2, 4.5) * k,
                      rng.uniform(2, 4.5) * k, rng.uniform(0, np.pi), rng.uniform(0.6, 1.0)))
    bias = 1.0 + rng.uniform(0.10, 0.35) * np.clip(_smooth_field(rng, size, 12.0 * k) / 2.0, -1, 1)
    noise = rng.uniform(0.03, 0.10)
    shrink = rng.uniform(0.4, 0.55)

    images = np.empty((n_slices, size, size), dtype=np.float32)
    labels = np.zeros((n_slices, size, size), dtype=np.int64)
    for z in range(n_slices):
        s = 1.0 - shrink * z / (n_slices - 1)
        r_endo = r_lv * s
        r_epi = r_endo + wall * (0.8 + 0.2 * s)
        d_lv = ellipse_radius(yy, xx, cy, cx, r_endo * ecc, r_endo, rot)
        d_epi = ellipse_radius(yy, xx, cy, cx, r_epi * ecc, r_epi, rot)
        lab = np.zeros((size, size), dtype=np.int64)
        if z < n_slices - 2:  # the RV vanishes in the two apical slices
            ry, rx = r_epi * rv_long * (0.6 + 0.4 * s), r_epi * rv_short * (0.6 + 0.4 * s)
            off = r_epi * 0.75
            ccy, ccx = cy + off * np.sin(rv_angle), cx + off * np.cos(rv_angle)
            d_rv = ellipse_radius(yy, xx, ccy, ccx, ry, rx, rv_angle)
            rv = (d_rv < 1.0) & (d_epi >= 1.0)
            lab[rv] = 1
        lab[d_epi < 1.0] = 2
        lab[d_lv < 1.0] = 3
        img = background.copy()
        for by, bx, bry, brx, bang, bval in blobs:
            img[ellipse_radius(yy, xx, by, bx, bry, brx, bang) < 1.0] = bval
        img[lab == 1] = rv_blood
        img[lab == 2] = myo
        img[lab == 3] = blood
        img = ndimage.gaussian_filter(img, 0.6 * k) * bias + rng.normal(0, noise, size=img.shape)
        images[z] = (img - img.mean()) / (img.std() + 1e-8)
        labels[z] = lab
    return images, labels


def make_cardiac_dataset(n_subjects: int, size: int = 64, n_slices: int = 8, seed: int = 0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_subjects`` independent subjects.

    Returns images (n_subjects, n_slices, size, size) float32 and labels (n_subjects, n_slices, size,
    size) int64 (0 background, 1 RV, 2 MYO, 3 LV). Same seed, same data.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1; got {n_subjects}")
    rng = np.random.default_rng(seed)
    pairs = [make_cardiac_subject(rng, size, n_slices) for _ in range(n_subjects)]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs])))


# ------------------------------------------------------------------------------------------------
# real data
# ------------------------------------------------------------------------------------------------
def _zscore_slices(volume: np.ndarray) -> np.ndarray:
    """Per-slice z-score of a (D, H, W) volume after clipping to its 1st-99th percentiles."""
    lo, hi = np.percentile(volume, [1, 99])
    volume = np.clip(volume, lo, hi).astype(np.float32)
    mean = volume.mean(axis=(1, 2), keepdims=True)
    std = volume.std(axis=(1, 2), keepdims=True)
    return (volume - mean) / (std + 1e-6)


def _to_stack(image: np.ndarray, label: np.ndarray, size: int) -> dict:
    """(H, W, D) image and label arrays → a subject dict with (D, size, size) slices along axis 0."""
    import torch.nn.functional as F

    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(f"image and label must be (H, W, D) volumes of the same shape; "
                         f"got {image.shape} and {label.shape}")
    img = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))[:, None]
    lab = torch.from_numpy(np.ascontiguousarray(np.moveaxis(label, -1, 0)).astype(np.int64))[:, None]
    img = F.interpolate(img, size=(size, size), mode="area")[:, 0].numpy()
    lab = F.interpolate(lab.float(), size=(size, size), mode="nearest")[:, 0].long().numpy()
    return {"image": _zscore_slices(img), "label": lab}


def load_prostate_decathlon(root_dir: str | os.PathLike, section: str = "training", size: int = 128,
                            download: bool = False, val_frac: float = 0.2, seed: int = 0) -> list[dict]:
    """MSD Task05_Prostate (T2 channel; labels 0 background, 1 PZ, 2 TZ) as a list of subjects.

    Uses ``monai.apps.DecathlonDataset`` (``download=True`` fetches ~230 MB from MONAI's mirror and
    checks the md5 MONAI ships). Each subject: ``image`` (D, size, size) float32 z-scored per slice,
    ``label`` (D, size, size) int64, ``name``. The in-plane field of view is resized to ``size``
    (the paper resamples to 0.625 mm and crops to 192²; we resize the whole slice to keep it simple).
    """
    from monai.apps import DecathlonDataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    if section not in {"training", "validation"}:
        raise ValueError(f"section must be 'training' or 'validation' (the test set has no labels); "
                         f"got {section!r}")
    root_dir = Path(root_dir)
    root_dir.mkdir(parents=True, exist_ok=True)
    transform = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"]),
                         Orientationd(["image", "label"], axcodes="RAS",
                                      labels=(("L", "R"), ("P", "A"), ("I", "S")))])
    ds = DecathlonDataset(root_dir, task="Task05_Prostate", section=section, transform=transform,
                          download=download, val_frac=val_frac, seed=seed, cache_rate=0.0, progress=False)
    subjects = []
    for i in range(len(ds)):
        item = ds[i]
        image = np.asarray(item["image"])[0]  # channel 0 = T2 (channel 1 = ADC)
        label = np.asarray(item["label"])[0]
        if label.max() > 2 or label.min() < 0:
            raise ValueError(f"prostate labels must lie in [0, 2]; got [{label.min()}, {label.max()}]")
        subject = _to_stack(image, np.rint(label).astype(np.int64), size)
        subject["name"] = Path(str(item["image"].meta.get("filename_or_obj", f"case{i}"))).name
        subjects.append(subject)
    return subjects


def download_acdc(root_dir: str | os.PathLike | None = None) -> Path:
    """Download and extract ACDC from :data:`ACDC_URL` into ``<root_dir>/ACDC`` (once).

    The server publishes no checksum, so the archive cannot be verified: a truncated download shows
    up as an extraction error. Re-check the endpoint if it fails (it has moved before).
    """
    from monai.apps import download_and_extract

    from . import data_root

    base = Path(root_dir) if root_dir is not None else data_root()
    out = base / "ACDC"
    if not out.exists():
        download_and_extract(ACDC_URL, filepath=str(base / "ACDC.zip"), output_dir=str(out))
    return out


def _parse_info_cfg(path: Path) -> dict:
    info = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in info:
            raise ValueError(f"{path} has no '{key}:' line; expected ACDC's Info.cfg format")
    return info


def load_acdc(root_dir: str | os.PathLike, size: int = 128, phases: tuple[str, ...] = ("ED", "ES"),
              max_subjects: int | None = None) -> list[dict]:
    """ACDC subjects (labels 0 background, 1 RV, 2 MYO, 3 LV, as in the synthetic data).

    Finds every ``patientXXX`` folder under ``root_dir`` holding an ``Info.cfg``, and loads the
    ``patientXXX_frameYY.nii.gz`` / ``..._gt.nii.gz`` pair of each phase in ``phases`` (the ED and
    ES frame numbers come from Info.cfg). Each entry: ``image`` (D, size, size) float32 z-scored per
    slice, ``label`` (D, size, size) int64, ``name`` (e.g. ``patient001_ED``).
    """
    import nibabel as nib

    root_dir = Path(root_dir)
    for phase in phases:
        if phase not in {"ED", "ES"}:
            raise ValueError(f"phases must be 'ED' and/or 'ES'; got {phase!r}")
    folders = sorted(p.parent for p in root_dir.rglob("Info.cfg") if re.fullmatch(r"patient\d+", p.parent.name))
    if not folders:
        raise ValueError(f"no ACDC patient folders (patientXXX/Info.cfg) found under {root_dir}")
    subjects = []
    for folder in folders[:max_subjects]:
        info = _parse_info_cfg(folder / "Info.cfg")
        for phase in phases:
            frame = int(info[phase])
            stem = f"{folder.name}_frame{frame:02d}"
            img_path, gt_path = folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz"
            if not img_path.exists() or not gt_path.exists():
                raise ValueError(f"expected {img_path.name} and {gt_path.name} in {folder}")
            image = np.asarray(nib.load(str(img_path)).dataobj, dtype=np.float32)
            label = np.rint(np.asarray(nib.load(str(gt_path)).dataobj)).astype(np.int64)
            if label.min() < 0 or label.max() >= NUM_CLASSES:
                raise ValueError(f"{gt_path.name}: ACDC labels must lie in [0, 3]; "
                                 f"got [{label.min()}, {label.max()}]")
            subject = _to_stack(image, label, size)
            subject["name"] = f"{folder.name}_{phase}"
            subjects.append(subject)
    return subjects


__all__ = ["LABELS", "NUM_CLASSES", "PROSTATE_LABELS", "ACDC_URL", "make_cardiac_subject",
           "make_cardiac_dataset", "load_prostate_decathlon", "download_acdc", "load_acdc"]
