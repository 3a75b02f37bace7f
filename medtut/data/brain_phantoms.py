"""Chapter 10's data: head-like magnitude images for MR reconstruction.

* Offline (tests, quick mode, the book's own runs): :func:`make_head_phantoms` draws procedurally
  generated heads (skull ring, brain, grey/white contrast, ventricles, a few random "lesions", a smooth
  intensity non-uniformity) and :func:`shepp_logan` resizes scikit-image's bundled Shepp-Logan phantom,
  an image the VAE never sees in training (held out, but still head-like); :func:`natural_image` resizes
  one of scikit-image's bundled photographs (the cameraman by default), an image clearly outside the
  training distribution.
* Real data on Colab: :func:`brainweb_t1_slices` (BrainWeb's 20 normal brains via the optional
  ``brainweb-dl`` package, imported only when called) and :func:`load_fastmri_slice` /
  :func:`fastmri_image` for fastMRI HDF5 files that the user has downloaded under the fastMRI
  data-sharing agreement (we cannot ship or fetch them).

All images are float32 magnitudes scaled to [0, 1], shape (H, W) for one image and (N, 1, H, W) for a
batch, which is what :mod:`medtut.mr_sampling` expects.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .imaging import centre_square, ellipse_mask, resize_square, to_unit_range


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an int >= 16 pixels; got {size!r}")


def make_head_phantom(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One head-like magnitude image, (size, size) float32 in [0, 1].

    Layers, from outside in (coordinates in units of the field of view, centred at 0.5): a bright skull
    ring, darker CSF, grey matter, white matter (bright or dark relative to grey: the contrast is
    randomised so the set mixes T1- and T2-like looks), two ventricles, and 0-3 small lesions of random
    brightness. The head is randomly shifted, scaled and rotated, and multiplied by a smooth bias field.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(rng).__name__}")
    _check_size(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size + 0.5 / size
    cy, cx = 0.5 + rng.uniform(-0.03, 0.03, size=2)
    scale = rng.uniform(0.88, 1.05)
    angle = rng.uniform(-0.35, 0.35)
    ry, rx = 0.44 * scale * rng.uniform(0.95, 1.05), 0.36 * scale * rng.uniform(0.92, 1.05)

    def ell(dy, dx, fy, fx, extra_angle=0.0):
        # an ellipse placed in the head's own (rotated, scaled) frame
        c, s = np.cos(angle), np.sin(angle)
        oy, ox = dy * ry, dx * rx
        return ellipse_mask(yy, xx, cy + c * oy + s * ox, cx - s * oy + c * ox, fy * ry, fx * rx,
                        angle + extra_angle)

    skull_i = rng.uniform(0.75, 1.0)
    csf_i = rng.uniform(0.05, 0.25)
    grey_i = rng.uniform(0.35, 0.6)
    white_i = float(np.clip(grey_i + rng.choice([-1, 1]) * rng.uniform(0.15, 0.3), 0.1, 0.95))
    vent_i = rng.uniform(0.0, 0.15) if rng.random() < 0.7 else rng.uniform(0.8, 1.0)
    image = np.zeros((size, size))
    image[ell(0, 0, 1.0, 1.0)] = skull_i
    image[ell(0, 0, 0.9, 0.88)] = csf_i
    image[ell(0, 0, 0.85, 0.83)] = grey_i
    image[ell(rng.uniform(-0.05, 0.05), 0, rng.uniform(0.6, 0.72), rng.uniform(0.58, 0.7))] = white_i
    vent_dx = rng.uniform(0.12, 0.2)
    for sign in (-1, 1):
        image[ell(rng.uniform(-0.15, 0.05), sign * vent_dx, rng.uniform(0.18, 0.3), rng.uniform(0.06, 0.1),
                  sign * rng.uniform(0.1, 0.4))] = vent_i
    brain = ell(0, 0, 0.85, 0.83)
    for _ in range(rng.integers(0, 4)):
        r = rng.uniform(0.05, 0.11)
        lesion = ell(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), r, r * rng.uniform(0.6, 1.4),
                     rng.uniform(0, np.pi)) & brain
        image[lesion] = rng.uniform(0.0, 1.0)
    bias = 1.0 + 0.15 * (rng.uniform(-1, 1) * (yy - 0.5) + rng.uniform(-1, 1) * (xx - 0.5))
    image = np.clip(image * bias, 0.0, 1.0)
    return image.astype(np.float32)


def make_head_phantoms(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` head phantoms, (n, 1, size, size) float32 in [0, 1]; same seed, same images."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([make_head_phantom(rng, size) for _ in range(n)]))[:, None]


def shepp_logan(size: int = 32) -> torch.Tensor:
    """scikit-image's Shepp-Logan phantom (shipped in the wheel) resized to (size, size), in [0, 1].

    The VAE is trained on :func:`make_head_phantoms` only, so this image is held out: it tests how the
    posterior behaves on an image the prior has not seen.
    """
    _check_size(size)
    from skimage.data import shepp_logan_phantom
    return torch.from_numpy(to_unit_range(resize_square(shepp_logan_phantom(), size)))


NATURAL_IMAGES = ("camera", "moon", "coins", "cell", "text")


def natural_image(name: str = "camera", size: int = 32) -> torch.Tensor:
    """One of scikit-image's bundled grey-scale photographs, centre-cropped, resized to (size, size), in [0, 1].

    ``name`` is one of :data:`NATURAL_IMAGES` (the cameraman by default). Shipped in the scikit-image wheel,
    so nothing is downloaded. A photograph has no skull, no background and no head anatomy: it is far
    outside the distribution of :func:`make_head_phantoms`, so it shows what a learned prior does with
    an image it cannot describe.
    """
    if name not in NATURAL_IMAGES:
        raise ValueError(f"name must be one of {NATURAL_IMAGES}; got {name!r}")
    _check_size(size)
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    return torch.from_numpy(to_unit_range(resize_square(centre_square(image), size)))


# --- Real data (Colab) ------------------------------------------------------------------------------

BRAINWEB_SUBJECTS = (4, 5, 6, 18, 20, 38, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54)


def brainweb_t1_slices(subjects=(4, 5, 6), slices_per_subject: int = 20, size: int = 64, axis: int = 0,
                       brainweb_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Axial T1 slices of BrainWeb's normal brains, (N, 1, size, size) float32 in [0, 1].

    Needs the optional ``brainweb-dl`` package (``pip install brainweb-dl``), which downloads each
    subject (about 30 MB) from the BrainWeb server once and caches it (``brainweb_dir``, else
    ``$BRAINWEB_DIR`` or ``~/.cache/brainweb``). ``slices_per_subject`` slices are taken evenly from the
    middle 50 % of ``axis`` (where the brain is large), centre-cropped to a square, resized and scaled
    to [0, 1] per slice.
    """
    _check_size(size)
    if isinstance(subjects, (str, bytes)) or not hasattr(subjects, "__iter__"):
        raise ValueError(f"subjects must be a non-empty list from {BRAINWEB_SUBJECTS}; got {subjects!r}")
    subjects = list(subjects)
    bad = [s for s in subjects if s not in BRAINWEB_SUBJECTS]
    if bad or not subjects:
        raise ValueError(f"subjects must be a non-empty list from {BRAINWEB_SUBJECTS}; got {list(subjects)}")
    if isinstance(slices_per_subject, bool) or not isinstance(slices_per_subject, (int, np.integer)) \
            or slices_per_subject < 1:
        raise ValueError(f"slices_per_subject must be an int >= 1; got {slices_per_subject!r}")
    if axis not in (0, 1, 2) or isinstance(axis, bool):
        raise ValueError(f"axis must be 0, 1 or 2 (the volume axis to slice along); got {axis!r}")
    try:
        from brainweb_dl import get_mri
    except ImportError as err:
        raise ImportError("brainweb_t1_slices needs the optional package brainweb-dl: "
                          "run `pip install brainweb-dl` (on Colab: %pip install brainweb-dl)") from err
    out = []
    for subject in subjects:
        kwargs = {"brainweb_dir": str(brainweb_dir)} if brainweb_dir is not None else {}
        volume = np.asarray(get_mri(sub_id=int(subject), contrast="T1", **kwargs), dtype=np.float64)
        if volume.ndim != 3:
            raise ValueError(f"expected a 3-D BrainWeb volume for subject {subject}; got shape {volume.shape}")
        volume = np.moveaxis(volume, axis, 0)
        depth = volume.shape[0]
        picks = np.linspace(0.25 * depth, 0.75 * depth, slices_per_subject).astype(int)
        for i in picks:
            out.append(to_unit_range(resize_square(centre_square(volume[i]), size)))
    return torch.from_numpy(np.stack(out))[:, None]


def load_fastmri_slice(path: str | os.PathLike, slice_index: int | None = None) -> dict:
    """Read one slice of a fastMRI HDF5 file (single- or multi-coil).

    Returns ``{"kspace": complex64 (coils, H, W), "reconstruction": float32 (h, w) or None,
    "slice_index": int, "num_slices": int}``. fastMRI stores ``kspace`` as (slices, H, W) for
    single-coil and (slices, coils, H, W) for multi-coil files; single-coil slices get a coil axis of
    length 1. ``reconstruction`` is ``reconstruction_rss`` (or ``reconstruction_esc``) when present.
    The middle slice is taken when ``slice_index`` is None.
    """
    import h5py

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike to a fastMRI .h5 file; got {type(path).__name__}")
    if slice_index is not None and (isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer))):
        raise ValueError(f"slice_index must be None (the middle slice) or an int; got {slice_index!r}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no fastMRI file at {path}")
    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise ValueError(f"{path.name} holds no 'kspace' dataset; keys: {sorted(f.keys())}")
        kspace = f["kspace"]
        if kspace.ndim not in (3, 4):
            raise ValueError(f"fastMRI kspace must be (slices, H, W) or (slices, coils, H, W); "
                             f"got shape {kspace.shape}")
        if not np.iscomplexobj(np.empty(0, dtype=kspace.dtype)):
            raise ValueError(f"fastMRI kspace must be complex; got dtype {kspace.dtype}")
        num_slices = kspace.shape[0]
        index = num_slices // 2 if slice_index is None else int(slice_index)
        if not 0 <= index < num_slices:
            raise ValueError(f"slice_index must be in [0, {num_slices - 1}]; got {slice_index}")
        k = np.asarray(kspace[index]).astype(np.complex64)
        recon = None
        for key in ("reconstruction_rss", "reconstruction_esc"):
            if key in f:
                recon = np.asarray(f[key][index], dtype=np.float32)
                break
    if k.ndim == 2:
        k = k[None]
    return {"kspace": k, "reconstruction": recon, "slice_index": index, "num_slices": num_slices}


def fastmri_image(path: str | os.PathLike, slice_index: int | None = None, size: int = 64) -> torch.Tensor:
    """The fully sampled magnitude image of one fastMRI slice, (size, size) float32 in [0, 1].

    Root-sum-of-squares (MONAI's ``root_sum_of_squares``) of the coil images from the centred inverse
    FFT, centre-cropped to a square, resized and scaled to [0, 1]. Feed it to the chapter's own forward
    model (our masks, our noise) to study the sampler on real anatomy.
    """
    _check_size(size)
    from monai.apps.reconstruction.mri_utils import root_sum_of_squares

    from monai.networks.blocks.fft_utils_t import ifftn_centered_t

    data = load_fastmri_slice(path, slice_index)
    kspace = torch.from_numpy(data["kspace"])                 # (C, H, W) complex
    coils = torch.view_as_complex(ifftn_centered_t(torch.view_as_real(kspace), spatial_dims=2).contiguous())
    image = root_sum_of_squares(coils.abs().numpy(), spatial_dim=0)
    return torch.from_numpy(to_unit_range(resize_square(centre_square(np.asarray(image)), size)))


__all__ = ["make_head_phantom", "make_head_phantoms", "shepp_logan", "natural_image", "NATURAL_IMAGES",
           "brainweb_t1_slices",
           "BRAINWEB_SUBJECTS", "load_fastmri_slice", "fastmri_image"]
