"""Checks on the real data sets in ../shared/data (skipped with the reason where absent)."""
import numpy as np
import pytest
from conftest import shared_data_or_skip

from mvcpaper.cluster import jule as jule_module
from mvcpaper.cluster import make_method
from mvcpaper.data import load_dataset
from mvcpaper.features import extract_features
from mvcpaper.metrics import nmi
from mvcpaper.preprocessing import l2_normalize

pytestmark = pytest.mark.realdata


def test_real_datasets_match_table1():
    root = shared_data_or_skip("umist")
    umist = load_dataset("umist", root=root)
    assert (len(umist), umist.n_classes, umist.size_label()) == (575, 20, "112x92")
    if (root / "coil-100").is_dir():
        coil = load_dataset("coil100", root=root)
        assert (len(coil), coil.n_classes, coil.size_label()) == (7200, 100, "128x128")


def test_umist_pretrained_features_beat_raw_pixels():
    root = shared_data_or_skip("umist")
    ds = load_dataset("umist", root=root)
    pixels = np.stack([np.asarray(ds.load_image(i).convert("L").resize((46, 56)), np.float32).ravel()
                       for i in range(len(ds))])
    feats = extract_features(ds, "efficientnet_lite0", progress=False)
    scores = {}
    for name, X in (("pixels", l2_normalize(pixels)), ("lite0", l2_normalize(feats))):
        scores[name] = np.mean([nmi(ds.labels, make_method("kmeans", 20, seed=s).fit_predict(X)) for s in (0, 1, 2)])
    assert scores["lite0"] > scores["pixels"] + 0.05, scores


def test_umist_jule_and_dmvc_fix_beat_kmeans():
    """Issue 3 on real data, bounded: JULE on one view and DMVC-fix on two views (seed 0)
    well above KMeans on the same features (offline run: .900/.905 vs KMeans .697)."""
    root = shared_data_or_skip("umist")
    ds = load_dataset("umist", root=root)
    views = [l2_normalize(extract_features(ds, b, progress=False))
             for b in ("efficientnet_lite0", "efficientnet_lite1")]
    km = nmi(ds.labels, make_method("kmeans", 20, seed=0).fit_predict(views[0]))
    jule = nmi(ds.labels, make_method("jule", 20, seed=0, progress=False).fit_predict(views[0]))
    fix = nmi(ds.labels, make_method("dmvc_jule", 20, seed=0, progress=False).fit_predict(views))
    assert jule > km + 0.1 and fix > km + 0.1, (km, jule, fix)


def test_jule_graph_of_half_the_mean_class_size_beats_twenty_neighbours_on_small_classes(monkeypatch):
    """UMist at 10 images per class (200 images, 20 people), Lite0, seed 0: JULE's graphs
    with 5 neighbours (:func:`graph_neighbours`) against the reference's fixed 20, which link
    every person to others (here .984 vs .934; scripts/dmvc_vs_cc.py on CC of the three views,
    seeds 0-2: .943 vs .859)."""
    root = shared_data_or_skip("umist")
    ds = load_dataset("umist", root=root)
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[:10] for c in range(ds.n_classes)])
    X, y = l2_normalize(extract_features(ds, "efficientnet_lite0", progress=False))[keep], ds.labels[keep]
    assert jule_module.graph_neighbours(len(X), 20, 20) == 5
    rule = make_method("jule", 20, seed=0, progress=False).fit(X)
    monkeypatch.setattr(jule_module, "graph_neighbours", lambda n, k, most: most)
    fixed = make_method("jule", 20, seed=0, progress=False).fit(X)
    assert (rule.k_s_, fixed.k_s_) == (5, 20)
    assert nmi(y, rule.labels_) > nmi(y, fixed.labels_) + 0.03, (nmi(y, rule.labels_), nmi(y, fixed.labels_))
