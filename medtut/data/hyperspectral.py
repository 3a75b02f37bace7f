"""Chapter 8's data: synthetic 31-band reflectance scenes from measured spectra, RGB images for the
auxiliary task, and the CAVE loader for Colab.

Offline (tests, quick mode, the book's CPU run)
    Every spectrum comes from ``colour-science`` (installed with medtut, nothing is downloaded), resampled
    to :data:`WAVELENGTHS` (400-700 nm, 10 nm steps, 31 bands):

    * **training materials** (77 reflectances): the 24 ColorChecker patches twice (BabelColor average
      and N. Ohta's measurements), the 14 CIE 1995 test colour samples and the 15 NIST CQS 9.0 samples;
    * **unseen materials** (190 reflectances): the patches of the rawtoaces camera-characterisation set,
      which never appear in training.

    :func:`make_scene` paints a 64x64 scene of random ellipses on a background; each region mixes two
    library spectra with a smooth abundance map and the whole scene is multiplied by a smooth shading
    field, so spectra inside a region vary continuously (as on real objects) but stay in the span of the
    library. :func:`degrade` is the x4 degradation (antialiased bicubic down, bicubic up), applied band
    by band, i.e. linear and purely spatial.

    The auxiliary RGB task uses linear RGB: scenes rendered through a camera-like response built from the
    CIE 1931 colour-matching functions (:func:`rgb_response`) and tiles of the colour photographs bundled
    with scikit-image (:func:`rgb_photo_tiles`).

Real data (Colab / GPU)
    CAVE (Columbia, 32 scenes of 512x512x31 reflectance, one 16-bit PNG per band):
    :func:`download_cave` fetches the official ZIP through :func:`medtut.data.fetch` (no checksum is
    published for it, so its sha256 is recorded at the first download and verified afterwards) and
    :func:`load_cave` reads scenes from the ZIP or from an extracted folder, dividing by 65535 (the
    official code forgot this for its training patches, not for its test images). :data:`CAVE_SPLIT` is
    the paper's 5 labelled / 15 unlabelled / 12 test split (``image_list/cave_list.txt`` of the official
    repository). Our x4 degradation is torch's antialiased bicubic, not MATLAB's ``imresize``: the two
    are close but not bit-identical, so numbers are not directly comparable with the paper's.

    DIV2K (Agustsson and Timofte 2017) for the auxiliary RGB task: the paper trains it on DIV2K patches; we
    use the 100-image validation set (``DIV2K_valid_HR.zip``, 449 MB) as the subset. :func:`download_div2k`
    fetches it with the sha256 published in TensorFlow Datasets' DIV2K checksum list, and
    :func:`load_div2k` cuts linear-RGB tiles from its photos exactly as :func:`rgb_photo_tiles` does
    from scikit-image's.

Every public function checks its arguments where they arrive (issue 24) and raises a ``ValueError``
naming the argument, what was expected and what arrived.
"""
from __future__ import annotations

import io
import math
import re
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import RemoteDataset, fetch, register

WAVELENGTHS = np.arange(400, 701, 10)          # nm, 31 bands
NUM_BANDS = len(WAVELENGTHS)

# ------------------------------------------------------------------------------------------------
# argument checks shared by this module and medtut.hsi_sr (issue 24)
# ------------------------------------------------------------------------------------------------


def _check_int(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low`` (bools, floats and strings are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {low}; got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def _check_float(name: str, value, low: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float (``> low`` if ``strict``, else ``>= low``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number{bound}; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (low is not None and (value <= low if strict else value < low)):
        raise ValueError(f"{name} must be a finite number{bound}; got {value!r}")
    return value


def _check_images(y, name: str = "y", channels: int | None = None) -> None:
    """``y`` must be a non-empty, finite, real floating tensor (B, C, H, W) (with ``channels`` bands)."""
    if not isinstance(y, torch.Tensor) or y.ndim != 4 or not y.is_floating_point():
        got = (f"a {y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor)
               else type(y).__name__)
        raise ValueError(f"{name} must be a real float tensor (B, C, H, W); got {got}")
    if y.numel() == 0:
        raise ValueError(f"{name} must be non-empty (B, C, H, W); got shape {tuple(y.shape)}")
    if channels is not None and y.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels; got {y.shape[1]} (shape {tuple(y.shape)})")
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_unit_range(y: torch.Tensor, name: str) -> None:
    """Reflectances and linear RGB lie in [0, 1]; 16-bit data that was not divided by 65535 does not."""
    lo, hi = float(y.min()), float(y.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} must hold values in [0, 1] (reflectance or linear RGB); got range "
                         f"[{lo:.4g}, {hi:.4g}]: divide 16-bit data by 65535 (8-bit by 255)")

# ------------------------------------------------------------------------------------------------
# spectral libraries (colour-science)
# ------------------------------------------------------------------------------------------------


def _resample(sd) -> np.ndarray:
    """A colour SpectralDistribution (or multi-) sampled at :data:`WAVELENGTHS` (linear interpolation)."""
    import colour

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape = colour.SpectralShape(400, 700, 10)
        sd = sd.copy().align(shape, interpolator=colour.LinearInterpolator) if sd.shape != shape else sd
    return np.asarray(sd.values, dtype=np.float64)


@lru_cache(maxsize=None)
def _library(split: str) -> np.ndarray:
    import colour
    import colour.quality.datasets as qd

    if split == "train":
        sds = (list(colour.SDS_COLOURCHECKERS["BabelColor Average"].values())
               + list(colour.SDS_COLOURCHECKERS["ColorChecker N Ohta"].values())
               + list(qd.SDS_TCS["CIE 1995"].values())
               + list(qd.SDS_VS["NIST CQS 9.0"].values()))
        spectra = np.stack([_resample(sd) for sd in sds])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            msds = colour.characterisation.read_training_data_rawtoaces_v1()
        spectra = _resample(msds).T                    # (190, 31)
    return np.clip(spectra, 0.0, 1.0).astype(np.float32)


def material_library(split: str = "train") -> np.ndarray:
    """Reflectance spectra (N, 31) float32 in [0, 1] at :data:`WAVELENGTHS`.

    split: ``"train"`` (77 spectra: ColorChecker x2, CIE TCS, NIST CQS) or ``"unseen"`` (the 190
    rawtoaces patches). The two sets share no spectrum.
    """
    if not isinstance(split, str) or split not in ("train", "unseen"):
        raise ValueError(f"split must be 'train' or 'unseen'; got {split!r}")
    return _library(split).copy()


@lru_cache(maxsize=None)
def _cmfs() -> np.ndarray:
    import colour

    return _resample(colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"])   # (31, 3) x-bar, y-bar, z-bar


# linear sRGB from CIE XYZ (IEC 61966-2-1)
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                         [-0.9689, 1.8758, 0.0415],
                         [0.0557, -0.2040, 1.0570]])


def cie_cmfs() -> np.ndarray:
    """CIE 1931 2-degree colour-matching functions at :data:`WAVELENGTHS`: (31, 3) float32."""
    return _cmfs().astype(np.float32)


def rgb_response() -> np.ndarray:
    """A camera-like linear RGB response (31, 3) float32, columns R, G, B.

    The sRGB colour-matching functions (CIE 1931 CMFs times the XYZ-to-linear-sRGB matrix) with their
    negative lobes clipped, as a real sensor's sensitivities are non-negative, and each column scaled to
    sum to 1, so a perfect white reflector (all ones) renders as (1, 1, 1) and any reflectance in [0, 1]
    renders inside [0, 1].
    """
    srgb = _cmfs() @ _XYZ_TO_SRGB.T
    srgb = np.clip(srgb, 0.0, None)
    return (srgb / srgb.sum(axis=0, keepdims=True)).astype(np.float32)


def rgb_to_8_matrix() -> np.ndarray:
    """The fixed 3 -> 8 expansion (3, 8) float32 of RGB into 8 pseudo-bands ordered by wavelength.

    B covers pseudo-bands 0-2, G 1-6 and R 4-7 (the official code's overlap pattern, written here in
    wavelength order); a pseudo-band covered by several colours is their average, so every column sums
    to 1 and a grey pixel (v, v, v) becomes (v, ..., v).
    """
    cover = {"R": range(4, 8), "G": range(1, 7), "B": range(0, 3)}
    e = np.zeros((3, 8), dtype=np.float64)
    for row, colour_name in enumerate("RGB"):
        for k in cover[colour_name]:
            e[row, k] = 1.0
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def projection_matrix() -> np.ndarray:
    """P (31, 8) float32: the camera-like 31 -> 8 projection of the semi-supervised term,
    :func:`rgb_response` followed by :func:`rgb_to_8_matrix` (each column sums to 1)."""
    return (rgb_response() @ rgb_to_8_matrix()).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# synthetic scenes
# ------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) smooth field: bicubic upsampling of (cells, cells) standard normal noise."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, cells, cells))).float()
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()


def _check_spectra(spectra) -> np.ndarray:
    try:
        arr = np.asarray(spectra)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"spectra must be (N >= 2, {NUM_BANDS}) real numbers; got {type(spectra).__name__}") from err
    if arr.ndim != 2 or arr.shape[1] != NUM_BANDS or len(arr) < 2 or not np.issubdtype(arr.dtype, np.number) \
            or np.iscomplexobj(arr):
        raise ValueError(f"spectra must be (N >= 2, {NUM_BANDS}) real numbers; got shape {arr.shape} {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError("spectra must be finite reflectances in [0, 1]; got "
                         + ("NaN or inf" if not np.isfinite(arr).all() else f"range [{arr.min():.3g}, {arr.max():.3g}]"))
    return arr


def _check_scene_size(size) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 16 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and >= 16; got {size!r}")
    return int(size)


def make_scene(rng: np.random.Generator, spectra: np.ndarray, size: int = 64, num_ellipses: int = 10
               ) -> np.ndarray:
    """One synthetic reflectance scene (31, size, size) float32 in [0, 1].

    A background and ``num_ellipses`` random ellipses (later ones on top); each region mixes two
    spectra of ``spectra`` (N, 31) with its own smooth abundance map ``a = sigmoid(3 n)`` (``n`` smooth
    noise): ``s(p) = a(p) s_1 + (1 - a(p)) s_2``. The scene is then multiplied by a smooth shading field in
    [0.55, 1].
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, e.g. np.random.default_rng(0); got {type(rng).__name__}")
    spectra = _check_spectra(spectra)
    _check_scene_size(size)
    _check_int("num_ellipses", num_ellipses, 0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    label = np.zeros((size, size), dtype=np.int64)
    for k in range(1, num_ellipses + 1):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(0.08, 0.3, 2) * size
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        label[(u / rx) ** 2 + (v / ry) ** 2 <= 1] = k
    scene = np.zeros((NUM_BANDS, size, size), dtype=np.float32)
    for k in range(num_ellipses + 1):
        inside = label == k
        if not inside.any():
            continue
        i, j = rng.choice(len(spectra), 2, replace=False)
        a = 1.0 / (1.0 + np.exp(-3.0 * _smooth_noise(rng, size, 4)))
        mix = a[None] * spectra[i][:, None, None] + (1 - a[None]) * spectra[j][:, None, None]
        scene[:, inside] = mix[:, inside]
    shading = 0.55 + 0.45 / (1.0 + np.exp(-1.5 * _smooth_noise(rng, size, 3)))
    return np.clip(scene * shading[None], 0.0, 1.0).astype(np.float32)


def make_scenes(num_scenes: int, materials: str | np.ndarray = "train", size: int = 64,
                num_ellipses: int = 10, seed: int = 0) -> torch.Tensor:
    """``num_scenes`` scenes (num_scenes, 31, size, size) float32, from ``materials`` (``"train"``,
    ``"unseen"`` or an (N, 31) array of spectra), drawn from ``np.random.default_rng(seed)``."""
    if isinstance(num_scenes, (bool, np.bool_)) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 1:
        raise ValueError(f"num_scenes must be a positive int; got {num_scenes!r}")
    spectra = material_library(materials) if isinstance(materials, str) else _check_spectra(materials)
    _check_scene_size(size)
    _check_int("num_ellipses", num_ellipses, 0)
    _check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([make_scene(rng, spectra, size, num_ellipses) for _ in range(num_scenes)]))


def downsample(y: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """x4 degradation D: antialiased bicubic downsampling, band by band. (B, C, H, W) -> (B, C, H/f, W/f).

    Linear and purely spatial, so it commutes with any per-pixel linear map of the spectrum.
    """
    _check_images(y)
    _check_int("factor", factor, 1)
    if y.shape[-1] % factor or y.shape[-2] % factor:
        raise ValueError(f"H and W must be divisible by factor={factor}; got {tuple(y.shape[-2:])}")
    return F.interpolate(y, scale_factor=1.0 / factor, mode="bicubic", antialias=True, align_corners=False)


def upsample(x: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Bicubic upsampling x -> x_up, band by band: (B, C, h, w) -> (B, C, f h, f w)."""
    _check_images(x, "x")
    _check_int("factor", factor, 1)
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)


def degrade(y: torch.Tensor, factor: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR x, bicubic x_up) of HR images ``y`` (B, C, H, W)."""
    x = downsample(y, factor)
    return x, upsample(x, factor)


def render_rgb(hsi: torch.Tensor) -> torch.Tensor:
    """Linear RGB (B, 3, H, W) of reflectance images (B, 31, H, W) through :func:`rgb_response`."""
    _check_images(hsi, "hsi")
    if hsi.shape[1] != NUM_BANDS:
        raise ValueError(f"hsi must have {NUM_BANDS} bands; got {hsi.shape[1]} (shape {tuple(hsi.shape)})")
    r = torch.as_tensor(rgb_response(), dtype=hsi.dtype, device=hsi.device)
    return torch.einsum("bchw,ck->bkhw", hsi, r)


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def _linear_tiles(photo: np.ndarray, size: int, count: int, rng: np.random.Generator, where: str
                  ) -> list[torch.Tensor]:
    """``count`` random (3, size, size) linear-RGB tiles of an 8-bit sRGB photo (H, W, 3|4): decoded with
    gamma 2.2, shrunk by 2 (antialiased) so that a tile holds more structure, then cut at positions drawn
    from ``rng``."""
    img = torch.from_numpy(photo[..., :3].astype(np.float32) / 255.0)
    img = img.permute(2, 0, 1)[None] ** 2.2
    img = F.interpolate(img, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)[0]
    h, w = img.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"size={size} exceeds {where} ({h}x{w} after shrinking by 2); use size <= {min(h, w)}")
    tiles = []
    for _ in range(count):
        i, j = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        tiles.append(img[:, i:i + size, j:j + size])
    return tiles


def rgb_photo_tiles(size: int = 64, per_photo: int = 8, seed: int = 0,
                    photos: tuple[str, ...] = PHOTOS) -> torch.Tensor:
    """Random (size, size) tiles of the colour photographs bundled with scikit-image, as linear RGB:
    (len(photos) * per_photo, 3, size, size) float32 in [0, 1] (sRGB decoded with gamma 2.2).

    Each photo is first shrunk by 2 (antialiased) so that a tile holds more structure.
    """
    import skimage.data

    _check_scene_size(size)
    _check_int("per_photo", per_photo, 1)
    _check_int("seed", seed, 0)
    if isinstance(photos, str) or not isinstance(photos, (tuple, list)) or not photos:
        raise ValueError(f"photos must be a non-empty tuple of scikit-image photo names such as {PHOTOS[:2]}; "
                         f"got {photos!r}")
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown:
        raise ValueError(f"photos must be names from {PHOTOS} (colour photos bundled with scikit-image); "
                         f"got unknown {unknown}")
    rng = np.random.default_rng(seed)
    tiles = []
    for name in photos:
        tiles += _linear_tiles(getattr(skimage.data, name)(), size, per_photo, rng, f"the photo {name!r}")
    return torch.stack(tiles).clamp(0, 1).contiguous()


# ------------------------------------------------------------------------------------------------
# CAVE (real data, Colab)
# ------------------------------------------------------------------------------------------------

# The paper's split (official repository, image_list/cave_list.txt)
CAVE_SPLIT = {
    "labelled": ["balloons", "chart_and_stuffed_toy", "egyptian_statue", "fake_and_real_peppers", "hairs"],
    "unlabelled": ["beads", "cd", "clay", "cloth", "face", "fake_and_real_beers", "fake_and_real_food",
                   "fake_and_real_lemon_slices", "fake_and_real_lemons", "fake_and_real_strawberries",
                   "fake_and_real_sushi", "fake_and_real_tomatoes", "feathers", "flowers", "glass_tiles"],
    "test": ["jelly_beans", "paints", "pompoms", "real_and_fake_peppers", "stuffed_toys", "thread_spools",
             "oil_painting", "photo_and_face", "real_and_fake_apples", "sponges", "superballs", "watercolors"],
}

CAVE = register(RemoteDataset(
    "cave", "https://www.cs.columbia.edu/CAVE/databases/multispectral/zip/complete_ms_data.zip", None,
    filename="cave_complete_ms_data.zip",
    description="CAVE multispectral image database (Yasuma et al. 2010): 32 scenes, 512x512x31, 16-bit PNG "
                "per band, about 406 MB; no checksum is published, so its sha256 is recorded at the first "
                "download and verified on every later call",
    license="research use (Columbia University CAVE)"))

_BAND_RE = re.compile(r"(?:^|/)([a-z0-9_]+)_ms_(\d{2})\.png$", re.IGNORECASE)


def _check_root(root) -> None:
    if root is not None and not isinstance(root, (str, Path)):
        raise ValueError(f"root must be None (use $MEDTUT_DATA) or a folder path; got {type(root).__name__}")


def _check_source(source, what: str) -> Path:
    if not isinstance(source, (str, Path)):
        raise ValueError(f"source must be the path of the {what} ZIP or of a folder of its extracted files; "
                         f"got {type(source).__name__}")
    return Path(source)


def download_cave(root: str | Path | None = None) -> Path:
    """Download (once) the CAVE ZIP into ``$MEDTUT_DATA`` (or ``root``) and return its path."""
    _check_root(root)
    return fetch("cave", root)


def _read_band(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(data)))
    if img.dtype == np.uint16:
        band = img.astype(np.float32) / 65535.0
    elif img.dtype == np.uint8:
        # one CAVE scene (watercolors) ships its bands as 8-bit RGBA with identical colour channels
        band = (img[..., 0] if img.ndim == 3 else img).astype(np.float32) / 255.0
    else:
        raise ValueError(f"{where}: expected a 16-bit (or 8-bit) PNG band; got dtype {img.dtype}")
    if band.ndim != 2:
        raise ValueError(f"{where}: expected a single-channel band image; got shape {img.shape}")
    return band


def load_cave(source: str | Path, scenes: list[str] | str | None = None, size: int | None = None
              ) -> dict[str, torch.Tensor]:
    """CAVE scenes as ``{name: (31, H, W) float32 in [0, 1]}`` (band k = 400 + 10 k nm).

    source: the ZIP (see :func:`download_cave`) or a folder holding the extracted scenes; band files are
        found anywhere below it as ``<name>_ms_01.png`` ... ``<name>_ms_31.png``.
    scenes: scene names (without ``_ms``), a split name of :data:`CAVE_SPLIT`, or None for every scene.
    size: if given, the centre ``size x size`` crop (the book's CPU runs use 128 or 256).
    """
    source = _check_source(source, "CAVE")
    if isinstance(scenes, str):
        if scenes not in CAVE_SPLIT:
            raise ValueError(f"scenes must be a list of names or one of {list(CAVE_SPLIT)}; got {scenes!r}")
        scenes = CAVE_SPLIT[scenes]
    elif scenes is not None and (not isinstance(scenes, (list, tuple)) or not scenes
                                 or not all(isinstance(n, str) for n in scenes)):
        raise ValueError(f"scenes must be None, a split name in {list(CAVE_SPLIT)} or a non-empty list of scene "
                         f"names; got {scenes!r}")
    if size is not None:
        _check_int("size", size, 1)
    files: dict[str, dict[int, object]] = {}
    if source.is_file() and zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for info in archive.infolist():
            m = _BAND_RE.search(info.filename.replace("\\", "/"))
            if m:
                files.setdefault(m.group(1), {})[int(m.group(2))] = (archive, info.filename)
    elif source.is_dir():
        archive = None
        for path in source.rglob("*.png"):
            m = _BAND_RE.search(path.name)
            if m:
                files.setdefault(m.group(1), {})[int(m.group(2))] = path
    else:
        raise ValueError(f"source must be the CAVE ZIP or a folder of extracted scenes; got {source}")
    if not files:
        raise ValueError(f"no CAVE band files (<name>_ms_NN.png) found in {source}")
    wanted = sorted(files) if scenes is None else list(scenes)
    missing = [s for s in wanted if s not in files]
    if missing:
        raise ValueError(f"scenes {missing} are not in {source}; found {sorted(files)}")
    out: dict[str, torch.Tensor] = {}
    for name in wanted:
        bands = files[name]
        if sorted(bands) != list(range(1, NUM_BANDS + 1)):
            raise ValueError(f"scene {name!r} must have bands 01..{NUM_BANDS}; found {sorted(bands)}")
        stack = []
        for k in range(1, NUM_BANDS + 1):
            ref = bands[k]
            if isinstance(ref, tuple):
                data, where = ref[0].read(ref[1]), ref[1]
            else:
                data, where = Path(ref).read_bytes(), str(ref)
            stack.append(_read_band(data, where))
        cube = np.stack(stack)
        if size is not None:
            h, w = cube.shape[-2:]
            if size > min(h, w):
                raise ValueError(f"size={size} exceeds the scene's {h}x{w}")
            i, j = (h - size) // 2, (w - size) // 2
            cube = cube[:, i:i + size, j:j + size]
        out[name] = torch.from_numpy(np.ascontiguousarray(cube))
    if archive is not None:
        archive.close()
    return out


# ------------------------------------------------------------------------------------------------
# DIV2K subset for the RGB task (real data, Colab)
# ------------------------------------------------------------------------------------------------

DIV2K = register(RemoteDataset(
    "div2k_valid_hr", "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
    # sha256 (and size, 448,993,893 bytes) as published in TensorFlow Datasets' DIV2K checksum list
    # (tensorflow_datasets/datasets/div2k/checksums.tsv)
    "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    filename="DIV2K_valid_HR.zip",
    description="DIV2K validation set, HR (Agustsson and Timofte 2017): 100 2K-resolution RGB photos "
                "(0801.png-0900.png), 449 MB; the subset used for chapter 8's auxiliary RGB task on Colab",
    license="research and academic use (DIV2K, ETH Zurich)"))

_DIV2K_RE = re.compile(r"(?:^|/)(\d{4})\.png$")


def download_div2k(root: str | Path | None = None) -> Path:
    """Download (once) and verify ``DIV2K_valid_HR.zip`` into ``$MEDTUT_DATA`` (or ``root``); its path."""
    _check_root(root)
    return fetch("div2k_valid_hr", root)


def load_div2k(source: str | Path, num_images: int | None = None, size: int = 64, per_image: int = 8,
               seed: int = 0) -> torch.Tensor:
    """Linear-RGB tiles of DIV2K photos for the auxiliary RGB task:
    (num_images * per_image, 3, size, size) float32 in [0, 1].

    source: ``DIV2K_valid_HR.zip`` (see :func:`download_div2k`) or a folder of the extracted PNGs
        (``NNNN.png`` anywhere below it); images are taken in name order.
    num_images: how many photos (the first ones); None for all.
    Each photo is decoded (8-bit sRGB, gamma 2.2), shrunk by 2 and cut into ``per_image`` random tiles,
    exactly as :func:`rgb_photo_tiles` treats scikit-image's photos; tile positions come from ``seed``.
    """
    from PIL import Image

    source = _check_source(source, "DIV2K")
    if num_images is not None:
        _check_int("num_images", num_images, 1)
    _check_scene_size(size)
    _check_int("per_image", per_image, 1)
    _check_int("seed", seed, 0)
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = sorted((n for n in archive.namelist() if _DIV2K_RE.search(n.replace("\\", "/"))),
                           key=lambda n: _DIV2K_RE.search(n.replace("\\", "/")).group(1))
            names = names[:num_images]
            blobs = [(n, archive.read(n)) for n in names]
    elif source.is_dir():
        paths = sorted((p for p in source.rglob("*.png") if _DIV2K_RE.search(p.name)), key=lambda p: p.name)
        blobs = [(str(p), p.read_bytes()) for p in paths[:num_images]]
    else:
        raise ValueError(f"source must be the DIV2K ZIP or a folder of its PNGs; got {source}")
    if not blobs:
        raise ValueError(f"no DIV2K images (NNNN.png) found in {source}")
    if num_images is not None and len(blobs) < num_images:
        raise ValueError(f"num_images={num_images} but {source} holds only {len(blobs)} DIV2K images")
    rng = np.random.default_rng(seed)
    tiles = []
    for where, data in blobs:
        photo = np.asarray(Image.open(io.BytesIO(data)))
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] not in (3, 4):
            raise ValueError(f"{where}: expected an 8-bit RGB PNG; got shape {photo.shape} {photo.dtype}")
        tiles += _linear_tiles(photo, size, per_image, rng, where)
    return torch.stack(tiles).clamp(0, 1).contiguous()


__all__ = ["WAVELENGTHS", "NUM_BANDS", "material_library", "cie_cmfs", "rgb_response", "rgb_to_8_matrix",
           "projection_matrix", "make_scene", "make_scenes", "downsample", "upsample", "degrade", "render_rgb",
           "rgb_photo_tiles", "PHOTOS", "CAVE_SPLIT", "download_cave", "load_cave", "DIV2K", "download_div2k",
           "load_div2k"]
