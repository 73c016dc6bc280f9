"""Readers for the on-disk layouts of the data sets (official and generic).

Every reader returns an :class:`~mvcpaper.data.base.ImageDataset`; none decodes the
images (that happens lazily, at feature extraction), so loading 7200 files is fast.
"""
from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat

from .._utils import tqdm
from .base import CorruptImageError, DatasetError, ImageDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _natural_key(p: Path):
    """Sort key for any mix of names: runs of digits compare as numbers, the rest as text
    (``img.png < img1.png < img2.png < img10.png``; numbers before letters)."""
    parts = [(0, int(t), "") if t.isdecimal() else (1, 0, t.lower()) for t in re.split(r"(\d+)", p.stem) if t]
    return parts, p.suffix.lower(), p.name


def _check_link(p: Path) -> None:
    if p.is_symlink() and not p.exists():
        raise DatasetError(f"{p} is a symbolic link to {os.readlink(p)}, which does not exist; "
                           "remove the link or restore its target")


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by extension, hidden files skipped), in natural
    order; a dangling symbolic link with an image extension is an error naming it."""
    out = []
    for p in Path(folder).iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        _check_link(p)
        if p.is_file():
            out.append(p)
    return sorted(out, key=_natural_key)


def read_labels_file(path: Path) -> list[str]:
    """The lines of a ``labels.txt`` (UTF-8, with or without a byte-order mark), stripped;
    trailing empty lines dropped. Every error names the file (and the line)."""
    path = Path(path)
    _check_link(path)
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; it must be a text file with one label per line")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "save the file as UTF-8") from None
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, ln in enumerate(lines):
        if not ln:
            raise DatasetError(f"{path}, line {i + 1}: empty line; one label per line, please")
    return lines


_INT = re.compile(r"[+-]?\d+")


def _encode_labels(raw: list[str]) -> tuple[np.ndarray, list[str]]:
    """Map raw labels to contiguous ids. Integer labels are numbers (``1`` and ``01`` are one
    class), ordered numerically, before names, ordered as text."""
    values = [int(s) if _INT.fullmatch(s) else s for s in raw]
    uniq = sorted(set(values), key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v))
    index = {v: i for i, v in enumerate(uniq)}
    return np.array([index[v] for v in values], dtype=np.int64), [str(v) for v in uniq]


# ----------------------------------------------------------------------------- generic

def read_labelled_folder(root: Path, name: str = "folder") -> ImageDataset:
    """``root/images/*`` and ``root/labels.txt`` (line i = label of the i-th image).

    Images are ordered by the numbers in their names (``0.png, 1.png, ..., 10.png``),
    then by the rest of the name (:func:`_natural_key`). A label is an integer or a class
    name; ``labels.txt`` is UTF-8 (a byte-order mark is ignored). This is the layout of
    ``../shared/data``.
    """
    root = Path(root)
    img_dir, label_file = root / "images", root / "labels.txt"
    _check_link(img_dir)
    if not img_dir.is_dir():
        raise DatasetError(f"{root} is not an images/ + labels.txt folder (missing {img_dir})")
    paths = list_images(img_dir)
    lines = read_labels_file(label_file)
    if len(lines) != len(paths):
        raise DatasetError(
            f"{label_file} has {len(lines)} labels but {img_dir} holds {len(paths)} images; "
            "line i of labels.txt must be the label of the i-th image (0.png, 1.png, ...)"
        )
    labels, names = _encode_labels(lines)
    return ImageDataset(name=name, labels=labels, paths=paths, class_names=names,
                        info={"layout": "images/+labels.txt", "root": str(root)})


def read_class_subfolders(root: Path, name: str = "folder") -> ImageDataset:
    """``root/<class name>/*.png``: one sub-folder per class (ImageFolder style). A class
    folder without images is skipped with a warning."""
    root = Path(root)
    for d in root.iterdir():
        _check_link(d)
    classes = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=_natural_key)
    paths, raw, empty = [], [], []
    for d in classes:
        files = list_images(d)
        if not files:
            empty.append(d)
        paths += files
        raw += [d.name] * len(files)
    if not paths:
        raise DatasetError(f"{root} has no class sub-folders holding images ({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        warnings.warn(f"{len(empty)} class folder(s) of {root} hold no images and are skipped: "
                      f"{', '.join(d.name for d in empty[:10])}{' ...' if len(empty) > 10 else ''}", stacklevel=3)
    class_names = [d.name for d in classes if d not in empty]
    index = {c: i for i, c in enumerate(class_names)}
    return ImageDataset(name=name, labels=np.array([index[r] for r in raw]), paths=paths,
                        class_names=class_names, info={"layout": "class sub-folders", "root": str(root)})


def read_folder(root: Path, name: str = "folder") -> ImageDataset:
    """Read either generic layout, whichever ``root`` holds."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    label_file = root / "labels.txt"
    if label_file.exists() or label_file.is_symlink():
        return read_labelled_folder(root, name)
    return read_class_subfolders(root, name)


# ----------------------------------------------------------------------------- any folder

def _readable_extensions() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def _check_decodes(path: Path) -> str | None:
    """``None`` if PIL decodes the file, else why not (one line). JPEGs are decoded at a
    reduced scale (``draft``), which reads every byte at a fraction of the cost."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (256, 256))
            im.load()
    except Exception as exc:  # PIL raises several types for damaged files
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return None


def read_image_tree(root: Path, name: str | None = None, strict: bool = False, exclude=(),
                    progress: bool = True) -> ImageDataset:
    """Every image under ``root``, recursively: any format PIL reads, hidden files and folders
    skipped, in natural order of the path relative to ``root``.

    Each file is decoded once; one that cannot be is skipped and listed in
    ``info["skipped"]`` as ``(relative path, reason)`` (``strict``: a
    :class:`~mvcpaper.data.CorruptImageError` instead). Labels are read when the folder
    has them: ``images/ + labels.txt`` (:func:`read_labelled_folder`), or every image in a
    sub-folder of ``root`` with at least two such sub-folders (label = the top-level
    sub-folder); otherwise the set is unlabelled (``labels`` is ``None``). Folders in
    ``exclude`` (e.g. an output folder inside ``root``) are not read.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; give the folder that holds your images")
    skip_dirs = {Path(e).resolve() for e in exclude}
    exts = _readable_extensions()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and (Path(folder) / d).resolve() not in skip_dirs]
        for f in files:
            p = Path(folder) / f
            if not f.startswith(".") and p.suffix.lower() in exts:
                found.append(p)
    if not found:
        raise DatasetError(f"{root} holds no image files (looked recursively for the formats PIL reads: "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))}, ...)")
    found.sort(key=lambda p: [_natural_key(Path(part)) for part in p.relative_to(root).parts])
    paths, skipped = [], []
    for p in tqdm(found, desc=f"reading {root.name or root}", unit="img", disable=not progress):
        problem = "dangling symbolic link" if p.is_symlink() and not p.exists() else _check_decodes(p)
        if problem is None:
            paths.append(p)
        elif strict:
            raise CorruptImageError(f"cannot read {p}: {problem} (without --strict, unreadable files are skipped "
                                    "and listed in the report)")
        else:
            skipped.append((str(p.relative_to(root)), problem))
    if not paths:
        raise DatasetError(f"none of the {len(found)} image files under {root} can be read "
                           f"(e.g. {skipped[0][0]}: {skipped[0][1]})")
    name = name or root.resolve().name or "images"
    info = {"root": str(root), "skipped": skipped, "n_files": len(found)}
    raw, layout = None, "unlabelled"  # the label name of every readable image, if the folder has labels
    if (root / "labels.txt").is_file() and (root / "images").is_dir():
        ds = read_labelled_folder(root, name)
        index = {q.resolve(): ds.class_names[lab] for q, lab in zip(ds.paths, ds.labels)}
        if all(q.resolve() in index for q in paths):
            raw, layout = [index[q.resolve()] for q in paths], "images/+labels.txt"
    else:
        tops = [q.relative_to(root).parts for q in paths]
        if all(len(t) > 1 for t in tops) and len({t[0] for t in tops}) > 1:
            raw, layout = [t[0] for t in tops], "class sub-folders"
    labels, class_names = _encode_labels(raw) if raw is not None else (None, [])
    return ImageDataset(name=name, labels=labels, paths=paths, class_names=class_names,
                        info={**info, "layout": layout})


# ----------------------------------------------------------------------------- COIL-100

_COIL_RE = re.compile(r"^obj(\d+)__(\d+)\.png$", re.IGNORECASE)


def read_coil100_official(root: Path, name: str = "coil100") -> ImageDataset:
    """The official COIL-100 layout: ``obj{1..100}__{0,5,...,355}.png`` in one folder.

    Ordered by object, then by angle, so classes are contiguous runs (as in the
    generic copy in ``../shared/data``). Label = object number - 1.
    """
    root = Path(root)
    items = []
    for p in root.iterdir():
        m = _COIL_RE.match(p.name)
        if m:
            items.append((int(m.group(1)), int(m.group(2)), p))
    if not items:
        raise DatasetError(f"{root} holds no obj<N>__<angle>.png files (the official COIL-100 layout)")
    items.sort()
    objs = sorted({o for o, _, _ in items})
    index = {o: i for i, o in enumerate(objs)}
    return ImageDataset(
        name=name, labels=np.array([index[o] for o, _, _ in items]), paths=[p for _, _, p in items],
        class_names=[f"obj{o}" for o in objs],
        info={"layout": "COIL-100 official (obj<N>__<angle>.png)", "root": str(root),
              "angles": [a for _, a, _ in items]},
    )


# ----------------------------------------------------------------------------- UMist

def read_umist_mat(path: Path, name: str = "umist") -> ImageDataset:
    """The official cropped UMist file ``umist_cropped.mat``: a ``facedat`` cell array
    of 20 people, each a 112x92xN uint8 array of grey faces."""
    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as exc:
        raise DatasetError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    if "facedat" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path} has no 'facedat' variable (keys: {keys})")
    cells = np.asarray(mat["facedat"]).ravel()
    arrays, labels = [], []
    for person, block in enumerate(cells):
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[:, :, None]
        if block.ndim != 3:
            raise DatasetError(f"{path}: facedat[{person}] has shape {block.shape}; expected H x W x N")
        for k in range(block.shape[2]):
            arrays.append(np.ascontiguousarray(block[:, :, k]).astype(np.uint8))
            labels.append(person)
    names = [f"person{p}" for p in range(len(cells))]
    if "dirnames" in mat:
        try:
            names = [str(np.asarray(d).ravel()[0]) for d in np.asarray(mat["dirnames"]).ravel()]
        except Exception:  # names are cosmetic; keep the defaults
            pass
    return ImageDataset(name=name, labels=np.array(labels), arrays=arrays, class_names=names,
                        info={"layout": "UMist official (umist_cropped.mat)", "root": str(path)})


# ----------------------------------------------------------------------------- VOC2007

def parse_voc_annotation(xml_path: Path) -> dict:
    """Parse one VOC annotation: file name and the list of objects (name, difficult, truncated)."""
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DatasetError(f"cannot parse VOC annotation {xml_path}: {exc}") from exc
    r = tree.getroot()
    objects = []
    for obj in r.findall("object"):
        objects.append({
            "name": (obj.findtext("name") or "").strip(),
            "difficult": (obj.findtext("difficult") or "0").strip() == "1",
            "truncated": (obj.findtext("truncated") or "0").strip() == "1",
        })
    return {"filename": (r.findtext("filename") or f"{xml_path.stem}.jpg").strip(), "objects": objects}


def select_voc(annotation: dict, rule: str) -> str | None:
    """Apply a selection rule to one parsed annotation; return the class or ``None``.

    ``"single_object"`` (default): exactly one annotated object, difficult ones
    included, so nothing else that VOC annotated is in the picture.
    ``"single_class"``: every annotated object has the same class (several
    instances of one class allowed).
    """
    objs = annotation["objects"]
    if rule == "single_object":
        return objs[0]["name"] if len(objs) == 1 else None
    if rule == "single_class":
        names = {o["name"] for o in objs}
        return names.pop() if len(names) == 1 else None
    raise ValueError(f"unknown VOC selection rule {rule!r}; valid rules are: single_class, single_object")


def read_voc2007(root: Path, split: str = "all", rule: str = "single_object", name: str = "voc2007") -> ImageDataset:
    """``VOCdevkit/VOC2007`` (JPEGImages + Annotations), filtered by a selection rule.

    The paper keeps 2841 single-object images in 20 classes without stating its rule;
    ours is :func:`select_voc` over the images of ``split`` (``"trainval"``, ``"test"``,
    ``"train"``, ``"val"`` from ``ImageSets/Main``, or ``"all"`` annotations present).
    """
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir() or not img_dir.is_dir():
        raise DatasetError(f"{root} is not a VOC2007 folder (needs Annotations/ and JPEGImages/)")
    if split == "all":
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    else:
        lists = root / "ImageSets" / "Main"
        names = [split]
        if split == "trainval" and not (lists / "trainval.txt").is_file():
            names = ["train", "val"]
        ids = []
        for s in names:
            f = lists / f"{s}.txt"
            if not f.is_file():
                raise DatasetError(f"split {split!r} asked for but {f} does not exist; use split='all' or a split "
                                   "whose list exists")
            ids += [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
        ids = sorted(set(ids))
    paths, raw, n_seen = [], [], 0
    for i in ids:
        n_seen += 1
        ann = parse_voc_annotation(ann_dir / f"{i}.xml")
        cls = select_voc(ann, rule)
        if cls is None:
            continue
        if cls not in VOC_CLASSES:
            raise DatasetError(f"{ann_dir / (i + '.xml')}: unknown VOC class {cls!r}")
        paths.append(img_dir / ann["filename"])
        raw.append(cls)
    if not paths:
        raise DatasetError(f"no image of {root} (split {split!r}) passes the rule {rule!r}")
    present = [c for c in VOC_CLASSES if c in set(raw)]
    index = {c: k for k, c in enumerate(present)}
    return ImageDataset(
        name=name, labels=np.array([index[c] for c in raw]), paths=paths, class_names=present,
        info={"layout": "VOCdevkit/VOC2007", "root": str(root), "split": split, "rule": rule,
              "annotations_read": n_seen, "selected": len(paths)},
    )
