"""Tests for medtut.data.brain_phantoms (chapter 10): offline head phantoms and the real-data loaders."""
import sys
import types

import h5py
import numpy as np
import pytest
import torch

from medtut.data import brain_phantoms as bp


def test_head_phantoms_shape_range_and_seed():
    a = bp.make_head_phantoms(6, 32, seed=3)
    assert a.shape == (6, 1, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, bp.make_head_phantoms(6, 32, seed=3))
    assert not torch.equal(a, bp.make_head_phantoms(6, 32, seed=4))
    # a head: background corners, signal in the middle, and varied contrast between images
    assert float(a[:, 0, :2, :2].abs().max()) == 0.0
    assert float(a[:, 0, 12:20, 12:20].mean()) > 0.05
    assert float(a.flatten(1).std(1).std()) > 0.005


def test_head_phantoms_reject_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        bp.make_head_phantoms(0)
    with pytest.raises(ValueError, match="size must be"):
        bp.make_head_phantoms(2, size=8)


def test_shepp_logan_is_held_out_and_scaled():
    img = bp.shepp_logan(48)
    assert img.shape == (48, 48)
    assert float(img.min()) == 0.0 and float(img.max()) == pytest.approx(1.0)


def _write_fastmri(path, multicoil: bool, with_recon: bool = True):
    rng = np.random.default_rng(0)
    shape = (3, 4, 20, 16) if multicoil else (3, 20, 16)
    kspace = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        if with_recon:
            f.create_dataset("reconstruction_rss", data=rng.random((3, 10, 10)).astype(np.float32))
        f.attrs["acquisition"] = "AXT1"
    return kspace


@pytest.mark.parametrize("multicoil", [False, True])
def test_fastmri_loader_parses_a_tiny_fixture(tmp_path, multicoil):
    path = tmp_path / "file_brain_fixture.h5"
    kspace = _write_fastmri(path, multicoil)
    out = bp.load_fastmri_slice(path)
    assert out["slice_index"] == 1 and out["num_slices"] == 3
    want = kspace[1] if multicoil else kspace[1][None]
    assert out["kspace"].shape == want.shape and np.allclose(out["kspace"], want)
    assert out["reconstruction"].shape == (10, 10)
    img = bp.fastmri_image(path, slice_index=2, size=16)
    assert img.shape == (16, 16) and float(img.min()) == 0.0 and float(img.max()) == pytest.approx(1.0)


def test_fastmri_image_is_the_rss_of_the_coil_images(tmp_path):
    """A fixture built from a known image comes back as that image (up to scaling)."""
    from medtut.mr_sampling import fft2c
    truth = bp.make_head_phantoms(1, 32, seed=0)[0, 0]
    coils = torch.stack([truth * 0.5, truth * 0.5j, truth * (0.5 + 0.5j)]).to(torch.complex64)
    k = fft2c(coils).numpy()[None]  # (slices=1, coils=3, H, W)
    path = tmp_path / "known.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
    img = bp.fastmri_image(path, size=32)
    assert torch.allclose(img, truth / truth.max(), atol=1e-4)


def test_fastmri_loader_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no fastMRI file"):
        bp.load_fastmri_slice(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("image", data=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="kspace"):
        bp.load_fastmri_slice(bad)
    real = tmp_path / "real.h5"
    with h5py.File(real, "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="complex"):
        bp.load_fastmri_slice(real)
    path = tmp_path / "ok.h5"
    _write_fastmri(path, multicoil=False, with_recon=False)
    assert bp.load_fastmri_slice(path)["reconstruction"] is None
    with pytest.raises(ValueError, match="slice_index"):
        bp.load_fastmri_slice(path, slice_index=7)


def test_brainweb_loader_with_a_stub_package(monkeypatch, tmp_path):
    """The BrainWeb path, with brainweb_dl replaced by a stub returning a known volume (no download)."""
    calls = []

    def get_mri(sub_id, contrast, brainweb_dir=None):
        calls.append((sub_id, contrast, brainweb_dir))
        vol = np.zeros((40, 50, 44))
        vol[:, 10:40, 8:36] = sub_id  # a bright box, different per subject
        return vol

    monkeypatch.setitem(sys.modules, "brainweb_dl", types.SimpleNamespace(get_mri=get_mri))
    out = bp.brainweb_t1_slices(subjects=(4, 5), slices_per_subject=3, size=24, brainweb_dir=tmp_path)
    assert out.shape == (6, 1, 24, 24)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0)
    assert calls == [(4, "T1", str(tmp_path)), (5, "T1", str(tmp_path))]
    with pytest.raises(ValueError, match="subjects"):
        bp.brainweb_t1_slices(subjects=(7,))


def test_brainweb_loader_explains_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "brainweb_dl", None)  # makes `import brainweb_dl` fail
    with pytest.raises(ImportError, match="pip install brainweb-dl"):
        bp.brainweb_t1_slices(subjects=(4,))


def test_natural_image_is_offline_scaled_and_validated():
    img = bp.natural_image("camera", 32)
    assert img.shape == (32, 32) and img.dtype == torch.float32
    assert float(img.min()) == 0.0 and float(img.max()) == pytest.approx(1.0)
    assert float(img[:4, :4].mean()) > 0.05  # a photograph: no empty background like the head phantoms
    with pytest.raises(ValueError, match="name must be one of"):
        bp.natural_image("lena")
