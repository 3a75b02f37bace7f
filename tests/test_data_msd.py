"""Tests of medtut.data.msd, the shared MSD DecathlonDataset reader, on tiny NIfTI fixtures written here
(nothing is downloaded)."""
import json

import numpy as np
import pytest

from medtut.data import msd


def _write_task(root, task, n_cases, shape, channels=1, max_label=2, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_cases):
        label = np.zeros(shape, dtype=np.uint8)
        label[2:6, 3:7, 1:-1] = 1
        label[6:8, 3:7, 1:-1] = max_label
        image = rng.normal(size=shape).astype(np.float32) + 3.0 * (label > 0)
        if channels > 1:
            image = np.stack([image] + [rng.normal(size=shape).astype(np.float32) - 10] * (channels - 1), -1)
        images.append(image)
        labels.append(label)
    return msd.write_decathlon_fixture(root, task, images, labels, {0: "bg", 1: "a", 2: "b"})


def test_dataset_and_cases_read_the_fixture_in_ras(tmp_path):
    _write_task(tmp_path, "Task04_Hippocampus", 5, (12, 10, 4))
    train = msd.decathlon_dataset(tmp_path, "Task04_Hippocampus", "training", val_frac=0.2)
    val = msd.decathlon_dataset(tmp_path, "Task04_Hippocampus", "validation", val_frac=0.2)
    assert len(train) == 4 and len(val) == 1
    cases = list(msd.decathlon_cases(train, num_classes=3))
    assert len(cases) == 4 and len({name for name, _, _ in cases}) == 4
    name, image, label = cases[0]
    assert name.endswith(".nii.gz") and image.shape == label.shape == (12, 10, 4)
    assert image.dtype == np.float32 and label.dtype == np.int64 and set(np.unique(label)) == {0, 1, 2}
    assert image[label > 0].mean() > image[label == 0].mean() + 2.0       # image and label stay aligned


def test_cases_pick_a_channel_and_check_labels(tmp_path):
    _write_task(tmp_path, "Task05_Prostate", 2, (8, 8, 3), channels=2, max_label=4)
    ds = msd.decathlon_dataset(tmp_path, "Task05_Prostate", "training", val_frac=0.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]; got \[0, 4\]"):
        list(msd.decathlon_cases(ds, num_classes=3, task="Task05_Prostate"))
    _, t2, _ = next(msd.decathlon_cases(ds, num_classes=5, channel=0))
    _, adc, _ = next(msd.decathlon_cases(ds, num_classes=5, channel=1))
    assert t2.mean() > adc.mean() + 5                                          # channel 1 is the shifted one
    with pytest.raises(ValueError, match="images must be \\(C, H, W, D\\) with channel 2"):
        next(msd.decathlon_cases(ds, num_classes=5, channel=2))


def test_volume_to_slices_resizes_and_zscores_per_slice():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 3.0, size=(20, 16, 3)).astype(np.float32)
    label = np.zeros((20, 16, 3), dtype=np.int64)
    label[5:15, 4:12] = 2
    out = msd.volume_to_slices(image, label, 8)
    assert out["image"].shape == out["label"].shape == (3, 8, 8)
    assert out["image"].dtype == np.float32 and out["label"].dtype == np.int64
    assert np.allclose(out["image"].mean(axis=(1, 2)), 0, atol=1e-4)
    assert np.allclose(out["image"].std(axis=(1, 2)), 1, atol=1e-3)
    assert set(np.unique(out["label"])) == {0, 2}                             # nearest neighbour: no new labels
    assert np.array_equal(out["label"][0], out["label"][1])


def test_volume_to_slices_matches_the_chapter_1_loader_it_replaces():
    cardiac = pytest.importorskip("medtut.data.cardiac")
    old = getattr(cardiac, "_to_stack", None)
    if old is None:
        pytest.skip("medtut.data.cardiac no longer has its private copy")
    rng = np.random.default_rng(1)
    image, label = rng.normal(size=(24, 20, 5)), rng.integers(0, 3, size=(24, 20, 5))
    new, ref = msd.volume_to_slices(image, label, 16), old(image, label, 16)
    assert np.array_equal(new["image"], ref["image"]) and np.array_equal(new["label"], ref["label"])


def test_zscore_slices_clips_outliers():
    vol = np.ones((2, 10, 10), dtype=np.float32)
    vol[:, :5] = 0.0
    vol[0, 0, 0] = 1e6                                                         # one outlier voxel
    out = msd.zscore_slices(vol)
    assert np.abs(out).max() < 3 and np.allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)


def test_fixture_writer_layout(tmp_path):
    folder = _write_task(tmp_path, "Task09_Spleen", 2, (6, 6, 3), channels=2)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["tensorImageSize"] == "4D" and len(meta["modality"]) == 2
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["spleen_000.nii.gz", "spleen_001.nii.gz"]
    with pytest.raises(ValueError, match=r"labels\[0\] must be an integer \(H, W, D\) array"):
        msd.write_decathlon_fixture(tmp_path, "Task09_Spleen", [np.zeros((4, 4, 2))], [np.zeros((4, 4, 3), int)], {})
    with pytest.raises(ValueError, match="equally long, non-empty"):
        msd.write_decathlon_fixture(tmp_path, "Task09_Spleen", [], [], {})


def test_transform_is_the_shared_chain():
    chain = msd.decathlon_transform()
    assert [type(t).__name__ for t in chain.transforms] == ["LoadImaged", "EnsureChannelFirstd", "Orientationd"]


@pytest.mark.parametrize("call, match", [
    (lambda p: msd.decathlon_dataset(p, "Hippocampus"), "task must be an MSD task name"),
    (lambda p: msd.decathlon_dataset(p, "Task04_Hippocampus", "test"), "section must be one of"),
    (lambda p: msd.decathlon_dataset(p, "Task04_Hippocampus", val_frac=1.0), r"val_frac must be a number in \[0, 1\)"),
    (lambda p: list(msd.decathlon_cases([], num_classes=1)), "num_classes must be an int >= 2"),
    (lambda p: list(msd.decathlon_cases([], num_classes=3, channel=-1)), "channel must be an int >= 0"),
    (lambda p: msd.decathlon_transform("image"), "keys must be a non-empty tuple"),
    (lambda p: msd.zscore_slices(np.zeros((4, 4))), r"volume must be a non-empty numeric \(D, H, W\) array"),
    (lambda p: msd.zscore_slices(np.full((1, 2, 2), np.nan)), "volume must be finite"),
    (lambda p: msd.volume_to_slices(np.zeros((4, 4, 2)), np.zeros((4, 4, 3), int), 4), "same shape"),
    (lambda p: msd.volume_to_slices(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), 4), "label must be an integer volume"),
    (lambda p: msd.volume_to_slices(np.zeros((4, 4, 2)), np.zeros((4, 4, 2), int), 0), "size must be an int >= 1"),
])
def test_bad_input(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
