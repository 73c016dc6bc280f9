"""The paper's classic baselines, scikit-learn underneath: KMeans (KM) and Ward agglomerative (AC)."""
from __future__ import annotations

from sklearn.cluster import AgglomerativeClustering as _AC
from sklearn.cluster import KMeans as _KM

from ._base import ClusterBase

__all__ = ["KMeans", "Agglomerative"]


class KMeans(ClusterBase):
    """scikit-learn's KMeans (k-means++, ``n_init`` restarts) behind the project's interface.

    Several views are concatenated. Attributes: ``labels_``, ``cluster_centers_``, ``inertia_``.
    """

    def __init__(self, n_clusters: int = 8, n_init: int = 10, max_iter: int = 300, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        km = _KM(self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, random_state=self.random_state)
        km.fit(self._single(X))
        self.cluster_centers_, self.inertia_ = km.cluster_centers_, km.inertia_
        self._set_labels(km.labels_)
        return self

    def transform(self, X):
        X = self._single(X)
        return ((X[:, None, :] - self.cluster_centers_[None]) ** 2).sum(-1) ** 0.5


class Agglomerative(ClusterBase):
    """Agglomerative clustering, Ward linkage by default (deterministic: no seed needed).

    ``random_state`` is accepted for a uniform interface and ignored.
    """

    def __init__(self, n_clusters: int = 8, linkage: str = "ward", random_state: int = 0):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.random_state = random_state

    def fit(self, X, y=None):
        ac = _AC(self.n_clusters, linkage=self.linkage)
        self._set_labels(ac.fit_predict(self._single(X)))
        return self
