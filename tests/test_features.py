import numpy as np
import pytest
import torch

from mvcpaper.data import CorruptImageError, load_dataset
from mvcpaper.features import (
    BACKBONES,
    WeightsNotFoundError,
    build_model,
    extract_features,
    feature_cache_path,
    get_backbone,
    image_transform,
    resolve_weights,
)
from mvcpaper.features import extract as extract_mod


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError) as err:
        get_backbone("alexnet")
    assert "alexnet" in str(err.value) and "vgg16" in str(err.value) and "efficientnet_lite0" in str(err.value)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_registry_agrees_with_timm_pretrained_config(name):
    import timm

    spec = get_backbone(name)
    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    assert cfg.input_size[-1] == spec.input_size
    assert tuple(cfg.mean) == spec.mean and tuple(cfg.std) == spec.std
    assert cfg.interpolation == spec.interpolation


# ----------------------------------------------------------------------------- weight resolution

def test_missing_paper_weights_error_names_files_and_fix():
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("vgg16")
    msg = str(err.value)
    assert "vgg16.pth" in msg and "models--timm--vgg16.tv_in1k" in msg and "vgg16-397923af.pth" in msg
    assert "download=True" in msg and "efficientnet_lite" in msg


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights("resnet50", tmp_path / "nope.pth")


def test_weights_files_that_are_not_the_backbones_say_so(tmp_path):
    from mvcpaper.features import WeightsFileError

    _, resnet = _random_resnet_state(tmp_path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 40)
    empty = tmp_path / "empty.safetensors"
    empty.touch()
    cases = [(junk, WeightsFileError, "cannot read .*junk.pth"),
             (empty, WeightsFileError, "empty.safetensors is empty"),
             (tmp_path, WeightsNotFoundError, "is a folder"),
             (resnet, WeightsFileError, "does not hold weights of efficientnet_lite0.*another architecture")]
    for path, err, match in cases:
        with pytest.raises(err, match=match) as info:
            build_model("efficientnet_lite0", weights=path)
        assert "\n" not in str(info.value)
    lite1 = resolve_weights("efficientnet_lite1").path  # the package's format, another variant
    with pytest.raises(WeightsFileError, match="efficientnet_lite0"):
        build_model("efficientnet_lite0", weights=lite1)


def test_shipped_weights_are_found():
    src = resolve_weights("efficientnet_lite0")
    assert src.kind == "shipped" and src.path.is_file() and "lite0" in src.weights_id


def _random_resnet_state(tmp_path, name="w.pth"):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False).eval()
    path = tmp_path / name
    torch.save(model.state_dict(), path)
    return model, path


def test_weights_from_user_dir_torch_cache_and_hf_cache(tmp_path, monkeypatch):
    import os

    ref, path = _random_resnet_state(tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = ref(x)
    # 1. the torch hub cache, under torchvision's file name
    hub = tmp_path / "torchhome" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    os.link(path, hub / "resnet50-0676ba61.pth")
    torch.hub.set_dir(str(tmp_path / "torchhome" / "hub"))
    try:
        src = resolve_weights("resnet50")
        assert src.kind == "torch-cache"
        model, _ = build_model("resnet50")
        with torch.no_grad():
            torch.testing.assert_close(model(x), want)
        # 2. a file in <cache root>/weights wins over the torch cache
        user = tmp_path / "mv" / "weights"
        user.mkdir(parents=True)
        os.link(path, user / "resnet50.pth")
        monkeypatch.setenv("MVCPAPER_CACHE", str(tmp_path / "mv"))
        assert resolve_weights("resnet50").kind == "file"
    finally:
        torch.hub.set_dir(os.path.join(os.environ["TORCH_HOME"], "hub"))


def test_weights_from_hf_cache_layout(tmp_path):
    import huggingface_hub.constants as hc
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("resnet50", pretrained=False)
    snap = __import__("pathlib").Path(hc.HF_HUB_CACHE) / "models--timm--resnet50.tv_in1k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("abc123")
    (snap / "snapshots" / "abc123").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(snap / "snapshots" / "abc123" / "model.safetensors"))
    src = resolve_weights("resnet50")
    assert src.kind == "hf-cache" and src.path.name == "model.safetensors"
    built, _ = build_model("resnet50")
    torch.testing.assert_close(built.fc.weight, model.fc.weight)


def test_torchvision_format_vgg_loads_through_timm_filter(tmp_path):
    """A VGG16 checkpoint in torchvision's layout (as in the torch hub cache) loads into timm."""
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.vgg16(weights=None).eval()
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(tv.state_dict(), path)
    model, src = build_model("vgg16", path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- EfficientNet-Lite mapping

@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_mapping_matches_reference_model(variant):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    src = resolve_weights(f"efficientnet_lite{variant}")
    ref = ref_pkg.EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=str(src.path)).eval()
    model, _ = build_model(f"efficientnet_lite{variant}")
    size = get_backbone(f"efficientnet_lite{variant}").input_size
    torch.manual_seed(variant)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (ref(x) - model(x)).abs().max().item()
    assert diff < 1e-4


def test_efficientnet_lite0_recognises_a_cat():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    spec = get_backbone("efficientnet_lite0")
    img = Image.fromarray(data.chelsea())
    model, _ = build_model(spec)
    with torch.no_grad():
        probs = model(image_transform(spec)(img)[None]).softmax(-1)[0]
    top = int(probs.argmax())
    assert top in (281, 282, 285), f"top-1 class {top} is not a cat (tabby 281, tiger cat 282, Egyptian cat 285)"
    assert probs[[281, 282, 283, 284, 285]].sum() > 0.5


# ----------------------------------------------------------------------------- extraction and cache

def test_extract_shape_determinism_and_cache_reuse(synthetic, monkeypatch, tmp_path):
    kw = dict(input_size=64, progress=False, cache_dir=tmp_path)
    a = extract_features(synthetic, "efficientnet_lite0", **kw)
    assert a.shape == (len(synthetic), 1280) and a.dtype == np.float32 and np.isfinite(a).all()
    files = sorted(p.name for p in (tmp_path / "features" / "synthetic").iterdir())
    assert len(files) == 2 and files[0].endswith(".npy") and files[1].endswith(".npy.json")
    b = extract_features(synthetic, "efficientnet_lite0", use_cache=False, **kw)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def boom(*_, **__):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(extract_mod, "build_model", boom)
    c = extract_features(synthetic, "efficientnet_lite0", **kw)
    np.testing.assert_array_equal(a, c)


def test_cache_key_changes_with_what_changes_the_result(synthetic, tmp_path):
    base = feature_cache_path(synthetic, "efficientnet_lite0", None, "w", 64, "fp32", tmp_path)
    assert base != feature_cache_path(synthetic, "efficientnet_lite0", "blocks.3", "w", 64, "fp32", tmp_path)
    assert base != feature_cache_path(synthetic, "efficientnet_lite0", None, "w2", 64, "fp32", tmp_path)
    assert base != feature_cache_path(synthetic, "efficientnet_lite0", None, "w", 96, "fp32", tmp_path)
    assert base != feature_cache_path(synthetic, "efficientnet_lite1", None, "w", 64, "fp32", tmp_path)
    other = load_dataset("synthetic", n_objects=4, n_poses=6, size=32, seed=1)
    assert base != feature_cache_path(other, "efficientnet_lite0", None, "w", 64, "fp32", tmp_path)


def test_other_layer_and_bad_layer(synthetic):
    f = extract_features(synthetic, "efficientnet_lite0", "blocks.3", input_size=64, progress=False, use_cache=False)
    assert f.shape == (len(synthetic), 80)
    logits = extract_features(synthetic, "efficientnet_lite0", "logits", input_size=64, progress=False,
                              use_cache=False)
    assert logits.shape == (len(synthetic), 1000)
    with pytest.raises(KeyError, match="unknown layer 'blocks.99'"):
        extract_features(synthetic, "efficientnet_lite0", "blocks.99", input_size=64, progress=False)


def test_random_init_paper_backbone(synthetic):
    f = extract_features(synthetic, "resnet50", weights="random", input_size=64, progress=False)
    assert f.shape == (len(synthetic), 2048)


def test_interrupted_extraction_leaves_no_file(labelled_folder, tmp_path):
    root, _ = labelled_folder
    (root / "images" / "11.png").write_bytes(b"\x89PNG broken")
    ds = load_dataset("folder", root=root)
    with pytest.raises(CorruptImageError, match="11.png"):
        extract_features(ds, "efficientnet_lite0", input_size=32, batch_size=4, num_workers=0,
                         progress=False, cache_dir=tmp_path)
    leftovers = list((tmp_path / "features").rglob("*")) if (tmp_path / "features").exists() else []
    assert [p for p in leftovers if p.is_file()] == []


def test_corrupt_image_error_survives_dataloader_workers(labelled_folder, tmp_path):
    root, _ = labelled_folder
    (root / "images" / "3.png").write_bytes(b"garbage")
    ds = load_dataset("folder", root=root)
    with pytest.raises(CorruptImageError, match="3.png"):
        extract_features(ds, "efficientnet_lite0", input_size=32, batch_size=4, num_workers=1,
                         progress=False, cache_dir=tmp_path)


def test_compiled_path_pads_last_batch(synthetic, monkeypatch):
    """The compiled extractor sees one static batch shape; results equal eager mode."""
    shapes = []

    def fake_compile(module, dynamic=None):
        def run(x):
            shapes.append(tuple(x.shape))
            return module(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    eager = extract_features(synthetic, "efficientnet_lite0", input_size=64, batch_size=7, compile=False,
                             progress=False, use_cache=False, engine="torch")
    comp = extract_features(synthetic, "efficientnet_lite0", input_size=64, batch_size=7, compile=True,
                            progress=False, use_cache=False, engine="torch")
    assert len(set(shapes)) == 1 and shapes[0][0] == 7 and len(shapes) == -(-len(synthetic) // 7)
    np.testing.assert_allclose(eager, comp, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer,pool", [("pool", True), ("blocks.5", False)])
def test_onnxruntime_engine_matches_torch(synthetic, tmp_path, monkeypatch, layer, pool):
    """ONNX Runtime gives torch's features (pooled and whole maps); the graph is exported once."""
    pytest.importorskip("onnxruntime")
    kw = dict(layer=layer, pool=pool, input_size=64, batch_size=5, progress=False, use_cache=False,
              cache_dir=tmp_path)
    ref = extract_features(synthetic, "efficientnet_lite0", engine="torch", compile=False, **kw)
    ort = extract_features(synthetic, "efficientnet_lite0", engine="onnxruntime", **kw)
    assert ort.shape == ref.shape and ort.dtype == np.float32
    np.testing.assert_allclose(ort, ref, rtol=1e-4, atol=1e-4)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    calls = []
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: calls.append(a))
    again = extract_features(synthetic, "efficientnet_lite0", engine="onnxruntime", **kw)
    assert calls == [] and np.array_equal(again, ort)  # read from the ONNX cache, not exported again


def test_engine_errors_and_export_fallback(synthetic, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="engine"):
        extract_features(synthetic, "efficientnet_lite0", engine="tensorrt", progress=False, use_cache=False)
    with pytest.raises(ValueError, match="onnxruntime.*CPU"):
        extract_features(synthetic, "efficientnet_lite0", engine="onnxruntime", precision="bf16",
                         progress=False, use_cache=False)

    def broken(*a, **k):
        raise RuntimeError("unsupported operator")

    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.warns(UserWarning, match="ONNX export.*failed"):
        X = extract_features(synthetic, "efficientnet_lite0", input_size=64, progress=False, use_cache=False,
                             cache_dir=tmp_path, engine="onnxruntime")
    assert X.shape == (len(synthetic), 1280) and np.isfinite(X).all()


def test_bad_precision_and_device():
    from mvcpaper._utils import resolve_device
    from mvcpaper.errors import MvcpaperError

    ds = load_dataset("synthetic", n_objects=2, n_poses=2, size=32)
    with pytest.raises(ValueError, match="precision"):
        extract_features(ds, "efficientnet_lite0", precision="int4", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(MvcpaperError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_extraction_matches_cpu(synthetic):
    cpu = extract_features(synthetic, "efficientnet_lite0", input_size=64, device="cpu", progress=False,
                           use_cache=False)
    gpu = extract_features(synthetic, "efficientnet_lite0", input_size=64, device="cuda", precision="fp32",
                           progress=False, use_cache=False)
    np.testing.assert_allclose(cpu, gpu, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- chunks and engines beyond one process

_KILLED_EXTRACTION = """
import sys, time
from mvcpaper.data import load_dataset
from mvcpaper.features import extract_features
ds = load_dataset("synthetic", n_objects=10, n_poses=20, size=32, seed=0)
slow = ds.load_image
ds.load_image = lambda i: (time.sleep(0.02), slow(i))[1]
extract_features(ds, "efficientnet_lite0", input_size=32, batch_size=8, num_workers=0, chunk_rows=16,
                 progress=False, cache_dir=sys.argv[1])
"""


@pytest.mark.slow
def test_killed_extraction_resumes_from_its_last_complete_chunk(tmp_path):
    """SIGKILL at 60% of the chunks; the rerun extracts only the rest and equals an uninterrupted run."""
    import subprocess
    import sys
    import time

    ds = load_dataset("synthetic", n_objects=10, n_poses=20, size=32, seed=0)
    n_chunks = -(-len(ds) // 16)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXTRACTION, str(tmp_path)])
    done = []
    deadline = time.time() + 120
    while len(done) < 0.6 * n_chunks and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        done = list((tmp_path / "features").rglob("*.chunks/*.npy.json"))
    proc.kill()
    proc.wait()
    done = list((tmp_path / "features").rglob("*.chunks/*.npy.json"))
    assert 0.6 * n_chunks <= len(done) < n_chunks, "the extraction was not caught mid-way"
    finished = {i for p in done for a, b in [p.name.split(".")[0].removeprefix("rows_").split("-")]
                for i in range(int(a), int(b))}

    loaded, load = [], ds.load_image
    ds.load_image = lambda i: (loaded.append(i), load(i))[1]
    resumed = extract_features(ds, "efficientnet_lite0", input_size=32, batch_size=8, num_workers=0,
                               chunk_rows=16, progress=False, cache_dir=tmp_path)
    assert sorted(loaded) == sorted(set(range(len(ds))) - finished)
    assert not list((tmp_path / "features").rglob("*.chunks"))
    whole = extract_features(ds, "efficientnet_lite0", input_size=32, batch_size=8, num_workers=0,
                             progress=False, use_cache=False)
    np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-5)


def test_chunks_are_cached_in_any_order_and_reused(synthetic, tmp_path):
    chunks = extract_mod._Chunks(tmp_path / "f.npy", 10, 4)
    out = np.arange(20, dtype=np.float32).reshape(10, 2)
    chunks.record(np.array([9, 8, 0, 1]), out, {})  # completes the last chunk (rows 8-9) only
    chunks.record(np.array([4, 5, 6, 7]), out, {})
    again = extract_mod._Chunks(tmp_path / "f.npy", 10, 4)
    got = again.load()
    np.testing.assert_array_equal(again.missing_rows(), [0, 1, 2, 3])
    np.testing.assert_array_equal(got[4:], out[4:])
    with pytest.raises(ValueError, match="chunk_rows"):
        extract_mod._Chunks(tmp_path / "f.npy", 10, 0)


@pytest.mark.slow
def test_ray_engine_on_two_local_workers_equals_the_local_engine(synthetic, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        distributed = extract_features(synthetic, "efficientnet_lite0", input_size=64, engine="ray", batch_size=3,
                                       chunk_rows=5, progress=False, cache_dir=tmp_path)
        assert ray.cluster_resources()["CPU"] == 2
    finally:
        ray.shutdown()
    local = extract_features(synthetic, "efficientnet_lite0", input_size=64, engine="torch", progress=False,
                             use_cache=False)
    np.testing.assert_allclose(distributed, local, rtol=1e-4, atol=1e-4)
    assert not list((tmp_path / "features").rglob("*.chunks"))
