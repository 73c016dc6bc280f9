"""What every clustering method shares: input validation and the estimator contract."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

__all__ = ["ClusterBase", "check_views", "check_n_clusters", "center_distances", "fill_empty_clusters",
           "FewerClustersWarning"]


class FewerClustersWarning(UserWarning):
    """A method returned fewer clusters than ``n_clusters`` (``n_clusters_found_`` says how many)."""


def _check_one(X, name: str) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values (rows {rows[:5].tolist()}"
                         f"{'...' if len(rows) > 5 else ''}); clean or impute the features first")
    return X


def check_views(X) -> list[np.ndarray]:
    """One array or a list of arrays (views) -> a list of float32 2-D arrays with equal row counts."""
    if isinstance(X, (list, tuple)):
        if not X:
            raise ValueError("got an empty list of views")
        views = [_check_one(v, f"view {i}") for i, v in enumerate(X)]
    else:
        views = [_check_one(X, "X")]
    rows = {v.shape[0] for v in views}
    if len(rows) > 1:
        raise ValueError(f"all views must have the same number of rows (samples); got {[v.shape[0] for v in views]}")
    return views


def check_n_clusters(n_clusters: int, n_samples: int) -> int:
    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive int, got {n_clusters!r}")
    if n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of samples ({n_samples})")
    return int(n_clusters)


def center_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to every centre, (n, k), without an (n, k, d) array."""
    d2 = (X * X).sum(1)[:, None] - 2.0 * X @ centers.T + (centers * centers).sum(1)[None, :]
    return np.sqrt(np.maximum(d2, 0.0))


def fill_empty_clusters(labels: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Give every one of the ``k`` clusters a member, as scikit-learn relocates them: each
    empty one takes the point farthest from its centre (``d``) among the clusters of two or
    more, whose distance becomes 0. Exactly ``k`` clusters whenever there are ``k`` points."""
    labels, d = labels.copy(), d.copy()
    counts = np.bincount(labels, minlength=k)
    farthest = iter(np.argsort(d, kind="stable")[::-1])
    for j in np.flatnonzero(counts == 0):
        p = next((p for p in farthest if counts[labels[p]] > 1), None)  # never empty another cluster
        if p is None:  # fewer points than clusters
            break
        counts[labels[p]] -= 1
        labels[p], d[p] = j, 0.0
        counts[j] += 1
    return labels, d


class ClusterBase(ClusterMixin, BaseEstimator):
    """scikit-learn style: hyper-parameters in ``__init__``, ``fit(X)`` sets ``labels_``.

    ``X`` is one array (single view) or a list of arrays (views). Single-view methods
    given several views concatenate them (the paper's "CC" input).

    The contract every registered method keeps (``tests/test_cluster.py`` checks it): the
    constructor takes ``n_clusters``, ``random_state``, ``device`` and ``progress`` and only
    stores its arguments; the same seed gives the same labels without touching the global
    random state; a method with ``transform`` also sets ``embedding_`` (its transform of the
    training data).
    """

    def _views(self, X) -> list[np.ndarray]:
        views = check_views(X)
        check_n_clusters(self.n_clusters, views[0].shape[0])
        return views

    def _single(self, X) -> np.ndarray:
        views = self._views(X)
        return views[0] if len(views) == 1 else np.concatenate(views, axis=1)

    def _multiview(self, X) -> list[np.ndarray]:
        """Checked views for a method that takes at least two of them separately."""
        views = check_views(X)
        check_n_clusters(self.n_clusters, views[0].shape[0])
        if len(views) < 2:
            raise ValueError(f"{type(self).__name__} needs a list of at least two views; got one array. "
                             "Use a single-view method (jule / idec / kmeans) for one view.")
        return views

    def _set_labels(self, labels, expected: bool = True) -> None:
        """Store ``labels_`` and ``n_clusters_found_``; warn when fewer clusters than asked were
        found (``expected=False``: the method chooses its own number, e.g. PIC)."""
        self.labels_ = np.asarray(labels)
        self.n_clusters_found_ = int(len(np.unique(self.labels_)))
        if expected and self.n_clusters_found_ < self.n_clusters:
            warnings.warn(f"{type(self).__name__} found {self.n_clusters_found_} clusters where n_clusters="
                          f"{self.n_clusters} were asked (duplicated points, or clusters emptied during "
                          "training); labels_ holds the clusters found", FewerClustersWarning, stacklevel=3)

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_
