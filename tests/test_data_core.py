"""medtut.data: data root, registry and checksum-verified fetching (no network: a file:// URL)."""
import hashlib

import pytest
import torch

from medtut import data
from medtut.data.phantoms import make_phantom_dataset


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTUT_DATA", str(tmp_path / "store"))
    assert data.data_root() == tmp_path / "store" and (tmp_path / "store").is_dir()
    monkeypatch.delenv("MEDTUT_DATA")
    assert data.data_root(create=False).name == "medtut"


def test_fetch_verifies_checksum(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"medtut fixture")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    good = data.register(data.RemoteDataset("fixture-ok", source.as_uri(), digest, filename="ok.bin"))
    assert data.fetch(good.name, root=tmp_path / "cache").read_bytes() == b"medtut fixture"
    data.register(data.RemoteDataset("fixture-bad", source.as_uri(), "0" * 64, filename="bad.bin"))
    with pytest.raises(Exception, match="(?i)hash|check"):
        data.fetch("fixture-bad", root=tmp_path / "cache")
    for name in ("fixture-ok", "fixture-bad"):
        data.REGISTRY.pop(name)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.fetch("no-such-dataset")
    with pytest.raises(ValueError, match="hash_type"):
        data.register(data.RemoteDataset("x", "file:///x", "00", hash_type="crc32"))


def test_phantoms_labels_match_images():
    images, labels = make_phantom_dataset(6, 32, seed=1)
    assert images.shape == (6, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (6, 32, 32) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3}
    # organ (2) is brighter than body (1) on average in every image
    for img, lab in zip(images[:, 0], labels):
        assert img[lab == 2].mean() > img[lab == 1].mean() > img[lab == 0].mean()
    again, _ = make_phantom_dataset(6, 32, seed=1)
    assert torch.equal(images, again)
    with pytest.raises(ValueError):
        make_phantom_dataset(0)
