"""The on-disk caches: safe paths under one root, atomic writes, validated reads, code stamps.

Every cache entry is a data file plus a JSON sidecar (``<file>.json``) written after it.
The sidecar holds the sha256 of the data file and what the writer knew of its content
(shape and dtype of arrays, the settings that made it). A read checks the sidecar, the
checksum, that the file loads, and the content against the sidecar (and whatever the
caller checks); an entry that fails any check is reported with a :class:`CacheWarning`,
deleted, and treated as missing, so the caller recomputes it. A half-written entry
(interrupted before its sidecar) fails the same way. So a truncated, byte-flipped or
swapped file is never returned.

Paths are built by :func:`entry_path` from sanitised names and checked to stay under
the cache root, so no name (a data set called ``../../x``) can make a write land
elsewhere.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from ._utils import atomic_path
from .errors import MvcpaperError

__all__ = ["CacheWarning", "cache_root", "stable_hash", "safe_name", "entry_path", "write_entry", "read_entry",
           "save_array", "load_array", "save_arrays", "load_arrays", "file_sha256", "code_stamp"]

T = TypeVar("T")

#: bump when the layout of entries or sidecars changes: older entries are then recomputed
CACHE_FORMAT = 2


class CacheWarning(UserWarning):
    """A cache entry failed validation; it was deleted and is recomputed."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: the argument, else ``$MVCPAPER_CACHE``, else ``~/.cache/mvcpaper``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MVCPAPER_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mvcpaper"


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def safe_name(name: str, max_len: int = 48) -> str:
    """``name`` reduced to ``[A-Za-z0-9._-]`` (anything else becomes ``_``), without leading
    dots, at most ``max_len`` characters: safe as one path component on every system."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).lstrip(".")[:max_len]
    return s or "unnamed"


def entry_path(kind: str, *names: str, cache_dir=None) -> Path:
    """``<cache root>/<kind>/<name>/...``, every component sanitised; an error if the result
    would lie outside the cache root (it cannot after sanitising: this is the guard)."""
    root = cache_root(cache_dir).resolve()
    path = root.joinpath(safe_name(kind), *(safe_name(n, 160) for n in names))
    if not path.resolve().is_relative_to(root):
        raise MvcpaperError(f"cache path {path} would lie outside the cache root {root}")
    return path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_entry(path: str | os.PathLike, write: Callable[[Path], None], meta: dict | None = None) -> Path:
    """Write a cache entry: ``write(tmp)`` fills a temporary file, renamed onto ``path``; then
    the sidecar (checksum + ``meta``) is written, also atomically. Returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write(tmp)
        digest = file_sha256(tmp)
    side = {"format": CACHE_FORMAT, "sha256": digest, "bytes": path.stat().st_size, **(meta or {})}
    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(json.dumps(side, indent=1, default=str))
    return path


def discard(path: str | os.PathLike, reason: str) -> None:
    """Warn that the entry at ``path`` is ``reason``, and delete it with its sidecar."""
    path = Path(path)
    warnings.warn(f"mvcpaper cache: {path} {reason}; deleted, recomputing", CacheWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


def read_entry(path: str | os.PathLike, load: Callable[[Path], T],
               check: Callable[[T, dict], str | None] | None = None) -> tuple[T, dict] | None:
    """Read a cache entry written by :func:`write_entry`: ``(load(path), sidecar)``, or ``None``
    when it is absent or fails a check (then it is deleted, with a :class:`CacheWarning`).

    ``check(obj, sidecar)`` returns ``None`` when the loaded object is right, else what is
    wrong with it.
    """
    path = Path(path)
    side = _sidecar(path)
    if not path.exists() and not side.exists():
        return None
    if not path.is_file():
        discard(path, "has a sidecar but no data file (half-written)")
        return None
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        discard(path, "has no sidecar (half-written, or written by an older version)")
        return None
    except (OSError, ValueError) as exc:
        discard(path, f"has an unreadable sidecar ({exc})")
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        discard(path, "was written by another version of the cache")
        return None
    if file_sha256(path) != meta.get("sha256"):
        discard(path, "does not match its checksum (truncated, corrupted or modified)")
        return None
    try:
        obj = load(path)
    except Exception as exc:  # whatever the loader raises on a file it cannot read
        discard(path, f"cannot be read ({type(exc).__name__}: {exc})")
        return None
    problem = check(obj, meta) if check is not None else None
    if problem:
        discard(path, problem)
        return None
    return obj, meta


# ----------------------------------------------------------------------------- arrays

def _array_meta(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "dtype": str(a.dtype)}


def _array_problem(name: str, a: np.ndarray, expected: dict) -> str | None:
    if list(a.shape) != list(expected.get("shape", [])) or str(a.dtype) != expected.get("dtype"):
        return (f"holds {name} of shape {list(a.shape)} {a.dtype}, but its sidecar says "
                f"{expected.get('shape')} {expected.get('dtype')}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return f"holds NaN or infinite values in {name}"
    return None


def save_array(path, array: np.ndarray, meta: dict | None = None) -> Path:
    """Cache one array as ``.npy`` (see :func:`write_entry`)."""
    array = np.ascontiguousarray(array)

    def write(tmp: Path):
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write_entry(path, write, {**(meta or {}), **_array_meta(array)})


def load_array(path, rows: int | None = None, mmap: bool = False) -> np.ndarray | None:
    """A validated array from :func:`save_array`, or ``None`` (absent, or failed a check and
    deleted). ``rows``: the number of rows the caller expects."""

    def check(a, meta):
        problem = _array_problem("an array", a, meta)
        if problem is None and rows is not None and a.shape[0] != rows:
            problem = f"holds {a.shape[0]} rows where {rows} are expected"
        return problem

    got = read_entry(path, lambda p: np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None), check)
    return None if got is None else got[0]


def save_arrays(path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
    """Cache several named arrays as one ``.npz``; ``meta`` (JSON) goes to the sidecar."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}

    def write(tmp: Path):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return write_entry(path, write, {**(meta or {}), "arrays": {k: _array_meta(v) for k, v in arrays.items()}})


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict] | None:
    """``(arrays, sidecar)`` from :func:`save_arrays`, validated, or ``None``."""

    def load(p):
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def check(arrays, meta):
        expected = meta.get("arrays", {})
        if set(arrays) != set(expected):
            return f"holds arrays {sorted(arrays)} where its sidecar names {sorted(expected)}"
        for k, a in arrays.items():
            problem = _array_problem(repr(k), a, expected[k])
            if problem:
                return problem
        return None

    return read_entry(path, load, check)


# ----------------------------------------------------------------------------- code stamps

def _package_dependencies(module) -> set:
    """The modules of this package that ``module``'s globals refer to (classes, functions,
    sub-modules), found transitively."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m.__name__ in seen:
            continue
        seen.add(m.__name__)
        for value in vars(m).values():
            name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(name, str) and name.split(".")[0] == __package__ and name in sys.modules:
                todo.append(sys.modules[name])
    return seen


def code_stamp(obj) -> str:
    """A digest of the source of every module of this package that ``obj`` (a class, an
    instance or a function) depends on: editing a method's code changes the stamp, so cached
    results of the old code are not returned."""
    if inspect.isfunction(obj):
        modules = [obj.__module__]
    else:
        modules = [klass.__module__ for klass in (obj if inspect.isclass(obj) else type(obj)).__mro__]
    names = set()
    for module in modules:
        if module.split(".")[0] == __package__:
            names |= _package_dependencies(sys.modules[module])
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode())
        h.update(Path(sys.modules[name].__file__).read_bytes())
    return h.hexdigest()[:16]

