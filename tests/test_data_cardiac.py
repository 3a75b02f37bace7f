"""Tests of chapter 1's data: the synthetic generator and the real-data loaders on tiny NIfTI fixtures."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medtut.data.cardiac import (LABELS, load_acdc, load_prostate_decathlon, make_cardiac_dataset,
                                 make_cardiac_subject)


def test_generator_shapes_labels_and_determinism():
    x, y = make_cardiac_dataset(4, size=64, n_slices=6, seed=1)
    assert x.shape == (4, 6, 64, 64) and x.dtype == torch.float32
    assert y.shape == (4, 6, 64, 64) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == set(LABELS)
    x2, y2 = make_cardiac_dataset(4, size=64, n_slices=6, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(make_cardiac_dataset(4, size=64, n_slices=6, seed=2)[0], x)


def test_generator_labels_match_the_image():
    """Blood pools (RV, LV) are brighter than the myocardium and the background; the myocardium is
    not separable from the background by brightness alone (by design: it shares its range)."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        img, lab = make_cardiac_subject(rng, size=64, n_slices=8)
        for z in range(8):
            lv, myo = img[z][lab[z] == 3].mean(), img[z][lab[z] == 2].mean()
            assert lv > myo + 1.0
            assert lv > img[z][lab[z] == 0].mean() + 1.0
            assert abs(myo - img[z][lab[z] == 0].mean()) < lv - myo
            if (lab[z] == 1).any():
                assert img[z][lab[z] == 1].mean() > myo + 0.8
        # slices are z-scored
        assert np.allclose(img.mean(axis=(1, 2)), 0, atol=1e-4)
        # the heart shrinks towards the apex and the RV vanishes in the last two slices
        areas = (lab > 0).sum(axis=(1, 2))
        assert areas[0] > areas[-1]
        assert not (lab[-2:] == 1).any() and (lab[0] == 1).any()
        # labels are nested: the LV is surrounded by myocardium
        for z in range(8):
            lv = lab[z] == 3
            ys, xs = np.nonzero(lv)
            assert lab[z][ys.min() - 1, xs[0]] == 2


def test_generator_bad_arguments():
    with pytest.raises(ValueError, match="n_subjects must be >= 1; got 0"):
        make_cardiac_dataset(0)
    with pytest.raises(ValueError, match="size must be >= 32 pixels; got 16"):
        make_cardiac_dataset(1, size=16)
    with pytest.raises(ValueError, match="n_slices must be >= 3; got 2"):
        make_cardiac_dataset(1, n_slices=2)


def _write_nifti(path, array, spacing=(1.0, 1.0, 1.0)):
    affine = np.diag([*spacing[:3], 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _volume_with_structures(rng, shape, num_classes):
    label = np.zeros(shape, dtype=np.uint8)
    h, w, d = shape
    for c in range(1, num_classes):
        label[2 * c:2 * c + 4, 3:9, :] = c
    image = rng.normal(size=shape).astype(np.float32) + 3 * label
    return image, label


def test_acdc_loader_parses_fixture(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "ACDC" / "database" / "training"
    for pid, (ed, es) in {"patient001": (1, 12), "patient002": (1, 7)}.items():
        folder = root / pid
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180.0\nNbFrame: 30\n")
        for frame in (ed, es):
            image, label = _volume_with_structures(rng, (20, 16, 5), 4)
            _write_nifti(folder / f"{pid}_frame{frame:02d}.nii.gz", image, (1.4, 1.4, 10))
            _write_nifti(folder / f"{pid}_frame{frame:02d}_gt.nii.gz", label, (1.4, 1.4, 10))
    subjects = load_acdc(tmp_path / "ACDC", size=32)
    assert [s["name"] for s in subjects] == ["patient001_ED", "patient001_ES", "patient002_ED", "patient002_ES"]
    for s in subjects:
        assert s["image"].shape == (5, 32, 32) and s["image"].dtype == np.float32
        assert s["label"].shape == (5, 32, 32) and set(np.unique(s["label"])) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="no ACDC patient folders \\(patientXXX/Info.cfg\\) found"):
        load_acdc(tmp_path / "nothing-here")


def test_acdc_loader_rejects_bad_labels(tmp_path):
    folder = tmp_path / "patient003"
    folder.mkdir()
    (folder / "Info.cfg").write_text("ED: 1\nES: 2\n")
    rng = np.random.default_rng(1)
    for frame in (1, 2):
        image, label = _volume_with_structures(rng, (16, 16, 3), 4)
        label[0, 0, 0] = 7
        _write_nifti(folder / f"patient003_frame{frame:02d}.nii.gz", image)
        _write_nifti(folder / f"patient003_frame{frame:02d}_gt.nii.gz", label)
    with pytest.raises(ValueError, match="labels must lie"):
        load_acdc(tmp_path, size=16)


def test_prostate_decathlon_loader_parses_fixture(tmp_path):
    rng = np.random.default_rng(2)
    task = tmp_path / "Task05_Prostate"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    training = []
    for i in range(5):
        t2, label = _volume_with_structures(rng, (24, 20, 4), 3)
        adc = rng.normal(size=t2.shape).astype(np.float32)
        _write_nifti(task / "imagesTr" / f"prostate_{i:02d}.nii.gz", np.stack([t2, adc], -1), (0.6, 0.6, 3.6))
        _write_nifti(task / "labelsTr" / f"prostate_{i:02d}.nii.gz", label, (0.6, 0.6, 3.6))
        training.append({"image": f"./imagesTr/prostate_{i:02d}.nii.gz",
                         "label": f"./labelsTr/prostate_{i:02d}.nii.gz"})
    meta = {"name": "PROSTATE", "description": "fixture", "reference": "", "licence": "CC-BY-SA 4.0",
            "tensorImageSize": "4D", "modality": {"0": "T2", "1": "ADC"},
            "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "numTraining": 5, "numTest": 0,
            "training": training, "test": []}
    (task / "dataset.json").write_text(json.dumps(meta))
    train = load_prostate_decathlon(tmp_path, section="training", size=16, val_frac=0.2)
    val = load_prostate_decathlon(tmp_path, section="validation", size=16, val_frac=0.2)
    assert len(train) == 4 and len(val) == 1
    s = train[0]
    assert s["image"].shape == (4, 16, 16) and s["label"].shape == (4, 16, 16)
    assert set(np.unique(s["label"])) == {0, 1, 2}
    # the T2 channel was kept: labelled structures are brighter there
    assert s["image"][s["label"] > 0].mean() > s["image"][s["label"] == 0].mean() + 1.0
    with pytest.raises(ValueError, match="section must be 'training' or 'validation'.*got 'test'"):
        load_prostate_decathlon(tmp_path, section="test")
