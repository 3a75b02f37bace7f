"""Tests for medtut.data.dip_images (chapter 4): offline images, corruptions, the folder loader."""
import numpy as np
import pytest
import torch

from medtut.data import dip_images as di


@pytest.mark.parametrize("name", di.IMAGE_NAMES)
def test_offline_images(name):
    img = di.load_test_image(name, 32)
    assert img.shape == (1, 32, 32) and img.dtype == torch.float32
    assert 0 <= float(img.min()) and float(img.max()) <= 1 and float(img.std()) > 0.01


def test_corruptions_have_the_stated_statistics():
    img = di.load_test_image("camera", 64)
    den = di.make_problem(img, "denoise", seed=0, sigma=25)
    interior = (img > 0.15) & (img < 0.85)                 # away from the clipping
    assert float((den.observed - img)[interior].std()) == pytest.approx(25 / 255, rel=0.15)
    inp = di.make_problem(img, "inpaint", seed=0, keep=0.5)
    assert float(inp.mask.mean()) == pytest.approx(0.5, abs=0.05)
    assert torch.equal(inp.observed, img * inp.mask)
    sr = di.make_problem(img, "sr", seed=0, factor=4)
    assert sr.observed.shape == (1, 16, 16)
    assert torch.allclose(sr.degrade(img[None])[0], sr.observed, atol=1e-6)
    # fixed seeds: same seed, same corruption; another seed, another one
    assert torch.equal(di.make_problem(img, "denoise", seed=0).observed, den.observed)
    assert not torch.equal(di.make_problem(img, "denoise", seed=1).observed, den.observed)


def test_bad_inputs():
    img = di.load_test_image("camera", 32)
    with pytest.raises(ValueError, match="task"):
        di.make_problem(img, "deblur")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        di.make_problem(img * 3, "denoise")
    with pytest.raises(ValueError, match="float"):
        di.make_problem(img[0], "denoise")
    with pytest.raises(ValueError, match="unknown image"):
        di.load_test_image("lena")
    with pytest.raises(ValueError, match="divisible"):
        di.downsample(torch.rand(1, 1, 30, 30), 4)


def test_folder_loader_parses_a_fixture(tmp_path):
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    imsave(tmp_path / "b_grey.png", (rng.random((40, 50)) * 255).astype(np.uint8))
    imsave(tmp_path / "a_colour.png", (rng.random((30, 30, 3)) * 255).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    images = di.load_image_folder(tmp_path, size=16)
    assert list(images) == ["a_colour", "b_grey"]
    for im in images.values():
        assert im.shape == (1, 16, 16) and 0 <= float(im.min()) <= float(im.max()) <= 1
    with pytest.raises(ValueError, match="no images"):
        di.load_image_folder(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)
    with pytest.raises(ValueError, match="folder"):
        di.load_image_folder(tmp_path / "missing")


def test_folder_checksum_and_verified_fetch(tmp_path):
    import hashlib

    folder = tmp_path / "Set5" / "Set5_HR"
    folder.mkdir(parents=True)
    (folder / "b.png").write_bytes(b"second")
    (folder / "a.png").write_bytes(b"first")
    want = hashlib.md5((hashlib.md5(b"first").hexdigest() + hashlib.md5(b"second").hexdigest()).encode()).hexdigest()
    assert di.folder_md5(folder) == want
    # a folder already present is verified (no download): this fixture is not the real Set5
    with pytest.raises(ValueError, match="checksum mismatch"):
        di.fetch_sr_set("Set5", root=tmp_path)
    with pytest.raises(ValueError, match="unknown set"):
        di.fetch_sr_set("Set99", root=tmp_path)
