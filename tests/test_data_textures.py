"""Tests of medtut.data.textures: the texture-defined tissues generator and the MSD slice loader (on
NIfTI fixtures written here; nothing is downloaded)."""
import numpy as np
import pytest
import torch

from medtut.data.msd import write_decathlon_fixture
from medtut.data.textures import (DECATHLON_TASKS, NUM_CLASSES, load_decathlon_slices, make_texture_dataset,
                                  make_texture_image, texture_bank)


def test_generator_shapes_classes_and_determinism():
    x, y = make_texture_dataset(6, size=64, seed=3)
    assert x.shape == (6, 64, 64) and x.dtype == torch.float32
    assert y.shape == (6, 64, 64) and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < NUM_CLASSES
    assert all(len(torch.unique(y[i])) >= 4 for i in range(6))            # blobby regions of most classes
    x2, y2 = make_texture_dataset(6, size=64, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = make_texture_dataset(6, size=64, seed=4)
    assert not torch.equal(x, x3)
    assert torch.allclose(x.mean((1, 2)), torch.zeros(6), atol=1e-4)       # z-scored per image


def test_intensity_carries_no_class_information_but_texture_does():
    """Across images, a class's mean brightness varies as much as the difference between classes; the
    local texture (here: vertical vs horizontal gradient energy of the stripes) separates them."""
    x, y = make_texture_dataset(40, size=64, seed=0)
    means = np.array([[x[i][y[i] == c].mean().item() if (y[i] == c).sum() > 50 else np.nan
                       for c in range(NUM_CLASSES)] for i in range(40)])
    spread_within = np.nanmean(np.nanstd(means, axis=0))
    spread_between = np.nanstd(np.nanmean(means, axis=0))
    assert spread_within > 3 * spread_between
    gy = (x[:, 1:, :-1] - x[:, :-1, :-1]) ** 2        # vertical differences: large on horizontal stripes
    gx = (x[:, :-1, 1:] - x[:, :-1, :-1]) ** 2
    yy = y[:, :-1, :-1]
    ratio = {c: (gy[yy == c].mean() / gx[yy == c].mean()).item() for c in (1, 2)}
    assert ratio[1] > 1.1 and ratio[2] < 1 / 1.1          # noise adds isotropic gradient energy


def test_texture_bank_is_bounded():
    bank = texture_bank(np.random.default_rng(0), 32)
    assert bank.shape == (5, 32, 32) and np.abs(bank).max() <= 1.0 + 1e-9


def test_generator_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        make_texture_image(rng, size=8)
    with pytest.raises(ValueError, match="blob_sigma must be > 0"):
        make_texture_image(rng, blob_sigma=0)
    with pytest.raises(ValueError, match="noise must be a range"):
        make_texture_image(rng, noise=(0.5, 0.1))
    with pytest.raises(ValueError, match="n_images must be an int >= 1"):
        make_texture_dataset(0)


def _write_task(root, task, n_cases, shape, channels=1, bad_label=False, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_cases):
        label = np.zeros(shape, dtype=np.uint8)
        label[4:10, 4:10, 1:-1] = 1
        label[10:14, 6:12, 1:-1] = 2
        if bad_label:
            label[0, 0, 0] = 5
        image = rng.normal(size=shape).astype(np.float32) + 3.0 * (label > 0)
        if channels > 1:
            image = np.stack([image] + [rng.normal(size=shape).astype(np.float32)] * (channels - 1), -1)
        images.append(image)
        labels.append(label)
    write_decathlon_fixture(root, task, images, labels, DECATHLON_TASKS[task])


def test_hippocampus_loader_parses_fixture(tmp_path):
    _write_task(tmp_path, "Task04_Hippocampus", 5, (20, 24, 6))
    x, y, names = load_decathlon_slices(tmp_path, "Task04_Hippocampus", "training", size=16, val_frac=0.2)
    # 4 training cases × 4 slices holding foreground (the first and last are empty)
    assert x.shape == (16, 16, 16) and y.shape == (16, 16, 16) and len(names) == 16
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == {0, 1, 2}
    assert all((y[i] > 0).any() for i in range(len(y)))
    assert x[y > 0].mean() > x[y == 0].mean() + 1.0                      # structures are brighter
    xv, _, _ = load_decathlon_slices(tmp_path, "Task04_Hippocampus", "validation", size=16, val_frac=0.2)
    assert len(xv) == 4
    x0, _, _ = load_decathlon_slices(tmp_path, "Task04_Hippocampus", "training", size=16, val_frac=0.2,
                                     min_foreground=0)
    assert len(x0) == 24


def test_prostate_loader_keeps_the_t2_channel(tmp_path):
    _write_task(tmp_path, "Task05_Prostate", 3, (20, 20, 4), channels=2, seed=1)
    x, y, _ = load_decathlon_slices(tmp_path, "Task05_Prostate", size=16, val_frac=0.34)
    assert x.shape[1:] == (16, 16) and len(x) == 2 * 2
    assert x[y > 0].mean() > x[y == 0].mean() + 1.0


def test_loader_bad_arguments_and_labels(tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        load_decathlon_slices(tmp_path, "Task01_BrainTumour")
    with pytest.raises(ValueError, match="section must be"):
        load_decathlon_slices(tmp_path, section="test")
    with pytest.raises(ValueError, match="size must be an int"):
        load_decathlon_slices(tmp_path, size=4)
    with pytest.raises(ValueError, match="min_foreground"):
        load_decathlon_slices(tmp_path, min_foreground=-1)
    _write_task(tmp_path, "Task04_Hippocampus", 2, (16, 16, 4), bad_label=True)
    with pytest.raises(ValueError, match="labels must lie in"):
        load_decathlon_slices(tmp_path, "Task04_Hippocampus", size=16, val_frac=0.5)
