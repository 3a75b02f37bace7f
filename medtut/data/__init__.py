"""Data: where it lives, how it is downloaded, and the offline generators (defined in chapter 0).

* :func:`data_root` — ``$MEDTUT_DATA`` or ``~/.cache/medtut``; on Colab point it at Google Drive to keep
  downloads across sessions.
* :data:`REGISTRY` / :func:`register` / :func:`fetch` — downloadable data sets with checksums, through
  MONAI's ``download_and_extract`` (a wrong checksum is an error, never a silently corrupt file).
* Offline generators and real-data loaders live in one sub-module per chapter (``medtut.data.phantoms``
  for chapter 0, and so on). Nothing is downloaded at import time or during tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def data_root(create: bool = True) -> Path:
    """The folder holding downloaded data: ``$MEDTUT_DATA`` if set, else ``~/.cache/medtut``."""
    raw = os.environ.get("MEDTUT_DATA", "").strip()
    root = Path(raw).expanduser() if raw else Path.home() / ".cache" / "medtut"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class RemoteDataset:
    """A file to download: ``url``, its checksum (``hash_type`` md5/sha1/sha256), and what it is."""
    name: str
    url: str
    hash_value: str
    hash_type: str = "sha256"
    filename: str | None = None
    extract: bool = False
    description: str = ""
    license: str = ""

    @property
    def local_name(self) -> str:
        return self.filename or self.url.rstrip("/").split("/")[-1].split("?")[0]


REGISTRY: dict[str, RemoteDataset] = {}


def register(dataset: RemoteDataset) -> RemoteDataset:
    """Add a dataset to :data:`REGISTRY` (chapters call this at import of their data module)."""
    if dataset.hash_type not in {"md5", "sha1", "sha256", "sha512"}:
        raise ValueError(f"hash_type must be md5, sha1, sha256 or sha512; got {dataset.hash_type!r}")
    existing = REGISTRY.get(dataset.name)
    if existing is not None and existing != dataset:
        raise ValueError(f"a different dataset is already registered as {dataset.name!r}")
    REGISTRY[dataset.name] = dataset
    return dataset


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download (once) and verify a registered dataset; return the local file or extracted folder.

    The checksum is checked on every call that downloads and on files already present, so a
    truncated download is caught. Extracted archives go into ``<root>/<name>/``.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(REGISTRY)}")
    from monai.apps import download_and_extract, download_url

    ds = REGISTRY[name]
    base = Path(root) if root is not None else data_root()
    base.mkdir(parents=True, exist_ok=True)
    archive = base / ds.local_name
    if ds.extract:
        out_dir = base / ds.name
        if not out_dir.exists():
            download_and_extract(ds.url, filepath=str(archive), output_dir=str(out_dir),
                                 hash_val=ds.hash_value, hash_type=ds.hash_type)
        return out_dir
    download_url(ds.url, filepath=str(archive), hash_val=ds.hash_value, hash_type=ds.hash_type)
    return archive


__all__ = ["data_root", "RemoteDataset", "REGISTRY", "register", "fetch"]
