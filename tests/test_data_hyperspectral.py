"""Tests of chapter 8's data: spectral libraries, synthetic scenes, degradation, RGB, and the CAVE loader
on tiny fixtures the tests write (nothing is downloaded)."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from medtut.data import REGISTRY
from medtut.data import hyperspectral as hsd


def test_libraries_are_disjoint_and_in_range():
    train, unseen = hsd.material_library("train"), hsd.material_library("unseen")
    assert train.shape == (77, 31) and unseen.shape == (190, 31)
    for lib in (train, unseen):
        assert lib.dtype == np.float32 and lib.min() >= 0 and lib.max() <= 1
    # no unseen spectrum is (nearly) a training spectrum
    d = np.abs(unseen[:, None, :] - train[None]).max(-1)
    assert d.min() > 1e-3
    with pytest.raises(ValueError, match="split must be"):
        hsd.material_library("test")


def test_colour_matrices():
    r = hsd.rgb_response()
    assert r.shape == (31, 3) and (r >= 0).all() and np.allclose(r.sum(0), 1, atol=1e-6)
    # R peaks at long, B at short wavelengths
    assert r[:, 0].argmax() > r[:, 1].argmax() > r[:, 2].argmax()
    e = hsd.rgb_to_8_matrix()
    assert e.shape == (3, 8) and np.allclose(e.sum(0), 1)
    assert np.allclose(hsd.projection_matrix(), r @ e)
    assert hsd.cie_cmfs().shape == (31, 3)


def test_scenes_shapes_determinism_and_materials():
    y = hsd.make_scenes(3, "train", size=32, seed=4)
    assert y.shape == (3, 31, 32, 32) and y.dtype == torch.float32
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y, hsd.make_scenes(3, "train", size=32, seed=4))
    assert not torch.equal(y, hsd.make_scenes(3, "train", size=32, seed=5))
    # a scene made of two fixed spectra lies in their (shaded) span: rank 2
    two = hsd.material_library("train")[:2]
    scene = hsd.make_scene(np.random.default_rng(0), two, size=32, num_ellipses=4)
    sv = np.linalg.svd(scene.reshape(31, -1), compute_uv=False)
    assert sv[2] < 1e-4 * sv[0]
    with pytest.raises(ValueError, match="size must be"):
        hsd.make_scenes(1, size=30)
    with pytest.raises(ValueError, match="num_scenes"):
        hsd.make_scenes(0)
    with pytest.raises(ValueError, match=r"spectra must be \(N >= 2, 31\)"):
        hsd.make_scene(np.random.default_rng(0), np.zeros((1, 31)))


def test_degradation_shapes_and_linearity():
    y = hsd.make_scenes(2, "unseen", size=32, seed=0)
    x, x_up = hsd.degrade(y, 4)
    assert x.shape == (2, 31, 8, 8) and x_up.shape == (2, 31, 32, 32)
    a, b = y[:1], y[1:]
    assert torch.allclose(hsd.downsample(2 * a - b), 2 * hsd.downsample(a) - hsd.downsample(b), atol=1e-5)
    # a constant image stays constant
    c = torch.full((1, 31, 16, 16), 0.3)
    assert torch.allclose(hsd.downsample(c), torch.full((1, 31, 4, 4), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        hsd.downsample(torch.zeros(1, 31, 10, 10))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        hsd.downsample(torch.zeros(31, 8, 8))


def test_rgb_rendering_and_photos():
    white = torch.ones(1, 31, 4, 4)
    assert torch.allclose(hsd.render_rgb(white), torch.ones(1, 3, 4, 4), atol=1e-5)
    tiles = hsd.rgb_photo_tiles(size=32, per_photo=2, seed=0, photos=("coffee", "chelsea"))
    assert tiles.shape == (4, 3, 32, 32) and 0 <= float(tiles.min()) and float(tiles.max()) <= 1
    assert torch.equal(tiles, hsd.rgb_photo_tiles(size=32, per_photo=2, seed=0, photos=("coffee", "chelsea")))
    with pytest.raises(ValueError, match="31 bands"):
        hsd.render_rgb(torch.ones(1, 30, 4, 4))


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_cave_zip(path, names=("tiny",), size=8, eight_bit=()):
    """A CAVE-like ZIP: <name>_ms/<name>_ms/<name>_ms_NN.png (16-bit grey), plus the RGB preview BMP;
    scenes in ``eight_bit`` are stored as 8-bit RGBA, like CAVE's watercolors."""
    rng = np.random.default_rng(0)
    truth = {}
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            cube = rng.integers(0, 65536, size=(31, size, size)).astype(np.uint16)
            if name in eight_bit:
                cube8 = (cube // 257).astype(np.uint8)
                truth[name] = cube8.astype(np.float32) / 255
                for k in range(31):
                    rgba = np.stack([cube8[k]] * 3 + [np.full_like(cube8[k], 255)], -1)
                    z.writestr(f"{name}_ms/{name}_ms/{name}_ms_{k + 1:02d}.png", _png(rgba))
            else:
                truth[name] = cube.astype(np.float32) / 65535
                for k in range(31):
                    z.writestr(f"{name}_ms/{name}_ms/{name}_ms_{k + 1:02d}.png", _png(cube[k]))
            z.writestr(f"{name}_ms/{name}_ms/{name}_RGB.bmp", b"not a band")
    return truth


def test_cave_loader_parses_a_tiny_zip_and_folder(tmp_path):
    archive = tmp_path / "cave.zip"
    truth = _write_cave_zip(archive, names=("tiny", "watercolors"), eight_bit=("watercolors",))
    scenes = hsd.load_cave(archive)
    assert sorted(scenes) == ["tiny", "watercolors"]
    for name, cube in scenes.items():
        assert cube.shape == (31, 8, 8) and cube.dtype == torch.float32
        assert np.allclose(cube.numpy(), truth[name], atol=1e-7)
    crop = hsd.load_cave(archive, scenes=["tiny"], size=4)["tiny"]
    assert torch.equal(crop, scenes["tiny"][:, 2:6, 2:6])
    # the same from an extracted folder
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "extracted")
    folder = hsd.load_cave(tmp_path / "extracted", scenes=["tiny"])
    assert torch.equal(folder["tiny"], scenes["tiny"])


def test_cave_loader_errors(tmp_path):
    archive = tmp_path / "cave.zip"
    _write_cave_zip(archive)
    with pytest.raises(ValueError, match="not in"):
        hsd.load_cave(archive, scenes=["balloons"])
    with pytest.raises(ValueError, match="one of"):
        hsd.load_cave(archive, scenes="train")
    with pytest.raises(ValueError, match="exceeds"):
        hsd.load_cave(archive, size=16)
    with pytest.raises(ValueError, match="ZIP or a folder"):
        hsd.load_cave(tmp_path / "missing.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no CAVE band files"):
        hsd.load_cave(tmp_path / "empty")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("a_ms/a_ms_01.png", _png(np.zeros((4, 4), np.uint16)))
    with pytest.raises(ValueError, match="bands 01..31"):
        hsd.load_cave(broken)


def test_cave_split_and_registry():
    split = hsd.CAVE_SPLIT
    assert [len(split[k]) for k in ("labelled", "unlabelled", "test")] == [5, 15, 12]
    assert len(set(sum(split.values(), []))) == 32
    ds = REGISTRY["cave"]
    assert ds.url.startswith("https://") and ds.url.endswith(".zip") and not ds.extract


def _write_div2k_zip(path, count=3, shape=(72, 88)):
    """A DIV2K-like ZIP: DIV2K_valid_HR/0801.png ... (8-bit RGB), plus a file that is not an image."""
    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, size=(*shape, 3)).astype(np.uint8) for _ in range(count)]
    with zipfile.ZipFile(path, "w") as z:
        for k, photo in enumerate(photos):
            z.writestr(f"DIV2K_valid_HR/{801 + k:04d}.png", _png(photo))
        z.writestr("DIV2K_valid_HR/readme.txt", b"not an image")
    return photos


def test_div2k_loader_parses_a_tiny_zip_and_folder(tmp_path):
    archive = tmp_path / "DIV2K_valid_HR.zip"
    photos = _write_div2k_zip(archive)
    tiles = hsd.load_div2k(archive, num_images=2, size=16, per_image=3, seed=0)
    assert tiles.shape == (6, 3, 16, 16) and tiles.dtype == torch.float32
    assert 0 <= float(tiles.min()) and float(tiles.max()) <= 1
    assert torch.equal(tiles, hsd.load_div2k(archive, num_images=2, size=16, per_image=3, seed=0))
    # each tile is a crop of the photo decoded to linear RGB (gamma 2.2) and shrunk by 2 (antialiased)
    lin = torch.from_numpy(photos[0].astype(np.float32) / 255).permute(2, 0, 1)[None] ** 2.2
    small = torch.nn.functional.interpolate(lin, scale_factor=0.5, mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    rng = np.random.default_rng(0)
    i, j = int(rng.integers(0, 36 - 16 + 1)), int(rng.integers(0, 44 - 16 + 1))
    assert torch.allclose(tiles[0], small[:, i:i + 16, j:j + 16].clamp(0, 1))
    assert len(hsd.load_div2k(archive, size=16, per_image=1)) == 3           # every image by default
    # the same from an extracted folder
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "extracted")
    assert torch.equal(hsd.load_div2k(tmp_path / "extracted", num_images=2, size=16, per_image=3, seed=0), tiles)


def test_div2k_is_registered_with_its_published_checksum():
    ds = REGISTRY["div2k_valid_hr"]
    assert ds.url == "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip" and not ds.extract
    assert ds.hash_type == "sha256" and len(ds.hash_value) == 64 and ds.filename == "DIV2K_valid_HR.zip"
