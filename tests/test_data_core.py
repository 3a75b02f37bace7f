"""medtut.data: data root, the complete registry, and checksum-verified fetching.

No network: every download here is a ``file://`` URL to a fixture the test writes. The fixtures stand in
for each registered data set (same file name, archive type and checksum kind), so every entry of the
registry goes through :func:`medtut.data.fetch` once, with its real code path.
"""
import dataclasses
import hashlib
import io
import subprocess
import sys
import tarfile
import warnings
import zipfile

import pytest
import torch

from medtut import data
from medtut.data.phantoms import make_phantom_dataset


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTUT_DATA", str(tmp_path / "store"))
    assert data.data_root() == tmp_path / "store" and (tmp_path / "store").is_dir()
    monkeypatch.delenv("MEDTUT_DATA")
    assert data.data_root(create=False).name == "medtut"


def test_registry_is_complete_however_medtut_is_imported():
    # a fresh interpreter that imports only the core package: fetch and available() know every set
    code = ("import medtut.data as d; names = d.available(); "
            "assert {'set5', 'cifar10', 'mnist-train-images', 'set12-01'} <= set(names), sorted(names); "
            "print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(data.available())


def test_fetch_verifies_checksum(tmp_path, monkeypatch):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"medtut fixture")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    good = data.RemoteDataset("fixture-ok", source.as_uri(), digest, filename="ok.bin")
    monkeypatch.setitem(data.REGISTRY, good.name, good)
    assert data.fetch(good.name, root=tmp_path / "cache").read_bytes() == b"medtut fixture"
    bad = data.RemoteDataset("fixture-bad", source.as_uri(), "0" * 64, filename="bad.bin")
    monkeypatch.setitem(data.REGISTRY, bad.name, bad)
    with pytest.raises(ValueError, match=f"has sha256 {digest}, expected 0{{64}}.*not kept"):
        data.fetch("fixture-bad", root=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ok.bin"]   # nothing half-written


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset 'no-such-dataset'; registered: .*set5"):
        data.fetch("no-such-dataset")
    with pytest.raises(ValueError, match="hash_type must be md5, sha1, sha256 or sha512; got 'crc32'"):
        data.register(data.RemoteDataset("x", "file:///x", "00", hash_type="crc32"))


# ---------------------------------------------------------------------------------------------------
# Every registry entry, fetched from a local fixture
# ---------------------------------------------------------------------------------------------------

def _archive_bytes(local_name: str, folder: str | None) -> tuple[bytes, dict[str, bytes]]:
    members = {f"{folder or 'data'}/a.txt": b"alpha " * 50, f"{folder or 'data'}/b.bin": bytes(range(256))}
    buf = io.BytesIO()
    if local_name.endswith(".zip"):
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload in members.items():
                zf.writestr(name, payload)
    else:
        mode = "w:gz" if local_name.endswith((".gz", ".tgz")) else "w"
        with tarfile.open(fileobj=buf, mode=mode) as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue(), members


def _fixture_for(ds: data.RemoteDataset, tmp_path) -> tuple[data.RemoteDataset, bytes]:
    """A local stand-in for ``ds``: same local name, archive type and kind of checksum."""
    remote = tmp_path / "remote" / ds.name
    remote.mkdir(parents=True)
    if ds.extract:
        payload, members = _archive_bytes(ds.local_name, ds.folder)
    else:
        payload = f"fixture for {ds.name}".encode() * 20
    source = remote / ds.local_name
    source.write_bytes(payload)
    if ds.hash_value is None:
        hash_value = None
    elif ds.hash_of == "folder":
        folder = tmp_path / "expected" / ds.name
        for name, content in members.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        hash_value = data.folder_checksum(folder / (ds.folder or "data"))
    else:
        hash_value = hashlib.new(ds.hash_type, payload).hexdigest()
    return dataclasses.replace(ds, url=source.as_uri(), hash_value=hash_value, filename=ds.local_name), payload


@pytest.mark.parametrize("name", sorted(data.available()))
def test_every_registered_dataset_fetches_from_a_fixture(name, tmp_path, monkeypatch):
    fixture, payload = _fixture_for(data.REGISTRY[name], tmp_path)
    monkeypatch.setitem(data.REGISTRY, name, fixture)
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no checksum is published")   # first use of a pinned file
        got = data.fetch(name, root=cache)
    if fixture.extract:
        assert got.is_dir() and any(got.iterdir())
        assert (cache / name / data.COMPLETE_MARKER).is_file()
    else:
        assert got.read_bytes() == payload
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the second call only verifies, silently
        assert data.fetch(name, root=cache) == got
    assert not list(cache.rglob("*.part")) and not list(cache.glob(".*partial"))


def _tar_dataset(tmp_path, name="fixture-archive"):
    payload, members = _archive_bytes("fx.tar.gz", "inner")
    source = tmp_path / "remote" / "fx.tar.gz"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(payload)
    ds = data.RemoteDataset(name, source.as_uri(), hashlib.sha256(payload).hexdigest(), extract=True,
                            folder="inner")
    return ds, source


def test_corrupted_archive_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    ds, source = _tar_dataset(tmp_path)
    source.write_bytes(source.read_bytes()[:100])          # the server sends a truncated archive
    monkeypatch.setitem(data.REGISTRY, ds.name, ds)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"fixture-archive: the file downloaded from .* has sha256 [0-9a-f]{64}, "
                                         r"expected [0-9a-f]{64}; it was not kept"):
        data.fetch(ds.name, root=cache)
    assert list(cache.iterdir()) == []


def test_half_extracted_folder_is_detected_and_extracted_again(tmp_path, monkeypatch):
    ds, _ = _tar_dataset(tmp_path)
    monkeypatch.setitem(data.REGISTRY, ds.name, ds)
    cache = tmp_path / "cache"
    folder = data.fetch(ds.name, root=cache)
    complete = sorted(p.name for p in folder.iterdir())
    # extraction that stopped halfway: one file, no completion marker
    (folder / "b.bin").unlink()
    (cache / ds.name / data.COMPLETE_MARKER).unlink()
    with pytest.warns(UserWarning, match="incomplete .*no completion marker"):
        again = data.fetch(ds.name, root=cache)
    assert sorted(p.name for p in again.iterdir()) == complete
    # a file deleted after a complete extraction is noticed too
    (again / "a.txt").unlink()
    with pytest.warns(UserWarning, match="1 file\\(s\\) are missing, e.g. inner/a.txt"):
        data.fetch(ds.name, root=cache)
    assert (again / "a.txt").read_bytes() == b"alpha " * 50


def test_interrupted_download_leaves_no_file_that_looks_complete(tmp_path, monkeypatch):
    import monai.apps

    ds, _ = _tar_dataset(tmp_path)
    monkeypatch.setitem(data.REGISTRY, ds.name, ds)
    cache = tmp_path / "cache"
    real_download = monai.apps.download_url

    def cut_short(url, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x1f\x8b partial bytes")
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(monai.apps, "download_url", cut_short)
    with pytest.raises(ConnectionError, match="reset"):
        data.fetch(ds.name, root=cache)
    assert list(cache.iterdir()) == []                     # neither the archive nor a .part file
    # a .part file left by a killed process is ignored and replaced
    (cache / (ds.local_name + ".part")).write_bytes(b"stale")
    monkeypatch.setattr(monai.apps, "download_url", real_download)
    folder = data.fetch(ds.name, root=cache)
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.bin"]
    assert sorted(p.name for p in cache.iterdir()) == ["fixture-archive", "fx.tar.gz"]


def test_altered_file_already_present_is_an_error_with_a_remedy(tmp_path, monkeypatch):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"medtut fixture")
    ds = data.RemoteDataset("fixture-present", source.as_uri(), hashlib.md5(b"medtut fixture").hexdigest(),
                            hash_type="md5", filename="present.bin")
    monkeypatch.setitem(data.REGISTRY, ds.name, ds)
    path = data.fetch(ds.name, root=tmp_path)
    path.write_bytes(b"medtut fixtur")
    with pytest.raises(ValueError, match="present.bin has md5 [0-9a-f]{32}, expected .*delete .* call fetch"):
        data.fetch(ds.name, root=tmp_path)


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
    with pytest.raises(ValueError, match="n must be >= 1; got 0"):
        make_phantom_dataset(0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name=None, url="file:///x", hash_value=None), "a dataset needs a non-empty name; got None"),
    (dict(name="x", url="", hash_value=None), "a dataset needs a non-empty url"),
    (dict(name="x", url="ftp://host/x", hash_value=None), "url must start with https://, http:// or file://"),
    (dict(name="x", url="file:///x", hash_value="abc"), r"hash_value must be the sha256 hex digest \(64 hex digits\)"),
    (dict(name="x", url="file:///x", hash_value="z" * 32, hash_type="md5"), "hash_value must be the md5 hex digest"),
])
def test_register_rejects_incomplete_entries(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.register(data.RemoteDataset(**kwargs))
