"""Chapter 6's data: synthetic cell-painting crops with mechanisms of action and batch effects, and a
loader for the real BBBC021 drug screen.

Offline (quick mode, tests, the book's CPU run)
    :func:`make_cell_screen` draws a small drug screen of 32 x 32 single-cell crops with three stains
    (channel 0 DNA, 1 beta-tubulin, 2 F-actin, as in BBBC021). A cell is rendered from a 9-d
    *morphology vector* (:data:`MORPHOLOGY`); each mechanism of action (MoA) shifts that vector away
    from the DMSO control (:data:`MOA_EFFECTS`). Three compounds per MoA (the prototype shift plus a
    small compound-specific offset), two concentrations (50 % and 100 % of the effect), three wells of 16
    cells per treatment, and four DMSO wells per batch. Four batches ("weeks") each apply per-channel
    gain U(0.55, 1.45), an offset, blur and noise to every image they hold. As in BBBC021, batch and
    MoA are confounded: two of the three compounds of each MoA sit in the MoA's *home* batch, the third
    elsewhere. Defaults: 1,984 cells, 124 wells (108 treated, 16 DMSO), 36 treatments.

Real data (Colab / GPU)
    BBBC021 v1 (Ljosa et al. 2012; Caie et al. 2010): per its page on the Broad Bioimage Benchmark
    Collection, one ZIP of 16-bit TIFFs per plate plus CSV tables. :func:`read_bbbc021_metadata` joins the
    image and MoA tables; :func:`plates_to_fetch` lists the plates holding annotated treatments (their DMSO
    wells come along); :func:`bbbc021_table` / :func:`bbbc021_plate` register the tables and each plate ZIP
    with :func:`medtut.data.register` (sha256 recorded at the first download, as the Broad publishes no
    checksums); :func:`crops_from_plate_zip` reads one plate ZIP, corrects illumination with the plate's
    median image, segments nuclei on DAPI and crops around them; :func:`load_bbbc021` drives the whole
    thing through :func:`medtut.data.fetch`, one ZIP at a time, and caches the crops as ``.npz``.

Every loader returns a :class:`CellScreen`: ``images`` (N, 3, H, W) float32 and ``meta``, a dict of
(N,) numpy arrays with the keys of :data:`META_KEYS`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from . import RemoteDataset, data_root, fetch, register

CHANNELS = ("DNA", "tubulin", "actin")
META_KEYS = ("plate", "well", "batch", "compound", "concentration", "moa", "is_control")
CONTROL = "DMSO"

# ------------------------------------------------------------------------------------------------
# the morphology space
# ------------------------------------------------------------------------------------------------
#: the 9 morphology parameters of a cell, with their DMSO value and the cell-to-cell spread (std)
MORPHOLOGY = {
    #  name            DMSO   spread
    "cell_radius":    (8.0,   0.7),    # px, mean radius of the cell body
    "nucleus_radius": (3.6,   0.35),   # px, radius of one nucleus
    "n_nuclei":       (0.0,   0.25),   # extra nuclei (rounded after noise: 0 -> one nucleus)
    "fragments":      (0.1,   0.25),   # expected number of micronuclei / DNA fragments
    "tubulin_ring":   (0.25,  0.08),   # strength of the perinuclear tubulin bundle
    "tubulin_level":  (0.45,  0.06),   # diffuse cytoplasmic tubulin
    "actin_cortex":   (0.8,   0.1),    # strength of the cortical actin ring
    "actin_puncta":   (0.05,  0.05),   # strength of actin puncta
    "brightness":     (1.0,   0.07),   # overall staining intensity (all channels)
}
MORPHOLOGY_NAMES = tuple(MORPHOLOGY)

#: each MoA's full-concentration shift of the morphology vector (from DMSO, in the units above)
MOA_EFFECTS = {
    "Microtubule stabilizers":   {"cell_radius": 2.5, "tubulin_ring": 0.65, "tubulin_level": 0.1},
    "Microtubule destabilizers": {"cell_radius": -2.0, "tubulin_ring": -0.2, "tubulin_level": 0.3},
    "Actin disruptors":          {"actin_cortex": -0.6, "actin_puncta": 0.55},
    "DNA damage":                {"nucleus_radius": 1.3, "fragments": 2.0},
    "Protein synthesis":         {"cell_radius": -1.5, "brightness": -0.35},
    "Aurora kinase inhibitors":  {"cell_radius": 2.5, "n_nuclei": 1.6, "nucleus_radius": 0.4},
}
MOAS = tuple(MOA_EFFECTS)
#: short codes used in compound names (``MTS-1`` is the first microtubule stabilizer)
MOA_CODES = {"Microtubule stabilizers": "MTS", "Microtubule destabilizers": "MTD", "Actin disruptors": "ACT",
             "DNA damage": "DNA", "Protein synthesis": "PRS", "Aurora kinase inhibitors": "AUR"}


# ------------------------------------------------------------------------------------------------
# argument checks shared by this module and medtut.cell_profiling (issue 24: name the argument, what was
# expected, what arrived)
# ------------------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {type(value).__name__} {value!r}")
    return int(value)


def _check_number(name: str, value, low: float | None = None, *, strict: bool = False,
                  high: float | None = None) -> float:
    ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and math.isfinite(float(value)))
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rng = "" if low is None else f" {'>' if strict else '>='} {low}"
        rng += "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be a finite number{rng}; got {type(value).__name__} {value!r}")
    return float(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(rng).__name__}")


def _effect_vector(effects: Mapping[str, float]) -> np.ndarray:
    return np.array([effects.get(k, 0.0) for k in MORPHOLOGY_NAMES], dtype=np.float64)


@dataclass
class CellScreen:
    """A drug screen of single-cell crops.

    images: (N, 3, H, W) float32, channels DNA / tubulin / actin, roughly in [0, 1.5].
    meta: dict of (N,) numpy arrays: ``plate``, ``well``, ``batch``, ``compound``, ``moa`` (str; ``""``
        for DMSO), ``concentration`` (float, µM on BBBC021 and fraction of the full effect here) and
        ``is_control`` (bool).
    morphology: (N, 9) float64, the morphology vector each synthetic cell was drawn from (None for real
        data): the ground truth a perfect profile would recover.
    """
    images: torch.Tensor
    meta: dict
    morphology: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        check_screen(self.images, self.meta)
        if self.morphology is not None:
            m = np.asarray(self.morphology)
            if m.shape != (self.images.shape[0], len(MORPHOLOGY)):
                raise ValueError(f"morphology must be (N, {len(MORPHOLOGY)}) = ({self.images.shape[0]}, "
                                 f"{len(MORPHOLOGY)}) or None; got shape {m.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def treatments(self) -> list[tuple[str, float]]:
        """The distinct (compound, concentration) pairs that are not controls, sorted."""
        m = self.meta
        keep = ~m["is_control"]
        return sorted(set(zip(m["compound"][keep].tolist(), m["concentration"][keep].tolist())))


def check_screen(images, meta) -> None:
    """Validate a screen: (N, C, H, W) float images without NaN, and every meta key of length N."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"images must be a float tensor (N, C, H, W); got {got}"
                         + (f" {images.dtype}" if hasattr(images, "dtype") else ""))
    if images.shape[0] == 0:
        raise ValueError("images is empty: a screen needs at least one cell")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a dict of (N,) arrays with keys {META_KEYS}; got {type(meta).__name__}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"meta lacks the keys {missing}; it needs {META_KEYS}")
    n = images.shape[0]
    scalar = [k for k in META_KEYS if np.ndim(meta[k]) != 1]
    if scalar:
        raise ValueError(f"every meta column must be a 1-D array of N = {n} entries; {scalar} are not "
                         f"(shapes {[np.shape(meta[k]) for k in scalar]})")
    bad = {k: len(meta[k]) for k in META_KEYS if len(meta[k]) != n}
    if bad:
        raise ValueError(f"every meta column must have one entry per image ({n}); got lengths {bad}")
    if np.asarray(meta["is_control"]).dtype != bool:
        raise ValueError(f"meta['is_control'] must be a bool array; got dtype {np.asarray(meta['is_control']).dtype}"
                         " (use .astype(bool))")
    try:
        conc = np.asarray(meta["concentration"], dtype=float)
    except (TypeError, ValueError):
        raise ValueError("meta['concentration'] must hold numbers (µM, or the fraction of the effect); got "
                         f"{np.asarray(meta['concentration'])[:3]!r}...") from None
    if not np.isfinite(conc).all():
        raise ValueError("meta['concentration'] contains NaN or inf")


# ------------------------------------------------------------------------------------------------
# rendering one cell
# ------------------------------------------------------------------------------------------------
def _soft(d: np.ndarray, edge: float = 0.6) -> np.ndarray:
    """Soft indicator of ``d < 1`` for a normalised radius map ``d`` (edge width in units of d*px)."""
    return 1.0 / (1.0 + np.exp((d - 1.0) / edge))


def render_cell(morph: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render one cell (3, size, size) float32 from its 9-d morphology vector (see :data:`MORPHOLOGY`).

    DNA: 1-3 nuclei (elliptic, textured) plus micronuclei fragments; tubulin: a diffuse cytoplasmic
    level plus a perinuclear ring; actin: a cortical ring at the cell border plus puncta. The cell body
    is an ellipse with a smooth random boundary and a random orientation. Lengths in pixels at size 32.
    """
    morph = np.asarray(morph, dtype=np.float64)
    if morph.shape != (len(MORPHOLOGY),):
        raise ValueError(f"morph must be a ({len(MORPHOLOGY)},) vector; got shape {morph.shape}")
    if not np.isfinite(morph).all():
        raise ValueError(f"morph must be finite; got {morph}")
    _check_rng(rng)
    _check_int("size", size, 8)
    k = size / 32.0
    (cell_r, nuc_r, n_extra, frag, t_ring, t_level, a_cortex, a_puncta, bright) = morph
    cell_r = float(np.clip(cell_r, 4.0, 14.0)) * k
    nuc_r = float(np.clip(nuc_r, 1.8, 0.7 * cell_r / k)) * k
    n_nuc = int(np.clip(np.rint(n_extra), 0, 2)) + 1
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = (size - 1) / 2 + rng.uniform(-1.0, 1.0, size=2) * k
    theta = rng.uniform(0, np.pi)
    ecc = rng.uniform(0.75, 1.0)
    y, x = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    phi = np.arctan2(v, u)
    # smooth, wobbly boundary: radius modulated by low harmonics
    wobble = 1.0 + sum(rng.normal(0, 0.06) * np.cos(h * phi + rng.uniform(0, 2 * np.pi)) for h in (2, 3, 4))
    d_cell = np.sqrt((u / cell_r) ** 2 + (v / (cell_r * ecc)) ** 2) / wobble
    body = _soft(d_cell, 0.08)
    # nuclei: one at the centre, extra ones side by side along the long axis
    dna = np.zeros((size, size))
    offsets = {1: [0.0], 2: [-0.55, 0.55], 3: [-0.8, 0.0, 0.8]}[n_nuc]
    d_nuc_min = np.full((size, size), np.inf)
    for o in offsets:
        ncx, ncy = cx + c * o * nuc_r * 1.6, cy + s * o * nuc_r * 1.6
        nt = theta + rng.normal(0, 0.3)
        nc_, ns_ = np.cos(nt), np.sin(nt)
        nu, nv = nc_ * (xx - ncx) + ns_ * (yy - ncy), -ns_ * (xx - ncx) + nc_ * (yy - ncy)
        r = nuc_r * rng.uniform(0.9, 1.1)
        d = np.sqrt((nu / r) ** 2 + (nv / (r * rng.uniform(0.75, 1.0))) ** 2)
        d_nuc_min = np.minimum(d_nuc_min, d)
        dna += _soft(d, 0.1) * rng.uniform(0.8, 1.0)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.0 * k)
    dna = np.clip(dna, 0, 1.2) * (1.0 + 0.25 * texture / (texture.std() + 1e-8))
    # micronuclei / fragments inside the cell, outside the nucleus
    for _ in range(rng.poisson(max(frag, 0.0))):
        for _try in range(10):
            fy, fx = cy + rng.uniform(-cell_r, cell_r), cx + rng.uniform(-cell_r, cell_r)
            iy, ix = int(np.clip(round(fy), 0, size - 1)), int(np.clip(round(fx), 0, size - 1))
            if body[iy, ix] > 0.5 and d_nuc_min[iy, ix] > 1.2:
                break
        rr = rng.uniform(0.7, 1.2) * k
        dna += 0.9 * np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * rr ** 2))
    # tubulin: diffuse level in the cytoplasm plus a ring just outside the nuclei
    ring_r = 1.0 + 1.8 * k / nuc_r
    tub_ring = np.exp(-((d_nuc_min - ring_r) * nuc_r / (1.3 * k)) ** 2)
    fibres = ndimage.gaussian_filter(rng.normal(size=(size, size)), (0.7 * k, 2.0 * k))
    tub = body * (max(t_level, 0.02) * (1.0 + 0.3 * fibres / (fibres.std() + 1e-8))
                  + max(t_ring, 0.0) * tub_ring)
    # actin: cortical band at the cell border plus puncta inside
    cortex = np.exp(-((d_cell - 0.93) / 0.09) ** 2)
    act = 0.12 * body + max(a_cortex, 0.0) * cortex
    n_p = rng.poisson(6)
    for _ in range(n_p):
        py, px = cy + rng.uniform(-0.8, 0.8) * cell_r, cx + rng.uniform(-0.8, 0.8) * cell_r
        act += max(a_puncta, 0.0) * 1.4 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * (0.8 * k) ** 2)) * body
    img = np.stack([dna, tub, act]) * max(bright, 0.2)
    return np.clip(img, 0, None).astype(np.float32)


def apply_batch_effect(images: np.ndarray, gain: np.ndarray, offset: np.ndarray, blur: float, noise: float,
                       rng: np.random.Generator) -> np.ndarray:
    """The batch ("week") effect on images (N, C, H, W): ``gain_c * blur(x) + offset_c + noise``.

    gain, offset: (C,) per-channel; blur: Gaussian sigma in px (0 = none); noise: std of additive
    Gaussian noise drawn per pixel from ``rng``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
        raise ValueError(f"images must be a finite numeric array (N, C, H, W); got shape {images.shape} "
                         f"dtype {images.dtype}")
    C = images.shape[1]
    for name, v in (("gain", gain), ("offset", offset)):
        a = np.asarray(v, dtype=float) if np.issubdtype(np.asarray(v).dtype, np.number) else None
        if a is None or a.shape != (C,) or not np.isfinite(a).all():
            raise ValueError(f"{name} must be {C} finite numbers, one per channel; got {v!r}")
    if (np.asarray(gain) < 0).any():
        raise ValueError(f"gain must be >= 0 per channel; got {gain!r}")
    _check_number("blur", blur, 0.0)
    _check_number("noise", noise, 0.0)
    _check_rng(rng)
    out = images.astype(np.float64)
    if blur > 0:
        out = ndimage.gaussian_filter(out, (0, 0, blur, blur))
    out = out * np.asarray(gain)[None, :, None, None] + np.asarray(offset)[None, :, None, None]
    out = out + rng.normal(0, noise, size=out.shape)
    return np.clip(out, 0, None).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# the screen
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScreenDesign:
    """Layout of the synthetic screen (defaults: the chapter's; 1,984 cells, 124 wells, 36 treatments)."""
    moas: tuple[str, ...] = MOAS
    compounds_per_moa: int = 3
    concentrations: tuple[float, ...] = (0.5, 1.0)
    wells_per_treatment: int = 3
    cells_per_well: int = 16
    control_wells_per_batch: int = 4
    num_batches: int = 4
    in_home_batch: int = 2          # compounds of each MoA in the MoA's home batch (the rest elsewhere)
    compound_offset: float = 0.2    # size of the compound-specific offset, relative to the MoA's shift
    gain_range: tuple[float, float] = (0.55, 1.45)
    offset_max: float = 0.08
    blur_max: float = 0.8
    noise_range: tuple[float, float] = (0.01, 0.05)
    size: int = 32

    def __post_init__(self):
        if isinstance(self.moas, str) or not isinstance(self.moas, (tuple, list)):
            raise ValueError(f"moas must be a tuple of MoA names from {MOAS}; got {self.moas!r}")
        unknown = [m for m in self.moas if m not in MOA_EFFECTS]
        if unknown or not self.moas:
            raise ValueError(f"moas must be a non-empty subset of {MOAS}; got unknown {unknown}")
        if len(set(self.moas)) != len(self.moas):
            raise ValueError(f"moas must not repeat a MoA; got {self.moas}")
        for name in ("compounds_per_moa", "wells_per_treatment", "cells_per_well", "num_batches"):
            _check_int(name, getattr(self, name), 1)
        _check_int("control_wells_per_batch", self.control_wells_per_batch, 0)
        _check_int("in_home_batch", self.in_home_batch, 0)
        if not 0 <= self.in_home_batch <= self.compounds_per_moa:
            raise ValueError(f"in_home_batch must lie in [0, compounds_per_moa={self.compounds_per_moa}]; "
                             f"got {self.in_home_batch}")
        if (not isinstance(self.concentrations, (tuple, list)) or not self.concentrations
                or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1
                       for c in self.concentrations)):
            raise ValueError(f"concentrations must be fractions in (0, 1]; got {self.concentrations}")
        _check_number("compound_offset", self.compound_offset, 0.0)
        _check_number("offset_max", self.offset_max, 0.0)
        _check_number("blur_max", self.blur_max, 0.0)
        for name, low in (("gain_range", 0.0), ("noise_range", 0.0)):
            r = getattr(self, name)
            if (not isinstance(r, (tuple, list)) or len(r) != 2
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in r)
                    or not low <= r[0] <= r[1]):
                raise ValueError(f"{name} must be a pair (low, high) with {low} <= low <= high; got {r!r}")
        _check_int("size", self.size, 24)

    @property
    def num_treatments(self) -> int:
        return len(self.moas) * self.compounds_per_moa * len(self.concentrations)

    @property
    def num_wells(self) -> int:
        return self.num_treatments * self.wells_per_treatment + self.num_batches * self.control_wells_per_batch

    @property
    def num_cells(self) -> int:
        return self.num_wells * self.cells_per_well


def compound_batches(design: ScreenDesign = ScreenDesign()) -> dict[str, int]:
    """The batch of every compound: MoA ``m`` has home batch ``m % num_batches``; its first
    ``in_home_batch`` compounds sit there, the others in the next batches (mod ``num_batches``)."""
    if not isinstance(design, ScreenDesign):
        raise ValueError(f"design must be a ScreenDesign; got {type(design).__name__}")
    out = {}
    for m, moa in enumerate(design.moas):
        home = m % design.num_batches
        for j in range(design.compounds_per_moa):
            away = j - design.in_home_batch + 1 + m // design.num_batches
            out[compound_name(moa, j)] = home if j < design.in_home_batch else (home + away) % design.num_batches
    return out


def compound_name(moa: str, j: int) -> str:
    """``'MTS-1'``: the MoA's short code (:data:`MOA_CODES`) and the compound's number from 1."""
    if moa not in MOA_CODES:
        raise ValueError(f"moa must be one of {MOAS}; got {moa!r}")
    _check_int("j", j, 0)
    return f"{MOA_CODES[moa]}-{j + 1}"


def make_cell_screen(design: ScreenDesign = ScreenDesign(), seed: int = 0) -> CellScreen:
    """Draw the synthetic screen (see the module docstring). Same seed, same screen.

    Each cell's morphology = DMSO + concentration * (MoA shift + compound offset) + cell-to-cell noise
    (the spreads of :data:`MORPHOLOGY`). Every batch draws its gain, offset, blur and noise once and
    applies them to all its cells. Plates are named ``Week<b+1>`` (one plate per batch), wells ``A01``...
    """
    if not isinstance(design, ScreenDesign):
        raise ValueError(f"design must be a ScreenDesign; got {type(design).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    rng = np.random.default_rng(seed)
    base = np.array([MORPHOLOGY[k][0] for k in MORPHOLOGY_NAMES])
    spread = np.array([MORPHOLOGY[k][1] for k in MORPHOLOGY_NAMES])
    batch_of = compound_batches(design)
    effects = {}
    for moa in design.moas:
        shift = _effect_vector(MOA_EFFECTS[moa])
        scale = np.abs(shift).max()
        for j in range(design.compounds_per_moa):
            # compound-specific offset: along the MoA's own directions and a little off them
            off = rng.normal(0, 1, size=shift.shape) * design.compound_offset * (np.abs(shift) + 0.15 * scale * spread
                                                                                  / spread.max())
            effects[compound_name(moa, j)] = (moa, shift + off)
    # wells, in plate order
    wells = []   # (batch, compound, concentration, moa, effect or None)
    for comp, (moa, eff) in effects.items():
        for conc in design.concentrations:
            for _ in range(design.wells_per_treatment):
                wells.append((batch_of[comp], comp, float(conc), moa, eff))
    for b in range(design.num_batches):
        for _ in range(design.control_wells_per_batch):
            wells.append((b, CONTROL, 0.0, "", None))
    batch_fx = [dict(gain=rng.uniform(*design.gain_range, size=3), offset=rng.uniform(0, design.offset_max, size=3),
                     blur=float(rng.uniform(0, design.blur_max)), noise=float(rng.uniform(*design.noise_range)))
                for _ in range(design.num_batches)]
    counter = [0] * design.num_batches
    images, morphs, meta = [], [], {k: [] for k in META_KEYS}
    for b, comp, conc, moa, eff in wells:
        idx = counter[b]
        counter[b] += 1
        well = f"{chr(ord('A') + idx // 12)}{idx % 12 + 1:02d}"
        mean = base if eff is None else base + conc * eff
        m = mean + rng.normal(size=(design.cells_per_well, len(base))) * spread
        crops = np.stack([render_cell(mi, rng, design.size) for mi in m])
        fx = batch_fx[b]
        images.append(apply_batch_effect(crops, fx["gain"], fx["offset"], fx["blur"], fx["noise"], rng))
        morphs.append(m)
        for key, val in (("plate", f"Week{b + 1}"), ("well", well), ("batch", f"Week{b + 1}"),
                         ("compound", comp), ("concentration", conc), ("moa", moa),
                         ("is_control", eff is None)):
            meta[key].extend([val] * design.cells_per_well)
    meta = {k: np.array(v, dtype=bool if k == "is_control" else float if k == "concentration" else object)
            for k, v in meta.items()}
    for k in ("plate", "well", "batch", "compound", "moa"):
        meta[k] = meta[k].astype(str)
    return CellScreen(torch.from_numpy(np.concatenate(images)), meta, np.concatenate(morphs))


# ------------------------------------------------------------------------------------------------
# BBBC021 (real data, for Colab)
# ------------------------------------------------------------------------------------------------
BBBC021_BASE = "https://data.broadinstitute.org/bbbc/BBBC021"
#: the two metadata tables. The Broad publishes no checksums for BBBC021; these URLs are stable since 2012
#: but not versioned, so :func:`medtut.data.fetch` records their sha256 at the first download and verifies
#: every later use against it (trust on first use; it warns when it records).
BBBC021_IMAGE_CSV = register(RemoteDataset(
    name="bbbc021-image-csv", url=f"{BBBC021_BASE}/BBBC021_v1_image.csv", hash_value=None,
    description="BBBC021 v1 image table: one row per field of view (plate, well, compound, "
                "concentration and the three TIFF file names)", license="CC BY-NC-SA 3.0"))
BBBC021_MOA_CSV = register(RemoteDataset(
    name="bbbc021-moa-csv", url=f"{BBBC021_BASE}/BBBC021_v1_moa.csv", hash_value=None,
    description="BBBC021 v1 MoA table: compound, concentration and mechanism of action of the annotated "
                "treatments", license="CC BY-NC-SA 3.0"))
_IMAGE_COLUMNS = {"plate": "Image_Metadata_Plate_DAPI", "well": "Image_Metadata_Well_DAPI",
                  "compound": "Image_Metadata_Compound", "concentration": "Image_Metadata_Concentration",
                  "DNA": "Image_FileName_DAPI", "tubulin": "Image_FileName_Tubulin",
                  "actin": "Image_FileName_Actin", "folder": "Image_PathName_DAPI"}
_ROW_KEYS = ("plate", "well", "batch", "compound", "concentration", "moa", "is_control", "DNA", "tubulin", "actin")


def _check_base_url(base_url) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"base_url must be an https://, http:// or file:// URL of a BBBC021 mirror; got {base_url!r}")
    return base_url.rstrip("/")


def _dataset_name(stem: str, base_url: str) -> str:
    """Registry name: ``stem`` for the Broad's server, ``stem@<8 hex of the URL>`` for another mirror."""
    if base_url == BBBC021_BASE:
        return stem
    return f"{stem}@{hashlib.sha1(base_url.encode()).hexdigest()[:8]}"


def bbbc021_table(which: str, base_url: str = BBBC021_BASE) -> RemoteDataset:
    """The registered :class:`~medtut.data.RemoteDataset` of a metadata table (``which``: ``"image"`` or
    ``"moa"``), for the Broad's server or a mirror at ``base_url`` (registered on first use)."""
    if which not in ("image", "moa"):
        raise ValueError(f"which must be 'image' or 'moa'; got {which!r}")
    base_url = _check_base_url(base_url)
    default = BBBC021_IMAGE_CSV if which == "image" else BBBC021_MOA_CSV
    if base_url == BBBC021_BASE:
        return default
    return register(RemoteDataset(name=_dataset_name(default.name, base_url),
                                  url=f"{base_url}/BBBC021_v1_{which}.csv", hash_value=None,
                                  description=default.description + f" (mirror {base_url})", license=default.license))


def _read_csv(source) -> list[dict]:
    if isinstance(source, (str, os.PathLike)) and Path(source).exists():
        text = Path(source).read_text()
    elif isinstance(source, str) and "\n" in source:
        text = source
    else:
        raise ValueError(f"expected the path of an existing CSV file or CSV text; got {source!r}"[:200])
    return list(csv.DictReader(io.StringIO(text)))


def _float(value: str, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: concentration must be a number; got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{what}: concentration must be finite; got {value!r}")
    return out


def read_bbbc021_metadata(image_csv, moa_csv) -> list[dict]:
    """Join BBBC021's image table with its MoA table.

    image_csv, moa_csv: paths (or the CSV text) of ``BBBC021_v1_image.csv`` and ``BBBC021_v1_moa.csv``.
    Returns one dict per field of view that is DMSO or an annotated treatment, with keys ``plate``,
    ``well``, ``batch`` (the ``WeekN`` prefix of the plate), ``compound``, ``concentration`` (float, µM),
    ``moa`` (``""`` for DMSO), ``is_control``, ``folder`` and the three file names ``DNA``, ``tubulin``,
    ``actin``. Fields of view of unannotated compounds are dropped.
    """
    images = _read_csv(image_csv)
    moas = _read_csv(moa_csv)
    if not images:
        raise ValueError("the image CSV has no rows")
    missing = [c for c in _IMAGE_COLUMNS.values() if c not in images[0]]
    if missing:
        raise ValueError(f"the image CSV lacks the columns {missing}; is it BBBC021_v1_image.csv?")
    if not moas or not {"compound", "concentration", "moa"} <= set(moas[0]):
        raise ValueError("the MoA CSV must have the columns compound, concentration, moa "
                         "(BBBC021_v1_moa.csv)")
    moa_of = {(r["compound"], _float(r["concentration"], f"MoA CSV row {k + 2}")): r["moa"]
              for k, r in enumerate(moas)}
    rows = []
    for k, r in enumerate(images):
        row = {key: r[c] for key, c in _IMAGE_COLUMNS.items()}
        row["concentration"] = _float(row["concentration"], f"image CSV row {k + 2}")
        control = row["compound"] == CONTROL
        moa = moa_of.get((row["compound"], row["concentration"]))
        if not control and moa is None:
            continue
        if control and moa is not None and moa != CONTROL:
            raise ValueError(f"DMSO rows should carry no MoA; got {moa!r}")
        if not re.fullmatch(r"Week\d+_\d+", row["plate"] or ""):
            raise ValueError(f"image CSV row {k + 2}: plate must look like 'Week1_22123'; got {row['plate']!r}")
        row["moa"] = "" if control else moa
        row["is_control"] = control
        row["batch"] = row["plate"].split("_")[0]
        rows.append(row)
    if not rows:
        raise ValueError("no field of view of the image CSV is DMSO or an annotated treatment")
    return rows


def _check_rows(rows) -> list[dict]:
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows must be a non-empty list of dicts from read_bbbc021_metadata; got "
                         f"{type(rows).__name__}")
    bad = [k for k in _ROW_KEYS if not all(isinstance(r, Mapping) and k in r for r in rows)]
    if bad:
        raise ValueError(f"rows must be dicts from read_bbbc021_metadata with the keys {list(_ROW_KEYS)}; "
                         f"some lack {bad}")
    return list(rows)


def _check_weeks(weeks) -> list[str] | None:
    if weeks is None:
        return None
    if isinstance(weeks, str) or not isinstance(weeks, Iterable):
        raise ValueError(f"weeks must be a list of batch names such as ['Week1', 'Week2'] (not one string); "
                         f"got {weeks!r}")
    weeks = list(weeks)
    bad = [w for w in weeks if not (isinstance(w, str) and re.fullmatch(r"Week\d+", w))]
    if bad or not weeks:
        raise ValueError(f"weeks must be a non-empty list of names like 'Week1'; got {weeks!r}")
    return weeks


def plates_to_fetch(rows: Sequence[dict], weeks: Iterable[str] | None = None) -> list[str]:
    """The plates (``Week1_22123`` style, also the name of their ZIP) holding at least one field of an
    annotated treatment, optionally only those of some weeks. Every plate also holds DMSO wells, so a
    plate with DMSO alone adds controls but no treatment and is not fetched."""
    rows = _check_rows(rows)
    weeks = _check_weeks(weeks)
    return sorted({r["plate"] for r in rows
                   if not r["is_control"] and (weeks is None or r["batch"] in weeks)})


def plate_zip_url(plate: str, base_url: str = BBBC021_BASE) -> str:
    """URL of one plate's ZIP (``BBBC021_v1_images_<plate>.zip``) on the Broad server or a mirror."""
    if not isinstance(plate, str) or not re.fullmatch(r"Week\d+_\d+", plate):
        raise ValueError(f"plate must look like 'Week1_22123'; got {plate!r}")
    return f"{_check_base_url(base_url)}/BBBC021_v1_images_{plate}.zip"


def bbbc021_plate(plate: str, base_url: str = BBBC021_BASE) -> RemoteDataset:
    """Register (once) and return one plate ZIP as a :class:`~medtut.data.RemoteDataset` named
    ``bbbc021-<plate>``, so that :func:`medtut.data.fetch` downloads it through a temporary name and
    checks it. The Broad publishes no checksums: its sha256 is recorded at the first download (trust on
    first use), so a later re-download of the same plate that differs is an error, not silently new data."""
    url = plate_zip_url(plate, base_url)
    return register(RemoteDataset(
        name=_dataset_name(f"bbbc021-{plate}", _check_base_url(base_url)), url=url, hash_value=None,
        description=f"BBBC021 v1 plate {plate}: 16-bit TIFFs of DAPI, tubulin and actin per field of view",
        license="CC BY-NC-SA 3.0"))


def _read_tiff(data: bytes) -> np.ndarray:
    import tifffile

    return tifffile.imread(io.BytesIO(data)).astype(np.float32)


def segment_nuclei(dna: np.ndarray, min_area: int = 30) -> np.ndarray:
    """Nucleus centroids (K, 2) as (row, col) from a DAPI image (H, W): Otsu threshold, distance-transform
    watershed to split touching nuclei, objects smaller than ``min_area`` px dropped."""
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    dna = np.asarray(dna)
    if dna.ndim != 2 or min(dna.shape) < 2:
        raise ValueError(f"dna must be a 2-D image (H, W) with H, W >= 2; got shape {dna.shape}")
    if not np.issubdtype(dna.dtype, np.number) or np.iscomplexobj(dna) or not np.isfinite(dna).all():
        raise ValueError(f"dna must hold finite real numbers; got dtype {dna.dtype}"
                         + (" with NaN/inf" if np.issubdtype(dna.dtype, np.number) else ""))
    _check_int("min_area", min_area, 1)
    smooth = gaussian(dna.astype(np.float64), 1.0)
    if smooth.max() <= smooth.min():
        return np.zeros((0, 2))
    mask = smooth > threshold_otsu(smooth)
    dist = ndimage.distance_transform_edt(mask)
    labels_fg, _ = ndimage.label(mask)
    peaks = peak_local_max(dist, min_distance=5, labels=labels_fg)
    markers = np.zeros_like(labels_fg)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    cents = [r.centroid for r in regionprops(labels) if r.area >= min_area]
    return np.array(cents, dtype=np.float64).reshape(-1, 2)


def _check_crop_args(crop, out_size, max_cells_per_image) -> None:
    _check_int("crop", crop, 8)
    _check_int("out_size", out_size, 8)
    if max_cells_per_image is not None:
        _check_int("max_cells_per_image", max_cells_per_image, 1)


def crops_from_plate_zip(zip_path, rows: Sequence[dict], crop: int = 64, out_size: int = 32,
                         max_cells_per_image: int | None = None) -> CellScreen:
    """Single-cell crops of every field of view of ``rows`` found in one plate ZIP.

    Per plate: illumination correction (divide each channel by the plate's median image, smoothed with a
    Gaussian of a tenth of the image size and scaled to mean 1),
    then per field: nuclei segmented on DAPI (:func:`segment_nuclei`), a ``crop`` px window around every
    centroid that fits inside the image, each channel scaled by the plate's 99.9th percentile, resized to
    ``out_size``. Returns the crops (N, 3, out_size, out_size) with their metadata.
    """
    _check_crop_args(crop, out_size, max_cells_per_image)
    rows = _check_rows(rows)
    if not isinstance(zip_path, (str, os.PathLike)) or not Path(zip_path).is_file():
        raise ValueError(f"zip_path must be an existing plate ZIP file; got {zip_path!r}")
    if not zipfile.is_zipfile(zip_path):
        raise ValueError(f"{zip_path} is not a ZIP archive (truncated download?); delete it and fetch the plate "
                         "again")
    with zipfile.ZipFile(zip_path) as zf:
        names = {Path(n).name: n for n in zf.namelist() if n.lower().endswith((".tif", ".tiff"))}
        fields = [r for r in rows if all(r[c] in names for c in CHANNELS)]
        if not fields:
            raise ValueError(f"none of the {len(rows)} fields of view is in {zip_path}")
        stacks = [np.stack([_read_tiff(zf.read(names[r[c]])) for c in CHANNELS]) for r in fields]
    shapes = {s.shape for s in stacks}
    if len(shapes) != 1:
        raise ValueError(f"all fields of a plate must share one shape; got {sorted(shapes)}")
    stack = np.stack(stacks)                                            # (F, 3, H, W)
    if stack.shape[-1] < crop or stack.shape[-2] < crop:
        raise ValueError(f"crop={crop} px is larger than the fields of view {stack.shape[-2:]}")
    sigma = max(stack.shape[-2:]) / 10                                  # illumination varies slowly
    illum = ndimage.gaussian_filter(np.median(stack, axis=0), (0, sigma, sigma), mode="nearest")
    illum = illum / illum.mean(axis=(1, 2), keepdims=True) + 1e-6
    stack = stack / illum[None]
    scale = np.percentile(stack, 99.9, axis=(0, 2, 3)).reshape(1, 3, 1, 1) + 1e-6
    stack = stack / scale
    half = crop // 2
    out, meta = [], {k: [] for k in META_KEYS}
    for r, img in zip(fields, stack):
        cents = segment_nuclei(img[0])
        if max_cells_per_image is not None:
            cents = cents[:max_cells_per_image]
        for cy, cx in cents:
            y0, x0 = int(round(cy)) - half, int(round(cx)) - half
            if y0 < 0 or x0 < 0 or y0 + crop > img.shape[1] or x0 + crop > img.shape[2]:
                continue
            window = torch.from_numpy(np.ascontiguousarray(img[:, y0:y0 + crop, x0:x0 + crop]))
            out.append(torch.nn.functional.interpolate(window[None], size=(out_size, out_size), mode="area")[0])
            for k in META_KEYS:
                meta[k].append(r[k])
    if not out:
        raise ValueError(f"no nucleus found in the fields of {zip_path}")
    meta = {k: np.array(v) for k, v in meta.items()}
    meta["concentration"] = meta["concentration"].astype(float)
    meta["is_control"] = meta["is_control"].astype(bool)
    return CellScreen(torch.stack(out).float(), meta)


def concat_screens(screens: Sequence[CellScreen]) -> CellScreen:
    """Stack several screens (e.g. one per plate) into one."""
    if isinstance(screens, CellScreen) or not isinstance(screens, Sequence) or not screens:
        raise ValueError("concat_screens needs a non-empty list of CellScreen; got "
                         f"{type(screens).__name__}")
    bad = [type(s).__name__ for s in screens if not isinstance(s, CellScreen)]
    if bad:
        raise ValueError(f"concat_screens needs CellScreen items; got {bad}")
    shapes = {tuple(s.images.shape[1:]) for s in screens}
    if len(shapes) != 1:
        raise ValueError(f"all screens must have crops of one shape (C, H, W); got {sorted(shapes)}")
    return CellScreen(torch.cat([s.images for s in screens]),
                      {k: np.concatenate([s.meta[k] for s in screens]) for k in META_KEYS})


def save_screen(screen: CellScreen, path) -> None:
    """Cache a screen as ``.npz`` (images as float16)."""
    if not isinstance(screen, CellScreen):
        raise ValueError(f"screen must be a CellScreen; got {type(screen).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path; got {type(path).__name__}")
    np.savez_compressed(path, images=screen.images.numpy().astype(np.float16),
                        **{f"meta_{k}": screen.meta[k] for k in META_KEYS})


def load_screen(path) -> CellScreen:
    """Inverse of :func:`save_screen`."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise ValueError(f"path must be an existing .npz written by save_screen; got {path!r}")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ["images"] + [f"meta_{k}" for k in META_KEYS] if k not in z.files]
        if missing:
            raise ValueError(f"{path} is not a cached screen (save_screen): it lacks {missing}; delete it to "
                             "rebuild the cache")
        return CellScreen(torch.from_numpy(z["images"].astype(np.float32)),
                          {k: z[f"meta_{k}"] for k in META_KEYS})


def load_bbbc021(weeks: Iterable[str] = ("Week1", "Week2", "Week3", "Week4"), root=None, crop: int = 64,
                 out_size: int = 32, max_cells_per_image: int | None = 40,
                 base_url: str = BBBC021_BASE) -> CellScreen:
    """BBBC021 crops of the annotated treatments and DMSO of the given weeks (downloads; for Colab).

    1. Fetches the image and MoA tables (:func:`medtut.data.fetch`; sha256 recorded at the first download)
       and joins them (:func:`read_bbbc021_metadata`): only fields of DMSO and annotated treatments remain.
    2. Lists the plates of ``weeks`` that hold an annotated treatment (:func:`plates_to_fetch`).
    3. For each plate, one at a time: registers its ZIP (:func:`bbbc021_plate`), fetches it, crops it
       (:func:`crops_from_plate_zip`: illumination correction per plate, nuclei on DAPI, crops), caches
       the crops as ``<root>/bbbc021_crops/<plate>.npz`` and deletes the ZIP before the next one, so the
       disk holds at most one plate ZIP. A plate already cached is not downloaded again.

    base_url: the Broad's server (default) or a mirror holding the same file names (``file://`` works,
    which is how the tests run this function without a network).
    """
    weeks = _check_weeks(weeks)
    _check_crop_args(crop, out_size, max_cells_per_image)
    base_url = _check_base_url(base_url)
    root = Path(root) if root is not None else data_root()
    image_ds, moa_ds = bbbc021_table("image", base_url), bbbc021_table("moa", base_url)
    rows = read_bbbc021_metadata(fetch(image_ds.name, root), fetch(moa_ds.name, root))
    plates = plates_to_fetch(rows, weeks)
    if not plates:
        raise ValueError(f"no plate of the weeks {weeks} holds an annotated treatment")
    cache = root / "bbbc021_crops"
    cache.mkdir(parents=True, exist_ok=True)
    screens = []
    for plate in plates:
        npz = cache / f"{plate}.npz"
        if not npz.exists():
            zpath = fetch(bbbc021_plate(plate, base_url).name, root)
            try:
                plate_rows = [r for r in rows if r["plate"] == plate]
                save_screen(crops_from_plate_zip(zpath, plate_rows, crop, out_size, max_cells_per_image), npz)
            finally:
                Path(zpath).unlink(missing_ok=True)     # its sha256 stays recorded for a later re-download
        screens.append(load_screen(npz))
    return concat_screens(screens)


__all__ = ["CHANNELS", "META_KEYS", "CONTROL", "MORPHOLOGY", "MORPHOLOGY_NAMES", "MOA_EFFECTS", "MOAS",
           "CellScreen", "check_screen", "render_cell", "apply_batch_effect", "ScreenDesign", "compound_batches",
           "compound_name", "make_cell_screen", "BBBC021_BASE", "bbbc021_table", "read_bbbc021_metadata",
           "plates_to_fetch", "plate_zip_url", "bbbc021_plate", "segment_nuclei", "crops_from_plate_zip",
           "concat_screens", "save_screen", "load_screen", "load_bbbc021"]
