"""Small helpers shared across the package: devices, seeds, atomic files, progress bars."""
from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from .errors import MvcpaperError

__all__ = ["resolve_device", "seeded", "atomic_path", "tqdm", "cpu_flags", "cpu_label"]


def resolve_device(device: str | None = "auto"):
    """Return a :class:`torch.device`; ``"auto"`` picks CUDA when it is available."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MvcpaperError(
            f"device={device!r} was asked for but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    return dev


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (``avx2``, ``avx512f``, ...); empty elsewhere."""
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.partition(":")[2].split())


def cpu_label() -> str:
    """The widest x86 vector extension of this CPU (AVX-512, AVX2), else the architecture:
    the same 2-core machine kind comes with either, and their times differ by up to 3x."""
    flags = cpu_flags()
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else platform.machine()


@contextlib.contextmanager
def seeded(seed: int, device=None) -> Iterator[None]:
    """Run the block with torch's random state seeded by ``seed`` (CPU, and ``device`` when it
    is a CUDA device), and restore the caller's state after: a method's weight init and
    dropout are reproducible without touching the global generators."""
    dev = torch.device(device) if device is not None else None
    devices = [dev] if dev is not None and dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


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
