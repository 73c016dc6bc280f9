"""The in-memory description of an image data set, shared by every loader."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from .._utils import tqdm
from ..errors import MvcpaperError

__all__ = ["ImageDataset", "DatasetError", "CorruptImageError", "DatasetNotFoundError", "to_rgb", "to_uint8",
           "content_digest"]


class DatasetError(MvcpaperError, ValueError):
    """A data set on disk is not in a layout the loader can read."""


class DatasetNotFoundError(MvcpaperError, FileNotFoundError):
    """A data set was asked for but is not under the data root."""


class CorruptImageError(DatasetError):
    """An image file exists but cannot be decoded."""


def to_uint8(a: np.ndarray, mode: str = "") -> np.ndarray:
    """Image values as 8 bits, by their type's range: 16-bit integers (numpy ``uint16``, PIL
    ``I;16``, and PIL ``I`` whose values fit 16 bits, as 16-bit PNGs open) are divided by
    257, other integers scaled from their type's range, booleans to 0/255; floating-point
    images (PIL ``F``) and ``I`` images beyond 16 bits are min-max scaled per image (a
    constant image becomes 0)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype.kind in "ui" and not (mode == "I" and (a.min() < 0 or a.max() > 65535)):
        if a.dtype == np.uint16 or mode.startswith("I"):
            lo, hi = 0, 65535
        else:
            info = np.iinfo(a.dtype)
            lo, hi = info.min, info.max
    else:
        a = a.astype(np.float64)
        finite = np.isfinite(a)
        lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
        a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a.astype(np.float64) - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB image as the networks see it: EXIF orientation applied; 16-bit and floating-point
    grey rescaled to 8 bits (:func:`to_uint8`); transparency composited on white."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = Image.fromarray(to_uint8(np.asarray(im), im.mode))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


#: path -> (size, mtime_ns, ctime_ns, inode, sha256 of the bytes)
_DIGESTS: dict[str, tuple] = {}
#: a remembered digest is trusted only for files last changed this long before it was taken
_RACY_NS = 2_000_000_000


def content_digest(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, remembered for this process while the file's size, times
    and inode stay the same. A file changed less than two seconds before it was hashed is
    hashed again on every call (git's "racily clean" rule: a rewrite within the file system's
    timestamp granularity would otherwise keep its old digest)."""
    key = os.path.abspath(path)
    st = os.stat(key)
    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    hit = _DIGESTS.get(key)
    if hit is not None and hit[:4] == sig:
        return hit[4]
    h = hashlib.sha256()
    with open(key, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
        _DIGESTS[key] = (*sig, digest)
    return digest


@dataclass
class ImageDataset:
    """An image set: either file paths or in-memory arrays, with one int label each or none.

    Attributes
    ----------
    name : str
        Registry name (``coil100``, ``umist``, ...), or a user-chosen name.
    labels : ndarray of int, shape (n_images,), or None
        Class id of each image, in ``0 .. n_classes-1``; ``None`` for an unlabelled set
        (:func:`~mvcpaper.data.read_image_tree` on a folder without labels).
    paths : list of Path or None
        Image files, when the set lives on disk.
    arrays : list of ndarray or None
        Images as uint8 arrays (H, W) or (H, W, 3), when the set lives in memory
        (UMist's ``.mat`` file, the synthetic set).
    class_names : list of str
        Name of each class id.
    info : dict
        Provenance: layout read, root folder, selection rule, paper's figures.
    """

    name: str
    labels: np.ndarray
    paths: list[Path] | None = None
    arrays: list[np.ndarray] | None = None
    class_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.paths is None) == (self.arrays is None):
            raise ValueError("an ImageDataset needs exactly one of `paths` or `arrays`")
        n = len(self.paths) if self.paths is not None else len(self.arrays)
        if n == 0:
            raise DatasetError(f"data set {self.name!r} holds no images")
        if self.labels is None:
            return
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != n:
            raise DatasetError(
                f"data set {self.name!r}: {len(self.labels)} labels for {n} images; "
                "every image needs exactly one label"
            )
        if not self.class_names:
            self.class_names = [str(c) for c in range(int(self.labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.arrays)

    def __repr__(self) -> str:
        return f"ImageDataset(name={self.name!r}, n_images={len(self)}, n_classes={self.n_classes})"

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    @property
    def n_classes(self) -> int:
        """Number of distinct classes present (0 for an unlabelled set)."""
        return int(len(np.unique(self.labels))) if self.labelled else 0

    def describe(self, i: int) -> str:
        """A human-readable name of item ``i`` (its path, or its index)."""
        if self.paths is not None:
            return str(self.paths[i])
        return f"{self.name}[{i}]"

    def load_image(self, i: int) -> Image.Image:
        """Decode item ``i`` as an RGB PIL image (see :func:`to_rgb`); a clear error if it cannot be read."""
        if self.arrays is not None:
            return Image.fromarray(to_uint8(np.asarray(self.arrays[i]))).convert("RGB")
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
        except FileNotFoundError:
            raise DatasetNotFoundError(
                f"image file {path} (item {i} of data set {self.name!r}) does not exist; "
                "was the folder moved after loading?"
            ) from None
        except Exception as exc:  # PIL raises several types for damaged files
            raise CorruptImageError(
                f"cannot decode image {path} (item {i} of data set {self.name!r}): {exc}. "
                "Replace or remove the file (and its line in labels.txt), then run again."
            ) from exc

    def verify(self, progress: bool = True) -> None:
        """Decode every image once; raise :class:`CorruptImageError` on the first bad one."""
        for i in tqdm(range(len(self)), desc=f"verify {self.name}", disable=not progress):
            self.load_image(i)

    def image_sizes(self, max_items: int = 200) -> set[tuple[int, int]]:
        """The set of (width, height) over up to ``max_items`` evenly spread images."""
        idx = np.unique(np.linspace(0, len(self) - 1, min(max_items, len(self))).astype(int))
        sizes = set()
        for i in idx:
            if self.arrays is not None:
                h, w = np.asarray(self.arrays[i]).shape[:2]
                sizes.add((int(w), int(h)))
            else:
                try:
                    with Image.open(self.paths[i]) as im:
                        sizes.add(tuple(im.size))
                except Exception as exc:
                    raise CorruptImageError(f"cannot read image header of {self.paths[i]}: {exc}") from exc
        return sizes

    def size_label(self) -> str:
        """``"128x128"`` (height x width) or ``"variable"``, as in the paper's Table 1."""
        sizes = self.image_sizes()
        if len(sizes) == 1:
            w, h = next(iter(sizes))
            return f"{h}x{w}"
        return "variable"

    def fingerprint(self) -> str:
        """A digest of what the images are: name, labels, and each file's name and bytes (or
        each array's shape, dtype and bytes).

        Part of every cache key, so a changed image is never served from a cache, while a
        copy of the same files elsewhere (``cp``, a fresh CI checkout) keeps its features.
        Hashing COIL-100's 7200 files (139 MB) takes 0.45 s once per process (2 s from a cold disk)
        (:func:`content_digest` remembers files whose size and times have not changed).
        """
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(self.labels.tobytes() if self.labelled else b"unlabelled")
        if self.paths is not None:
            for p in self.paths:
                h.update(p.name.encode())
                try:
                    h.update(content_digest(p).encode())
                except OSError:
                    h.update(b"missing")
        else:
            for a in self.arrays:
                a = np.ascontiguousarray(a)
                h.update(f"{a.shape}{a.dtype}".encode())
                h.update(a.tobytes())
        return h.hexdigest()[:16]

    def subset(self, indices: Sequence[int], name: str | None = None) -> "ImageDataset":
        """A new data set holding only ``indices`` (labels re-numbered to stay contiguous)."""
        idx = np.asarray(indices, dtype=int)
        kept, new = np.unique(self.labels[idx], return_inverse=True) if self.labelled else ([], None)
        return ImageDataset(
            name=name or f"{self.name}-subset",
            labels=new,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            arrays=[self.arrays[i] for i in idx] if self.arrays is not None else None,
            class_names=[self.class_names[k] for k in kept],
            info={**self.info, "subset_of": self.name, "n_subset": len(idx)},
        )
