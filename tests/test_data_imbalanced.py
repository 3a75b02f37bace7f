"""Tests of medtut.data.imbalanced: the offline digits builder, augmentation, and the Colab loaders on fixtures."""
import pickle

import numpy as np
import pytest
import torch

from medtut.data import REGISTRY
from medtut.data import imbalanced as D


def test_digits_split_is_imbalanced_disjoint_and_shared_test():
    d = D.make_imbalanced_digits(positive_digit=3, ratio=30, seed=0)
    counts = d.counts()
    n_neg, n_pos = counts["train"]
    assert n_pos == int(np.ceil(n_neg / 30))
    assert counts["val"] == (100, 25)
    assert counts["test"][1] >= 70                         # the test set keeps all its positives
    assert d.X_train.shape[1:] == (1, 8, 8) and d.X_train.dtype == torch.float32
    assert 0 <= float(d.X_train.min()) and float(d.X_train.max()) <= 1
    tr, va, te = (set(d.info[k].tolist()) for k in ("train_indices", "val_indices", "test_indices"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    other = D.make_imbalanced_digits(positive_digit=3, ratio=50, seed=1)
    assert torch.equal(other.X_test, d.X_test)              # same test set for every seed
    assert other.counts()["train"][1] < n_pos
    assert not torch.equal(other.X_train[:50], d.X_train[:50])
    again = D.make_imbalanced_digits(positive_digit=3, ratio=30, seed=0)
    assert torch.equal(again.X_train, d.X_train)


def test_digits_bad_input():
    with pytest.raises(ValueError, match="positive_digit"):
        D.make_imbalanced_digits(positive_digit=10)
    with pytest.raises(ValueError, match="ratio"):
        D.make_imbalanced_digits(ratio=0.5)
    with pytest.raises(ValueError, match="training positives"):
        D.make_imbalanced_digits(ratio=1)


def test_shift_and_noise_moves_pixels_and_is_deterministic():
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    out = D.shift_and_noise(x, torch.Generator().manual_seed(0), max_shift=1, noise=0.0)
    peaks = out.reshape(50, -1).argmax(1)
    rows, cols = peaks // 8, peaks % 8
    assert set(rows.tolist()) == {3, 4, 5} and set(cols.tolist()) == {3, 4, 5}
    assert torch.allclose(out.sum((1, 2, 3)), torch.ones(50))  # a shift by one never pushes it out
    a = D.shift_and_noise(x, torch.Generator().manual_seed(1))
    b = D.shift_and_noise(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and 0.1 < float((a - D.shift_and_noise(x, torch.Generator().manual_seed(1),
                                                                     noise=0.0)).std()) < 0.2
    flipped = D.crop_and_flip(torch.randn(4, 3, 32, 32), torch.Generator().manual_seed(0))
    assert flipped.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        D.shift_and_noise(torch.zeros(8, 8))


# ---------------------------------------------------------------- CIFAR10 fixture
def _write_cifar_fixture(folder, per_batch=60):
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(n, offset):
        labels = [(offset + k) % 10 for k in range(n)]
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return {b"batch_label": b"fixture", b"labels": labels, b"data": data, b"filenames": [b"x"] * n}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch(per_batch * 10, i), fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch(200, 0), fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane", b"automobile"]}, fh)


def test_cifar10_reader_and_paper_protocol(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_fixture(folder)
    x_tr, y_tr, x_te, y_te = D.read_cifar10_batches(folder)
    assert x_tr.shape == (3000, 3, 32, 32) and x_tr.dtype == np.uint8 and y_te.shape == (200,)
    split = D.make_cifar10_cars_vs_trucks(ratio=100, seed=1, folder=folder, val_per_class=20)
    cars = int((y_tr == 1).sum())                     # 300 cars and 300 trucks in the fixture
    n_maj = int(np.floor((cars - 20) * 0.9))
    assert split.counts()["train"] == (n_maj, max(1, n_maj // 100))
    assert split.counts()["val"] == (20, 20)
    assert split.counts()["test"] == (20, 20)
    assert split.X_train.shape[1:] == (3, 32, 32)
    ratio200 = D.make_cifar10_cars_vs_trucks(ratio=200, seed=2, folder=folder, val_per_class=20)
    assert ratio200.counts()["train"][1] == max(1, n_maj // 200)


def test_cifar10_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        D.read_cifar10_batches(tmp_path / "nothing")
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_fixture(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="data_batch_3"):
        D.read_cifar10_batches(folder)


# ---------------------------------------------------------------- MedMNIST fixture
def _write_medmnist_fixture(path, n_train=120, malignant_label=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", 30), ("test", 40)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3 != 0).astype(np.uint8)[:, None]  # 2/3 label 1
    np.savez(path, **arrays)


def test_medmnist_reader_and_imbalance(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    _write_medmnist_fixture(path)
    raw = D.read_medmnist_npz(path)
    assert raw["train_images"].shape == (120, 28, 28)
    pneu = D.make_medmnist_imbalanced("pneumoniamnist", ratio=20, seed=0, path=path)
    assert pneu.counts()["train"] == (40, 2)          # 40 normals, pneumonia (label 1) cut to 40/20
    assert pneu.counts()["test"] == (14, 26)          # test keeps the official split
    assert pneu.X_train.shape[1:] == (1, 28, 28) and float(pneu.X_train.max()) <= 1
    breast = D.make_medmnist_imbalanced("breastmnist", ratio=20, seed=0, path=path)
    # malignant is label 0 in the file: it becomes the positive class and is subsampled
    assert breast.counts()["train"] == (80, 4)
    assert breast.counts()["val"] == (20, 10)


def test_medmnist_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="train_labels"):
        D.read_medmnist_npz(bad)
    with pytest.raises(ValueError, match="name must be"):
        D.make_medmnist_imbalanced("chestmnist", path=bad)
    path = tmp_path / "p.npz"
    _write_medmnist_fixture(path)
    with pytest.raises(ValueError, match="needs"):
        D.make_medmnist_imbalanced("breastmnist", ratio=1, path=path)


def test_registered_datasets_have_sourced_md5():
    assert REGISTRY["cifar10"].hash_value == "c58f30108f718f92721af3b95e74349a"
    assert REGISTRY["pneumoniamnist"].hash_value == "28209eda62fecd6e6a2d98b1501bb15f"
    assert REGISTRY["breastmnist"].hash_value == "750601b1f35ba3300ea97c75c52ff8f6"
    assert all(REGISTRY[k].hash_type == "md5" for k in ("cifar10", "pneumoniamnist", "breastmnist"))
