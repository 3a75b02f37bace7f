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
    if not isinstance(dataset, RemoteDataset):
        raise ValueError(f"register takes a RemoteDataset; got {type(dataset).__name__}")
    for field_name in ("name", "url"):
        value = getattr(dataset, field_name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a dataset needs a non-empty {field_name}; got {value!r}")
    if not dataset.url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"{dataset.name}: url must start with https://, http:// or file://; got {dataset.url!r}")
    if dataset.hash_type not in {"md5", "sha1", "sha256", "sha512"}:
        raise ValueError(f"hash_type must be md5, sha1, sha256 or sha512; got {dataset.hash_type!r}")
    if dataset.hash_value is not None:
        lengths = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
        if not (isinstance(dataset.hash_value, str) and len(dataset.hash_value) == lengths.get(dataset.hash_type)
                and all(c in "0123456789abcdef" for c in dataset.hash_value.lower())):
            raise ValueError(f"{dataset.name}: hash_value must be the {dataset.hash_type} hex digest "
                             f"({lengths.get(dataset.hash_type, '?')} hex digits); got {dataset.hash_value!r}")
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
        _atomic_write_text(ledger_path, json.dumps(ledger, indent=1, sort_keys=True))
        warnings.warn(f"{ds.name}: no checksum is published for {ds.url}; recorded sha256 {got} in "
                      f"{ledger_path} and will verify the file against it from now on", stacklevel=3)
    elif got != want:
        raise ValueError(f"{ds.name}: {path} has sha256 {got} but {want} was recorded at its first download; "
                         f"delete the file (and its line in {ledger_path}) to download it again")


# ---------------------------------------------------------------------------------------------------
# The complete registry
# ---------------------------------------------------------------------------------------------------

_ALL_REGISTERED = False


def _register_all() -> None:
    """Import every data sub-module once, so that each registers its data sets.

    Data sets are registered where their loader lives (``medtut.data.mnist`` and so on); this makes
    :func:`fetch` and :func:`available` complete however the package was imported. A new data module
    needs no list to be updated: every sub-module of ``medtut.data`` is imported.
    """
    global _ALL_REGISTERED
    if _ALL_REGISTERED:
        return
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _ALL_REGISTERED = True


def available() -> dict[str, str]:
    """Every registered data set, ``{name: description}``, sorted by name (imports every data module)."""
    _register_all()
    return {name: REGISTRY[name].description for name in sorted(REGISTRY)}


# ---------------------------------------------------------------------------------------------------
# Fetching: temporary names, checksums, completion markers
# ---------------------------------------------------------------------------------------------------

COMPLETE_MARKER = ".medtut-complete.json"   # written into an extracted folder once extraction succeeded


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _download_verified(ds: RemoteDataset, target: Path, hash_value: str | None) -> None:
    """Download ``ds.url`` to ``target`` through a temporary name; rename only once the checksum matches.

    An interrupted or corrupt download therefore never leaves a file at ``target``.
    """
    import warnings

    from monai.apps import download_url

    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)          # left by an earlier, interrupted download
    try:
        with warnings.catch_warnings():       # the checksum is verified below, with a better message
            warnings.filterwarnings("ignore", message="No hash value provided")
            download_url(ds.url, filepath=str(partial), progress=False)
        if hash_value is not None:
            got = file_checksum(partial, ds.hash_type)
            if got != hash_value:
                raise ValueError(
                    f"{ds.name}: the file downloaded from {ds.url} has {ds.hash_type} {got}, expected "
                    f"{hash_value}; it was not kept. Retry (a download can be cut short); if it fails "
                    f"again, the file behind the URL changed: check the URL and the registered checksum")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _verify_file(ds: RemoteDataset, path: Path) -> None:
    got = file_checksum(path, ds.hash_type)
    if got != ds.hash_value:
        raise ValueError(f"{ds.name}: {path} has {ds.hash_type} {got}, expected {ds.hash_value} (truncated or "
                         f"altered); delete {path} and call fetch({ds.name!r}) again to download it afresh")


def _manifest(folder: Path) -> dict[str, int]:
    """``{relative path: size in bytes}`` of every file under ``folder`` except the marker."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE_MARKER}


def _extraction_problem(ds: RemoteDataset, out_dir: Path) -> str | None:
    """Why ``out_dir`` is not a complete extraction of ``ds`` (``None`` when it is)."""
    import json

    marker = out_dir / COMPLETE_MARKER
    if not marker.is_file():
        return "it has no completion marker (extraction stopped halfway, or it was made by hand)"
    try:
        record = json.loads(marker.read_text())
    except ValueError:
        return "its completion marker is unreadable"
    if record.get("url") != ds.url or record.get("hash_value") != ds.hash_value:
        return "it was extracted from another version of the archive"
    found = _manifest(out_dir)
    missing = sorted(set(record["files"]) - set(found))
    if missing:
        return f"{len(missing)} file(s) are missing, e.g. {missing[0]}"
    changed = sorted(k for k, size in record["files"].items() if found.get(k) != size)
    if changed:
        return f"{len(changed)} file(s) changed size since extraction, e.g. {changed[0]}"
    return None


def _extract_verified(ds: RemoteDataset, archive: Path, out_dir: Path) -> None:
    """Extract into a temporary folder, verify, write the completion marker, then rename into place."""
    import json
    import shutil

    from monai.apps import extractall

    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extractall(str(archive), output_dir=str(staging), file_type=_archive_type(archive))
        if ds.hash_of == "folder":
            target = staging / ds.folder if ds.folder else staging
            got = folder_checksum(target) if target.is_dir() else "(folder missing)"
            if got != ds.hash_value:
                raise ValueError(f"{ds.name}: the folder {ds.folder!r} extracted from {archive} has md5 checksum "
                                 f"{got}, expected {ds.hash_value}; delete {archive} and fetch again, or check "
                                 "the URL and the registered checksum")
        record = {"url": ds.url, "hash_value": ds.hash_value, "files": _manifest(staging)}
        (staging / COMPLETE_MARKER).write_text(json.dumps(record, indent=1, sort_keys=True))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _archive_type(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    raise ValueError(f"cannot tell the archive type of {archive.name}: expected .zip, .tar, .tar.gz or .tgz")


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download (once) and verify a registered dataset; return the local file or extracted folder.

    Verified on every call, also when the data are already present:

    * a single file against its checksum (or, without a published one, the sha256 recorded at its first
      download); a mismatch is a ``ValueError`` naming the file, both checksums and the remedy;
    * an extracted archive against the completion marker written after its extraction succeeded (the
      list of files and their sizes, plus the folder checksum for ``hash_of="folder"``). A folder without
      a valid marker (extraction stopped halfway, files deleted or truncated) is reported with a warning
      and extracted again.

    Downloads go to ``<file>.part`` and are renamed only once their checksum matches, so an interrupted
    download never leaves a file that looks complete. Extracted archives go into ``<root>/<name>/``
    (``<root>/<name>/<folder>`` is returned when the dataset names a folder).
    """
    import warnings

    _register_all()
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(REGISTRY)}")
    ds = REGISTRY[name]
    base = Path(root) if root is not None else data_root()
    base.mkdir(parents=True, exist_ok=True)
    archive = base / ds.local_name
    file_hash = ds.hash_value if ds.hash_of == "file" else None
    if ds.extract:
        out_dir = base / ds.name
        problem = _extraction_problem(ds, out_dir) if out_dir.exists() else "absent"
        if problem is not None:
            if problem != "absent":
                warnings.warn(f"{ds.name}: {out_dir} is incomplete ({problem}); extracting it again", stacklevel=2)
            if archive.exists() and file_hash is not None:
                _verify_file(ds, archive)
            elif not archive.exists():
                _download_verified(ds, archive, file_hash)
            _extract_verified(ds, archive, out_dir)
        target = out_dir / ds.folder if ds.folder else out_dir
        if ds.hash_of == "folder":
            got = folder_checksum(target) if target.is_dir() else "(folder missing)"
            if got != ds.hash_value:
                raise ValueError(f"{ds.name}: folder checksum of {target} is {got}, expected {ds.hash_value}; "
                                 f"delete {out_dir} and call fetch({ds.name!r}) again")
        return target
    if not archive.exists():
        _download_verified(ds, archive, ds.hash_value)
    if ds.hash_value is None:
        _verify_recorded(ds, archive, base)
    else:
        _verify_file(ds, archive)
    return archive


__all__ = ["data_root", "RemoteDataset", "REGISTRY", "RECORDED_CHECKSUMS", "COMPLETE_MARKER", "register",
           "available", "file_checksum", "folder_checksum", "fetch"]
