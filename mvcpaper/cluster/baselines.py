"""The paper's classic baselines, scikit-learn underneath: KMeans (KM) and Ward agglomerative (AC)."""
from __future__ import annotations

from sklearn.cluster import AgglomerativeClustering as _AC
from sklearn.cluster import KMeans as _KM

from ._base import ClusterBase, center_distances

__all__ = ["KMeans", "Agglomerative"]


class KMeans(ClusterBase):
    """scikit-learn's KMeans (k-means++, ``n_init`` restarts) behind the project's interface.

    Several views are concatenated. It runs on the CPU (``device`` is accepted for a uniform
    interface; ``torch_kmeans`` is the CUDA variant) and shows no progress bar.
    Attributes: ``labels_``, ``cluster_centers_``, ``inertia_``, ``embedding_`` (distances
    of the training rows to every centre, as :meth:`transform`).
    """

    def __init__(self, n_clusters: int = 8, n_init: int = 10, max_iter: int = 300, device: str = "auto",
                 random_state: int = 0, progress: bool = True):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y=None):
        X = self._single(X)
        km = _KM(self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, random_state=self.random_state)
        km.fit(X)
        self.cluster_centers_, self.inertia_ = km.cluster_centers_, km.inertia_
        self.embedding_ = center_distances(X, self.cluster_centers_)
        self._set_labels(km.labels_)
        return self

    def transform(self, X):
        """Distances to every centre, shape (n_samples, n_clusters)."""
        return center_distances(self._single(X), self.cluster_centers_)


class Agglomerative(ClusterBase):
    """Agglomerative clustering, Ward linkage by default (deterministic: no seed needed).

    ``device``, ``random_state`` and ``progress`` are accepted for a uniform interface and
    ignored (scikit-learn, CPU, no randomness).
    """

    def __init__(self, n_clusters: int = 8, linkage: str = "ward", device: str = "auto", random_state: int = 0,
                 progress: bool = True):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y=None):
        ac = _AC(self.n_clusters, linkage=self.linkage)
        self._set_labels(ac.fit_predict(self._single(X)))
        return self
