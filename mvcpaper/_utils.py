"""Small helpers shared across the package: devices, seeds, atomic files, hashing."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "resolve_device",
    "seed_everything",
    "atomic_path",
    "stable_hash",
    "cache_root",
    "UnknownNameError",
]


def resolve_device(device: str | None = "auto"):
    """Return a :class:`torch.device`; ``"auto"`` picks CUDA when it is available."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was asked for but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a NumPy generator."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    An exception (or an interrupt) inside the block deletes the temporary file, so a
    reader never sees a half-written ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: the argument, else ``$MVCPAPER_CACHE``, else ``~/.cache/mvcpaper``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MVCPAPER_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mvcpaper"


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones (every registry uses it)."""

    def __init__(self, kind: str, name: str, valid):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(self.valid)}")

    def __str__(self) -> str:
        return self.args[0]


def tqdm(*args, **kwargs):
    """A progress bar: ``tqdm.auto``'s (a widget in a notebook), or tqdm's text bar on stderr
    when ``MVCPAPER_TEXT_PROGRESS=1``. ``reproduce`` sets it for the kernels it starts, so
    their bars stream to the terminal (and the executed notebooks keep no widget state)
    even where ipywidgets is installed."""
    if os.environ.get("MVCPAPER_TEXT_PROGRESS") == "1":
        from tqdm.std import tqdm as bar
    else:
        from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)
