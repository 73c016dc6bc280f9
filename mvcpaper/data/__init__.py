"""Data sets: one registry, loaders for official and generic layouts, downloads.

>>> from mvcpaper.data import load_dataset
>>> ds = load_dataset("umist", root="../shared/data")      # doctest: +SKIP
>>> len(ds), ds.n_classes                                    # doctest: +SKIP
(575, 20)

The data root is the ``root`` argument, else ``$MVCPAPER_DATA``. Under it, each data
set lives in its own folder (``coil-100/``, ``umist/``, ``voc2007/``), in either its
official layout or the generic ``images/ + labels.txt`` layout.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UnknownNameError
from .base import CorruptImageError, DatasetError, DatasetNotFoundError, ImageDataset
from .download import LOCK_NAME, Resource, fetch, safe_extract, verify_checksum
from .loaders import (
    read_class_subfolders,
    read_coil100_official,
    read_folder,
    read_image_tree,
    read_labelled_folder,
    read_umist_mat,
    read_voc2007,
)
from .synthetic import make_synthetic

__all__ = [
    "DATASETS", "DatasetSpec", "ImageDataset", "load_dataset", "parse_subset", "download_dataset", "data_root",
    "list_datasets", "find_dataset_folder", "make_synthetic", "DatasetError", "DatasetNotFoundError",
    "CorruptImageError",
    "read_folder", "read_image_tree", "read_labelled_folder", "read_class_subfolders", "read_coil100_official",
    "read_umist_mat", "read_voc2007",
]


def _read_coil100(folder: Path, **_) -> ImageDataset:
    for cand in (folder, folder / "coil-100"):
        if (cand / "labels.txt").is_file():
            return read_labelled_folder(cand, "coil100")
        if cand.is_dir() and any(cand.glob("obj*__*.png")):
            return read_coil100_official(cand, "coil100")
    raise DatasetError(f"{folder} holds neither images/+labels.txt nor obj<N>__<angle>.png files")


def _read_umist(folder: Path, **_) -> ImageDataset:
    if (folder / "labels.txt").is_file():
        return read_labelled_folder(folder, "umist")
    mats = sorted(folder.glob("*.mat"))
    if mats:
        if (folder / LOCK_NAME).is_file():  # downloaded here: the file must still be the one fetched
            verify_checksum(mats[0], None, folder / LOCK_NAME, refetch="run `mvcpaper download umist`")
        return read_umist_mat(mats[0], "umist")
    raise DatasetError(f"{folder} holds neither images/+labels.txt nor umist_cropped.mat")


def _read_voc(folder: Path, split: str = "all", rule: str = "single_object", **_) -> ImageDataset:
    for cand in (folder / "VOCdevkit" / "VOC2007", folder / "VOC2007", folder):
        if (cand / "Annotations").is_dir():
            return read_voc2007(cand, split=split, rule=rule, name="voc2007")
    if (folder / "labels.txt").is_file():
        return read_labelled_folder(folder, "voc2007")
    raise DatasetError(f"{folder} holds no VOCdevkit/VOC2007 tree (Annotations/ + JPEGImages/)")


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: where a data set lives under the root, how to read and to get it.

    ``reader(folder, **options)`` reads the data set's folder; ``None`` for the sets that
    :func:`load_dataset` builds itself (``folder``: a path the user gives; ``synthetic``).
    """

    name: str
    reader: Callable[..., ImageDataset] | None = None
    folders: tuple[str, ...] = ()          # candidate folder names under the data root
    resources: tuple[Resource, ...] = ()   # what `download` fetches into the folder
    paper: dict = field(default_factory=dict)  # the paper's Table 1 row
    how_to_get: str = ""


# COIL-100 and UMist: https; their publishers give no checksum, so the first download's sha256
# is recorded in a lock file beside the data. VOC's host serves the files over http only (as
# torchvision fetches them); its published md5 is checked.
DATASETS: dict[str, DatasetSpec] = {
    "coil100": DatasetSpec(
        "coil100", _read_coil100, folders=("coil-100", "coil100", "COIL-100"),
        resources=(Resource("https://www.cs.columbia.edu/CAVE/databases/SLAM_coil-20_coil-100/coil-100/coil-100.zip",
                            "coil-100.zip", None),),
        paper={"n_images": 7200, "n_classes": 100, "size": "128x128"},
        how_to_get="`mvcpaper download coil100` (official zip, 125 MB) or copy an images/+labels.txt folder there",
    ),
    "umist": DatasetSpec(
        "umist", _read_umist, folders=("umist", "UMist", "UMIST"),
        resources=(Resource("https://cs.nyu.edu/~roweis/data/umist_cropped.mat", "umist_cropped.mat", None),),
        paper={"n_images": 575, "n_classes": 20, "size": "112x92"},
        how_to_get="`mvcpaper download umist` (umist_cropped.mat) or copy an images/+labels.txt folder there",
    ),
    "voc2007": DatasetSpec(
        "voc2007", _read_voc, folders=("voc2007", "VOC2007", "VOCdevkit"),
        resources=(
            Resource("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
                     "VOCtrainval_06-Nov-2007.tar", "md5:c52e279531787c972589f7e41ab4ae64"),
            Resource("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
                     "VOCtest_06-Nov-2007.tar", "md5:b6e924de25625d8de591ea690078ad9f"),
        ),
        paper={"n_images": 2841, "n_classes": 20, "size": "variable"},
        how_to_get="`mvcpaper download voc2007` (two tars, about 900 MB)",
    ),
    "folder": DatasetSpec("folder"),
    "synthetic": DatasetSpec("synthetic"),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("data set", name, DATASETS) from None


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$MVCPAPER_DATA``; an error if neither is set."""
    root = root if root is not None else os.environ.get("MVCPAPER_DATA")
    if not root:
        raise DatasetNotFoundError(
            "no data root: pass root=... (CLI: --data-root) or set MVCPAPER_DATA to the folder "
            "that holds coil-100/, umist/, voc2007/ (e.g. MVCPAPER_DATA=../shared/data)"
        )
    return Path(root).expanduser()


def find_dataset_folder(spec: DatasetSpec, root: Path) -> Path | None:
    """The first of ``spec.folders`` under ``root`` that holds something (an empty folder, or
    one left with only hidden files by a failed download, does not count)."""
    for f in spec.folders:
        folder = root / f
        if folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
            return folder
    return None


def download_dataset(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Fetch and extract a data set's official files into ``<root>/<folder>``.

    Every file is checked against its published checksum and against the sha256 recorded in
    the folder's lock file at its first download. On any failure, a folder this call created
    is removed again, so a failed download never looks like a data set.
    """
    spec = get_spec(name)
    if not spec.resources:
        raise ValueError(f"data set {name!r} has nothing to download")
    folder = data_root(root) / spec.folders[0]
    created = not folder.exists()
    lock = folder / LOCK_NAME
    refetch = f"run `mvcpaper download {name}` again"
    try:
        for res in spec.resources:
            if res.filename.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
                safe_extract(fetch(res, folder / ".downloads", progress=progress, lock=lock, refetch=refetch), folder)
            else:
                fetch(res, folder, progress=progress, lock=lock, refetch=refetch)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def parse_subset(spec: str) -> tuple[str, dict]:
    """``"NAME[:PER_CLASS[:CLASSES]]"`` (the scripts' ``--datasets``) as a data set name and
    :func:`load_dataset` options: ``"coil100:4"`` keeps 4 images per class, ``"coil100:72:10"``
    the first 10 objects with all their images."""
    name, *counts = spec.split(":")
    if len(counts) > 2 or not all(c.isdigit() and int(c) > 0 for c in counts):
        raise ValueError(f"a data set is NAME, NAME:PER_CLASS or NAME:PER_CLASS:CLASSES with positive counts; "
                         f"got {spec!r}")
    return name, dict(zip(("max_per_class", "max_classes"), map(int, counts)))


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False, **options) -> ImageDataset:
    """Load a registered data set.

    Parameters
    ----------
    name : str
        ``coil100``, ``umist``, ``voc2007``, ``folder`` or ``synthetic``.
    root : path, optional
        The data root (default ``$MVCPAPER_DATA``). For ``folder``: the folder itself
        (or pass ``path=``).
    download : bool
        Fetch the official files when the data set is missing (needs the internet).
    **options
        Loader options: ``synthetic`` takes ``n_objects, n_poses, size, seed``;
        ``voc2007`` takes ``split`` and ``rule``; ``max_per_class`` (any set) keeps
        at most that many images of each class, evenly spaced (for quick runs);
        ``max_classes`` (any set) keeps the first that many classes.

    Returns
    -------
    ImageDataset
        With ``labels``, ``n_classes`` and ``paths`` or ``arrays``.
    """
    spec = get_spec(name)
    max_per_class = options.pop("max_per_class", None)
    max_classes = options.pop("max_classes", None)
    for option, value in (("max_per_class", max_per_class), ("max_classes", max_classes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{option} must be a positive integer (or None for all); got {value!r}")
    if name == "synthetic":
        ds = make_synthetic(**options)
    elif name == "folder":
        path = options.pop("path", None) or root
        if path is None:
            raise DatasetNotFoundError("data set 'folder' needs a folder: "
                                       "load_dataset('folder', root='path/to/images')")
        path = Path(path).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"folder {path} does not exist")
        ds = read_folder(path, name=options.pop("dataset_name", path.name or "folder"))
    else:
        base = data_root(root)
        if not base.is_dir():
            raise DatasetNotFoundError(f"the data root {base} does not exist; pass root=... or set MVCPAPER_DATA")
        folder = find_dataset_folder(spec, base)
        if folder is None and download:
            folder = download_dataset(name, base)
        if folder is None:
            looked = ", ".join(str(base / f) for f in spec.folders)
            raise DatasetNotFoundError(
                f"data set {name!r} not found: looked in {looked}. To get it: {spec.how_to_get}, "
                f"or call load_dataset({name!r}, download=True)."
            )
        ds = spec.reader(folder, **options)
        ds.info.setdefault("paper", spec.paper)
    if max_per_class:
        keep = []
        for c in np.unique(ds.labels):
            idx = np.flatnonzero(ds.labels == c)
            if len(idx) > max_per_class:
                idx = idx[np.linspace(0, len(idx) - 1, max_per_class).round().astype(int)]
            keep += idx.tolist()
        ds = ds.subset(sorted(keep), name=ds.name)
        ds.info["max_per_class"] = max_per_class
    if max_classes:
        ds = ds.subset(np.flatnonzero(ds.labels < int(max_classes)), name=ds.name)
        ds.info["max_classes"] = int(max_classes)
    return ds
