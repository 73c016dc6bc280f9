"""Nearest-neighbour graphs on faiss: JULE's affinities, PIC's graph, neighbour
consistency and the confidence of ``mvcpaper cluster``'s report."""
from __future__ import annotations

import math

import faiss
import numpy as np

__all__ = ["nearest_neighbours", "EXACT_MAX_ROWS"]

#: up to this many rows the graph is exact; above, an inverted-file index answers
EXACT_MAX_ROWS = 20000


def nearest_neighbours(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row among the other rows: squared Euclidean
    distances and indices, (n, k) each, nearest first; a row is never its own neighbour,
    even among duplicates.

    Up to :data:`EXACT_MAX_ROWS` rows the search is exact (faiss's flat index,
    ``benchmarks/bench_knn.py``); its cost grows as n^2 (12 min for 100,000 rows of
    3840-d on two cores), so larger sets use faiss's inverted file, ``4 sqrt(n)`` lists of
    which 16 are searched, trained on a seeded sample: on the 100,000-row mixture of
    ``benchmarks/bench_scale.py``, 99.8% of the exact neighbours at 3840-d (6x faster
    than the exact search) and 99.98% at 160-d (4x; ``bench_knn.py --large 100000``).
    Rows whose searched lists hold fewer than ``k + 1`` rows are searched exactly.
    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Z.shape
    if n <= EXACT_MAX_ROWS:
        index = faiss.IndexFlatL2(d)
    else:
        n_lists = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, n_lists)
        sample = np.random.default_rng(0).choice(n, min(n, 39 * n_lists), replace=False)
        index.train(Z[np.sort(sample)])
        index.nprobe = 16
    index.add(Z)
    dist, idx = index.search(Z, min(k + 1, n))
    short = np.flatnonzero((idx < 0).any(1))  # probed lists held fewer than k + 1 rows: search those exactly
    if len(short):
        exact = faiss.IndexFlatL2(d)
        exact.add(Z)
        dist[short], idx[short] = exact.search(Z[short], min(k + 1, n))
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True  # a duplicate ranked before the row itself: drop the farthest instead
    keep = ~own
    return (np.maximum(dist[keep], 0).reshape(n, -1)[:, :k].astype(np.float64),
            idx[keep].reshape(n, -1)[:, :k].astype(np.int64))
