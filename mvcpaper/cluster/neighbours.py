"""Exact nearest-neighbour graphs on faiss: JULE's affinities, PIC's graph, neighbour
consistency and the confidence of ``mvcpaper cluster``'s report."""
from __future__ import annotations

import faiss
import numpy as np

__all__ = ["nearest_neighbours"]


def nearest_neighbours(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every row among the other rows: squared Euclidean
    distances and indices, (n, k) each, nearest first, by faiss's exact index
    (``benchmarks/bench_knn.py``); a row is never its own neighbour, even among duplicates."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n = Z.shape[0]
    index = faiss.IndexFlatL2(Z.shape[1])
    index.add(Z)
    dist, idx = index.search(Z, min(k + 1, n))
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True  # a duplicate ranked before the row itself: drop the farthest instead
    keep = ~own
    return (np.maximum(dist[keep], 0).reshape(n, -1)[:, :k].astype(np.float64),
            idx[keep].reshape(n, -1)[:, :k].astype(np.int64))
