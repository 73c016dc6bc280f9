"""Downloads through one table of (url, checksum), cached, verified, extracted atomically.

Nothing here runs in the tests against the network: the tests drive :func:`fetch`
with ``file://`` URLs and :func:`safe_extract` on archives they write.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .._utils import atomic_path, tqdm
from ..errors import DownloadError, MvcpaperError

__all__ = ["Resource", "fetch", "file_digest", "verify_checksum", "safe_extract", "ChecksumError", "UnsafeArchiveError",
           "DownloadError", "LOCK_NAME"]


class ChecksumError(MvcpaperError):
    """A downloaded file does not have the checksum the table gives."""


class UnsafeArchiveError(MvcpaperError):
    """An archive member would be written outside the target folder."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` (VOC's publishers give md5),
    or ``None`` where no checksum is published: then the first download is trusted and
    its sha256 recorded in the data set's lock file (:data:`LOCK_NAME`), which every later
    download must match.
    """

    url: str
    filename: str
    checksum: str | None = None


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: beside each downloaded data set: the sha256 of every file fetched into it, recorded at its
#: first download (trust on first use where the publisher gives no checksum)
LOCK_NAME = ".sha256-lock.json"


def _read_lock(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ChecksumError(f"the lock file {lock} cannot be read ({exc}); delete it to record the checksums "
                            "anew at the next download") from None


def verify_checksum(path: Path, checksum: str | None, lock: Path | None = None, name: str | None = None,
                    refetch: str = "download it again") -> str:
    """Check ``path`` against the published ``checksum`` and against the sha256 that ``lock``
    recorded for ``name`` (default: the file's name) at its first download; record it there
    if it is new. Return the sha256. Raise :class:`ChecksumError` on any mismatch."""
    name = name or path.name
    sha256 = file_digest(path, "sha256")
    if checksum is not None:
        algo, _, expected = checksum.partition(":")
        if algo not in ("sha256", "md5") or not expected:
            raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', not {checksum!r}")
        actual = sha256 if algo == "sha256" else file_digest(path, "md5")
        if actual.lower() != expected.lower():
            raise ChecksumError(f"{name} has {algo} {actual}, but its publisher gives {expected}: the download is "
                                f"damaged or the file was changed; delete it and {refetch}")
    if lock is None:
        return sha256
    recorded = _read_lock(lock)
    if name in recorded and recorded[name] != sha256:
        raise ChecksumError(f"{name} has sha256 {sha256}, but {lock} recorded {recorded[name]} at its first "
                            f"download; delete {lock.parent / name if path.name != name else path} and {refetch} "
                            f"(if the publisher changed the file on purpose, delete its line in {lock.name} too)")
    if name not in recorded:
        if checksum is None:
            warnings.warn(f"{name}: its publisher gives no checksum; accepted on first use, sha256 {sha256} "
                          f"recorded in {lock}: every later download must match it", stacklevel=2)
        with atomic_path(lock) as tmp:
            tmp.write_text(json.dumps({**recorded, name: sha256}, indent=1, sort_keys=True))
    return sha256


def fetch(resource: Resource, dest_dir: Path, progress: bool = True, lock: Path | None = None,
          refetch: str = "download it again", timeout: float = 60.0) -> Path:
    """Download ``resource`` into ``dest_dir`` (skipped if a verified copy is there).

    The bytes go to a temporary file that is renamed into place only after the checksums
    passed (see :func:`verify_checksum`), so an interrupted or damaged download leaves
    nothing behind. A network failure is a :class:`DownloadError` naming the URL.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / resource.filename
    if final.is_file():
        verify_checksum(final, resource.checksum, lock, refetch=refetch)
        return final
    try:
        with atomic_path(final) as tmp:
            with urllib.request.urlopen(resource.url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=resource.filename,
                          disable=not progress) as bar:
                    while block := resp.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
            verify_checksum(tmp, resource.checksum, lock, name=resource.filename, refetch=refetch)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {resource.url} ({reason}); check the internet connection, or "
                            f"fetch the file by hand into {final}") from None
    return final


def _check_member(target: Path, member_name: str) -> None:
    dest = (target / member_name).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(f"archive member {member_name!r} would be written outside {target}; "
                                 "refusing to extract")


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a zip or tar archive into ``target``, refusing members that escape it.

    Everything is first extracted into a temporary folder beside ``target``, then
    moved in, so an interrupted extraction never leaves a partial tree in ``target``.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.extract."))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(target, name)
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    _check_member(target, m.name)
                    if m.issym() or m.islnk():
                        _check_member(target, str(Path(m.name).parent / m.linkname))
                tf.extractall(staging, filter="data")
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive")
        for child in staging.iterdir():
            dest = target / child.name
            if dest.exists():
                if dest.is_dir():
                    shutil.copytree(child, dest, dirs_exist_ok=True)
                    continue
                dest.unlink()
            shutil.move(str(child), dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
