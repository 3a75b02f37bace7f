"""Chapter 9's data: LV-like cups seen through three scanner-frame slices, and the MSD heart pipeline.

Offline (quick mode, tests, the book's CPU run)
    :func:`make_cup_dataset` draws truncated half-ellipsoidal "cups" (a crude left ventricle: apex at the
    bottom, open base at the top) with **built-in correspondence**: ``N_RINGS`` = 12 rings of
    ``N_PER_RING`` = 24 vertices, 288 in all, vertex ``(j, k)`` always at ring ``j`` and angle
    ``2 pi k / 24``. Each cup has random semi-axes, length, a bent long axis, angular harmonics m = 1-3
    that grow towards the base, weaker higher harmonics m = 4-6 and one local bulge (these last two put
    variance into many small PCA modes, so truncating the shape model has a visible cost). The cup is
    then placed in the scanner with a random rotation and translation (the *pose*) and imaged on three
    fixed, slightly tilted planes, a short-axis (SAX) and two long-axis views ("2CH", "4CH"): 48 x 48
    pixels at 2 mm, intensity ``0.2 + 0.8 * inside + N(0, 0.15^2)``. The inside test is analytic, so
    no meshing library is needed.

Real data (Colab / GPU)
    MSD Task02_Heart (20 labelled MRIs of the left atrium) through MONAI's ``DecathlonDataset``:
    :func:`load_heart_decathlon` turns every label into a corresponded mesh (marching cubes
    :func:`mask_to_mesh`, principal-axis alignment :func:`principal_axes`, ray casting from the
    centroid along a fixed spherical grid of directions :func:`ray_cast_correspondence`), and
    :func:`make_heart_dataset` draws random poses and samples three orthogonal planes of the image, giving
    the same :class:`ShapeData` as the cup generator. Twenty subjects is very few for a shape model:
    cross-validate over subjects and expect wide error bars.

Units: millimetres throughout; rotations as axis-angle vectors (radians).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

N_RINGS = 12
N_PER_RING = 24
NUM_VERTICES = N_RINGS * N_PER_RING
VIEW_NAMES = ("SAX", "2CH", "4CH")
BACKGROUND = 0.2      # image intensity outside the cup
CONTRAST = 0.8        # added inside the cup
NOISE = 0.15          # std of the Gaussian image noise


# ------------------------------------------------------------------------------------------------
# imaging planes
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plane:
    """An imaging plane in scanner coordinates (mm).

    origin: (3,) the point imaged at the centre of the slice; u, v: (3,) orthonormal in-plane directions
    of the image columns and rows. Pixel ``(r, c)`` of a ``size x size`` slice at ``spacing`` mm lies at
    ``origin + (c - (size - 1) / 2) * spacing * u + (r - (size - 1) / 2) * spacing * v``.
    """
    name: str
    origin: tuple[float, float, float]
    u: tuple[float, float, float]
    v: tuple[float, float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.u, self.v)

    def grid(self, size: int = 48, spacing: float = 2.0) -> np.ndarray:
        """(size, size, 3) scanner coordinates (mm) of the pixel centres."""
        if size < 2 or spacing <= 0:
            raise ValueError(f"need size >= 2 and spacing > 0; got size={size}, spacing={spacing}")
        c = (np.arange(size) - (size - 1) / 2) * spacing
        o, u, v = (np.asarray(a, dtype=np.float64) for a in (self.origin, self.u, self.v))
        return o + c[None, :, None] * u + c[:, None, None] * v


def _tilted(name: str, origin, u, v, axis, degrees: float) -> Plane:
    rot = Rotation.from_rotvec(np.deg2rad(degrees) * np.asarray(axis, dtype=np.float64))
    return Plane(name, tuple(float(x) for x in origin), tuple(rot.apply(u).tolist()), tuple(rot.apply(v).tolist()))


def default_planes(tilt_degrees: float = 3.0, sax_z: float = -5.0) -> tuple[Plane, Plane, Plane]:
    """The three fixed scanner-frame views: SAX (near z = ``sax_z``), 2CH (near x = 0), 4CH (near y = 0).

    Each is tilted by ``tilt_degrees`` so that the views are only *quasi*-orthogonal, as in real
    acquisitions planned by hand.
    """
    return (_tilted("SAX", (0, 0, sax_z), (1, 0, 0), (0, 1, 0), (1, 0, 0), tilt_degrees),
            _tilted("2CH", (0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), tilt_degrees),
            _tilted("4CH", (0, 0, 0), (1, 0, 0), (0, 0, 1), (0, 0, 1), -tilt_degrees))


# ------------------------------------------------------------------------------------------------
# the cup: parameters, vertices, inside test
# ------------------------------------------------------------------------------------------------
@dataclass
class CupParams:
    """Shape parameters of N cups (arrays with leading dimension N). Lengths in mm."""
    a: np.ndarray            # (N,) semi-axis along x
    b: np.ndarray            # (N,) semi-axis along y
    length: np.ndarray       # (N,) apex-to-base length
    bend: np.ndarray         # (N, 2) x/y offset of the long axis at the base (quadratic from the apex)
    harmonics: np.ndarray    # (N, 6, 2) cos/sin amplitudes of angular harmonics m = 1..6 (relative)
    bulge: np.ndarray        # (N, 4) amplitude (relative), angle (rad), height s0 in (0, 1), width (rad)
    offset: np.ndarray = field(default=None)  # (N, 3) centroid of the vertices in the generator frame

    def __len__(self) -> int:
        return len(self.a)


def sample_cup_params(n: int, rng: np.random.Generator) -> CupParams:
    """Draw ``n`` random cups (no pose)."""
    harm_std = np.array([0.06, 0.05, 0.04, 0.025, 0.02, 0.015])
    bulge = np.stack([rng.normal(0, 0.08, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.3, 0.9, n),
                      rng.uniform(0.4, 0.7, n)], axis=1)
    p = CupParams(a=rng.uniform(18, 28, n), b=rng.uniform(18, 28, n), length=rng.uniform(40, 60, n),
                  bend=rng.normal(0, 3.0, (n, 2)), harmonics=rng.normal(0, 1, (n, 6, 2)) * harm_std[None, :, None],
                  bulge=bulge)
    p.offset = np.zeros((n, 3))
    p.offset = _raw_vertices(p).mean(axis=1)
    return p


def _ring_heights() -> np.ndarray:
    """(N_RINGS,) heights s in (0, 1] from near the apex (s -> 0) to the base (s = 1), uniform in polar angle."""
    phi = np.linspace(0.3, np.pi / 2, N_RINGS)
    return 1.0 - np.cos(phi)


def _raw_vertices(p: CupParams) -> np.ndarray:
    """(N, V, 3) vertices in the generator frame (apex at z = 0), ring by ring."""
    n = len(p)
    s = np.broadcast_to(np.repeat(_ring_heights(), N_PER_RING), (n, NUM_VERTICES))
    theta = np.broadcast_to(np.tile(2 * np.pi * np.arange(N_PER_RING) / N_PER_RING, N_RINGS), (n, NUM_VERTICES))
    r = _radius_per_point(p, theta, s)                                    # (N, V)
    cx, cy = p.bend[:, :1] * s ** 2, p.bend[:, 1:] * s ** 2               # the bent long axis
    return np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta), p.length[:, None] * s], axis=-1)


def cup_vertices(p: CupParams) -> np.ndarray:
    """(N, V, 3) canonical-frame vertices (mm), centred so that each cup's vertex centroid is at 0."""
    return _raw_vertices(p) - p.offset[:, None, :]


def inside_cup(p: CupParams, points: np.ndarray) -> np.ndarray:
    """Analytic inside test. points: (N, ..., 3) canonical-frame coordinates (mm) of cup n's points.

    Returns a bool array (N, ...): inside the solid cup (the blood pool, closed by the base plane).
    """
    q = points + p.offset.reshape((len(p),) + (1,) * (points.ndim - 2) + (3,))
    s = q[..., 2] / p.length.reshape((len(p),) + (1,) * (points.ndim - 2))
    ok = (s >= 0) & (s <= 1)
    s_c = np.clip(s, 0, 1)
    # evaluate per cup: the radius helpers broadcast over a flattened point axis
    flat_s = s_c.reshape(len(p), -1)
    c = np.stack([p.bend[:, :1] * flat_s ** 2, p.bend[:, 1:] * flat_s ** 2], axis=-1)
    dx = q[..., 0].reshape(len(p), -1) - c[..., 0]
    dy = q[..., 1].reshape(len(p), -1) - c[..., 1]
    theta = np.arctan2(dy, dx)
    r = np.hypot(dx, dy)
    radius = _radius_per_point(p, theta, flat_s)
    return ok & (r < radius).reshape(s.shape)


def _radius_per_point(p: CupParams, theta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Radius (mm) of cup n's cross-section at angle theta[n, i] (rad) and height s[n, i] in [0, 1]: (N, P)."""
    a, b = p.a[:, None], p.b[:, None]
    profile = np.sqrt(np.clip(1.0 - (1.0 - s) ** 2, 0.0, None))
    ellipse = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    rel = np.zeros_like(theta)
    for m in range(1, 7):
        grow = s if m <= 3 else 1.0
        rel += grow * (p.harmonics[:, m - 1, 0:1] * np.cos(m * theta) + p.harmonics[:, m - 1, 1:2] * np.sin(m * theta))
    amp, ang, s0, width = (p.bulge[:, i:i + 1] for i in range(4))
    dtheta = np.angle(np.exp(1j * (theta - ang)))
    rel += amp * np.exp(-0.5 * (dtheta / width) ** 2 - 0.5 * ((s - s0) / 0.15) ** 2)
    return profile * ellipse * (1.0 + rel)


def cup_faces() -> np.ndarray:
    """(F, 3) int64 triangles of the ring-by-ring mesh (two per quad, rings closed around; base open)."""
    faces = []
    for j in range(N_RINGS - 1):
        for k in range(N_PER_RING):
            a, b = j * N_PER_RING + k, j * N_PER_RING + (k + 1) % N_PER_RING
            c, d = a + N_PER_RING, b + N_PER_RING
            faces += [(a, b, d), (a, d, c)]
    return np.asarray(faces, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# the data set
# ------------------------------------------------------------------------------------------------
@dataclass
class ShapeData:
    """Images and corresponded shapes: the common format of the cup generator and the heart pipeline.

    images: (N, 3, H, W) float32, one channel per view (in ``view_names`` order);
    vertices: (N, V, 3) float32 scanner-frame vertices (mm), the regression target;
    canonical: (N, V, 3) float32 the same shapes before posing (each centred at its vertex centroid);
    rotation: (N, 3) float32 axis-angle (rad) and translation: (N, 3) float32 (mm) of the pose, so that
    ``vertices = R(rotation) canonical + translation``; faces: (F, 3) int64 mesh triangles.
    """
    images: torch.Tensor
    vertices: torch.Tensor
    canonical: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    faces: np.ndarray
    planes: tuple = ()
    view_names: tuple[str, ...] = VIEW_NAMES
    spacing: float = 2.0

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index) -> "ShapeData":
        """The cases ``index`` (slice, list or tensor of indices)."""
        return ShapeData(self.images[index], self.vertices[index], self.canonical[index], self.rotation[index],
                         self.translation[index], self.faces, self.planes, self.view_names, self.spacing)


def sample_poses(n: int, rng: np.random.Generator, rotation_std: float = 0.15,
                 max_translation: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) axis-angle rotations ~ N(0, rotation_std^2) per component and (n, 3) translations ~ U(+-max)."""
    return rng.normal(0, rotation_std, (n, 3)), rng.uniform(-max_translation, max_translation, (n, 3))


def render_views(p: CupParams, rotation: np.ndarray, translation: np.ndarray, planes=None, size: int = 48,
                 spacing: float = 2.0, noise: float = NOISE, rng: np.random.Generator | None = None) -> np.ndarray:
    """(N, len(planes), size, size) float32 slices of the posed cups (noise-free if ``noise == 0``)."""
    planes = default_planes() if planes is None else planes
    grids = np.stack([pl.grid(size, spacing) for pl in planes])           # (P, S, S, 3) scanner
    rot = Rotation.from_rotvec(rotation)
    # canonical = R^T (x - t), for every cup and every pixel
    x = grids[None] - translation[:, None, None, None, :]                  # (N, P, S, S, 3)
    mats = rot.as_matrix()                                                 # (N, 3, 3)
    canon = np.einsum("nji,npabj->npabi", mats, x)
    inside = inside_cup(p, canon)
    img = BACKGROUND + CONTRAST * inside
    if noise > 0:
        if rng is None:
            raise ValueError("render_views needs an rng when noise > 0")
        img = img + rng.normal(0, noise, img.shape)
    return img.astype(np.float32)


def make_cup_dataset(n: int, seed: int = 0, size: int = 48, spacing: float = 2.0, noise: float = NOISE,
                     planes=None, rotation_std: float = 0.15, max_translation: float = 8.0,
                     chunk: int = 250) -> ShapeData:
    """``n`` random posed cups with their three slices. Same seed, same data.

    Returns a :class:`ShapeData`: images (n, 3, size, size), vertices/canonical (n, 288, 3).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if size < 8 or spacing <= 0:
        raise ValueError(f"size must be >= 8 pixels and spacing > 0 mm; got size={size}, spacing={spacing}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    planes = default_planes() if planes is None else tuple(planes)
    rng = np.random.default_rng(seed)
    p = sample_cup_params(int(n), rng)
    rot, trans = sample_poses(int(n), rng, rotation_std, max_translation)
    canon = cup_vertices(p)
    verts = Rotation.from_rotvec(rot).as_matrix()
    posed = np.einsum("nij,nvj->nvi", verts, canon) + trans[:, None, :]
    images = np.empty((n, len(planes), size, size), dtype=np.float32)
    for i in range(0, n, chunk):
        sl = slice(i, min(n, i + chunk))
        sub = CupParams(p.a[sl], p.b[sl], p.length[sl], p.bend[sl], p.harmonics[sl], p.bulge[sl], p.offset[sl])
        images[sl] = render_views(sub, rot[sl], trans[sl], planes, size, spacing, noise, rng)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return ShapeData(f32(images), f32(posed), f32(canon), f32(rot), f32(trans), cup_faces(), planes,
                     tuple(pl.name for pl in planes), spacing)


# ------------------------------------------------------------------------------------------------
# real data: MSD Task02_Heart (left atrium)
# ------------------------------------------------------------------------------------------------
def mask_to_mesh(mask: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes (scikit-image) of a binary (X, Y, Z) mask at level 0.5.

    Returns vertices (M, 3) float64 in mm (voxel index times ``spacing``) and faces (F, 3) int64.
    """
    from skimage.measure import marching_cubes

    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be a 3-D (X, Y, Z) array; got shape {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty: there is no structure to mesh")
    padded = np.pad(mask > 0, 1).astype(np.float32)       # close the surface at the volume's border
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(float(s) for s in spacing))
    return verts - np.asarray(spacing, dtype=np.float64), faces.astype(np.int64)


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (3,) and principal axes (3, 3) of a point cloud (M, 3): columns sorted by decreasing
    variance, a right-handed frame, each axis' sign chosen so that the third central moment along it
    is >= 0 (a deterministic choice that makes alignment of similar shapes consistent)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 4:
        raise ValueError(f"points must be (M, 3) with M >= 4; got shape {pts.shape}")
    centroid = pts.mean(0)
    d = pts - centroid
    w, vecs = np.linalg.eigh(d.T @ d / len(pts))
    axes = vecs[:, ::-1].copy()
    for k in range(2):
        if np.mean((d @ axes[:, k]) ** 3) < 0:
            axes[:, k] *= -1
    axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return centroid, axes


def sphere_directions(num_rings: int = N_RINGS, num_per_ring: int = N_PER_RING) -> np.ndarray:
    """(num_rings * num_per_ring, 3) unit directions on a spherical grid: polar angles strictly between the
    poles (so no two rays coincide), azimuths ``2 pi k / num_per_ring``, ring by ring."""
    if num_rings < 1 or num_per_ring < 3:
        raise ValueError(f"need num_rings >= 1 and num_per_ring >= 3; got {num_rings}, {num_per_ring}")
    polar = np.pi * (np.arange(num_rings) + 0.5) / num_rings
    az = 2 * np.pi * np.arange(num_per_ring) / num_per_ring
    pp, aa = np.meshgrid(polar, az, indexing="ij")
    return np.stack([np.sin(pp) * np.cos(aa), np.sin(pp) * np.sin(aa), np.cos(pp)], -1).reshape(-1, 3)


def ray_cast_correspondence(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray,
                            directions: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each direction, the farthest intersection of the ray ``centre + s d`` (s > 0) with the mesh.

    Möller-Trumbore ray-triangle test, vectorised over triangles. vertices (M, 3), faces (F, 3),
    centre (3,), directions (D, 3) unit. Returns (D, 3) points. A ray that misses the mesh (the centre is
    outside, or the mesh has holes) raises ``ValueError``. "Farthest" makes the correspondence defined
    for shapes that are not quite star-shaped around the centre (the outer surface wins).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    d = np.asarray(directions, dtype=np.float64)
    o = np.asarray(centre, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"need vertices (M, 3), faces (F, 3), directions (D, 3); got {v.shape}, {f.shape}, {d.shape}")
    if len(f) == 0 or f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"faces must index the {len(v)} vertices")
    p0, e1, e2 = v[f[:, 0]], v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]
    best = np.full(len(d), -np.inf)
    for i in range(0, len(f), chunk):
        a0, a1, a2 = p0[i:i + chunk], e1[i:i + chunk], e2[i:i + chunk]
        pvec = np.cross(d[:, None, :], a2[None])                          # (D, T, 3)
        det = np.einsum("tk,dtk->dt", a1, pvec)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tvec = o - a0                                                     # (T, 3)
        u = np.einsum("tk,dtk->dt", tvec, pvec) * inv
        qvec = np.cross(tvec, a1)                                         # (T, 3)
        w = np.einsum("dk,tk->dt", d, qvec) * inv
        s = np.einsum("tk,tk->t", a2, qvec)[None] * inv
        tol = 1e-9                                                         # rays through an edge or a vertex count
        hit = ok & (u >= -tol) & (w >= -tol) & (u + w <= 1 + tol) & (s > 1e-9)
        best = np.maximum(best, np.where(hit, s, -np.inf).max(1))
    if not np.isfinite(best).all():
        raise ValueError(f"{int((~np.isfinite(best)).sum())} of {len(d)} rays miss the mesh: is the centre "
                         "inside a closed surface?")
    return o + best[:, None] * d


def corresponded_shape(mask: np.ndarray, spacing=(1.0, 1.0, 1.0), directions: np.ndarray | None = None
                       ) -> dict:
    """Mask → mesh → principal-axis frame → ray-cast vertices (the pipeline for one subject).

    Returns ``canonical`` (D, 3) the corresponded vertices in the principal-axis frame (centred at the
    mesh centroid, long axis along z), ``centroid`` (3,) and ``axes`` (3, 3) (columns = the principal axes
    in scanner mm, so ``scanner = centroid + axes @ canonical``), ``mesh`` (vertices, faces) in mm.
    """
    directions = sphere_directions() if directions is None else directions
    verts, faces = mask_to_mesh(mask, spacing)
    centroid, axes = principal_axes(verts)
    # reorder to put the longest axis along z (the cup convention), keeping a right-handed frame
    axes = np.stack([axes[:, 1], axes[:, 2], axes[:, 0]], axis=1)
    local = (verts - centroid) @ axes
    canon = ray_cast_correspondence(local, faces, np.zeros(3), directions)
    shift = canon.mean(0)                 # centre at the vertex centroid, as the cups are
    canon, centroid = canon - shift, centroid + axes @ shift
    return {"canonical": canon, "centroid": centroid, "axes": axes, "mesh": (verts, faces)}


def load_heart_decathlon(root_dir: str | os.PathLike, section: str = "training", download: bool = False,
                         val_frac: float = 0.0, seed: int = 0, directions: np.ndarray | None = None,
                         max_subjects: int | None = None) -> list[dict]:
    """MSD Task02_Heart (left atrium, mono-modal MRI, labels 0 background / 1 LA) as corresponded shapes.

    ``download=True`` lets ``monai.apps.DecathlonDataset`` fetch the ~435 MB archive from MONAI's mirror
    and check the md5 MONAI ships. Every subject: ``image`` (X, Y, Z) float32 (scaled to [0, 1] by its
    1st-99th percentiles), ``spacing`` (3,) mm, ``name``, and the output of :func:`corresponded_shape`.
    With ``val_frac=0`` all 20 labelled subjects are ``training``; cross-validate over them.
    """
    from monai.apps import DecathlonDataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    if section not in {"training", "validation"}:
        raise ValueError(f"section must be 'training' or 'validation' (the test set has no labels); got {section!r}")
    root_dir = Path(root_dir)
    root_dir.mkdir(parents=True, exist_ok=True)
    transform = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"]),
                         Orientationd(["image", "label"], axcodes="RAS",
                                      labels=(("L", "R"), ("P", "A"), ("I", "S")))])
    ds = DecathlonDataset(root_dir, task="Task02_Heart", section=section, transform=transform,
                          download=download, val_frac=val_frac, seed=seed, cache_rate=0.0, progress=False)
    subjects = []
    for i in range(len(ds) if max_subjects is None else min(len(ds), max_subjects)):
        item = ds[i]
        image = np.asarray(item["image"], dtype=np.float32)[0]
        label = np.rint(np.asarray(item["label"]))[0].astype(np.int64)
        if label.min() < 0 or label.max() > 1:
            raise ValueError(f"Task02_Heart labels must be 0/1; got [{label.min()}, {label.max()}]")
        spacing = np.abs(np.diag(np.asarray(item["image"].affine)[:3, :3])).astype(np.float64)
        lo, hi = np.percentile(image, [1, 99])
        subject = corresponded_shape(label, spacing, directions)
        subject.update(image=np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32),
                       spacing=spacing,
                       name=Path(str(item["image"].meta.get("filename_or_obj", f"case{i}"))).name)
        subjects.append(subject)
    return subjects


def make_heart_dataset(subjects: list[dict], num_per_subject: int, seed: int = 0, size: int = 48,
                       spacing: float = 2.0, rotation_std: float = 0.15, max_translation: float = 8.0
                       ) -> ShapeData:
    """Posed shapes and three orthogonal slices from real subjects (:func:`load_heart_decathlon`).

    For every subject and draw: a random pose (R, t) of the canonical shape; the three views are the
    planes through ``centroid + axes @ t`` spanned by the rotated principal axes (SAX ⟂ long axis, two
    long-axis views), sampled from the image with trilinear interpolation. Vertices are
    ``R canonical + t`` in a frame where the views are fixed, which is what the network sees.
    """
    from scipy.ndimage import map_coordinates

    if not subjects:
        raise ValueError("subjects is empty")
    if num_per_subject < 1:
        raise ValueError(f"num_per_subject must be >= 1; got {num_per_subject}")
    rng = np.random.default_rng(seed)
    planes = (Plane("SAX", (0, 0, 0), (1, 0, 0), (0, 1, 0)), Plane("2CH", (0, 0, 0), (0, 1, 0), (0, 0, 1)),
              Plane("4CH", (0, 0, 0), (1, 0, 0), (0, 0, 1)))
    grids = np.stack([pl.grid(size, spacing) for pl in planes])           # (3, S, S, 3) in the view frame
    images, verts, canon, rots, trans = [], [], [], [], []
    for subj in subjects:
        for _ in range(num_per_subject):
            rot, t = sample_poses(1, rng, rotation_std, max_translation)
            R = Rotation.from_rotvec(rot[0]).as_matrix()
            # a view-frame point x shows the shape point R^T (x - t) (canonical) = scanner centroid + axes @ that
            local = (grids - t[0]) @ R                                     # (3, S, S, 3) canonical
            scanner = subj["centroid"] + local @ subj["axes"].T
            idx = (scanner / subj["spacing"]).reshape(-1, 3).T
            img = map_coordinates(subj["image"], idx, order=1, mode="constant", cval=0.0)
            images.append(img.reshape(3, size, size))
            verts.append(subj["canonical"] @ R.T + t[0])
            canon.append(subj["canonical"])
            rots.append(rot[0])
            trans.append(t[0])
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a), dtype=np.float32))  # noqa: E731
    n_dirs = len(subjects[0]["canonical"])
    faces = cup_faces() if n_dirs == NUM_VERTICES else np.zeros((0, 3), dtype=np.int64)
    return ShapeData(f32(images), f32(verts), f32(canon), f32(rots), f32(trans), faces, planes,
                     tuple(p.name for p in planes), spacing)


__all__ = ["N_RINGS", "N_PER_RING", "NUM_VERTICES", "VIEW_NAMES", "BACKGROUND", "CONTRAST", "NOISE", "Plane",
           "default_planes", "CupParams", "sample_cup_params", "cup_vertices", "inside_cup", "cup_faces",
           "ShapeData", "sample_poses", "render_views", "make_cup_dataset", "mask_to_mesh", "principal_axes",
           "sphere_directions", "ray_cast_correspondence", "corresponded_shape", "load_heart_decathlon",
           "make_heart_dataset"]
