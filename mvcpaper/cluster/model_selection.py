"""Label-free choices: how many clusters (:func:`estimate_k`) and which partition to keep
(:func:`select_partition`).

Every estimator reads only the views (L2-normalised feature arrays), never labels, and
returns a :class:`KEstimate` holding its curve over the searched range, so a report can
show why a value was chosen. The estimators (``K_ESTIMATORS``):

``jule`` (the default)
    JULE on the concatenated views, agglomerated towards 2 clusters while it learns its
    representation; k is the number of clusters left when no two of them share a link of
    the learned representation's kNN graph any more (the first merge of zero affinity;
    JULE stops at the end of that period).
    The representation is what makes this work where the raw features mislead: it pulls
    each cluster's images together period by period, so the groups it cannot link are
    the ones the views separate.
``silhouette``
    The Ward partition of the concatenated views with the highest silhouette.
``eigengap``
    The largest gap between consecutive eigenvalues of the normalised Laplacian of the
    symmetric kNN graph of each view (the number of nearly disconnected groups), the
    views' gap curves averaged.
``agreement``
    The k at which the Ward partitions of the different views agree most (mean pairwise
    adjusted Rand index): structure that every network sees.

Why ``jule`` (``scripts/label_free_choices.py k``, EfficientNet-Lite0/1/2 views, nine
labelled sets from 60 to 7200 images and 6 to 100 classes): within 20% of the true k on
eight of the nine (COIL-100 96 for 100, UMist 22 for 20, COIL-100's every 7th image 99
for 100; the 60-image synthetic set 12 for 6), where silhouette is within 20% on four
(UMist 65: ImageNet features group faces by pose before identity, and every estimator on
the raw views sees 50-65 groups). Its weak spot is classes of about 10 images or fewer.

:func:`select_partition` fits every candidate of ``CANDIDATES`` (methods on each view, on
the concatenation, and the multi-view network) and keeps the partition that agrees best
with the images' neighbourhoods (:func:`neighbour_consistency`, on the concatenated
views): a cluster should hold an image's nearest neighbours, and a split manifold or two
groups forced together costs exactly there. Measured with the true k on the same eight
sets (``scripts/label_free_choices.py method``), it keeps a partition within .01 NMI of
the best candidate on all eight, JULE or DMVC-fix (JULE) wherever they lead (UMist .980
where Ward's best is .775); the most central partition (highest mean NMI with the
others), tried first, kept a Ward partition on seven of them, .04-.21 below the best.

Large sets: the k estimators read a seeded random sample of at most
:data:`K_SAMPLE_MAX` images (their Ward trees and distance matrices grow as n^2), and a
candidate that refuses the set's size (Ward above
:data:`~mvcpaper.cluster.baselines.MAX_AGGLOMERATIVE_SAMPLES`) is left out, with its
reason in the candidates table.
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
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import kneighbors_graph

from ..errors import MvcpaperError, UnknownNameError
from . import make_method
from .jule import JULE, graph_neighbours
from .neighbours import nearest_neighbours

__all__ = ["KEstimate", "K_ESTIMATORS", "estimate_k", "k_range", "CANDIDATES", "PartitionChoice",
           "neighbour_consistency", "select_partition", "K_SAMPLE_MAX"]


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


def _highest(curve: Callable) -> Callable:
    """An estimator from a score per k: the k of the highest score."""
    def estimate(views, ks, seed):
        scores = np.asarray(curve(views, ks), dtype=float)
        return ks[int(np.argmax(scores))], scores
    return estimate


#: most neighbours of the kNN graph of the ``jule`` estimate (JULE's own 20 links classes of
#: fewer than about 20 images: 8 for UMist's first 10 people, 11 with 10 neighbours)
UNLINKED_NEIGHBOURS = 10


class _JULEUntilUnlinked(JULE):
    """JULE whose recurrent process ends with the period that first merges two clusters of
    zero affinity (the ``jule`` estimate is then known: later periods have fewer clusters)."""

    def _stop_early(self) -> bool:
        return any(a <= 0 for a in self.merge_affinity_.values())


def _jule_unlinked(views, ks, seed):
    """JULE on the concatenated views, agglomerated towards ``ks[0]``; the estimate is the
    number of clusters left when no two of them share a kNN link in the representation
    learned so far (the first merge of zero affinity), and the curve is each merge's
    affinity down to the end of that period (0 below: those merges are not made). A class
    can only come apart from the others when its images' neighbours lie inside it, so the
    graph's neighbours are at most half the estimate's mean cluster size: from
    ``UNLINKED_NEIGHBOURS``, the estimate is redone with fewer while it says otherwise (at
    least 3). Without an unlinked point (the learned graph stays connected), the
    silhouette estimate."""
    X = np.concatenate(views, axis=1)
    k_s, found = UNLINKED_NEIGHBOURS, None
    while True:
        est = _JULEUntilUnlinked(ks[0], k_s=k_s, recluster=False, random_state=seed, progress=False).fit(X)
        unlinked = [c for c, a in est.merge_affinity_.items() if a <= 0]
        if not unlinked:
            break
        k = min(max(unlinked), ks[-1])
        found = k, np.array([est.merge_affinity_.get(c, 0.0) for c in ks])
        fewer = graph_neighbours(len(X), k, k_s)
        if fewer == k_s:
            break
        k_s = fewer
    return found if found is not None else _highest(_silhouette)(views, ks, seed)


#: name -> estimate(views, ks, seed) -> (k, a score per k of ``ks``)
K_ESTIMATORS: dict[str, Callable] = {"jule": _jule_unlinked, "silhouette": _highest(_silhouette),
                                     "eigengap": _highest(_eigengap), "agreement": _highest(_agreement)}


#: the k estimators read at most this many images (a seeded random sample of a larger set)
K_SAMPLE_MAX = 10_000


def estimate_k(views, estimator: str = "jule", k_min: int = 2, k_max: int | None = None,
               seed: int = 0) -> KEstimate:
    """Estimate the number of clusters of ``views`` (an array or a list of L2-normalised
    views, one row per image) without labels; see the module's docstring."""
    if estimator not in K_ESTIMATORS:
        raise UnknownNameError("k estimator", estimator, K_ESTIMATORS)
    views = _as_views(views)
    if len(views[0]) > K_SAMPLE_MAX:
        rows = np.sort(np.random.default_rng(seed).choice(len(views[0]), K_SAMPLE_MAX, replace=False))
        views = [v[rows] for v in views]
    ks = k_range(len(views[0]), k_min, k_max)
    k, scores = K_ESTIMATORS[estimator](views, ks, seed)
    return KEstimate(int(k), estimator, ks, np.asarray(scores, dtype=float).tolist())


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
                "why": "the candidate whose clusters best hold each image's 10 nearest neighbours (highest "
                       "neighbour consistency, chance-corrected)",
                "candidates": self.candidates}


#: the neighbourhood a partition is judged on
CONSISTENCY_NEIGHBOURS = 10


def neighbour_consistency(neighbours: np.ndarray, labels) -> float:
    """How well ``labels`` agree with the neighbourhoods ``neighbours`` (n x m indices of each
    image's nearest neighbours): the fraction of neighbours that share the image's cluster,
    corrected for chance like Cohen's kappa, ``(observed - expected) / (1 - expected)``
    with ``expected = sum_c (n_c / n)^2`` (random labels with the same cluster sizes). 1:
    every neighbourhood lies inside one cluster; 0: no better than chance, so one giant
    cluster gains nothing."""
    labels = np.unique(np.asarray(labels), return_inverse=True)[1]
    observed = float(np.mean(labels[neighbours] == labels[:, None]))
    expected = float(np.sum((np.bincount(labels) / len(labels)) ** 2))
    return (observed - expected) / (1 - expected) if expected < 1 else 0.0


def select_partition(views: dict, k: int, seed: int = 0, device: str = "auto", progress: bool = False,
                     candidates=CANDIDATES, fit: Callable | None = None) -> PartitionChoice:
    """Fit every candidate at ``k`` on ``views`` (``{name: L2-normalised array}``) and keep
    the most neighbour-consistent partition (see the module's docstring). ``fit(estimator, input name,
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
    fits, refused = [], []
    for (method, inp), X in jobs.items():
        t0 = time.perf_counter()
        try:
            labels = np.asarray(fit(make_method(method, k, seed=seed, device=device, progress=progress), inp, X))
        except MvcpaperError as exc:  # the method refuses a set this large
            refused.append({"method": method, "input": inp, "left out": str(exc)})
            continue
        fits.append({"method": method, "input": inp, "labels": labels, "seconds": round(time.perf_counter() - t0, 2)})
    neighbours = nearest_neighbours(cc, min(CONSISTENCY_NEIGHBOURS, len(cc) - 1))[1]
    consistency = [neighbour_consistency(neighbours, f["labels"]) for f in fits]
    best = int(np.argmax(consistency))
    table = [{"method": f["method"], "input": f["input"], "consistency": round(c, 4), "seconds": f["seconds"]}
             for f, c in zip(fits, consistency)] + refused
    return PartitionChoice(fits[best]["labels"], fits[best]["method"], fits[best]["input"], table,
                           [f["labels"] for f in fits])
