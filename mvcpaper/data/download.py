"""Downloads through one table of (url, checksum), cached, verified, extracted atomically.

Nothing here runs in the tests against the network: the tests drive :func:`fetch`
with ``file://`` URLs and :func:`safe_extract` on archives they write.
"""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .._utils import atomic_path
from ..errors import MvcpaperError

__all__ = ["Resource", "fetch", "file_digest", "verify_checksum", "safe_extract", "ChecksumError", "UnsafeArchiveError"]


class ChecksumError(MvcpaperError):
    """A downloaded file does not have the checksum the table gives."""


class UnsafeArchiveError(MvcpaperError):
    """An archive member would be written outside the target folder."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` (VOC's publishers give md5),
    or ``None`` where no checksum is published that we could check: then the file is
    accepted on first use and its sha256 is printed so that it can be pinned here.
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


def verify_checksum(path: Path, checksum: str | None) -> str:
    """Check ``path`` against ``checksum``; return its sha256. Raise :class:`ChecksumError`."""
    sha256 = file_digest(path, "sha256")
    if checksum is None:
        warnings.warn(
            f"{path.name}: no published checksum to verify against; accepted on first use "
            f"with sha256 {sha256}. Pin it in mvcpaper/data/__init__.py if you trust this copy.",
            stacklevel=2,
        )
        return sha256
    algo, _, expected = checksum.partition(":")
    if algo not in ("sha256", "md5") or not expected:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', not {checksum!r}")
    actual = sha256 if algo == "sha256" else file_digest(path, "md5")
    if actual.lower() != expected.lower():
        raise ChecksumError(f"{path} has {algo} {actual}, expected {expected}; the download is damaged or changed")
    return sha256


def fetch(resource: Resource, dest_dir: Path, progress: bool = True) -> Path:
    """Download ``resource`` into ``dest_dir`` (skipped if a verified copy is there).

    The bytes go to a temporary file that is renamed into place only after the
    checksum passed, so an interrupted or damaged download leaves nothing behind.
    """
    from .._utils import tqdm

    dest_dir = Path(dest_dir)
    final = dest_dir / resource.filename
    if final.is_file():
        verify_checksum(final, resource.checksum)
        return final
    with atomic_path(final) as tmp:
        with urllib.request.urlopen(resource.url) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=resource.filename, disable=not progress) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        verify_checksum(tmp, resource.checksum)
    return final


def _check_member(target: Path, member_name: str) -> None:
    dest = (target / member_name).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(f"archive member {member_name!r} would be written outside {target}; refusing to extract")


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
