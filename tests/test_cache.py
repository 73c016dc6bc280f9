"""The caches: validated reads (damaged entries are deleted and recomputed), safe paths,
content-keyed features, code-stamped fits."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from mvcpaper import cache as cache_mod
from mvcpaper.cache import CacheWarning, entry_path, load_array, load_arrays, save_array, save_arrays
from mvcpaper.data import load_dataset
from mvcpaper.features import extract_features, feature_cache_path, resolve_weights

KW = dict(input_size=64, progress=False)


def _rewrite_sidecar(path, **changes):
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    meta.update(changes)
    side.write_text(json.dumps(meta))


def test_array_round_trip_and_every_kind_of_damage(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    p = save_array(tmp_path / "a.npy", a, {"what": "test"})
    np.testing.assert_array_equal(load_array(p, rows=4), a)
    assert load_array(tmp_path / "absent.npy") is None

    p.write_bytes(p.read_bytes()[:-7])  # truncated
    with pytest.warns(CacheWarning, match="checksum"):
        assert load_array(p) is None
    assert not p.exists() and not p.with_name("a.npy.json").exists()  # deleted, not left to fail again

    p = save_array(tmp_path / "a.npy", a)
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF  # one flipped byte in the data
    p.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="checksum"):
        assert load_array(p) is None

    for bad, match in ((np.zeros((5, 3), np.float32), "sidecar says"), (np.full((4, 3), np.nan, np.float32), "NaN")):
        p = save_array(tmp_path / "a.npy", a)
        np.save(p, bad)  # another array in its place, with the checksum forged to match
        _rewrite_sidecar(p, sha256=cache_mod.file_sha256(p))
        with pytest.warns(CacheWarning, match=match):
            assert load_array(p) is None

    p = save_array(tmp_path / "a.npy", a)
    with pytest.warns(CacheWarning, match="rows"):
        assert load_array(p, rows=5) is None
    p = save_array(tmp_path / "a.npy", a)
    p.with_name("a.npy.json").unlink()  # interrupted before the sidecar, or an older version's file
    with pytest.warns(CacheWarning, match="no sidecar"):
        assert load_array(p) is None
    assert not p.exists()


def test_arrays_entry_checks_every_array(tmp_path):
    p = save_arrays(tmp_path / "f.npz", {"labels": np.arange(5), "emb": np.ones((5, 2), np.float32)}, {"s": 1.5})
    arrays, meta = load_arrays(p)
    assert meta["s"] == 1.5 and set(arrays) == {"labels", "emb"}
    np.savez(p, labels=np.arange(5))  # an array missing
    _rewrite_sidecar(p, sha256=cache_mod.file_sha256(p))
    with pytest.warns(CacheWarning, match="names"):
        assert load_arrays(p) is None


def test_names_never_make_a_path_outside_the_cache_root(tmp_path, labelled_folder):
    root = tmp_path / "cache"
    for name in ("../../x", "..", "/etc/passwd", "a/../../b", "~user", "name with spaces", ""):
        p = entry_path("features", name, f"{name}.npy", cache_dir=root)
        assert p.resolve().is_relative_to(root.resolve()), p
    folder, _ = labelled_folder
    ds = load_dataset("folder", root=folder, dataset_name="../../escape")
    extract_features(ds, "efficientnet_lite0", cache_dir=root, **KW)
    written = [p for p in tmp_path.rglob("*.npy")]
    assert written and all(p.resolve().is_relative_to(root.resolve()) for p in written)
    assert not (tmp_path.parent / "escape").exists()


def test_corrupt_feature_file_is_recomputed(synthetic, tmp_path):
    a = extract_features(synthetic, "efficientnet_lite0", cache_dir=tmp_path, **KW)
    path = next((tmp_path / "features").rglob("*.npy"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CacheWarning, match=str(path.name)):
        b = extract_features(synthetic, "efficientnet_lite0", cache_dir=tmp_path, **KW)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(load_array(path), b)  # rewritten, valid again


def test_corrupt_onnx_graph_is_rebuilt_not_abandoned(synthetic, tmp_path, recwarn):
    pytest.importorskip("onnxruntime")
    a = extract_features(synthetic, "efficientnet_lite0", cache_dir=tmp_path, engine="onnxruntime", **KW)
    onnx = next((tmp_path / "onnx").glob("*.onnx"))
    raw = bytearray(onnx.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped weight byte: a graph that would load and compute wrong features
    onnx.write_bytes(bytes(raw))
    b = extract_features(synthetic, "efficientnet_lite0", cache_dir=tmp_path, engine="onnxruntime",
                         use_cache=False, **KW)
    np.testing.assert_allclose(a, b, atol=1e-5)
    messages = [str(w.message) for w in recwarn]
    assert any("checksum" in m and onnx.name in m for m in messages)
    assert not any("extracting with torch" in m for m in messages)  # rebuilt, no fallback
    assert cache_mod.read_entry(onnx, lambda p: p.read_bytes()) is not None


def _bmp(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)  # BMP: same bytes for any pixels


def test_features_follow_the_images_content_not_their_names(tmp_path):
    cache = tmp_path / "cache"
    for folder, base in (("A", 40), ("B", 200)):  # two folders of the same name, other pixels
        for i, c in enumerate((0, 0, 1, 1)):
            _bmp(tmp_path / folder / "myset" / f"c{c}" / f"{i}.bmp", base + 10 * i)
    fa = extract_features(load_dataset("folder", root=tmp_path / "A" / "myset"), "efficientnet_lite0",
                          cache_dir=cache, **KW)
    fb = extract_features(load_dataset("folder", root=tmp_path / "B" / "myset"), "efficientnet_lite0",
                          cache_dir=cache, **KW)
    assert not np.allclose(fa, fb)

    img = tmp_path / "A" / "myset" / "c0" / "0.bmp"
    size = img.stat().st_size
    _bmp(img, 250)  # other pixels, the same byte size
    assert img.stat().st_size == size
    fa2 = extract_features(load_dataset("folder", root=tmp_path / "A" / "myset"), "efficientnet_lite0",
                           cache_dir=cache, **KW)
    assert not np.allclose(fa2[0], fa[0]) and np.allclose(fa2[1:], fa[1:], atol=1e-5)

    copy = tmp_path / "C" / "myset"  # the same files elsewhere: the cache is reused
    for p in (tmp_path / "A" / "myset").rglob("*.bmp"):
        target = copy / p.relative_to(tmp_path / "A" / "myset")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    ds_copy = load_dataset("folder", root=copy)
    wid = resolve_weights("efficientnet_lite0").weights_id
    assert feature_cache_path(ds_copy, "efficientnet_lite0", weights_id=wid, input_size=64, cache_dir=cache).is_file()


def test_fit_cache_is_stamped_with_the_methods_code(tmp_path, monkeypatch):
    from mvcpaper import experiments
    from mvcpaper.cluster import make_method

    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    key = {"input": "test"}
    first = experiments.fit_cached(make_method("kmeans", 3), X, key, cache_dir=tmp_path)
    again = experiments.fit_cached(make_method("kmeans", 3), X, key, cache_dir=tmp_path)
    assert not first["cached"] and again["cached"]
    monkeypatch.setattr(experiments, "code_stamp", lambda est: "edited")
    assert not experiments.fit_cached(make_method("kmeans", 3), X, key, cache_dir=tmp_path)["cached"]
    for fit in (tmp_path / "fits").glob("*.npz"):  # both stamps' entries, whichever is read next
        fit.write_bytes(b"garbage")
    with pytest.warns(CacheWarning):
        assert not experiments.fit_cached(make_method("kmeans", 3), X, key, cache_dir=tmp_path)["cached"]


def test_consensus_cache_is_keyed_by_the_partitions(tmp_path):
    from mvcpaper import experiments
    from mvcpaper.cluster import make_method

    rng = np.random.default_rng(0)
    parts = [[rng.integers(0, 3, 30)] for _ in range(3)]
    first = experiments.consensus_cached(make_method("mvec_coassoc", 3), parts, {"input": "t"}, cache_dir=tmp_path)
    again = experiments.consensus_cached(make_method("mvec_coassoc", 3), parts, {"input": "t"}, cache_dir=tmp_path)
    assert not first["cached"] and again["cached"] and (first["labels"] == again["labels"]).all()
    parts[1][0] = (parts[1][0] + 1) % 3
    assert not experiments.consensus_cached(make_method("mvec_coassoc", 3), parts, {"input": "t"},
                                            cache_dir=tmp_path)["cached"]


def test_code_stamp_follows_the_source_a_method_depends_on(tmp_path, monkeypatch):
    from mvcpaper.cache import code_stamp
    from mvcpaper.cluster import DMVCJULE, JULE, KMeans

    before = {c: code_stamp(c) for c in (JULE, DMVCJULE, KMeans)}
    jule = sys.modules[JULE.__module__]
    edited = tmp_path / "jule.py"
    edited.write_text(open(jule.__file__).read() + "\n# an edit\n")
    monkeypatch.setattr(jule, "__file__", str(edited))
    assert code_stamp(JULE) != before[JULE] and code_stamp(DMVCJULE) != before[DMVCJULE]
    assert code_stamp(KMeans) == before[KMeans]


def test_tsne_engines_keep_neighbourhoods_and_cache_apart(tmp_path):
    from sklearn.manifold import trustworthiness

    from mvcpaper.errors import UnknownNameError
    from mvcpaper.plots import tsne

    rng = np.random.default_rng(0)
    X = (np.repeat(np.eye(4, 30) * 8, 40, axis=0) + rng.normal(size=(160, 30))).astype(np.float32)
    maps = {e: tsne(X, engine=e, cache_dir=tmp_path) for e in ("opentsne", "sklearn")}
    for Y in maps.values():
        assert Y.shape == (160, 2) and trustworthiness(X, Y, n_neighbors=10) > 0.9
    assert not np.allclose(maps["opentsne"], maps["sklearn"])  # the engine is part of the key
    assert len(list((tmp_path / "tsne").glob("*.npy"))) == 2
    assert np.array_equal(tsne(X, engine="opentsne", cache_dir=tmp_path), maps["opentsne"])
    with pytest.raises(UnknownNameError, match="t-SNE engine"):
        tsne(X, engine="umap")


def test_opentsne_engine_passes_its_options_on():
    from mvcpaper.plots import TSNE_ENGINES

    rng = np.random.default_rng(0)
    Z = (np.repeat(np.eye(3, 10) * 6, 30, axis=0) + rng.normal(size=(90, 10))).astype(np.float32)
    embed = TSNE_ENGINES["opentsne"]
    assert not np.allclose(embed(Z, 10.0, 0), embed(Z, 10.0, 0, theta=1.0, n_iter=50))
    with pytest.raises(TypeError):
        embed(Z, 10.0, 0, no_such_option=1)


def test_code_stamp_of_a_function_follows_its_module(tmp_path, monkeypatch):
    from mvcpaper import plots
    from mvcpaper.cache import code_stamp

    engine = plots.TSNE_ENGINES["opentsne"]
    before = code_stamp(engine)
    edited = tmp_path / "plots.py"
    edited.write_text(open(plots.__file__).read() + "\n# an edit\n")
    monkeypatch.setattr(plots, "__file__", str(edited))
    assert code_stamp(engine) != before
