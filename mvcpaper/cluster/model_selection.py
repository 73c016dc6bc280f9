"""Label-free choices: how many clusters (:func:`estimate_k`) and which partition to keep
(:func:`select_partition`).

Every estimator reads only the views (L2-normalised feature arrays), never labels, and
returns a :class:`KEstimate` holding its curve over the searched range, so a report can
show why a value was chosen. The estimators (``K_ESTIMATORS``):

``eigengap``
    The largest gap between consecutive eigenvalues of the normalised Laplacian of the
    symmetric kNN graph of each view (the number of nearly disconnected groups), the
    views' gap curves averaged.
``silhouette``
    The Ward partition of the concatenated views with the highest silhouette.
``agreement``
    The k at which the Ward partitions of the different views agree most (mean pairwise
    adjusted Rand index): structure that every network sees.
``dendrogram``
    The largest relative jump of Ward's merge heights on the concatenated views.

:func:`select_partition` fits every candidate of ``CANDIDATES`` (methods on each view, on
the concatenation, and the multi-view network) and keeps the most central partition:
the one with the highest mean NMI with all the others. Methods make different errors;
the partition that agrees most with the rest is the one closest to what they share.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import diags
from scipy.sparse.linalg import eigsh
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import kneighbors_graph

from ..errors import MvcpaperError, UnknownNameError
from . import make_method

__all__ = ["KEstimate", "K_ESTIMATORS", "estimate_k", "k_range", "CANDIDATES", "PartitionChoice",
           "select_partition"]


@dataclass
class KEstimate:
    """The chosen k, the estimator, and its score for every k searched (higher is better)."""

    k: int
    estimator: str
    ks: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"k": self.k, "estimator": self.estimator, "k_range": [self.ks[0], self.ks[-1]],
                "curve": dict(zip(self.ks, np.round(self.scores, 5).tolist()))}


def k_range(n_images: int, k_min: int = 2, k_max: int | None = None) -> list[int]:
    """The k searched by default: 2 to ``min(250, n_images // 5)`` (at least 5 images per cluster)."""
    hi = k_max if k_max is not None else min(250, n_images // 5)
    hi = min(hi, n_images - 1)
    if hi < k_min:
        raise MvcpaperError(f"{n_images} images are too few to estimate the number of clusters "
                            f"(searching {k_min}..{hi}); give --k N")
    return list(range(k_min, hi + 1))


def _as_views(views) -> list[np.ndarray]:
    views = [np.asarray(v, dtype=np.float32) for v in (views if isinstance(views, (list, tuple)) else [views])]
    if not views or any(v.ndim != 2 or len(v) != len(views[0]) for v in views):
        raise ValueError("views must be 2-D arrays with one row per image")
    return views


#: up to this many images the graph's spectrum is computed densely
DENSE_EIGEN_MAX = 8000


def _eigengap(views, ks, n_neighbors: int = 10) -> np.ndarray:
    curves = []
    for X in views:
        A = kneighbors_graph(X, min(n_neighbors, len(X) - 1), mode="connectivity", include_self=False)
        A = A.maximum(A.T)
        d = np.asarray(A.sum(1)).ravel()
        M = diags(1 / np.sqrt(d)) @ A @ diags(1 / np.sqrt(d))
        m = min(ks[-1] + 1, len(X) - 1)
        if len(X) <= DENSE_EIGEN_MAX:  # LAPACK on the dense matrix: seconds, and no convergence issue
            top = np.linalg.eigvalsh(M.toarray())[::-1][:m]
        else:
            top = np.sort(eigsh(M, k=m, which="LA", return_eigenvectors=False, v0=np.ones(len(X))))[::-1]
        lam = 1 - top  # Laplacian eigenvalues, ascending
        curves.append([lam[k] - lam[k - 1] if k < len(lam) else 0.0 for k in ks])
    return np.mean(curves, axis=0)


def _silhouette(views, ks) -> np.ndarray:
    X = np.concatenate(views, axis=1)
    tree = linkage(X, "ward")
    D = euclidean_distances(X)
    cuts = [fcluster(tree, k, "maxclust") for k in ks]
    return np.array([silhouette_score(D, c, metric="precomputed") if len(np.unique(c)) > 1 else -1.0 for c in cuts])


def _agreement(views, ks) -> np.ndarray:
    if len(views) < 2:
        raise MvcpaperError("the 'agreement' estimate of k needs at least two views")
    trees = [linkage(X, "ward") for X in views]
    return np.array([np.mean([adjusted_rand_score(fcluster(a, k, "maxclust"), fcluster(b, k, "maxclust"))
                              for a, b in combinations(trees, 2)]) for k in ks])


def _dendrogram(views, ks) -> np.ndarray:
    X = np.concatenate(views, axis=1)
    h = linkage(X, "ward")[:, 2]
    n = len(X)
    return np.array([h[n - k] / max(h[n - k - 1], 1e-12) for k in ks])


#: name -> curve(views, ks): a score per k, the estimate is its argmax
K_ESTIMATORS: dict[str, Callable] = {"eigengap": _eigengap, "silhouette": _silhouette, "agreement": _agreement,
                                     "dendrogram": _dendrogram}


def estimate_k(views, estimator: str = "eigengap", k_min: int = 2, k_max: int | None = None) -> KEstimate:
    """Estimate the number of clusters of ``views`` (an array or a list of L2-normalised
    views, one row per image) without labels; see the module's docstring."""
    if estimator not in K_ESTIMATORS:
        raise UnknownNameError("k estimator", estimator, K_ESTIMATORS)
    views = _as_views(views)
    ks = k_range(len(views[0]), k_min, k_max)
    scores = np.asarray(K_ESTIMATORS[estimator](views, ks), dtype=float)
    return KEstimate(int(ks[int(np.argmax(scores))]), estimator, ks, scores.tolist())


#: (method, input) pairs :func:`select_partition` fits; input ``"each view"`` is one candidate
#: per view, ``"CC"`` the concatenation, ``"views"`` the views given separately
CANDIDATES = (("kmeans", "each view"), ("kmeans", "CC"), ("agglomerative", "each view"), ("agglomerative", "CC"),
              ("jule", "CC"), ("dmvc_jule", "views"))


@dataclass
class PartitionChoice:
    """The kept partition, which candidate it is and why, every candidate's score
    (``candidates``) and labels (``partitions``, in the same order)."""

    labels: np.ndarray
    method: str
    input: str
    candidates: list[dict]
    partitions: list[np.ndarray]

    def as_dict(self) -> dict:
        return {"method": self.method, "input": self.input,
                "why": "the most central candidate: highest mean NMI with the other candidates' partitions",
                "candidates": self.candidates}


def select_partition(views: dict, k: int, seed: int = 0, device: str = "auto", progress: bool = False,
                     candidates=CANDIDATES, fit: Callable | None = None) -> PartitionChoice:
    """Fit every candidate at ``k`` on ``views`` (``{name: L2-normalised array}``) and keep
    the most central partition (see the module's docstring). ``fit(estimator, input name,
    X) -> labels`` fits one candidate (default: ``estimator.fit_predict(X)``; a caller may
    route it through a cache)."""
    fit = fit or (lambda est, _inp, X: est.fit_predict(X))
    names = list(views)
    cc = np.concatenate([views[v] for v in names], axis=1)
    cc_name = "CC" if len(names) > 1 else names[0]  # one view: CC is that view
    jobs = {}  # (method, input name) -> X; a candidate named twice is fitted once
    for method, inp in candidates:
        if inp == "each view":
            jobs.update({(method, v): views[v] for v in names})
        elif inp == "views":
            if len(names) > 1:
                jobs[(method, "+".join(names))] = [views[v] for v in names]
        else:
            jobs[(method, cc_name)] = cc
    fits = []
    for (method, inp), X in jobs.items():
        t0 = time.perf_counter()
        labels = np.asarray(fit(make_method(method, k, seed=seed, device=device, progress=progress), inp, X))
        fits.append({"method": method, "input": inp, "labels": labels, "seconds": round(time.perf_counter() - t0, 2)})
    if len(fits) == 1:
        centrality = np.ones(1)
    else:
        agree = np.eye(len(fits))
        for i, j in combinations(range(len(fits)), 2):
            agree[i, j] = agree[j, i] = normalized_mutual_info_score(fits[i]["labels"], fits[j]["labels"])
        centrality = (agree.sum(1) - 1) / (len(fits) - 1)
    best = int(np.argmax(centrality))
    table = [{"method": f["method"], "input": f["input"], "centrality": round(float(c), 4), "seconds": f["seconds"]}
             for f, c in zip(fits, centrality)]
    return PartitionChoice(fits[best]["labels"], fits[best]["method"], fits[best]["input"], table,
                           [f["labels"] for f in fits])
