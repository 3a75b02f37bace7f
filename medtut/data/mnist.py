"""Chapter 5's data: hand-written digits offline, MNIST and FashionMNIST for the full run on Colab.

* :func:`load_digits_split` — scikit-learn's bundled 8x8 digits (1,797 images, shipped inside the
  scikit-learn wheel, so nothing is downloaded), scaled to [0, 1], with a fixed train/test split.
* :func:`load_mnist` — MNIST or FashionMNIST (28x28) from the original ``idx`` files, downloaded once
  through :func:`medtut.data.fetch` and verified against the md5 checksums that torchvision uses
  (``torchvision/datasets/mnist.py``: ``MNIST.resources`` and ``FashionMNIST.resources``).
* :func:`read_idx` — a small parser for the ``idx`` format (gzip-compressed or not).

Images are returned flattened, ``(N, H*W)`` float32 in [0, 1], as the chapter's MLP decoders expect.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import RemoteDataset, fetch, register

# ---------------------------------------------------------------------------------------------------
# Offline: scikit-learn digits
# ---------------------------------------------------------------------------------------------------


class Split(NamedTuple):
    """A train/test split: images ``(N, D)`` float32 in [0, 1] and labels ``(N,)`` int64."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


DIGITS_NUM_TEST = 597  # 1,797 = 1,200 train + 597 test


def load_digits_split(num_test: int = DIGITS_NUM_TEST, seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits, scaled from 0..16 to [0, 1], flattened to 64 values.

    The split is a fixed permutation drawn with ``seed`` (default: 1,200 train and 597 test images),
    the same on every machine.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = len(digits.images)
    if not 1 <= num_test < n:
        raise ValueError(f"num_test must be in [1, {n - 1}]; got {num_test}")
    x = torch.from_numpy((digits.images.reshape(n, -1) / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    test, train = perm[:num_test], perm[num_test:]
    return Split(x[train], y[train], x[test], y[test])


# ---------------------------------------------------------------------------------------------------
# Colab / GPU: MNIST and FashionMNIST from idx files with checksums
# ---------------------------------------------------------------------------------------------------

# md5 of the .gz files, as listed in torchvision/datasets/mnist.py (MNIST.resources, FashionMNIST.resources).
_SOURCES = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }, "Creative Commons Attribution-Share Alike 3.0 (Y. LeCun and C. Cortes)"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }, "MIT (Zalando Research)"),
}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _dataset_name(flavour: str, split: str, kind: str) -> str:
    return f"{flavour}-{split}-{kind}"


for _flavour, (_base, _files, _license) in _SOURCES.items():
    for _split, _prefix in _SPLIT_PREFIX.items():
        for _kind, _idx in (("images", 3), ("labels", 1)):
            _file = f"{_prefix}-{_kind}-idx{_idx}-ubyte.gz"
            register(RemoteDataset(
                name=_dataset_name(_flavour, _split, _kind), url=_base + _file, hash_value=_files[_file],
                hash_type="md5", filename=f"{_flavour}-{_file}",
                description=f"{_flavour} {_split} {_kind} (idx format, gzip)", license=_license))

_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an ``idx`` file (``.gz`` or raw) into a numpy array.

    Format: two zero bytes, a type code (0x08 unsigned byte ... 0x0E float64), the number of
    dimensions ``n``, then ``n`` big-endian int32 sizes, then the values in C order, big-endian.
    Raises ``ValueError`` for a bad header or a size mismatch (e.g. a truncated download).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path.name} is not an idx file: it must start with two zero bytes; got {raw[:4]!r}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path.name}: unknown idx type code {code:#04x}; expected one of "
                         f"{[hex(c) for c in _IDX_DTYPES]}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path.name}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path.name}: the header announces shape {shape} ({expected} bytes of data) but the "
                         f"file holds {len(raw) - header} bytes (truncated or corrupt download?)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, H*W)`` float32 in [0, 1] and labels ``(N,)`` int64 from two idx files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"an image idx file must hold (N, H, W) unsigned bytes; got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be (N,) with N = {len(images)} images; got shape {labels.shape}")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_mnist(flavour: str = "mnist", split: str = "train", root: str | os.PathLike | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST (``flavour="mnist"``) or FashionMNIST (``"fashion-mnist"``), ``split`` ``"train"``/``"test"``.

    Downloads the two idx files once into :func:`medtut.data.data_root` (or ``root``), checks their
    md5, and returns images ``(N, 784)`` float32 in [0, 1] and labels ``(N,)`` int64
    (N = 60,000 train, 10,000 test). Needs the network the first time (Colab); never used in tests.
    """
    if flavour not in _SOURCES:
        raise ValueError(f"flavour must be one of {sorted(_SOURCES)}; got {flavour!r}")
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    images = fetch(_dataset_name(flavour, split, "images"), root)
    labels = fetch(_dataset_name(flavour, split, "labels"), root)
    return load_idx_pair(images, labels)


__all__ = ["Split", "load_digits_split", "read_idx", "load_idx_pair", "load_mnist", "DIGITS_NUM_TEST"]
