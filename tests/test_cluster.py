import os

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from mvcpaper.cluster import METHODS, TorchKMeans, _faiss, make_method
from mvcpaper.cluster._faiss import openblas_coretype
from mvcpaper.cluster.faiss_kmeans import _relocate, bounded_lloyd, kmeans_plusplus_batch
from mvcpaper.cluster.kmeans import lloyd
from mvcpaper.metrics import nmi


@pytest.fixture
def blobs():
    X, y = make_blobs(600, n_features=16, centers=12, cluster_std=2.5, random_state=0)
    return X.astype(np.float32), y


def test_faiss_blas_kernels_follow_the_cpu_and_leave_the_environment_alone():
    skylake = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"}
    assert openblas_coretype(skylake) == "SkylakeX"
    assert openblas_coretype(skylake - {"avx512bw"}) == "Haswell"  # AVX-512 without its byte/word part
    assert openblas_coretype({"avx2", "fma", "sse4_2"}) == "Haswell"
    assert openblas_coretype({"sse4_2"}) is None
    assert openblas_coretype(set()) is None  # not Linux: OpenBLAS detects on its own
    # set for faiss's load only, and never over a user's own choice
    assert _faiss._coretype is None or "OPENBLAS_CORETYPE" not in os.environ


def test_torch_kmeans_as_good_as_sklearn(blobs):
    X, y = blobs
    ours = TorchKMeans(12, n_init=5, random_state=0).fit(X)
    theirs = SKKMeans(12, n_init=5, random_state=0).fit(X)
    assert nmi(y, ours.labels_) >= nmi(y, theirs.labels_) - 0.02
    assert ours.inertia_ <= theirs.inertia_ * 1.02
    assert ours.cluster_centers_.shape == (12, 16)
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)


def test_torch_kmeans_is_deterministic(blobs):
    X, _ = blobs
    a = TorchKMeans(12, n_init=2, random_state=3).fit_predict(X)
    b = TorchKMeans(12, n_init=2, random_state=3).fit_predict(X)
    np.testing.assert_array_equal(a, b)


def test_faiss_kmeans_as_good_as_sklearn_and_deterministic(blobs):
    X, y = blobs
    fa = make_method("kmeans", 12, seed=0, engine="faiss").fit(X)
    sk = make_method("kmeans", 12, seed=0, engine="sklearn").fit(X)
    assert nmi(y, fa.labels_) >= nmi(y, sk.labels_) - 0.02
    assert fa.inertia_ <= sk.inertia_ * 1.02
    again = make_method("kmeans", 12, seed=0, engine="faiss").fit(X)
    assert np.array_equal(fa.labels_, again.labels_)
    with pytest.raises(ValueError, match="'faiss' or 'sklearn'"):
        make_method("kmeans", 5, engine="cuml").fit(X)


def _plain_lloyd(X, C, max_iter, tol):
    """Textbook Lloyd in float64 (every distance, every iteration), scikit-learn's stopping rule."""
    X, iterations, shift = X.astype(np.float64), 0, np.inf
    while iterations < max_iter and shift > tol:
        labels = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([X[labels == j].mean(0) for j in range(len(C))])
        shift, C, iterations = ((new - C) ** 2).sum(), new, iterations + 1
    d = ((X[:, None] - C[None]) ** 2).sum(-1)
    return C, d.argmin(1), d.min(1).sum(), iterations


def test_bounded_lloyd_makes_lloyds_assignments():
    # overlapping blobs: many iterations, and points near the borders that the bounds must not miss
    X, _ = make_blobs(2000, n_features=16, centers=12, cluster_std=4.0, random_state=0)
    X = X.astype(np.float32)
    start = X[np.random.default_rng(0).choice(len(X), 12, replace=False)]
    C, labels, inertia, iterations = bounded_lloyd(X, start, max_iter=300, tol=1e-6)
    C_ref, labels_ref, inertia_ref, iterations_ref = _plain_lloyd(X, start.astype(np.float64), 300, 1e-6)
    assert iterations == iterations_ref > 10
    np.testing.assert_array_equal(labels, labels_ref)
    np.testing.assert_allclose(C, C_ref, atol=1e-4)
    assert inertia == pytest.approx(inertia_ref, rel=1e-5)

    # stopped after any number of iterations, labels and inertia are those of the centres
    # returned (a bound that moves too little leaves a point on its old centre somewhere here)
    for seed in range(3):
        X, _ = make_blobs(2000, n_features=16, centers=12, cluster_std=4.0, random_state=seed)
        X = X.astype(np.float32)
        start = X[np.random.default_rng(seed).choice(len(X), 12, replace=False)]
        for max_iter in range(1, 25):
            C, labels, inertia, iterations = bounded_lloyd(X, start, max_iter=max_iter, tol=0.0)
            d = ((X[:, None].astype(np.float64) - C[None]) ** 2).sum(-1)
            assert iterations <= max_iter
            np.testing.assert_array_equal(labels, d.argmin(1))
            assert inertia == pytest.approx(d.min(1).sum(), rel=1e-5)


def test_bounded_lloyd_refills_empty_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))]).astype(np.float32)
    C0 = np.array([[0.0, 0.0], [10.0, 10.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]], dtype=np.float32)
    _, labels, _, _ = bounded_lloyd(X, C0, max_iter=50, tol=0.0)
    assert (np.bincount(labels, minlength=5) > 0).all()
    # three pairs and two empty centres: one refill empties no other cluster
    pairs = np.array([[0, 0], [0, 1], [10, 0], [10, 1], [5, 5], [5, 6]], dtype=np.float32)
    C = np.array([[0, 0.5], [10, 0.5], [5, 5.5], [1e3, 1e3], [-1e3, 1e3]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    _relocate(pairs, C, labels, np.zeros(6), np.zeros(6))
    assert (np.bincount(labels, minlength=5) > 0).all()


def test_batched_kmeans_plusplus_spreads_each_seeding_over_the_blobs():
    X, y = make_blobs(300, n_features=8, centers=5, cluster_std=0.5, random_state=1)
    seeds, labels, sq_dist = kmeans_plusplus_batch(X.astype(np.float32), 5, 4, np.random.default_rng(0))
    assert seeds.shape == (4, 5, X.shape[1]) and labels.shape == (4, 300) and sq_dist.shape == (4, 300, 2)
    for centres, near, dist in zip(seeds, labels, sq_dist):  # on well separated blobs: one centre in each
        d = ((X[:, None] - centres[None]) ** 2).sum(-1)
        assert len(set(y[d.argmin(0)])) == 5
        np.testing.assert_array_equal(near, d.argmin(1))  # Lloyd's first assignment
        np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :2], rtol=1e-4, atol=1e-4)
    assert not np.allclose(seeds[0], seeds[1])


def test_empty_clusters_are_reseeded():
    import torch

    rng = np.random.default_rng(0)
    X = torch.as_tensor(np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))]), dtype=torch.float32)
    # three centres far from every point: they win no point at the first assignment
    C0 = torch.tensor([[0.0, 0.0], [10.0, 10.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]])
    C, labels, _, _ = lloyd(X, C0, max_iter=50, tol=0.0)
    counts = np.bincount(labels.numpy(), minlength=5)
    assert (counts > 0).all(), counts
    assert np.abs(C.numpy()).max() < 20


def test_classic_methods_find_blobs(blobs):
    X, y = blobs
    for name in ("kmeans", "agglomerative", "torch_kmeans"):
        labels = make_method(name, n_clusters=12, seed=0).fit_predict(X)
        assert nmi(y, labels) > 0.8, name


def test_views_are_concatenated_for_single_view_methods(blobs):
    X, y = blobs
    a = make_method("kmeans", 12, seed=0).fit_predict([X[:, :8], X[:, 8:]])
    b = make_method("kmeans", 12, seed=0).fit_predict(X)
    np.testing.assert_array_equal(a, b)


def test_registry_errors():
    with pytest.raises(KeyError) as err:
        make_method("dbscan", 3)
    assert "agglomerative" in str(err.value) and "kmeans" in str(err.value)
    with pytest.raises(TypeError, match="no parameter"):
        make_method("kmeans", 3, n_neighbors=5)


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"dmvc"}))  # dmvc reads CNN maps: test_multiview
def test_bad_inputs_give_clear_messages(name):
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    est = make_method(name, 3)
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad)
    with pytest.raises(ValueError, match="same number of rows"):
        est.fit([X, X[:10]])
    with pytest.raises(ValueError, match="larger than the number of samples"):
        make_method(name, 50).fit(X)
    with pytest.raises(ValueError, match="2-D"):
        est.fit(X[0])


def _few_distinct_points(n_distinct=30, copies=7, d=8, seed=0):
    """Many duplicated points: the case where k-means and JULE's initial graph lose clusters."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_distinct, d)).astype(np.float32)
    return np.repeat(base, copies, axis=0)


@pytest.mark.parametrize("name", ["jule", "dmvc_jule", "torch_kmeans"])
def test_exactly_n_clusters_where_a_method_can_give_them(name, recwarn):
    from mvcpaper.cluster.jule import initial_clusters, knn_affinity

    X = _few_distinct_points()  # 210 points, 30 distinct: 30 components in JULE's 1-NN graph
    assert len(np.unique(initial_clusters(knn_affinity(X, 20)[1]))) < 40
    params = {"epochs_per_period": 2, "progress": False} if "jule" in name else {}
    data = [X[:, :4], X[:, 4:]] if name == "dmvc_jule" else X
    est = make_method(name, 40, seed=0, **params).fit(data)
    assert len(np.unique(est.labels_)) == 40 == est.n_clusters_found_
    assert not [w for w in recwarn if "clusters where" in str(w.message)]


def test_fewer_clusters_are_said_and_recorded():
    from mvcpaper.cluster import FewerClustersWarning
    from mvcpaper.experiments import run_methods

    X = _few_distinct_points(n_distinct=5, copies=10)
    with pytest.warns(FewerClustersWarning, match="found 5 clusters where n_clusters=8"):
        est = make_method("kmeans", 8, seed=0).fit(X)
    assert est.n_clusters_found_ == 5
    with pytest.warns(FewerClustersWarning):
        recs = run_methods("dup", {"x": X}, np.repeat(np.arange(5), 10), ["kmeans"], n_clusters=8, progress=False)
    assert recs[0]["n_clusters"] == 8 and recs[0]["n_clusters_found"] == 5


# ----------------------------------------------------------------------------- the estimator contract
FAST = {"idec": {"pretrain_steps": 40, "max_steps": 20, "hidden": (32, 32, 64)}, "dec": {"pretrain_steps": 40,
        "max_steps": 20, "hidden": (32, 32, 64)}, "dmvc_idec": {"pretrain_steps": 40, "max_steps": 20,
        "hidden": (32, 32, 64)}, "jule": {"epochs_per_period": 1}, "dmvc_jule": {"epochs_per_period": 1},
        "dmvc": {"epochs_per_period": 1}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_keeps_the_contract(name):
    import inspect

    import torch
    from sklearn.base import clone

    spec = METHODS[name]
    params = inspect.signature(spec.cls.__init__).parameters
    assert {"n_clusters", "random_state", "device", "progress"} <= set(params)
    est = make_method(name, 3, seed=5, device="cpu", progress=False, **FAST.get(name, {}))
    assert clone(est).get_params() == est.get_params()  # the constructor only stores its arguments
    assert est.get_params()["random_state"] == 5
    own = {k: v for k, v in vars(spec.cls).items() if not k.startswith("_") and not callable(v)
           and not isinstance(v, property)}
    assert not own, f"class-level settings belong in the constructor: {own}"
    if name == "dmvc":  # reads CNN activation maps: fitted in test_multiview
        return
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, (20, 6)) for c in range(3)]).astype(np.float32)
    data = [X[:, :3], X[:, 3:]] if spec.multiview else X
    state = torch.get_rng_state()
    a = make_method(name, 3, seed=5, device="cpu", progress=False, **FAST.get(name, {})).fit(data)
    assert torch.equal(torch.get_rng_state(), state), "fit must not touch the global random state"
    b = make_method(name, 3, seed=5, device="cpu", progress=False, **FAST.get(name, {})).fit(data)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    if hasattr(a, "transform"):
        np.testing.assert_allclose(a.embedding_, a.transform(data), rtol=1e-4, atol=1e-5)


def test_methods_that_need_every_pair_refuse_sets_too_large_for_it(monkeypatch):
    from mvcpaper.cluster import ensemble
    from mvcpaper.cluster.baselines import MAX_AGGLOMERATIVE_SAMPLES
    from mvcpaper.errors import MvcpaperError

    with pytest.raises(MvcpaperError, match="use 'kmeans'"):
        make_method("agglomerative", 3).fit(np.zeros((MAX_AGGLOMERATIVE_SAMPLES + 1, 2), np.float32))
    monkeypatch.setattr(ensemble, "MAX_MICRO_CLUSTERS", 5)
    many = [np.arange(12) % 6, np.arange(12) % 4]  # 12 distinct label pairs
    with pytest.raises(MvcpaperError, match="12 distinct label combinations"):
        ensemble.co_association_consensus(many, 2)
    monkeypatch.setattr(ensemble, "MAX_TAO_MICRO_CLUSTERS", 5)
    with pytest.raises(MvcpaperError, match="12 distinct label combinations.*use 'mvec_coassoc'"):
        make_method("mvec_tao", 2).consensus([[p] for p in many])
