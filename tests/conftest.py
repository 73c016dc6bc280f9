import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Every test gets empty caches, so no test reads a developer's real cache."""
    base = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("MVCPAPER_CACHE", str(base / "mvcpaper"))
    monkeypatch.setenv("TORCH_HOME", str(base / "torch"))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(base / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MVCPAPER_DATA", raising=False)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(base / "hf" / "hub"), raising=False)
    yield


@pytest.fixture
def synthetic():
    from mvcpaper.data import load_dataset

    return load_dataset("synthetic", n_objects=4, n_poses=6, size=32, seed=0)


def write_png(path: Path, color, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[...] = color
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def labelled_folder(tmp_path):
    """images/{0..11}.png + labels.txt with 3 classes (note 10.png, 11.png: numeric order)."""
    root = tmp_path / "set"
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    for i, c in enumerate(labels):
        write_png(root / "images" / f"{i}.png", (60 * c, 10 * i, 0))
    (root / "labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    return root, labels


def shared_data_or_skip(name: str) -> Path:
    path = Path(os.environ.get("MVCPAPER_TEST_DATA", SHARED_DATA))
    if not (path / name).is_dir():
        pytest.skip(f"real data set {name!r} not found under {path} (set MVCPAPER_TEST_DATA to the folder "
                    "holding coil-100/ and umist/, e.g. ../shared/data)")
    return path
