"""k-means on faiss: k-means++ seeding of every restart at once, Lloyd iterations by faiss.

The cost of k-means on a few thousand images with k = 100 is mostly its seeding: greedy
k-means++ reads the whole data set once per centre, and scikit-learn does that for each
restart. :func:`kmeans_plusplus_batch` seeds all restarts together (one matrix product per
centre for every restart's candidates), then :func:`faiss_lloyd` refines each seeding with
faiss's Lloyd iterations, stopping by scikit-learn's rule (summed squared centre shift at
most ``tol`` times the mean feature variance), checked every ``check_every`` iterations.
"""
from __future__ import annotations

import math

import numpy as np

from ._faiss import faiss

__all__ = ["kmeans_plusplus_batch", "faiss_lloyd", "faiss_kmeans"]


def _sq_dist(X: np.ndarray, x2: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared distances of ``X[rows]`` to every row of ``X``, (len(rows), n)."""
    return np.maximum(x2[rows][:, None] - 2.0 * (X[rows] @ X.T) + x2[None, :], 0.0)


def kmeans_plusplus_batch(X: np.ndarray, k: int, n_init: int, rng: np.random.Generator,
                          n_local_trials: int | None = None) -> np.ndarray:
    """``n_init`` greedy k-means++ seedings (Arthur & Vassilvitskii 2007, with local trials
    as in scikit-learn), (n_init, k, d): each step draws every seeding's candidates and
    measures them in one product, so the data are read k times in all."""
    n = X.shape[0]
    trials = n_local_trials or 2 + int(math.log(k))
    x2 = (X * X).sum(1)
    first = rng.integers(n, size=n_init)
    centres = np.empty((n_init, k, X.shape[1]), dtype=X.dtype)
    centres[:, 0] = X[first]
    closest = _sq_dist(X, x2, first)  # (n_init, n): each point's distance to its seeding's nearest centre
    runs = np.arange(n_init)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=1, dtype=np.float64)
        draws = rng.random((n_init, trials)) * cum[:, -1:]
        cand = np.minimum(np.stack([np.searchsorted(cum[r], draws[r]) for r in runs]), n - 1)
        d = _sq_dist(X, x2, cand.ravel()).reshape(n_init, trials, n)
        np.minimum(d, closest[:, None, :], out=d)
        best = d.sum(2).argmin(1)
        closest = d[runs, best]
        centres[:, c] = X[cand[runs, best]]
    return centres


def faiss_lloyd(X: np.ndarray, centres: np.ndarray, max_iter: int, tol: float, seed: int = 0,
                check_every: int = 5) -> tuple[np.ndarray, int]:
    """Lloyd iterations by faiss from ``centres`` until the summed squared centre shift over
    the last ``check_every`` iterations is at most ``tol`` (absolute) or ``max_iter`` is
    reached: ``(centres, iterations)``. faiss splits a large cluster to refill an empty one."""
    d, k = X.shape[1], centres.shape[0]
    done = 0
    while done < max_iter:
        step = min(check_every, max_iter - done)
        km = faiss.Kmeans(d, k, niter=step, seed=seed + done, min_points_per_centroid=1,
                          max_points_per_centroid=X.shape[0], verbose=False)
        km.train(X, init_centroids=centres)
        shift = float(((km.centroids - centres) ** 2).sum())
        centres, done = km.centroids.copy(), done + step
        if shift <= tol:
            break
    return centres, done


def faiss_kmeans(X, k: int, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, int]:
    """k-means of ``X`` with ``n_init`` k-means++ restarts, the lowest inertia kept:
    ``(centres, labels, inertia, iterations)``. ``tol`` is relative to the mean feature
    variance, as in scikit-learn."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    tol_abs = tol * float(X.var(0).mean())
    best = None
    for run, start in enumerate(kmeans_plusplus_batch(X, k, n_init, rng)):
        centres, n_iter = faiss_lloyd(X, start, max_iter, tol_abs, seed=seed + run)
        index = faiss.IndexFlatL2(X.shape[1])
        index.add(centres)
        d, labels = index.search(X, 1)
        inertia = float(d.sum())
        if best is None or inertia < best[2]:
            best = (centres, labels.ravel().astype(np.int64), inertia, n_iter)
    return best
