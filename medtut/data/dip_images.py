"""Chapter 4's data: test images for Deep Image Prior and their corrupted versions.

Offline (quick mode, tests): images shipped inside scikit-image, converted to grey, centre-cropped to a
square and resized (64 x 64 in quick mode). Three inverse problems, each with a fixed seed:

* ``"denoise"``  — ``x0 = clip(x + n, 0, 1)``, ``n ~ N(0, (sigma/255)^2)`` (the DIP / ISNAS-DIP noise model);
* ``"inpaint"``  — ``x0 = m * x`` with a Bernoulli pixel mask ``m`` keeping a fraction ``keep`` of pixels;
* ``"sr"``       — ``x0 = D(x)``, ``D`` = anti-aliased bicubic downsampling by ``factor`` (x4 by default).

Real images (Colab), all entries of :data:`medtut.data.REGISTRY`, loaded by :func:`load_benchmark`:

* ``"set5"``, ``"set14"``: high-resolution PNGs from the Hugging Face mirror ``eugenesiow/Set5`` /
  ``Set14``. The only published checksums are DeepInverse's, which hash the *extracted* folder, so they
  are registered with ``hash_of="folder"`` and verified after extraction.
* ``"set12"``: the 12 grey denoising images (256² and 512²) from the SwinIR repository, and
  ``"dip-classic"``: the DIP paper's F16, kate, library and zebra images (Apache-2.0), both from GitHub
  URLs pinned to a commit, so the bytes cannot change under the URL. No checksum is published for either,
  so their sha256 is recorded at the first download and verified from then on (see
  :func:`medtut.data.fetch`); the first download warns that it was not verified. Whoever first downloads
  them with network access can publish the checksums: copy the sha256 values of
  ``$MEDTUT_DATA/<set>/recorded_checksums.json`` into the ``hash_value`` of the entries below.
* Any folder of images of your own: :func:`load_image_folder`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import RemoteDataset, data_root, fetch, register
from .imaging import centre_square, resize_square

TASKS = ("denoise", "inpaint", "sr")

# name -> loader returning an (H, W) or (H, W, C) array; all ship inside the scikit-image wheel.
_SKIMAGE_IMAGES = {
    "camera": "camera",
    "astronaut": "astronaut",
    "coffee": "coffee",
    "retina": "retina",
    "phantom": "shepp_logan_phantom",
    "chelsea": "chelsea",
    "brick": "brick",
    "moon": "moon",
    "coins": "coins",
    "page": "page",
}
IMAGE_NAMES = tuple(_SKIMAGE_IMAGES)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _check_int(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low`` (bool and float refused), else a ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _check_real(name: str, value, low: float, high: float | None = None, low_open: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not np.isfinite(value) or (value <= low if low_open else value < low) or \
            (high is not None and value > high):
        rng = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise ValueError(f"{name} must be a finite number in {rng}; got {value!r}")
    return float(value)


def to_grey_square(image: np.ndarray, size: int) -> np.ndarray:
    """Any (H, W) / (H, W, 3|4) image → (size, size) float32 grey in [0, 1] (centre crop, anti-aliased)."""
    from skimage.color import rgb2gray, rgba2rgb

    size = _check_int("size", size, 8)
    if image is None or isinstance(image, (str, bytes)):
        raise ValueError(f"image must be an array (H, W) or (H, W, 3|4); got {type(image).__name__}")
    image = np.asarray(image)
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ValueError(f"image must hold real numbers; got dtype {image.dtype}")
    if image.size == 0 or min(image.shape[:2], default=0) < 1:
        raise ValueError(f"image is empty; got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or inf")
    if image.min() < 0:
        raise ValueError(f"image values must be >= 0 (grey levels in [0, 1] or [0, 255]); got min {image.min()!r}")
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = rgb2gray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or colour (H, W, 3|4) image; got shape {image.shape}")
    image = image.astype(np.float64)
    if image.max() > 1.0:
        image = image / (255.0 if image.max() <= 255 else image.max())
    out = resize_square(centre_square(image), size)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_test_image(name: str, size: int = 64) -> torch.Tensor:
    """A scikit-image test image as (1, size, size) float32 in [0, 1] (grey, centre crop)."""
    if not isinstance(name, str) or name not in _SKIMAGE_IMAGES:
        raise ValueError(f"unknown image {name!r}; available offline: {list(_SKIMAGE_IMAGES)}")
    from skimage import data

    _check_int("size", size, 8)
    raw = getattr(data, _SKIMAGE_IMAGES[name])()
    return torch.from_numpy(to_grey_square(raw, size))[None]


def load_image_folder(folder: str | Path, size: int = 64, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Every image in a user-supplied folder (e.g. Set12, Set14) → ``{stem: (1, size, size)}``, sorted."""
    from skimage.io import imread

    if not isinstance(folder, (str, Path)):
        raise ValueError(f"folder must be a path (str or pathlib.Path); got {type(folder).__name__}")
    _check_int("size", size, 8)
    if limit is not None:
        _check_int("limit", limit, 1)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a folder of images; {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images with suffix {IMAGE_SUFFIXES} in {folder}")
    files = files[:limit] if limit else files
    return {p.stem: torch.from_numpy(to_grey_square(imread(p), size))[None] for p in files}


register(RemoteDataset(
    "set5", "https://huggingface.co/datasets/eugenesiow/Set5/resolve/main/data/Set5_HR.tar.gz",
    "e128ede786dabb7ebeee99e5fa1ad985", hash_type="md5", extract=True, hash_of="folder", folder="Set5_HR",
    description="Set5 high-resolution images (5 colour PNGs); folder md5 as published by DeepInverse"))
register(RemoteDataset(
    "set14", "https://huggingface.co/datasets/eugenesiow/Set14/resolve/main/data/Set14_HR.tar.gz",
    "3fce01c3dfe9760194e8a22f6bc032c5", hash_type="md5", extract=True, hash_of="folder", folder="Set14_HR",
    description="Set14 high-resolution images (14 PNGs); folder md5 as published by DeepInverse"))

_SWINIR = "https://raw.githubusercontent.com/JingyunLiang/SwinIR/33f616625268d08ba600f8db89388eec0328edb1"
_DIP = "https://raw.githubusercontent.com/DmitryUlyanov/deep-image-prior"
_DIP_FILES = {  # name -> (commit, path in the repository)
    "F16_GT": ("961ed4ae8ec8d7619e611783582fa26d4face8b3", "data/denoising/F16_GT.png"),
    "kate": ("e1ff62df51544382a7c8efd9b59dcc72d5472075", "data/inpainting/kate.png"),
    "library": ("e1ff62df51544382a7c8efd9b59dcc72d5472075", "data/inpainting/library.png"),
    "zebra_GT": ("961ed4ae8ec8d7619e611783582fa26d4face8b3", "data/sr/zebra_GT.png"),
}

IMAGE_SETS: dict[str, list[str]] = {"set5": ["set5"], "set14": ["set14"], "set12": [], "dip-classic": []}
for _i in range(1, 13):
    IMAGE_SETS["set12"].append(register(RemoteDataset(
        f"set12-{_i:02d}", f"{_SWINIR}/testsets/Set12/{_i:02d}.png", None,
        description="Set12 grey denoising test image (commit-pinned; no published checksum)")).name)
for _stem, (_commit, _path) in _DIP_FILES.items():
    IMAGE_SETS["dip-classic"].append(register(RemoteDataset(
        f"dip-{_stem}", f"{_DIP}/{_commit}/{_path}", None, license="Apache-2.0",
        description="Deep Image Prior test image (commit-pinned; no published checksum)")).name)


def load_benchmark(name: str, size: int = 64, limit: int | None = None,
                   root: str | Path | None = None) -> dict[str, torch.Tensor]:
    """A registered benchmark set (``"set5"``, ``"set14"``, ``"set12"``, ``"dip-classic"``), downloaded
    once and verified, as ``{stem: (1, size, size)}`` grey images (see :func:`load_image_folder`).

    Network is needed on the first call (Colab); files already present are verified, not downloaded.
    """
    if not isinstance(name, str) or name not in IMAGE_SETS:
        raise ValueError(f"unknown image set {name!r}; available: {list(IMAGE_SETS)}")
    _check_int("size", size, 8)
    if limit is not None:
        _check_int("limit", limit, 1)
    if root is not None and not isinstance(root, (str, Path)):
        raise ValueError(f"root must be a path (str or pathlib.Path) or None; got {type(root).__name__}")
    base = (Path(root) if root is not None else data_root()) / name
    paths = [fetch(member, root=base) for member in IMAGE_SETS[name]]
    # an archive set is one extracted folder; a set of single files lies directly in ``base``
    folder = paths[0] if len(paths) == 1 and paths[0].is_dir() else base
    return load_image_folder(folder, size, limit)


def downsample(image: torch.Tensor, factor: int) -> torch.Tensor:
    """The SR forward operator ``D``: (B, C, H, W) → (B, C, H/factor, W/factor), anti-aliased bicubic."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch tensor (B, C, H, W); got {type(image).__name__}")
    if image.ndim != 4:
        raise ValueError(f"downsample expects (B, C, H, W); got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a real floating-point tensor; got dtype {image.dtype}")
    factor = _check_int("factor", factor, 1)
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} must be divisible by the SR factor {factor}")
    return F.interpolate(image, size=(h // factor, w // factor), mode="bicubic", antialias=True,
                         align_corners=False)


@dataclass
class DIPProblem:
    """One inverse problem.

    clean:    (1, H, W) float32 ground truth in [0, 1] (only for evaluation);
    observed: the corrupted image x0: (1, H, W), or (1, H/factor, W/factor) for SR;
    mask:     (1, H, W) float32 of 0/1 for inpainting (1 = observed pixel), else None;
    """
    task: str
    name: str
    clean: torch.Tensor
    observed: torch.Tensor
    mask: torch.Tensor | None = None
    sigma: float = 25.0
    keep: float = 0.5
    factor: int = 4

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}; got {self.task!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string; got {type(self.name).__name__}")
        for arg in ("clean", "observed"):
            t = getattr(self, arg)
            if not isinstance(t, torch.Tensor) or t.ndim != 3 or not t.is_floating_point():
                raise ValueError(f"{arg} must be a (C, H, W) floating-point tensor; got "
                                 f"{type(t).__name__} {tuple(getattr(t, 'shape', ()))}")
        _check_real("sigma", self.sigma, 0)
        _check_real("keep", self.keep, 0, 1, low_open=True)
        _check_int("factor", self.factor, 1)
        C, H, W = self.clean.shape
        want = (C, H // self.factor, W // self.factor) if self.task == "sr" else (C, H, W)
        if tuple(self.observed.shape) != want:
            raise ValueError(f"observed must be {want} for task {self.task!r} with a clean image "
                             f"{(C, H, W)}; got {tuple(self.observed.shape)}")
        if self.task == "inpaint":
            if not isinstance(self.mask, torch.Tensor) or tuple(self.mask.shape) != (C, H, W):
                raise ValueError(f"an inpainting problem needs a mask (C, H, W) = {(C, H, W)} of 0/1; got "
                                 f"{type(self.mask).__name__} {tuple(getattr(self.mask, 'shape', ()))}")

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """The forward operator A on a batch (B, C, H, W): identity, masking, or downsampling."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.clean.shape):
            raise ValueError(f"x must be a batch (B, C, H, W) of images shaped like the clean image "
                             f"{tuple(self.clean.shape)}; got {tuple(getattr(x, 'shape', ()))}")
        if self.task == "denoise":
            return x
        if self.task == "inpaint":
            return x * self.mask
        return downsample(x, self.factor)


def make_problem(image: torch.Tensor, task: str, seed: int = 0, name: str = "image", sigma: float = 25.0,
                 keep: float = 0.5, factor: int = 4) -> DIPProblem:
    """Corrupt ``image`` (1, H, W) in [0, 1] for ``task`` with a fixed ``seed``."""
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int; got {type(seed).__name__} {seed!r}")
    if not isinstance(name, str):
        raise ValueError(f"name must be a string; got {type(name).__name__}")
    _check_real("sigma", sigma, 0)
    factor = _check_int("factor", factor, 1)
    if image is None or isinstance(image, (str, bytes)):
        raise ValueError(f"image must be a (C, H, W) float tensor in [0, 1]; got {type(image).__name__}")
    image = torch.as_tensor(image)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a (C, H, W) float tensor; got shape {tuple(image.shape)}, "
                         f"dtype {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or inf")
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise ValueError(f"image values must lie in [0, 1]; got [{float(image.min()):.3g}, {float(image.max()):.3g}]")
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)) or \
            not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1]; got {keep!r}")
    if task == "sr" and (image.shape[-1] % factor or image.shape[-2] % factor):
        raise ValueError(f"image size {image.shape[-2]}x{image.shape[-1]} must be divisible by the SR factor "
                         f"{factor}; resize the image or change factor")
    image = image.float()
    g = torch.Generator().manual_seed(seed)
    mask = None
    if task == "denoise":
        observed = (image + sigma / 255.0 * torch.randn(image.shape, generator=g)).clamp(0, 1)
    elif task == "inpaint":
        mask = (torch.rand(image.shape[-2:], generator=g) < keep).float().expand_as(image).clone()
        observed = image * mask
    else:
        observed = downsample(image[None], factor)[0].clamp(0, 1)
    return DIPProblem(task, name, image, observed, mask, sigma, keep, factor)


__all__ = ["TASKS", "IMAGE_NAMES", "to_grey_square", "load_test_image", "load_image_folder", "IMAGE_SETS",
           "load_benchmark", "downsample",
           "DIPProblem", "make_problem"]
