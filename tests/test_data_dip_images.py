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


def _png_folder(folder, sizes, seed=0):
    from skimage.io import imsave

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, shape in enumerate(sizes):
        imsave(folder / f"{k:02d}.png", (rng.random(shape) * 255).astype(np.uint8), check_contrast=False)
    return folder


def test_registered_sets_are_pinned_and_checksummed():
    from medtut.data import REGISTRY

    assert set(di.IMAGE_SETS) == {"set5", "set14", "set12", "dip-classic"}
    assert len(di.IMAGE_SETS["set12"]) == 12 and len(di.IMAGE_SETS["dip-classic"]) == 4
    for name in ("set5", "set14"):
        ds = REGISTRY[name]
        assert ds.hash_of == "folder" and ds.hash_type == "md5" and len(ds.hash_value) == 32 and ds.extract
    for member in di.IMAGE_SETS["set12"] + di.IMAGE_SETS["dip-classic"]:
        ds = REGISTRY[member]
        # no published checksum: the URL must pin a commit, so the bytes behind it cannot change
        commit = ds.url.split("/")[5]
        assert ds.hash_value is None and len(commit) == 40 and set(commit) <= set("0123456789abcdef")
        assert ds.url.endswith(".png")
    with pytest.raises(ValueError, match="unknown image set"):
        di.load_benchmark("set99")


def test_archive_set_with_folder_checksum(tmp_path, monkeypatch):
    import tarfile

    from medtut import data

    src = _png_folder(tmp_path / "src" / "Fixture_HR", [(40, 48, 3), (32, 32)])
    archive = tmp_path / "fixture.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="Fixture_HR")
    good = data.RemoteDataset("fixture-set", archive.as_uri(), data.folder_checksum(src), hash_type="md5",
                              extract=True, hash_of="folder", folder="Fixture_HR")
    monkeypatch.setitem(data.REGISTRY, good.name, good)
    monkeypatch.setitem(di.IMAGE_SETS, "fixture", [good.name])
    images = di.load_benchmark("fixture", size=16, root=tmp_path / "cache")
    assert list(images) == ["00", "01"] and all(im.shape == (1, 16, 16) for im in images.values())
    # a truncated file in the extracted folder is caught on the next call and extracted again
    extracted = tmp_path / "cache" / "fixture" / "fixture-set" / "Fixture_HR" / "01.png"
    extracted.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="incomplete .*changed size"):
        again = di.load_benchmark("fixture", size=16, root=tmp_path / "cache")
    assert all(torch.equal(images[k], again[k]) for k in images)
    # an altered file of the same size passes the marker but not the folder checksum
    size = extracted.stat().st_size
    extracted.write_bytes(b"x" * size)
    with pytest.raises(ValueError, match="folder checksum"):
        di.load_benchmark("fixture", size=16, root=tmp_path / "cache")
    bad = data.RemoteDataset("fixture-bad", archive.as_uri(), "0" * 32, hash_type="md5", extract=True,
                             hash_of="folder", folder="Fixture_HR")
    monkeypatch.setitem(data.REGISTRY, bad.name, bad)
    with pytest.raises(ValueError, match="expected 0{32}"):
        data.fetch(bad.name, root=tmp_path / "cache2")
    with pytest.raises(ValueError, match="folder checksum needs"):
        data.register(data.RemoteDataset("x", "file:///x", None, hash_of="folder"))
    with pytest.raises(ValueError, match="only single files"):
        data.register(data.RemoteDataset("x", "file:///x.tar.gz", None, extract=True))


def test_commit_pinned_files_are_recorded_then_verified(tmp_path, monkeypatch):
    from medtut import data

    src = _png_folder(tmp_path / "remote", [(24, 24), (64, 48)], seed=1)
    members = []
    for f in sorted(src.iterdir()):
        ds = data.RemoteDataset(f"fixture-{f.stem}", f.as_uri(), None, filename=f"img{f.name}")
        monkeypatch.setitem(data.REGISTRY, ds.name, ds)
        members.append(ds.name)
    monkeypatch.setitem(di.IMAGE_SETS, "fixture-files", members)
    with pytest.warns(UserWarning, match="no checksum is published"):
        images = di.load_benchmark("fixture-files", size=8, root=tmp_path / "cache")
    assert list(images) == ["img00", "img01"]
    ledger = tmp_path / "cache" / "fixture-files" / data.RECORDED_CHECKSUMS
    assert ledger.exists()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the second call verifies silently
        again = di.load_benchmark("fixture-files", size=8, root=tmp_path / "cache")
    assert all(torch.equal(images[k], again[k]) for k in images)
    (tmp_path / "cache" / "fixture-files" / "img01.png").write_bytes(b"altered")
    with pytest.raises(ValueError, match="recorded at its first download"):
        di.load_benchmark("fixture-files", size=8, root=tmp_path / "cache")
