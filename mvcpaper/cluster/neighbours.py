"""Nearest-neighbour graphs on faiss: JULE's affinities, PIC's graph, neighbour
consistency and the confidence of ``mvcpaper cluster``'s report."""
from __future__ import annotations

import math

import numpy as np
import torch

from ._faiss import faiss

__all__ = ["nearest_neighbours", "EXACT_MAX_ROWS", "PROBED_LISTS"]

#: up to this many rows the graph is exact; above, it is searched within inverted lists
EXACT_MAX_ROWS = 20000
#: nearest inverted lists whose rows each row is compared with, its own included
PROBED_LISTS = 4


def nearest_neighbours(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row among the other rows: squared Euclidean
    distances and indices, (n, k) each, nearest first; a row is never its own neighbour,
    even among duplicates.

    Up to :data:`EXACT_MAX_ROWS` rows the search is exact (faiss's flat index,
    ``benchmarks/bench_knn.py``); its cost grows as n^2, so larger sets are split into
    ``sqrt(n) / 2`` inverted lists by a faiss k-means on a seeded sample and every row is
    compared with the rows of its :data:`PROBED_LISTS` nearest lists: an inverted-file
    search, computed list by list as one brute-force search (``faiss.knn``) of the list by
    all the rows that probe it (faiss's IVF-Flat answers one row at a time, several times
    slower on the CPU; ``bench_knn.py --large 100000`` gives both, with their recall of the
    exact graph).
    Rows whose probed lists hold fewer than ``k + 1`` rows are searched exactly.
    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Z.shape
    kk = min(k + 1, n)
    if n <= EXACT_MAX_ROWS:
        index = faiss.IndexFlatL2(d)
        index.add(Z)
        dist, idx = index.search(Z, kk)
    else:
        dist, idx = _search_lists(Z, kk)
    short = np.flatnonzero((idx < 0).any(1))  # probed lists held fewer than k + 1 rows: search those exactly
    if len(short):
        exact = faiss.IndexFlatL2(d)
        exact.add(Z)
        dist[short], idx[short] = exact.search(Z[short], kk)
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True  # a duplicate ranked before the row itself: drop the farthest instead
    keep = ~own
    return (np.maximum(dist[keep], 0).reshape(n, -1)[:, :k].astype(np.float64),
            idx[keep].reshape(n, -1)[:, :k].astype(np.int64))


def _search_lists(Z: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` nearest rows (the row itself included) within each row's
    :data:`PROBED_LISTS` nearest lists; -1 where those hold fewer than ``kk`` rows."""
    n, d = Z.shape
    n_lists = int(math.sqrt(n) / 2)
    sample = np.random.default_rng(0).choice(n, min(n, 39 * n_lists), replace=False)
    kmeans = faiss.Kmeans(d, n_lists, niter=10, seed=0)
    kmeans.train(Z[np.sort(sample)])
    probed = kmeans.index.search(Z, min(PROBED_LISTS, n_lists))[1]  # each row's nearest lists, its own first
    n_probed = probed.shape[1]
    members, member_bounds = _group(probed[:, 0], n_lists)
    probes, probe_bounds = _group(probed.ravel(), n_lists)  # (row, rank) pairs as row * n_probed + rank
    found_d = np.full((n, n_probed, kk), np.inf, dtype=np.float32)  # each row's nearest in each of its probed lists
    found_i = np.full((n, n_probed, kk), -1, dtype=np.int64)
    for c in range(n_lists):
        m = members[member_bounds[c]:member_bounds[c + 1]]
        pairs = probes[probe_bounds[c]:probe_bounds[c + 1]]
        if not len(m) or not len(pairs):
            continue
        q, rank = pairs // n_probed, pairs % n_probed
        d2, j = faiss.knn(Z[q], Z[m], min(kk, len(m)))
        found_d[q, rank, :d2.shape[1]] = d2
        found_i[q, rank, :d2.shape[1]] = m[j]
    found_d, found_i = torch.from_numpy(found_d.reshape(n, -1)), torch.from_numpy(found_i.reshape(n, -1))
    best_d, pick = torch.topk(found_d, kk, dim=1, largest=False)
    best_i = torch.gather(found_i, 1, pick)
    best_i[torch.isinf(best_d)] = -1
    return best_d.numpy(), best_i.numpy()


def _group(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` sorted by key, and where each key's run starts (``n_keys + 1`` bounds)."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n_keys + 1))
