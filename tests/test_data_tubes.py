"""Tests of chapter 3's data: the synthetic tube volumes and the MSD Spleen/Heart loader on NIfTI fixtures."""
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medtut.data.tubes import load_decathlon_volumes, make_tube_dataset, make_tube_volume, scale_intensity


def test_generator_shapes_determinism_and_fields():
    vols = make_tube_dataset(3, size=64, depth=32, seed=1)
    for v in vols:
        assert v["image"].shape == (32, 64, 64) and v["image"].dtype == np.float32
        assert v["label"].shape == (32, 64, 64) and v["label"].dtype == np.int64
        assert set(np.unique(v["label"])) == {0, 1}
        zs = np.flatnonzero(v["label"].any((1, 2)))
        assert zs[0] > 0 and zs[-1] < 31                        # the tube closes inside the volume
        assert np.array_equal(zs, np.arange(zs[0], zs[-1] + 1))   # one z-range, no gap
        assert 2 <= len(v["hard_slices"]) <= 4 and all(zs[0] <= k <= zs[-1] for k in v["hard_slices"])
    again = make_tube_dataset(3, size=64, depth=32, seed=1)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(vols, again))
    assert not np.array_equal(make_tube_dataset(1, size=64, depth=32, seed=2)[0]["image"], vols[0]["image"])


def test_split_slices_have_two_components_and_others_one():
    for v in make_tube_dataset(6, size=64, depth=32, seed=4):
        assert v["split_range"] is not None
        a, b = v["split_range"]
        assert b >= a
        for k in range(a, b + 1):
            assert ndimage.label(v["label"][k])[1] == 2
        zs = np.flatnonzero(v["label"].any((1, 2)))
        assert ndimage.label(v["label"][zs[0]])[1] == 1


def test_look_alike_distractors_touch_the_target_and_hard_slices_have_low_contrast():
    touching, contrasts = 0, []
    for v in make_tube_dataset(6, size=64, depth=32, seed=5):
        img, lab = v["image"], v["label"].astype(bool)
        ring = ndimage.binary_dilation(lab, iterations=2, structure=np.ones((1, 3, 3))) & ~lab
        zs = np.flatnonzero(lab.any((1, 2)))
        # a bright pixel right next to the target that is not target: a distractor touching it
        touching += any((img[k][ring[k]] > img[k][lab[k]].mean() - 0.05).mean() > 0.15 for k in zs)
        normal = [k for k in zs if k not in v["hard_slices"] and lab[k].sum() > 20]
        c = lambda k: img[k][lab[k]].mean() - img[k][~ndimage.binary_dilation(lab[k], iterations=3)].mean()
        contrasts.append((np.mean([c(k) for k in v["hard_slices"]]), np.mean([c(k) for k in normal])))
    assert touching >= 4
    assert all(h < 0.75 * n for h, n in contrasts)
    # without distractors nothing bright lies off the target
    v = make_tube_volume(np.random.default_rng(0), 64, 32, num_distractors=0, num_hard=(0, 0))
    lab = v["label"].astype(bool)
    assert v["hard_slices"] == [] and (v["image"][~ndimage.binary_dilation(lab, iterations=2)] > 0.55).mean() < 0.01


def test_generator_bad_arguments():
    with pytest.raises(ValueError, match="num_volumes must be an int >= 1; got 0"):
        make_tube_dataset(0)
    with pytest.raises(ValueError, match="size must be an int >= 32 divisible by 8; got 30"):
        make_tube_dataset(1, size=30)
    with pytest.raises(ValueError, match="depth must be an int >= 12 slices; got 5"):
        make_tube_dataset(1, depth=5)
    with pytest.raises(ValueError, match="num_distractors must be an int in"):
        make_tube_volume(np.random.default_rng(0), num_distractors=5)
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        make_tube_volume(0)


def test_scale_intensity():
    ct = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    assert np.allclose(scale_intensity(ct, "CT"), [0, 0, 0.5, 1, 1])
    mri = np.linspace(0, 100, 101)
    out = scale_intensity(mri, "MRI")
    assert out.min() == 0 and out.max() == 1
    with pytest.raises(ValueError, match="modality must be 'CT' or 'MRI'"):
        scale_intensity(ct, "PET")
    with pytest.raises(ValueError, match="NaN or inf"):
        scale_intensity(np.array([np.nan]), "CT")


def _write_nifti(path, array):
    nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 5.0, 1.0])), str(path))


@pytest.mark.parametrize("task, modality", [("Task09_Spleen", "CT"), ("Task02_Heart", "MRI")])
def test_decathlon_loader_parses_fixture(tmp_path, task, modality):
    rng = np.random.default_rng(0)
    root = tmp_path / task
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(5):
        label = np.zeros((24, 20, 10), np.uint8)
        label[6:14, 5:12, 3:7] = 1
        if modality == "CT":
            image = rng.normal(-500, 50, size=label.shape) + 560.0 * label   # organ ≈ 60 HU
        else:
            image = rng.normal(100, 10, size=label.shape) + 300.0 * label
        name = f"{task.split('_')[1].lower()}_{i}.nii.gz"
        _write_nifti(root / "imagesTr" / name, image.astype(np.float32))
        _write_nifti(root / "labelsTr" / name, label)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": task, "description": "fixture", "reference": "", "licence": "CC-BY-SA 4.0",
            "tensorImageSize": "3D", "modality": {"0": modality}, "labels": {"0": "background", "1": "organ"},
            "numTraining": 5, "numTest": 0, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    train = load_decathlon_volumes(tmp_path, task, "training", size=16, val_frac=0.2, crop_to_object=1)
    val = load_decathlon_volumes(tmp_path, task, "validation", size=16, val_frac=0.2, crop_to_object=None)
    assert len(train) == 4 and len(val) == 1
    v = train[0]
    assert v["image"].shape == (6, 16, 16) and v["label"].shape == (6, 16, 16)      # slices 2..7 of 10
    assert v["image"].dtype == np.float32 and 0 <= v["image"].min() and v["image"].max() <= 1
    assert set(np.unique(v["label"])) == {0, 1} and v["hard_slices"] == [] and v["split_range"] is None
    assert v["image"][v["label"] == 1].mean() > v["image"][v["label"] == 0].mean() + 0.3
    assert val[0]["image"].shape == (10, 16, 16)
    with pytest.raises(ValueError, match="task must be one of"):
        load_decathlon_volumes(tmp_path, "Task05_Prostate")
    with pytest.raises(ValueError, match="section must be 'training' or 'validation'"):
        load_decathlon_volumes(tmp_path, task, "test")
