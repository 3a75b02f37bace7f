"""Data: where it lives, how it is downloaded, and the offline generators (defined in chapter 0).

* :func:`data_root` — ``$MEDTUT_DATA`` or ``~/.cache/medtut``; on Colab point it at Google Drive to keep
  downloads across sessions.
* :data:`REGISTRY` / :func:`register` / :func:`fetch` — downloadable data sets with checksums, through
  MONAI's ``download_url`` / ``extractall`` (a wrong checksum is an error, never a silently corrupt file). The
  checksum is of the downloaded file, or (``hash_of="folder"``) of the extracted folder, for sets whose
  only published checksum is a folder's (:func:`folder_checksum`). A file with no published checksum at
  all (``hash_value=None``, a commit-pinned URL) has its sha256 recorded at the first download and
  verified on every later call (trust on first use, with a warning that says so).
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
    """A file to download: ``url``, its checksum (``hash_type`` md5/sha1/sha256), and what it is.

    hash_of: ``"file"`` (the checksum is the downloaded file's) or ``"folder"`` (the archive is extracted
        and ``folder_checksum(<extracted>/<folder>)`` must equal ``hash_value``; md5 only);
    hash_value: ``None`` only for a file with no published checksum, whose URL should then pin an
        immutable version (a commit); see :func:`fetch`.
    folder: for archives, the sub-folder of the extraction that :func:`fetch` returns.
    """
    name: str
    url: str
    hash_value: str | None
    hash_type: str = "sha256"
    filename: str | None = None
    extract: bool = False
    description: str = ""
    license: str = ""
    hash_of: str = "file"
    folder: str | None = None

    @property
    def local_name(self) -> str:
        return self.filename or self.url.rstrip("/").split("/")[-1].split("?")[0]


REGISTRY: dict[str, RemoteDataset] = {}
RECORDED_CHECKSUMS = "recorded_checksums.json"   # next to the files: sha256 of unpublished files, first download


def register(dataset: RemoteDataset) -> RemoteDataset:
    """Add a dataset to :data:`REGISTRY` (chapters call this at import of their data module)."""
    if dataset.hash_type not in {"md5", "sha1", "sha256", "sha512"}:
        raise ValueError(f"hash_type must be md5, sha1, sha256 or sha512; got {dataset.hash_type!r}")
    if dataset.hash_of not in {"file", "folder"}:
        raise ValueError(f"hash_of must be 'file' or 'folder'; got {dataset.hash_of!r}")
    if dataset.hash_of == "folder" and not (dataset.extract and dataset.folder and dataset.hash_type == "md5"
                                            and dataset.hash_value):
        raise ValueError(f"{dataset.name}: a folder checksum needs extract=True, a folder name and an md5 "
                         f"hash_value; got extract={dataset.extract}, folder={dataset.folder!r}, "
                         f"hash_type={dataset.hash_type!r}, hash_value={dataset.hash_value!r}")
    if dataset.hash_value is None and dataset.extract:
        raise ValueError(f"{dataset.name}: an archive needs a published checksum (of the file or of the "
                         "extracted folder); only single files may have hash_value=None")
    existing = REGISTRY.get(dataset.name)
    if existing is not None and existing != dataset:
        raise ValueError(f"a different dataset is already registered as {dataset.name!r}")
    REGISTRY[dataset.name] = dataset
    return dataset


def file_checksum(path: str | os.PathLike, hash_type: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    import hashlib

    digest = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_checksum(folder: str | os.PathLike) -> str:
    """md5 of the concatenated md5 hex digests of the files directly in ``folder``, in name order.

    This is how DeepInverse publishes the checksums of its image sets (Set5, Set14...), which are the
    only checksums published for them.
    """
    import hashlib

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a folder to checksum; {folder} is not one")
    total = hashlib.md5()
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_file():
            total.update(file_checksum(path, "md5").encode())
    return total.hexdigest()


def _verify_recorded(ds: RemoteDataset, path: Path, base: Path) -> None:
    """Trust on first use: record the sha256 of an unpublished file, verify it on later calls."""
    import json
    import warnings

    ledger_path = base / RECORDED_CHECKSUMS
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    got = file_checksum(path)
    want = ledger.get(ds.name)
    if want is None:
        ledger[ds.name] = got
        ledger_path.write_text(json.dumps(ledger, indent=1, sort_keys=True))
        warnings.warn(f"{ds.name}: no checksum is published for {ds.url}; recorded sha256 {got} in "
                      f"{ledger_path} and will verify the file against it from now on", stacklevel=3)
    elif got != want:
        raise ValueError(f"{ds.name}: {path} has sha256 {got} but {want} was recorded at its first download; "
                         f"delete the file (and its line in {ledger_path}) to download it again")


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download (once) and verify a registered dataset; return the local file or extracted folder.

    The checksum is checked on every call, also for files already present, so a truncated or altered
    file is caught. Extracted archives go into ``<root>/<name>/`` (``<root>/<name>/<folder>`` is returned
    when the dataset names a folder).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(REGISTRY)}")
    import warnings

    from monai.apps import download_url, extractall

    ds = REGISTRY[name]
    base = Path(root) if root is not None else data_root()
    base.mkdir(parents=True, exist_ok=True)
    archive = base / ds.local_name
    file_hash = ds.hash_value if ds.hash_of == "file" else None
    if ds.extract:
        out_dir = base / ds.name
        if not out_dir.exists():
            with warnings.catch_warnings():   # a folder checksum is verified below, after extraction
                warnings.filterwarnings("ignore", message="No hash value provided")
                download_url(ds.url, filepath=str(archive), hash_val=file_hash, hash_type=ds.hash_type)
                extractall(str(archive), output_dir=str(out_dir), hash_val=file_hash, hash_type=ds.hash_type)
        target = out_dir / ds.folder if ds.folder else out_dir
        if ds.hash_of == "folder":
            got = folder_checksum(target) if target.is_dir() else "(folder missing)"
            if got != ds.hash_value:
                raise ValueError(f"{ds.name}: folder checksum of {target} is {got}, expected {ds.hash_value}; "
                                 f"delete {out_dir} to download it again")
        return target
    if ds.hash_value is None:
        if not archive.exists():
            with warnings.catch_warnings():   # _verify_recorded says what happens instead
                warnings.filterwarnings("ignore", message="No hash value provided")
                download_url(ds.url, filepath=str(archive))
        _verify_recorded(ds, archive, base)
        return archive
    download_url(ds.url, filepath=str(archive), hash_val=ds.hash_value, hash_type=ds.hash_type)
    return archive


__all__ = ["data_root", "RemoteDataset", "REGISTRY", "RECORDED_CHECKSUMS", "register", "file_checksum",
           "folder_checksum", "fetch"]
