"""Chapter 4's data: test images for Deep Image Prior and their corrupted versions.

Offline (quick mode, tests): images shipped inside scikit-image, converted to grey, centre-cropped to a
square and resized (64 x 64 in quick mode). Three inverse problems, each with a fixed seed:

* ``"denoise"``  — ``x0 = clip(x + n, 0, 1)``, ``n ~ N(0, (sigma/255)^2)`` (the DIP / ISNAS-DIP noise model);
* ``"inpaint"``  — ``x0 = m * x`` with a Bernoulli pixel mask ``m`` keeping a fraction ``keep`` of pixels;
* ``"sr"``       — ``x0 = D(x)``, ``D`` = anti-aliased bicubic downsampling by ``factor`` (x4 by default).

Real images (Colab):

* Set5 and Set14 (high-resolution PNGs, Hugging Face mirror ``eugenesiow/Set5`` / ``Set14``) through
  :func:`fetch_sr_set`. The only published checksums we could source are DeepInverse's (``deepinv``
  ``Set5HR`` / ``Set14HR``), which hash the *extracted* folder (md5 of the files' md5 hex digests in
  name order), not the archive; so these sets are verified after extraction by :func:`folder_md5` and
  are not entries of :data:`medtut.data.REGISTRY` (whose checksum is the archive's).
* Set12 and the classic DIP images (F16, the inpainting images...): we found no published checksum, so
  they are a *user-supplied folder*: put the images in a folder and load it with :func:`load_image_folder`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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


def to_grey_square(image: np.ndarray, size: int) -> np.ndarray:
    """Any (H, W) / (H, W, 3|4) image → (size, size) float32 grey in [0, 1] (centre crop, anti-aliased)."""
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.transform import resize

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = rgb2gray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or colour (H, W, 3|4) image; got shape {image.shape}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels; got {size}")
    image = image.astype(np.float64)
    if image.max() > 1.0:
        image = image / (255.0 if image.max() <= 255 else image.max())
    h, w = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    image = image[top:top + s, left:left + s]
    out = resize(image, (size, size), anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_test_image(name: str, size: int = 64) -> torch.Tensor:
    """A scikit-image test image as (1, size, size) float32 in [0, 1] (grey, centre crop)."""
    if name not in _SKIMAGE_IMAGES:
        raise ValueError(f"unknown image {name!r}; available offline: {list(_SKIMAGE_IMAGES)}")
    from skimage import data

    raw = getattr(data, _SKIMAGE_IMAGES[name])()
    return torch.from_numpy(to_grey_square(raw, size))[None]


def load_image_folder(folder: str | Path, size: int = 64, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Every image in a user-supplied folder (e.g. Set12, Set14) → ``{stem: (1, size, size)}``, sorted."""
    from skimage.io import imread

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a folder of images; {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images with suffix {IMAGE_SUFFIXES} in {folder}")
    files = files[:limit] if limit else files
    return {p.stem: torch.from_numpy(to_grey_square(imread(p), size))[None] for p in files}


# name -> (archive URL, extracted folder, DeepInverse's folder md5)
SR_SETS = {
    "Set5": ("https://huggingface.co/datasets/eugenesiow/Set5/resolve/main/data/Set5_HR.tar.gz", "Set5_HR",
             "e128ede786dabb7ebeee99e5fa1ad985"),
    "Set14": ("https://huggingface.co/datasets/eugenesiow/Set14/resolve/main/data/Set14_HR.tar.gz", "Set14_HR",
              "3fce01c3dfe9760194e8a22f6bc032c5"),
}


def folder_md5(folder: str | Path) -> str:
    """md5 of the concatenated md5 hex digests of the files of ``folder`` in name order (DeepInverse's
    folder checksum)."""
    import hashlib

    folder = Path(folder)
    total = hashlib.md5()
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_file():
            total.update(hashlib.md5(path.read_bytes()).hexdigest().encode())
    return total.hexdigest()


def fetch_sr_set(name: str, root: str | Path | None = None) -> Path:
    """Download (once) Set5 or Set14, extract it and verify its folder checksum; return the image folder.

    Network needed on the first call (Colab). A folder already present is verified, not re-downloaded.
    """
    if name not in SR_SETS:
        raise ValueError(f"unknown set {name!r}; available: {list(SR_SETS)}")
    from . import data_root

    url, sub, expected = SR_SETS[name]
    base = Path(root) if root is not None else data_root()
    folder = base / name / sub
    if not folder.is_dir():
        from monai.apps import download_url, extractall

        archive = base / name / url.rsplit("/", 1)[-1]
        archive.parent.mkdir(parents=True, exist_ok=True)
        download_url(url, filepath=str(archive))          # no archive checksum is published: verified below
        extractall(str(archive), output_dir=str(base / name))
    got = folder_md5(folder)
    if got != expected:
        raise ValueError(f"{name}: folder checksum mismatch in {folder}: expected {expected}, got {got}; "
                         "delete the folder to download it again")
    return folder


def downsample(image: torch.Tensor, factor: int) -> torch.Tensor:
    """The SR forward operator ``D``: (B, C, H, W) → (B, C, H/factor, W/factor), anti-aliased bicubic."""
    if image.ndim != 4:
        raise ValueError(f"downsample expects (B, C, H, W); got shape {tuple(image.shape)}")
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

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """The forward operator A on a batch (B, C, H, W): identity, masking, or downsampling."""
        if self.task == "denoise":
            return x
        if self.task == "inpaint":
            return x * self.mask
        return downsample(x, self.factor)


def make_problem(image: torch.Tensor, task: str, seed: int = 0, name: str = "image", sigma: float = 25.0,
                 keep: float = 0.5, factor: int = 4) -> DIPProblem:
    """Corrupt ``image`` (1, H, W) in [0, 1] for ``task`` with a fixed ``seed``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    image = torch.as_tensor(image)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a (C, H, W) float tensor; got shape {tuple(image.shape)}, "
                         f"dtype {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or inf")
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise ValueError(f"image values must lie in [0, 1]; got [{float(image.min()):.3g}, {float(image.max()):.3g}]")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
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


__all__ = ["TASKS", "IMAGE_NAMES", "to_grey_square", "load_test_image", "load_image_folder", "SR_SETS",
           "folder_md5", "fetch_sr_set", "downsample",
           "DIPProblem", "make_problem"]
