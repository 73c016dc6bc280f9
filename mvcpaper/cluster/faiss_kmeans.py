"""k-means on faiss: k-means++ seeding of every restart at once, bounded Lloyd iterations.

The cost of k-means on a few thousand images with k = 100 is its seeding and the
distances of every point to every centre at each Lloyd iteration. :func:`kmeans_plusplus_batch`
seeds all restarts together (one matrix product per centre for every restart's
candidates) and keeps each point's nearest and second nearest seed, Lloyd's first
assignment; :func:`bounded_lloyd` runs Lloyd's iterations with Hamerly's (2010) bounds,
so that after the first few iterations faiss measures only the points whose nearest centre
may have changed. The assignments are Lloyd's own; it stops by scikit-learn's rule (summed
squared centre shift at most ``tol`` times the mean feature variance).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from ._base import fill_empty_clusters
from ._faiss import faiss

__all__ = ["kmeans_plusplus_batch", "bounded_lloyd", "faiss_kmeans"]

#: rows gathered at a time (faiss itself takes queries in blocks of 4096)
_BLOCK = 8192


def _sq_dist(X: np.ndarray, x2: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared distances of every row of ``X`` to ``X[rows]``, (n, len(rows))."""
    return np.maximum(x2[:, None] - 2.0 * (X @ X[rows].T) + x2[rows][None, :], 0.0)


def kmeans_plusplus_batch(X: np.ndarray, k: int, n_init: int, rng: np.random.Generator,
                          n_local_trials: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_init`` greedy k-means++ seedings (Arthur & Vassilvitskii 2007, with local trials
    as in scikit-learn): each step draws every seeding's candidates and measures them in one
    product, so the data are read k times in all.

    Returns ``(centres, labels, sq_dist)``: the centres, (n_init, k, d); each point's nearest
    centre, (n_init, n); its squared distances to the nearest and the second nearest,
    (n_init, n, 2), the first assignment of Lloyd's iterations at no further cost.
    """
    n = X.shape[0]
    trials = n_local_trials or 2 + int(math.log(k))
    x2 = np.einsum("ij,ij->i", X, X)
    first = rng.integers(n, size=n_init)
    centres = np.empty((n_init, k, X.shape[1]), dtype=X.dtype)
    centres[:, 0] = X[first]
    # (n, n_init): each point's nearest centre in each seeding, the distance to it and to the next
    closest = _sq_dist(X, x2, first)
    second = np.full_like(closest, np.inf)
    labels = np.zeros(closest.shape, dtype=np.int64)
    runs = np.arange(n_init)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=0, dtype=np.float64).T
        draws = rng.random((n_init, trials)) * cum[:, -1:]
        cand = np.minimum(np.stack([np.searchsorted(cum[r], draws[r]) for r in runs]), n - 1)
        d = _sq_dist(X, x2, cand.ravel()).reshape(n, n_init, trials)
        best = np.minimum(d, closest[:, :, None]).sum(0, dtype=np.float64).argmin(1)
        new = d[:, runs, best]
        closer = new < closest
        second = np.where(closer, closest, np.minimum(second, new))
        closest = np.where(closer, new, closest)
        labels[closer] = c
        centres[:, c] = X[cand[runs, best]]
    return centres, labels.T, np.stack([closest.T, second.T], axis=-1)


def _sq_norms(X: np.ndarray) -> np.ndarray:
    """The squared norm of every row, summed in float64 (without a float64 copy of ``X``)."""
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def _cluster_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The sum of the rows of ``X`` in each of ``k`` clusters, (k, d) in float64."""
    onehot = sparse.csr_matrix((np.ones(len(labels), dtype=X.dtype), (labels, np.arange(len(labels)))),
                               shape=(k, len(labels)))
    return (onehot @ X).astype(np.float64)


def bounded_lloyd(X: np.ndarray, centres: np.ndarray, max_iter: int, tol: float,
                  sq_norms: np.ndarray | None = None,
                  start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd's iterations from ``centres`` until the summed squared centre shift is at most
    ``tol`` (absolute) or ``max_iter`` is reached: ``(centres, labels, inertia, iterations)``,
    the labels and inertia those of the returned centres. ``sq_norms``: the squared norms
    of the rows of ``X`` in float64; ``start``: each point's nearest centre and its squared
    distances to the nearest and second nearest, (n, 2), as :func:`kmeans_plusplus_batch`
    gives them (both searched when not given).

    Hamerly's bounds (each point's distance to its centre from above, to the second nearest
    from below, both moved by how far the centres moved) give Lloyd's assignments while
    faiss measures only the points whose bounds cross. An empty cluster takes the point
    farthest from its own centre, as in scikit-learn.
    """
    n, k = X.shape[0], centres.shape[0]
    index = faiss.IndexFlatL2(X.shape[1])
    everyone = np.arange(n)
    if sq_norms is None:
        sq_norms = _sq_norms(X)
    # float32 distances are not exact: a point is measured again unless its bounds clear this
    slack = 1e-5 * float(np.sqrt(sq_norms.max()))

    def nearest_two(rows, C):
        index.reset()
        index.add(C)
        if len(rows) == n:
            sq_dist, nearest = index.search(X, min(2, k))
        else:  # gathered in blocks: no copy of up to half the data
            found = [index.search(X[rows[s:s + _BLOCK]], min(2, k)) for s in range(0, len(rows), _BLOCK)]
            sq_dist, nearest = (np.concatenate(parts) for parts in zip(*found))
        dist = np.sqrt(np.maximum(sq_dist, 0.0)).astype(np.float64)
        return nearest[:, 0], dist[:, 0], (dist[:, 1] if k > 1 else np.full(len(rows), np.inf))

    C = np.array(centres, dtype=np.float32)
    if start is None:
        labels, upper, lower = nearest_two(everyone, C)
    else:
        labels = start[0].copy()
        upper, lower = np.sqrt(np.maximum(start[1], 0.0)).astype(np.float64).T.copy()
    sums, iterations, converged = None, 0, False
    while True:  # here ``labels`` are the nearest centres of ``C``
        counts = np.bincount(labels, minlength=k)
        done = converged or iterations == max_iter
        if not done and (counts == 0).any():
            _relocate(X, C, labels, upper, lower)
            counts, sums = np.bincount(labels, minlength=k), None
        if sums is None:
            sums = _cluster_sums(X, labels, k)
        if done:
            break
        iterations += 1
        filled = counts > 0
        new = C.copy()
        new[filled] = sums[filled] / counts[filled, None]
        shift = np.linalg.norm(new - C, axis=1).astype(np.float64)
        C = new
        converged = float((shift ** 2).sum()) <= tol
        upper += shift[labels]
        # the second nearest is another centre: it moved by at most the largest shift but one's own
        first, second = np.argsort(shift)[::-1][:2] if k > 1 else (0, 0)
        lower -= np.where(labels == first, shift[second], shift[first])
        measured = np.flatnonzero(upper + slack > lower)
        if 2 * len(measured) > n:
            measured = everyone
        before = labels[measured]
        if len(measured):
            labels[measured], upper[measured], lower[measured] = nearest_two(measured, C)
        changed = labels[measured] != before
        moved = measured[changed]
        if len(moved) > n // 4:
            sums = None
        elif len(moved):
            Xm = X[moved]
            sums += _cluster_sums(Xm, labels[moved], k) - _cluster_sums(Xm, before[changed], k)
    C64 = C.astype(np.float64)  # the summed squared distances, from the clusters' sums
    inertia = float(sq_norms.sum() - 2.0 * (C64 * sums).sum() + (counts * (C64 ** 2).sum(1)).sum())
    return C, labels, max(inertia, 0.0), iterations


def _relocate(X, C, labels, upper, lower):
    """Give each empty cluster a member (:func:`fill_empty_clusters`, in place) and reset every
    bound, so that the next iteration measures every point again."""
    far = np.concatenate([((X[s:s + _BLOCK] - C[labels[s:s + _BLOCK]]) ** 2).sum(1)  # no (n, d) temporaries
                          for s in range(0, len(X), _BLOCK)])
    labels[:], _ = fill_empty_clusters(labels, far, len(C))
    upper[:] = np.inf
    lower[:] = 0.0


def faiss_kmeans(X, k: int, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, int]:
    """k-means of ``X`` with ``n_init`` k-means++ restarts, the lowest inertia kept:
    ``(centres, labels, inertia, iterations)``. ``tol`` is relative to the mean feature
    variance, as in scikit-learn."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    tol_abs = tol * float(X.var(0).mean())
    sq_norms = _sq_norms(X)
    best = None
    for seeds, nearest, sq_dist in zip(*kmeans_plusplus_batch(X, k, n_init, rng)):
        centres, labels, inertia, n_iter = bounded_lloyd(X, seeds, max_iter, tol_abs, sq_norms, (nearest, sq_dist))
        if best is None or inertia < best[2]:
            best = (centres, labels.astype(np.int64), inertia, n_iter)
    return best
