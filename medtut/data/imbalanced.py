"""Chapter 7's data: binary problems where the positive (critical) class is rare.

Offline (tests, quick and full mode on CPU): scikit-learn's bundled 8×8 digits, one digit positive, the
*training* positives subsampled to 1:30–1:50 while the test set keeps all its positives
(:func:`make_imbalanced_digits`), and the shift-and-noise augmentation (:func:`shift_and_noise`).

Real data for Colab (downloaded with a checksum through :func:`medtut.data.fetch`, never during tests):

* CIFAR10 automobile (negative) vs truck (positive) at 1:100 / 1:200 as in the paper
  (:func:`make_cifar10_cars_vs_trucks`), from the python-pickle tarball;
* MedMNIST PneumoniaMNIST and BreastMNIST made imbalanced with the critical class (pneumonia, malignant)
  as the minority (:func:`make_medmnist_imbalanced`), from the 28×28 ``.npz`` files.

Every builder returns an :class:`ImbalancedSplit` of float tensors (N, C, H, W) in [0, 1] (CIFAR: channel-
normalised) and float labels (N,) with 1 = positive, and the three splits are disjoint (the official code's
validation set overlapped its training set; see the chapter).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import RemoteDataset, fetch, register

# Sources of the checksums: torchvision's ``torchvision/datasets/cifar.py`` (tgz_md5) and medmnist's
# ``medmnist/info.py`` INFO table (v2.1.0, Zenodo record 6496656, key "MD5").
CIFAR10 = register(RemoteDataset(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    hash_value="c58f30108f718f92721af3b95e74349a", hash_type="md5",
    filename="cifar-10-python.tar.gz", extract=True,
    description="CIFAR-10, python pickle batches (60,000 32×32 colour images, 10 classes), ~170 MB",
    license="no explicit licence; cite Krizhevsky 2009"))
PNEUMONIAMNIST = register(RemoteDataset(
    name="pneumoniamnist",
    url="https://zenodo.org/record/6496656/files/pneumoniamnist.npz?download=1",
    hash_value="28209eda62fecd6e6a2d98b1501bb15f", hash_type="md5", filename="pneumoniamnist.npz",
    description="MedMNIST v2 PneumoniaMNIST 28×28 (4,708/524/624 chest X-rays; 0 normal, 1 pneumonia)",
    license="CC BY 4.0"))
BREASTMNIST = register(RemoteDataset(
    name="breastmnist",
    url="https://zenodo.org/record/6496656/files/breastmnist.npz?download=1",
    hash_value="750601b1f35ba3300ea97c75c52ff8f6", hash_type="md5", filename="breastmnist.npz",
    description="MedMNIST v2 BreastMNIST 28×28 (546/78/156 ultrasound; 0 malignant, 1 normal/benign)",
    license="CC BY 4.0"))

CIFAR10_AUTOMOBILE, CIFAR10_TRUCK = 1, 9
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)   # the normalisation of the official code
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


@dataclass
class ImbalancedSplit:
    """Disjoint train/validation/test splits of a binary problem (1 = positive = critical class)."""
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    description: str = ""
    info: dict = field(default_factory=dict)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{split: (#negatives, #positives)}``."""
        out = {}
        for name in ("train", "val", "test"):
            y = getattr(self, f"y_{name}")
            out[name] = (int((y == 0).sum()), int((y == 1).sum()))
        return out

    def __repr__(self) -> str:
        c = self.counts()
        return (f"ImbalancedSplit({self.description}; image {tuple(self.X_train.shape[1:])}; "
                + ", ".join(f"{k}: {n} neg / {p} pos" for k, (n, p) in c.items()) + ")")


def _check_ratio(ratio) -> float:
    if not isinstance(ratio, (int, float, np.integer, np.floating)) or not ratio >= 1:
        raise ValueError(f"ratio (negatives per positive in training) must be a number >= 1; got {ratio!r}")
    return float(ratio)


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Offline: sklearn digits
# --------------------------------------------------------------------------------------------------
def make_imbalanced_digits(positive_digit: int = 3, ratio: float = 30, seed: int = 0, test_fraction: float = 0.4,
                           val_per_class: tuple[int, int] = (100, 25), split_seed: int = 0) -> ImbalancedSplit:
    """sklearn's 8×8 digits as "digit ``positive_digit`` vs the rest", imbalanced in training only.

    1. A stratified split with ``split_seed`` (fixed, so every seed shares the same test set and seed
       ensembles can be formed) puts ``test_fraction`` of the images into the test set, which keeps *all*
       its positives (about 72 positives against 650 negatives for 40 %).
    2. From the rest, ``seed`` draws a validation set of ``val_per_class = (negatives, positives)`` and then
       keeps ⌈#negatives / ratio⌉ of the remaining positives for training (1:``ratio``). The unused
       positives are discarded, so the three splits are disjoint.

    Images: (N, 1, 8, 8) float32 in [0, 1] (pixel / 16). Labels: (N,) float32, 1 = positive digit.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if positive_digit not in range(10):
        raise ValueError(f"positive_digit must be an int in 0..9; got {positive_digit!r}")
    ratio = _check_ratio(ratio)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = (digits.target == positive_digit).astype(np.int64)
    idx_rest, idx_test = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
                                          random_state=split_seed)
    rng = np.random.default_rng(seed)
    neg = rng.permutation(idx_rest[labels[idx_rest] == 0])
    pos = rng.permutation(idx_rest[labels[idx_rest] == 1])
    n_val_neg, n_val_pos = val_per_class
    if n_val_neg >= len(neg) or n_val_pos >= len(pos):
        raise ValueError(f"val_per_class={val_per_class} leaves no training data ({len(neg)} negatives, "
                         f"{len(pos)} positives available)")
    val_idx = np.concatenate([neg[:n_val_neg], pos[:n_val_pos]])
    train_neg = neg[n_val_neg:]
    n_train_pos = max(1, int(np.ceil(len(train_neg) / ratio)))
    if n_train_pos > len(pos) - n_val_pos:
        raise ValueError(f"ratio 1:{ratio:g} needs {n_train_pos} training positives but only "
                         f"{len(pos) - n_val_pos} are left after validation")
    train_idx = rng.permutation(np.concatenate([train_neg, pos[n_val_pos:n_val_pos + n_train_pos]]))
    split = ImbalancedSplit(*_tensors(images[train_idx], labels[train_idx]),
                            *_tensors(images[val_idx], labels[val_idx]),
                            *_tensors(images[idx_test], labels[idx_test]),
                            description=f"digits: {positive_digit} vs rest, train 1:{ratio:g}, seed {seed}",
                            info={"train_indices": train_idx, "val_indices": val_idx, "test_indices": idx_test})
    return split


def shift_and_noise(x: torch.Tensor, generator: torch.Generator | None = None, max_shift: int = 1,
                    noise: float = 0.15) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero fill) plus Gaussian noise of std ``noise``.

    x: (B, C, H, W) float. Each sample gets its own integer shift (dy, dx) ∈ [−max_shift, max_shift]².
    Deterministic for a given ``generator`` state. Returns a new tensor of the same shape.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float batch (B, C, H, W); got shape {tuple(x.shape)} dtype {x.dtype}")
    if max_shift < 0 or noise < 0:
        raise ValueError(f"max_shift and noise must be >= 0; got {max_shift} and {noise}")
    b, _, h, w = x.shape
    s = max_shift
    out = x
    if s > 0:
        shifts = torch.randint(-s, s + 1, (b, 2), generator=generator)
        padded = torch.nn.functional.pad(x, (s, s, s, s))
        rows = (torch.arange(h)[None, :] + s - shifts[:, :1])          # (B, H)
        cols = (torch.arange(w)[None, :] + s - shifts[:, 1:])          # (B, W)
        bidx = torch.arange(b)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
    return out.contiguous()


def crop_and_flip(x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation: random crop with zero padding ``padding`` and horizontal flip.

    x: (B, C, H, W) float → same shape.
    """
    out = shift_and_noise(x, generator, max_shift=padding, noise=0.0)
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None].to(out.device), out.flip(-1), out)


# --------------------------------------------------------------------------------------------------
# Colab: CIFAR10 cars vs trucks (the paper's protocol)
# --------------------------------------------------------------------------------------------------
def read_cifar10_batches(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse the CIFAR-10 python-pickle batches in ``folder`` (``cifar-10-batches-py``).

    Returns train images (50000, 3, 32, 32) uint8, train labels (50000,) int64, test images, test labels
    (fewer rows for a partial folder). Raises ``ValueError`` naming a missing or malformed file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected the folder cifar-10-batches-py; {folder} does not exist")

    def load(name):
        path = folder / name
        if not path.exists():
            raise ValueError(f"missing CIFAR-10 batch file {path}")
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        data, labels = entry.get(b"data"), entry.get(b"labels")
        if data is None or labels is None:
            raise ValueError(f"{path} is not a CIFAR-10 batch (keys {list(entry)[:5]})")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != data.shape[0]:
            raise ValueError(f"{path}: expected data (N, 3072) and N labels; got {data.shape} and {len(labels)}")
        return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)

    train = [load(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = load("test_batch")
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_test, y_test


def cifar10_folder(root: str | Path | None = None) -> Path:
    """Download (once, md5-checked) and extract CIFAR-10; return its ``cifar-10-batches-py`` folder."""
    return Path(fetch("cifar10", root)) / "cifar-10-batches-py"


def make_cifar10_cars_vs_trucks(ratio: float = 100, seed: int = 1, folder: str | Path | None = None,
                                val_per_class: int = 100, perc_per_run: float = 0.9,
                                test_per_class: int = 1000) -> ImbalancedSplit:
    """The paper's CIFAR10 setting: automobile (negative, majority) vs truck (positive, minority).

    Validation: ``val_per_class`` of each class from the training split, drawn first so that it is disjoint
    from training (the official code drew it independently and 80–90 % of its cars were training images).
    Training: ⌊(5000 − 100)·``perc_per_run``⌋ = 4,410 cars drawn per ``seed`` and 4,410/ratio trucks (44 at
    1:100, 22 at 1:200). Test: the CIFAR test split, balanced 1000/1000. Images are normalised per channel
    with the official code's mean/std. ``folder``: an extracted ``cifar-10-batches-py`` (default: download).
    """
    ratio = _check_ratio(ratio)
    folder = Path(folder) if folder is not None else cifar10_folder()
    x_tr, y_tr, x_te, y_te = read_cifar10_batches(folder)
    rng_val = np.random.default_rng(42)
    cars, trucks = np.flatnonzero(y_tr == CIFAR10_AUTOMOBILE), np.flatnonzero(y_tr == CIFAR10_TRUCK)
    if len(cars) <= val_per_class or len(trucks) <= val_per_class:
        raise ValueError(f"need more than {val_per_class} cars and trucks in the training batches; got "
                         f"{len(cars)} and {len(trucks)}")
    cars, trucks = rng_val.permutation(cars), rng_val.permutation(trucks)
    val_idx = np.concatenate([cars[:val_per_class], trucks[:val_per_class]])
    rest_cars, rest_trucks = cars[val_per_class:], trucks[val_per_class:]
    rng = np.random.default_rng(seed)
    n_maj = int(np.floor(len(rest_cars) * perc_per_run))
    n_min = max(1, int(n_maj / ratio))
    train_idx = rng.permutation(np.concatenate([rng.choice(rest_cars, n_maj, replace=False),
                                                rng.choice(rest_trucks, n_min, replace=False)]))
    te_cars = np.flatnonzero(y_te == CIFAR10_AUTOMOBILE)[:test_per_class]
    te_trucks = np.flatnonzero(y_te == CIFAR10_TRUCK)[:test_per_class]
    test_idx = np.concatenate([te_cars, te_trucks])
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(CIFAR10_STD, dtype=np.float32)[None, :, None, None]

    def prep(x, y):
        return _tensors((x.astype(np.float32) / 255.0 - mean) / std, (y == CIFAR10_TRUCK).astype(np.int64))

    return ImbalancedSplit(*prep(x_tr[train_idx], y_tr[train_idx]), *prep(x_tr[val_idx], y_tr[val_idx]),
                           *prep(x_te[test_idx], y_te[test_idx]),
                           description=f"CIFAR10 automobile vs truck, train 1:{ratio:g}, seed {seed}")


# --------------------------------------------------------------------------------------------------
# Colab: MedMNIST made imbalanced
# --------------------------------------------------------------------------------------------------
MEDMNIST_CRITICAL = {
    # name: (label of the critical class in the file, what it is)
    "pneumoniamnist": (1, "pneumonia"),
    "breastmnist": (0, "malignant"),   # BreastMNIST's label 0 is malignant, so the labels are flipped
}


def read_medmnist_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a MedMNIST ``.npz``: ``{train,val,test}_images`` (N, H, W[, C]) uint8 and ``_labels`` (N, 1)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no MedMNIST file at {path}")
    with np.load(path) as npz:
        out = {k: npz[k] for k in npz.files}
    for split in ("train", "val", "test"):
        im, lab = out.get(f"{split}_images"), out.get(f"{split}_labels")
        if im is None or lab is None:
            raise ValueError(f"{path} lacks {split}_images/{split}_labels; keys: {sorted(out)}")
        if im.ndim not in (3, 4) or lab.reshape(-1).shape[0] != im.shape[0]:
            raise ValueError(f"{path}: {split}_images must be (N, H, W[, C]) with N labels; got {im.shape} "
                             f"and labels {lab.shape}")
    return out


def make_medmnist_imbalanced(name: str = "pneumoniamnist", ratio: float = 20, seed: int = 0,
                             path: str | Path | None = None) -> ImbalancedSplit:
    """PneumoniaMNIST or BreastMNIST with the critical class as the rare positive class in training.

    The critical class (pneumonia; malignant, whose label in the file is 0) becomes label 1. Its training
    images are subsampled (per ``seed``) to ⌈#negatives/ratio⌉; validation and test keep their official
    MedMNIST splits unchanged. Images (N, C, 28, 28) float32 in [0, 1]. ``path``: a local ``.npz``
    (default: download with the md5 of medmnist's INFO).
    """
    if name not in MEDMNIST_CRITICAL:
        raise ValueError(f"name must be one of {sorted(MEDMNIST_CRITICAL)}; got {name!r}")
    ratio = _check_ratio(ratio)
    data = read_medmnist_npz(path if path is not None else fetch(name))
    critical, what = MEDMNIST_CRITICAL[name]

    def prep(split, keep=None):
        im = data[f"{split}_images"].astype(np.float32) / 255.0
        im = im[:, None] if im.ndim == 3 else np.moveaxis(im, -1, 1)
        y = (data[f"{split}_labels"].reshape(-1) == critical).astype(np.int64)
        if keep is not None:
            im, y = im[keep], y[keep]
        return _tensors(im, y)

    y_train = (data["train_labels"].reshape(-1) == critical)
    rng = np.random.default_rng(seed)
    neg, pos = np.flatnonzero(~y_train), np.flatnonzero(y_train)
    n_pos = max(1, int(np.ceil(len(neg) / ratio)))
    if n_pos > len(pos):
        raise ValueError(f"ratio 1:{ratio:g} needs {n_pos} {what} training images; the file has {len(pos)}")
    keep = rng.permutation(np.concatenate([neg, rng.choice(pos, n_pos, replace=False)]))
    return ImbalancedSplit(*prep("train", keep), *prep("val"), *prep("test"),
                           description=f"{name}: {what} vs rest, train 1:{ratio:g}, seed {seed}")


__all__ = ["ImbalancedSplit", "make_imbalanced_digits", "shift_and_noise", "crop_and_flip",
           "read_cifar10_batches", "cifar10_folder", "make_cifar10_cars_vs_trucks", "read_medmnist_npz",
           "make_medmnist_imbalanced", "MEDMNIST_CRITICAL", "CIFAR10", "PNEUMONIAMNIST", "BREASTMNIST"]
