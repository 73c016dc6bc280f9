import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png
from PIL import Image

from mvcpaper.data import (
    CorruptImageError,
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
    make_synthetic,
    parse_subset,
    read_voc2007,
)
from mvcpaper.data.download import (
    LOCK_NAME,
    ChecksumError,
    Resource,
    UnsafeArchiveError,
    fetch,
    file_digest,
    safe_extract,
)
from mvcpaper.presets import resolve

# ----------------------------------------------------------------------------- generic layouts

def test_labelled_folder_numeric_order(labelled_folder):
    root, labels = labelled_folder
    ds = load_dataset("folder", root=root)
    assert len(ds) == 12 and ds.n_classes == 3
    assert [p.name for p in ds.paths][:3] == ["0.png", "1.png", "2.png"]
    assert ds.paths[10].name == "10.png"
    np.testing.assert_array_equal(ds.labels, labels)
    img = ds.load_image(10)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (120, 100, 0)


def test_labels_length_mismatch_is_clear(labelled_folder):
    root, labels = labelled_folder
    (root / "labels.txt").write_text("\n".join(map(str, labels[:-1])))
    with pytest.raises(DatasetError, match=r"11 labels but .* holds 12 images"):
        load_dataset("folder", root=root)


def test_corrupt_image_names_the_file(labelled_folder):
    root, _ = labelled_folder
    (root / "images" / "5.png").write_bytes(b"not a png at all")
    ds = load_dataset("folder", root=root)  # loading is lazy ...
    with pytest.raises(CorruptImageError, match=r"5\.png"):  # ... decoding names the file
        ds.load_image(5)
    with pytest.raises(CorruptImageError, match=r"5\.png"):
        ds.verify(progress=False)


def test_class_subfolders(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        for i in range(3):
            write_png(tmp_path / name / f"{i}.jpg", (c * 100, 0, 0))
    ds = load_dataset("folder", root=tmp_path)
    assert ds.class_names == ["cat", "dog"] and list(ds.labels) == [0, 0, 0, 1, 1, 1]


def test_string_labels_are_encoded(tmp_path):
    for i in range(4):
        write_png(tmp_path / "images" / f"{i}.png", (i, 0, 0))
    (tmp_path / "labels.txt").write_text("b\na\nb\na\n")
    ds = load_dataset("folder", root=tmp_path)
    assert ds.class_names == ["a", "b"] and list(ds.labels) == [1, 0, 1, 0]


# ----------------------------------------------------------------------------- official layouts

def test_coil100_official_layout(tmp_path):
    folder = tmp_path / "coil-100"
    for obj in (1, 2, 10):
        for angle in (0, 5, 355):
            write_png(folder / f"obj{obj}__{angle}.png", (obj * 20, angle % 256, 0), size=(8, 8))
    (folder / "convertGroupppm2png.pl").write_text("# the zip ships a script too")
    ds = load_dataset("coil100", root=tmp_path)
    assert len(ds) == 9 and ds.n_classes == 3
    assert ds.class_names == ["obj1", "obj2", "obj10"]
    assert [p.name for p in ds.paths[:3]] == ["obj1__0.png", "obj1__5.png", "obj1__355.png"]
    assert list(ds.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.size_label() == "8x8"


def test_umist_mat_layout(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    cells = np.empty((1, 3), dtype=object)
    counts = [4, 2, 3]
    for p, n in enumerate(counts):
        cells[0, p] = rng.integers(0, 255, (112, 92, n), dtype=np.uint8)
    (tmp_path / "umist").mkdir()
    savemat(tmp_path / "umist" / "umist_cropped.mat", {"facedat": cells})
    ds = load_dataset("umist", root=tmp_path)
    assert len(ds) == 9 and ds.n_classes == 3
    assert list(ds.labels) == [0] * 4 + [1] * 2 + [2] * 3
    assert ds.size_label() == "112x92"
    np.testing.assert_array_equal(np.asarray(ds.load_image(4))[..., 0], cells[0, 1][:, :, 0])


def _voc_xml(path: Path, filename: str, objects):
    objs = "".join(f"<object><name>{n}</name><difficult>{int(d)}</difficult></object>" for n, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename>{objs}</annotation>")


def _voc_fixture(root: Path):
    voc = root / "voc2007" / "VOCdevkit" / "VOC2007"
    spec = {
        "000001": [("dog", 0)],                    # single object -> kept
        "000002": [("cat", 0), ("dog", 0)],        # two classes -> dropped
        "000003": [("car", 0), ("car", 1)],        # two cars (one difficult): single_class only
        "000004": [("person", 1)],                 # one difficult object -> kept
        "000005": [("cat", 0)],                    # kept
    }
    for i, objs in spec.items():
        _voc_xml(voc / "Annotations" / f"{i}.xml", f"{i}.jpg", objs)
        write_png(voc / "JPEGImages" / f"{i}.jpg", (10, 20, 30), size=(30 + int(i), 20))
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000004\n000005\n")
    return voc


def test_voc2007_selection_rule(tmp_path):
    voc = _voc_fixture(tmp_path)
    ds = load_dataset("voc2007", root=tmp_path)
    assert [p.stem for p in ds.paths] == ["000001", "000004", "000005"]
    assert ds.class_names == ["cat", "dog", "person"]  # VOC's class order, present ones only
    assert [ds.class_names[c] for c in ds.labels] == ["dog", "person", "cat"]
    assert ds.info["selected"] == 3 and ds.info["annotations_read"] == 5
    assert ds.size_label() == "variable"
    single_class = read_voc2007(voc, rule="single_class")
    assert [p.stem for p in single_class.paths] == ["000001", "000003", "000004", "000005"]
    test_only = load_dataset("voc2007", root=tmp_path, split="test")
    assert [p.stem for p in test_only.paths] == ["000004", "000005"]
    with pytest.raises(ValueError, match="single_class, single_object"):
        read_voc2007(voc, rule="biggest")
    with pytest.raises(DatasetError, match="val.txt"):
        read_voc2007(voc, split="val")


# ----------------------------------------------------------------------------- registry and errors

def test_unknown_dataset_lists_valid_names():
    with pytest.raises(KeyError) as err:
        load_dataset("cifar10")
    msg = str(err.value)
    assert "cifar10" in msg and all(n in msg for n in ("coil100", "umist", "voc2007", "folder", "synthetic"))


def test_missing_data_root_is_clear():
    with pytest.raises(DatasetNotFoundError, match="MVCPAPER_DATA"):
        load_dataset("umist")


def test_data_root_that_does_not_exist(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("umist", root=tmp_path / "nope")


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("MVCPAPER_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("coil100")
    msg = str(err.value)
    assert str(tmp_path / "coil-100") in msg and "mvcpaper download coil100" in msg


def test_max_per_class_subsets_evenly(labelled_folder):
    root, _ = labelled_folder
    ds = load_dataset("folder", root=root, max_per_class=2)
    assert len(ds) == 6 and ds.n_classes == 3
    assert [p.name for p in ds.paths[:2]] == ["0.png", "3.png"]


def test_max_classes_keeps_the_first_classes(labelled_folder):
    root, _ = labelled_folder
    ds = load_dataset("folder", root=root, max_classes=2, max_per_class=3)
    assert len(ds) == 6 and ds.n_classes == 2 and ds.info["max_classes"] == 2
    assert [p.name for p in ds.paths] == ["0.png", "2.png", "3.png", "4.png", "6.png", "7.png"]


@pytest.mark.parametrize("option", ["max_per_class", "max_classes"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "3"])
def test_subset_options_must_be_positive_integers(labelled_folder, option, value):
    with pytest.raises(ValueError, match=f"{option} must be a positive integer"):
        load_dataset("folder", root=labelled_folder[0], **{option: value})


def test_run_config_load_adds_options_to_the_presets(tmp_path):
    cfg = resolve("smoke", cache_dir=tmp_path)  # the preset's synthetic set: 6 objects x 10 poses
    assert len(cfg.load("synthetic")) == 60
    ds = cfg.load("synthetic", max_per_class=3, n_objects=4)
    assert len(ds) == 12 and ds.n_classes == 4


@pytest.mark.parametrize("spec, expected", [("umist", ("umist", {})),
                                            ("coil100:4", ("coil100", {"max_per_class": 4})),
                                            ("coil100:72:10", ("coil100", {"max_per_class": 72, "max_classes": 10}))])
def test_parse_subset(spec, expected):
    assert parse_subset(spec) == expected


@pytest.mark.parametrize("spec", ["coil100:", "coil100:x", "coil100:0", "coil100:1:2:3"])
def test_parse_subset_rejects_bad_counts_in_one_line(spec):
    with pytest.raises(ValueError, match="NAME:PER_CLASS:CLASSES with positive counts"):
        parse_subset(spec)


def test_synthetic_is_seeded():
    a, b, c = make_synthetic(3, 4, 32, seed=1), make_synthetic(3, 4, 32, seed=1), make_synthetic(3, 4, 32, seed=2)
    assert len(a) == 12 and a.n_classes == 3 and a.size_label() == "32x32"
    assert all(np.array_equal(x, y) for x, y in zip(a.arrays, b.arrays))
    assert not all(np.array_equal(x, y) for x, y in zip(a.arrays, c.arrays))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    # objects differ far more than poses of one object
    flat = np.stack([x.astype(float).ravel() for x in a.arrays])
    assert np.abs(flat[0] - flat[4]).mean() > 5 and a.arrays[0].max() > 30 and a.arrays[0][0, 0].max() < 20


# ----------------------------------------------------------------------------- downloads (local files only)

def test_fetch_verifies_sha256_and_md5(tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"mvcpaper" * 1000)
    sha, md5 = file_digest(src), file_digest(src, "md5")
    got = fetch(Resource(src.as_uri(), "a.bin", f"sha256:{sha}"), tmp_path / "dl", progress=False)
    assert got.read_bytes() == src.read_bytes()
    got = fetch(Resource(src.as_uri(), "b.bin", f"md5:{md5}"), tmp_path / "dl", progress=False)
    assert got.is_file()


def test_fetch_bad_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"abc")
    with pytest.raises(ChecksumError):
        fetch(Resource(src.as_uri(), "c.bin", "sha256:" + "0" * 64), tmp_path / "dl", progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_first_download_is_locked_and_later_mismatches_refused(tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"abc")
    lock = tmp_path / "dl" / LOCK_NAME
    res = Resource(src.as_uri(), "d.bin", None)
    with pytest.warns(UserWarning, match=file_digest(src)):  # no published checksum: trusted on first use
        got = fetch(res, tmp_path / "dl", progress=False, lock=lock)
    assert json.loads(lock.read_text()) == {"d.bin": file_digest(src)}
    assert fetch(res, tmp_path / "dl", progress=False, lock=lock) == got  # verified against the lock
    got.write_bytes(b"abd")  # the copy on disk changed
    with pytest.raises(ChecksumError, match=r"d\.bin has sha256 .* recorded .*delete .*d\.bin and run"):
        fetch(res, tmp_path / "dl", progress=False, lock=lock, refetch="run `mvcpaper download x` again")
    got.unlink()
    src.write_bytes(b"the publisher changed it")  # a new download that differs from the first
    with pytest.raises(ChecksumError, match="recorded"):
        fetch(res, tmp_path / "dl", progress=False, lock=lock)
    assert not got.exists()


def test_failed_download_is_one_clear_error_and_leaves_no_folder(tmp_path, monkeypatch):
    import dataclasses

    import mvcpaper.data as data
    from mvcpaper.data.download import DownloadError

    res = Resource((tmp_path / "nowhere" / "umist_cropped.mat").as_uri(), "umist_cropped.mat", None)
    monkeypatch.setitem(data.DATASETS, "umist", dataclasses.replace(data.DATASETS["umist"], resources=(res,)))
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DownloadError, match="cannot download file:.*umist_cropped.mat"):
        data.download_dataset("umist", root, progress=False)
    assert list(root.iterdir()) == []
    (root / "umist").mkdir()  # an empty folder (another tool's failed download) is not a data set
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_dataset("umist", root=root)


def test_safe_extract_zip_and_tar(tmp_path):
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("coil-100/obj1__0.png", b"x")
    out = safe_extract(z, tmp_path / "data")
    assert (out / "coil-100" / "obj1__0.png").read_bytes() == b"x"
    t = tmp_path / "ok.tar"
    with tarfile.open(t, "w") as tf:
        info = tarfile.TarInfo("VOCdevkit/VOC2007/a.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    safe_extract(t, tmp_path / "data")
    assert (tmp_path / "data" / "VOCdevkit" / "VOC2007" / "a.txt").read_text() == "hi"


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil-abs.txt", "a/../../evil.txt"])
def test_safe_extract_refuses_escaping_members(tmp_path, member):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(member, b"evil")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(z, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "target").iterdir()) == []  # nothing half-extracted
    t = tmp_path / "bad.tar"
    with tarfile.open(t, "w") as tf:
        info = tarfile.TarInfo(member)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(UnsafeArchiveError):
        safe_extract(t, tmp_path / "target2")


def test_download_then_load_official_coil_zip(tmp_path, monkeypatch):
    """The whole download path (fetch, verify, extract, read) on a local 'server' file."""
    import dataclasses

    import mvcpaper.data as data

    buf = io.BytesIO()
    from PIL import Image

    with zipfile.ZipFile(buf, "w") as zf:
        for obj in (1, 2):
            for angle in (0, 5, 10):
                png = io.BytesIO()
                Image.new("RGB", (8, 8), (obj * 50, angle, 0)).save(png, "PNG")
                zf.writestr(f"coil-100/obj{obj}__{angle}.png", png.getvalue())
    server = tmp_path / "server" / "coil-100.zip"
    server.parent.mkdir()
    server.write_bytes(buf.getvalue())
    res = Resource(server.as_uri(), "coil-100.zip", f"sha256:{file_digest(server)}")
    monkeypatch.setitem(data.DATASETS, "coil100", dataclasses.replace(data.DATASETS["coil100"], resources=(res,)))
    root = tmp_path / "data"
    root.mkdir()
    ds = load_dataset("coil100", root=root, download=True)
    assert len(ds) == 6 and ds.n_classes == 2 and ds.info["layout"].startswith("COIL-100 official")
    assert (root / "coil-100" / ".downloads" / "coil-100.zip").is_file()


# ----------------------------------------------------------------------------- user folders, as found

@pytest.mark.parametrize("names", [["img.png", "img1.png", "img10.png", "img2.png"],
                                   ["cat.jpg", "cat2.jpg", "10.png", "a1b.png", "a.png", "B.png", "1.png"]])
def test_any_mix_of_file_names_sorts(tmp_path, names):
    for layout in ("flat", "subfolders"):
        root = tmp_path / layout
        folder = root / ("images" if layout == "flat" else "c")
        for n in names:
            write_png(folder / n, (1, 2, 3))
        if layout == "flat":
            (root / "labels.txt").write_text("0\n" * len(names))
        ds = load_dataset("folder", root=root)
        assert len(ds) == len(names)
    order = [p.name for p in ds.paths]
    if "img.png" in names:
        assert order == ["img.png", "img1.png", "img2.png", "img10.png"]
    else:
        assert order.index("1.png") < order.index("10.png") and order.index("cat.jpg") < order.index("cat2.jpg")


def test_16_bit_and_float_images_keep_their_contrast(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    (tmp_path / "c0").mkdir()
    (tmp_path / "c1").mkdir()
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "c0" / "a.png")
    Image.fromarray((ramp * 7.5 - 2.0).astype(np.float32)).save(tmp_path / "c1" / "b.tif")
    ds = load_dataset("folder", root=tmp_path)
    for i in range(2):
        grey = np.asarray(ds.load_image(i))[..., 0].astype(int)
        assert grey.min() <= 1 and grey.max() >= 254  # the whole range, not clipped to white or black
        assert np.abs(grey - np.round(ramp * 255)).max() <= 1


def test_labels_file_encodings_and_integer_labels(tmp_path):
    for i in range(4):
        write_png(tmp_path / "images" / f"{i}.png", (i, 0, 0))
    (tmp_path / "labels.txt").write_bytes("\ufeff1\n01\n2\n2\n".encode("utf-8"))  # BOM, "1" and "01"
    ds = load_dataset("folder", root=tmp_path)
    assert ds.n_classes == 2 and list(ds.labels) == [0, 0, 1, 1] and ds.class_names == ["1", "2"]
    (tmp_path / "labels.txt").write_bytes("chat\ncaf\xe9\nchat\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"labels\.txt, line 2: not UTF-8"):
        load_dataset("folder", root=tmp_path)
    (tmp_path / "labels.txt").write_text("1\n\n2\n2\n")
    with pytest.raises(DatasetError, match=r"labels\.txt, line 2: empty line"):
        load_dataset("folder", root=tmp_path)


def test_empty_class_folder_warns(tmp_path):
    write_png(tmp_path / "cat" / "0.png", (1, 1, 1))
    (tmp_path / "dog").mkdir()
    with pytest.warns(UserWarning, match="dog"):
        ds = load_dataset("folder", root=tmp_path)
    assert ds.class_names == ["cat"]


def test_labels_folder_and_dangling_links_are_named(tmp_path):
    write_png(tmp_path / "a" / "images" / "0.png", (1, 1, 1))
    (tmp_path / "a" / "labels.txt").mkdir()
    with pytest.raises(DatasetError, match=r"labels\.txt is a folder"):
        load_dataset("folder", root=tmp_path / "a")
    write_png(tmp_path / "b" / "images" / "0.png", (1, 1, 1))
    (tmp_path / "b" / "labels.txt").symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(DatasetError, match=r"labels\.txt is a symbolic link .*nowhere\.txt"):
        load_dataset("folder", root=tmp_path / "b")
    write_png(tmp_path / "c" / "cat" / "0.png", (1, 1, 1))
    (tmp_path / "c" / "cat" / "1.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DatasetError, match=r"1\.png is a symbolic link .*gone\.png"):
        load_dataset("folder", root=tmp_path / "c")
