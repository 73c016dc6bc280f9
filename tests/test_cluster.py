import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from mvcpaper.cluster import METHODS, TorchKMeans, make_method
from mvcpaper.cluster.kmeans import _lloyd
from mvcpaper.metrics import nmi


@pytest.fixture
def blobs():
    X, y = make_blobs(600, n_features=16, centers=12, cluster_std=2.5, random_state=0)
    return X.astype(np.float32), y


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


def test_empty_clusters_are_reseeded():
    import torch

    rng = np.random.default_rng(0)
    X = torch.as_tensor(np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))]), dtype=torch.float32)
    # three centres far from every point: they win no point at the first assignment
    C0 = torch.tensor([[0.0, 0.0], [10.0, 10.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]])
    C, labels, _, _ = _lloyd(X, C0, max_iter=50, tol=0.0)
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
