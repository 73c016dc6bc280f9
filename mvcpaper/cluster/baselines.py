"""The paper's classic baselines: KMeans (KM; faiss or scikit-learn) and Ward agglomerative (AC; scikit-learn)."""
from __future__ import annotations

from sklearn.cluster import AgglomerativeClustering as _AC
from sklearn.cluster import KMeans as _KM

from ..errors import MvcpaperError
from ._base import ClusterBase, center_distances
from .faiss_kmeans import faiss_kmeans

__all__ = ["KMeans", "Agglomerative", "MAX_AGGLOMERATIVE_SAMPLES"]

#: largest set agglomeration accepts: it needs the n(n-1)/2 pairwise distances (3.6 GB at 30,000)
MAX_AGGLOMERATIVE_SAMPLES = 30_000


class KMeans(ClusterBase):
    """k-means (k-means++, ``n_init`` restarts, the lowest inertia kept) behind the project's interface.

    ``engine="faiss"`` (the default): every restart seeded in one pass per centre and refined
    by Lloyd's iterations with Hamerly's bounds on faiss (:mod:`mvcpaper.cluster.faiss_kmeans`),
    9-10x scikit-learn on COIL-100 at k=100 on 2 cores (``benchmarks/bench_kmeans.py``);
    ``"sklearn"``: scikit-learn's KMeans, for comparison.
    Both stop by scikit-learn's rule (``tol`` relative to the mean feature variance) or at
    ``max_iter``. Several views are concatenated. It runs on the CPU (``device`` is
    accepted for a uniform interface; ``torch_kmeans`` is the CUDA variant) and shows no
    progress bar. Attributes: ``labels_``, ``cluster_centers_``, ``inertia_``,
    ``embedding_`` (distances of the training rows to every centre, as :meth:`transform`).
    """

    def __init__(self, n_clusters: int = 8, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                 engine: str = "faiss", device: str = "auto", random_state: int = 0, progress: bool = True):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.engine = engine
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y=None):
        X = self._single(X)
        if self.engine == "faiss":
            centres, labels, self.inertia_, _ = faiss_kmeans(X, self.n_clusters, n_init=self.n_init,
                                                             max_iter=self.max_iter, tol=self.tol,
                                                             seed=self.random_state)
            self.cluster_centers_ = centres.astype(X.dtype)
        elif self.engine == "sklearn":
            km = _KM(self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                     random_state=self.random_state).fit(X)
            self.cluster_centers_, self.inertia_, labels = km.cluster_centers_, km.inertia_, km.labels_
        else:
            raise ValueError(f"k-means engine must be 'faiss' or 'sklearn', not {self.engine!r}")
        self.embedding_ = center_distances(X, self.cluster_centers_)
        self._set_labels(labels)
        return self

    def transform(self, X):
        """Distances to every centre, shape (n_samples, n_clusters)."""
        return center_distances(self._single(X), self.cluster_centers_)


class Agglomerative(ClusterBase):
    """Agglomerative clustering, Ward linkage by default (deterministic: no seed needed).

    Exact agglomeration needs every pairwise distance, so it refuses more than
    :data:`MAX_AGGLOMERATIVE_SAMPLES` samples with a one-line error naming the alternative
    (``kmeans``, whose time and memory grow linearly: ``benchmarks/bench_scale.py``).

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
        X = self._single(X)
        n = X.shape[0]
        if n > MAX_AGGLOMERATIVE_SAMPLES:
            raise MvcpaperError(f"agglomerative clustering needs all {n * (n - 1) // 2:,} pairwise distances "
                                f"({n * (n - 1) * 4 / 2 ** 30:.0f} GB) for {n} samples; it runs up to "
                                f"{MAX_AGGLOMERATIVE_SAMPLES}: use 'kmeans', or cluster a subsample")
        ac = _AC(self.n_clusters, linkage=self.linkage)
        self._set_labels(ac.fit_predict(X))
        return self
