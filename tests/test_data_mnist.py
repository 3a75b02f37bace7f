"""Tests for medtut.data.mnist: the offline digits split and the idx parser on fixtures written here."""
import gzip
import re
import struct

import numpy as np
import pytest
import torch

from medtut.data import REGISTRY
from medtut.data.mnist import load_digits_split, load_idx_pair, load_mnist, read_idx


def write_idx(path, array, code=0x08, compress=True):
    array = np.asarray(array)
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">i", s) for s in array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    payload = header + array.astype(dtype).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)
    return path


def test_digits_split_is_fixed_disjoint_and_scaled():
    a, b = load_digits_split(), load_digits_split()
    assert a.x_train.shape == (1200, 64) and a.x_test.shape == (597, 64)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) == 1.0
    torch.testing.assert_close(a.x_test, b.x_test)
    assert set(a.y_test.tolist()) == set(range(10))
    # no test image is also a training image (up to the duplicates digits contains, compare by row set)
    train_rows = {tuple(r) for r in a.x_train.numpy().round(4).tolist()}
    overlap = sum(tuple(r) in train_rows for r in a.x_test.numpy().round(4).tolist())
    assert overlap <= 5  # a handful of exact duplicate digits exist in the data set itself
    c = load_digits_split(num_test=100, seed=1)
    assert c.x_test.shape == (100, 64)
    with pytest.raises(ValueError, match="num_test"):
        load_digits_split(num_test=0)


def test_read_idx_parses_gz_and_raw_fixtures(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "img.gz", images)), images)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "img", images, compress=False)), images)
    ints = np.array([[1, -2], [300000, 4]])
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "i.gz", ints, code=0x0C)), ints)
    x, y = load_idx_pair(tmp_path / "img.gz", write_idx(tmp_path / "lab.gz", labels))
    assert x.shape == (3, 20) and x.dtype == torch.float32 and y.tolist() == [7, 0, 9]
    torch.testing.assert_close(x[0, 5], torch.tensor(5 / 255))


def test_read_idx_rejects_bad_files(tmp_path):
    images = np.zeros((2, 3, 3), dtype=np.uint8)
    path = write_idx(tmp_path / "x.gz", images)
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    gzip.open(tmp_path / "short.gz", "wb").write(raw[:-2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.gz")
    gzip.open(tmp_path / "magic.gz", "wb").write(b"\x01\x02\x08\x01" + raw[4:])
    with pytest.raises(ValueError, match="two zero bytes"):
        read_idx(tmp_path / "magic.gz")
    gzip.open(tmp_path / "code.gz", "wb").write(b"\x00\x00\x07\x03" + raw[4:])
    with pytest.raises(ValueError, match="type code"):
        read_idx(tmp_path / "code.gz")
    with pytest.raises(ValueError, match=r"labels must be \(N,\)"):
        load_idx_pair(path, write_idx(tmp_path / "l.gz", np.zeros(5, dtype=np.uint8)))


def test_mnist_files_are_registered_with_md5():
    for flavour in ("mnist", "fashion-mnist"):
        for split in ("train", "test"):
            for kind in ("images", "labels"):
                ds = REGISTRY[f"{flavour}-{split}-{kind}"]
                assert ds.hash_type == "md5" and re.fullmatch(r"[0-9a-f]{32}", ds.hash_value)
                assert ds.url.endswith("-ubyte.gz") and ds.local_name.startswith(flavour)
    assert REGISTRY["mnist-train-images"].hash_value == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    # other chapters register their own *mnist sets (MedMNIST), so select this module's names only
    names = [ds.local_name for ds in REGISTRY.values() if ds.name.startswith(("mnist-", "fashion-mnist-"))]
    assert len(names) == len(set(names)) == 8  # no two files share a local name


def test_load_mnist_validates_arguments():
    with pytest.raises(ValueError, match="flavour"):
        load_mnist("kmnist")
    with pytest.raises(ValueError, match="split"):
        load_mnist("mnist", "val")
