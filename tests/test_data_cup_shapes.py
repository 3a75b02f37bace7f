"""Tests of chapter 9's data: the cup generator, its slicing planes, and the Task02_Heart pipeline
(marching cubes, principal axes, ray casting) on NIfTI ellipsoid fixtures written here."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from medtut.data import cup_shapes as cs


@pytest.fixture(scope="module")
def data():
    return cs.make_cup_dataset(60, seed=5)


def test_dataset_shapes_pose_and_determinism(data):
    assert data.images.shape == (60, 3, 48, 48) and data.images.dtype == torch.float32
    assert data.vertices.shape == (60, cs.NUM_VERTICES, 3) == (60, 288, 3)
    assert torch.allclose(data.canonical.mean(1), torch.zeros(60, 3), atol=1e-4)
    R = torch.from_numpy(Rotation.from_rotvec(data.rotation.double().numpy()).as_matrix())
    posed = torch.einsum("nij,nvj->nvi", R, data.canonical.double()) + data.translation.double()[:, None]
    assert torch.allclose(posed.float(), data.vertices, atol=1e-3)
    again = cs.make_cup_dataset(60, seed=5)
    assert torch.equal(again.images, data.images) and torch.equal(again.vertices, data.vertices)
    assert not torch.equal(cs.make_cup_dataset(60, seed=6).vertices, data.vertices)
    assert data.view_names == ("SAX", "2CH", "4CH") and len(data.subset(slice(0, 5))) == 5
    assert float(data.translation.abs().max()) <= 8.0


def test_every_plane_cuts_every_shape():
    d = cs.make_cup_dataset(300, seed=7, noise=0.0)
    inside = (d.images > 0.6).flatten(2).sum(-1)                 # (N, 3) pixels inside the cup per view
    assert int(inside.min()) >= 20
    # ...and no cup spills over the field of view (the border pixels are background)
    border = torch.cat([d.images[..., 0, :], d.images[..., -1, :], d.images[..., :, 0], d.images[..., :, -1]], -1)
    assert float(border.max()) < 0.6


def test_planes_are_orthonormal_and_slightly_tilted():
    for plane in cs.default_planes():
        u, v = np.asarray(plane.u), np.asarray(plane.v)
        assert np.isclose(u @ u, 1) and np.isclose(v @ v, 1) and abs(u @ v) < 1e-12
    normals = np.stack([p.normal for p in cs.default_planes()])
    angles = np.degrees(np.arccos(np.clip(np.abs(normals @ normals.T), 0, 1)))
    off = angles[~np.eye(3, dtype=bool)]
    assert (off > 80).all() and (off < 90 - 1e-6).any()          # quasi-orthogonal, not exactly
    grid = cs.default_planes()[0].grid(48, 2.0)
    assert grid.shape == (48, 48, 3) and np.isclose(np.linalg.norm(grid[0, 1] - grid[0, 0]), 2.0)
    with pytest.raises(ValueError, match="size"):
        cs.default_planes()[0].grid(1, 2.0)


def test_vertices_lie_on_the_analytic_surface():
    rng = np.random.default_rng(0)
    p = cs.sample_cup_params(10, rng)
    v = cs.cup_vertices(p)
    # move each vertex 3 % towards / away from the long axis (same height): inside / outside
    raw_z = v[..., 2] + p.offset[:, None, 2]
    s = raw_z / p.length[:, None]
    axis = np.stack([p.bend[:, :1] * s ** 2, p.bend[:, 1:] * s ** 2, raw_z], -1) - p.offset[:, None]
    below_base = slice(0, -cs.N_PER_RING)                         # the top ring lies on the lid
    assert cs.inside_cup(p, v + 0.03 * (axis - v))[:, below_base].all()
    assert not cs.inside_cup(p, v - 0.03 * (axis - v))[:, below_base].any()
    faces = cs.cup_faces()
    assert faces.shape == ((cs.N_RINGS - 1) * cs.N_PER_RING * 2, 3) and faces.max() == cs.NUM_VERTICES - 1


def test_generator_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        cs.make_cup_dataset(0)
    with pytest.raises(ValueError, match="size"):
        cs.make_cup_dataset(2, size=4)
    with pytest.raises(ValueError, match="noise"):
        cs.make_cup_dataset(2, noise=-1)


# ---------------------------------------------------------------- the real-data pipeline
def _ellipsoid_mask(shape, centre, semi_axes, rotation=None):
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float) - centre
    if rotation is not None:
        idx = idx @ rotation
    return ((idx / np.asarray(semi_axes)) ** 2).sum(-1) <= 1.0


def test_ray_casting_on_a_sphere_recovers_the_radius():
    mask = _ellipsoid_mask((32, 32, 32), np.array([15.5, 15.5, 15.5]), (10, 10, 10))
    verts, faces = cs.mask_to_mesh(mask, spacing=(1.0, 1.0, 1.0))
    dirs = cs.sphere_directions(6, 12)
    assert dirs.shape == (72, 3) and np.allclose(np.linalg.norm(dirs, axis=1), 1)
    hits = cs.ray_cast_correspondence(verts, faces, np.array([15.5, 15.5, 15.5]), dirs)
    r = np.linalg.norm(hits - 15.5, axis=1)
    assert np.all(np.abs(r - 10.0) < 0.6)
    # the hits lie along their rays
    assert np.allclose((hits - 15.5) / r[:, None], dirs, atol=1e-9)
    with pytest.raises(ValueError, match="miss"):
        cs.ray_cast_correspondence(verts, faces, np.array([100.0, 100.0, 100.0]), dirs)
    with pytest.raises(ValueError, match="empty"):
        cs.mask_to_mesh(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="3-D"):
        cs.mask_to_mesh(np.ones((4, 4)))


def test_principal_axes_find_the_long_axis():
    rot = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    mask = _ellipsoid_mask((40, 40, 40), np.array([20, 19, 21]), (16, 9, 6), rot.T)
    pts = np.argwhere(mask).astype(float)
    centroid, axes = cs.principal_axes(pts)
    assert np.allclose(centroid, [20, 19, 21], atol=0.5)
    assert abs(abs(axes[:, 0] @ rot[0]) - 1) < 0.01   # (idx @ rot.T) = rot idx: the long axis is rot^T e_x and np.isclose(np.linalg.det(axes), 1)
    with pytest.raises(ValueError, match="points"):
        cs.principal_axes(np.zeros((3, 3)))


def _write_task02_fixture(root, n=3):
    task = root / "Task02_Heart"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        semi = (12 + 2 * i, 8, 7)      # voxels; the long axis along x
        label = _ellipsoid_mask((40, 36, 30), np.array([20, 18, 15]), semi).astype(np.uint8)
        image = (100 + 400 * label.astype(np.float32) + rng.normal(0, 20, label.shape)).astype(np.float32)
        affine = np.diag([1.25, 1.25, 1.37, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(task / "imagesTr" / f"la_{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(task / "labelsTr" / f"la_{i:03d}.nii.gz"))
        training.append({"image": f"./imagesTr/la_{i:03d}.nii.gz", "label": f"./labelsTr/la_{i:03d}.nii.gz"})
    meta = {"name": "LeftAtrium", "description": "fixture", "reference": "", "licence": "CC-BY-SA 4.0",
            "tensorImageSize": "3D", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
            "numTraining": n, "numTest": 0, "training": training, "test": []}
    (task / "dataset.json").write_text(json.dumps(meta))


def test_heart_decathlon_pipeline_parses_a_nifti_fixture(tmp_path):
    _write_task02_fixture(tmp_path, n=3)
    subjects = cs.load_heart_decathlon(tmp_path, val_frac=0.0)
    assert len(subjects) == 3
    for i, s in enumerate(sorted(subjects, key=lambda s: s["name"])):
        assert s["canonical"].shape == (cs.NUM_VERTICES, 3)
        assert np.allclose(s["canonical"].mean(0), 0, atol=1e-9)
        assert np.allclose(s["spacing"], [1.25, 1.25, 1.37], atol=1e-4)
        # long axis along canonical z: its extent there is the ellipsoid's longest semi-axis (in mm)
        half_z = s["canonical"][:, 2].max()
        assert abs(half_z - (12 + 2 * i) * 1.25) < 2.5 and s["canonical"][:, :2].max() < half_z
        assert 0 <= s["image"].min() and s["image"].max() <= 1
    data = cs.make_heart_dataset(subjects, num_per_subject=2, seed=0, size=32, spacing=2.0, max_translation=2.0)
    assert data.images.shape == (6, 3, 32, 32) and data.vertices.shape == (6, cs.NUM_VERTICES, 3)
    R = torch.from_numpy(Rotation.from_rotvec(data.rotation.double().numpy()).as_matrix())
    posed = torch.einsum("nij,nvj->nvi", R, data.canonical.double()) + data.translation.double()[:, None]
    assert torch.allclose(posed.float(), data.vertices, atol=1e-3)
    # the three slices pass through the structure: the centre pixel is bright in each view
    assert (data.images[:, :, 16, 16] > 0.5).all()
    assert (data.images[:, :, 0, 0] < 0.5).all()
    with pytest.raises(ValueError, match="section"):
        cs.load_heart_decathlon(tmp_path, section="test")
    with pytest.raises(ValueError, match="subjects"):
        cs.make_heart_dataset([], 1)
