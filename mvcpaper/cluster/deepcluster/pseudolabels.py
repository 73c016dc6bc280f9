"""DeepCluster's pseudo-labels: PCA-whitening, k-means that never leaves a cluster empty,
power iteration clustering, and sampling uniformly over the pseudo-classes."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .._base import check_n_clusters, fill_empty_clusters
from .._faiss import faiss
from ..kmeans import kmeans_plusplus, lloyd
from ..neighbours import nearest_neighbours

__all__ = ["pca_whiten", "kmeans_pseudolabels", "pic_cluster", "uniform_label_sampler"]


def pca_whiten(X: torch.Tensor, dim: int = 256, eps: float = 1e-5, seed: int = 0, svd: str = "auto") -> torch.Tensor:
    """PCA to ``dim`` components, whitened (unit variance each), then L2-normalised rows.

    When ``dim`` is well below the data's rank the principal axes come from a randomised
    SVD (``torch.svd_lowrank``, 4 power iterations, drawn from ``seed`` without touching
    the global random state): 3600 x 4096 features to 256 dimensions take ~1 s instead of
    ~11 s for the full SVD here (benchmarks/bench_deepcluster.py), with the same leading axes. ``svd="full"`` or
    ``"randomized"`` forces one method.
    """
    if svd not in ("auto", "full", "randomized"):
        raise ValueError(f"svd must be 'auto', 'full' or 'randomized', got {svd!r}")
    X = X.float()
    X = X - X.mean(0, keepdim=True)
    n, d = X.shape
    dim = min(dim, n - 1, d)
    q = dim + 16
    if svd == "randomized" or (svd == "auto" and 2 * q <= min(n, d)):
        q = min(q, n, d)
        devices = [X.device] if X.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            _, S, V = torch.svd_lowrank(X, q=q, niter=4)
        axes = V[:, :dim]
    else:  # SVD of the centred data: the right singular vectors are the principal axes
        _, S, Vh = torch.linalg.svd(X, full_matrices=False)
        axes = Vh[:dim].T
    var = S[:dim] ** 2 / max(n - 1, 1)
    Z = (X @ axes) / torch.sqrt(var + eps)
    return F.normalize(Z, dim=1)


def kmeans_pseudolabels(X: torch.Tensor, k: int, n_iter: int = 20, seed: int = 0,
                        init: str = "random", engine: str = "auto") -> tuple[np.ndarray, float]:
    """k-means (``n_iter`` Lloyd steps) that never leaves a cluster empty.

    ``init="random"`` starts from k distinct random points, as the reference code's
    faiss k-means does (cheap at large k); ``"k-means++"`` seeds greedily (sequential
    in k: 25 s for k=1000 on 7200 points on the CPU here).

    ``engine``: ``"faiss"`` (faiss's Lloyd steps, which refill an empty cluster by splitting
    a large one, as the reference code runs them), ``"torch"`` (:func:`~mvcpaper.cluster.kmeans.lloyd`,
    which re-seeds it with the point farthest from its centre; on the tensor's device), or
    ``"auto"``: faiss for a CPU tensor, torch for a CUDA one (faiss-gpu is not installed
    by this package). If the final assignment still leaves a cluster empty (duplicated
    points), it takes the point farthest from its centre among the clusters of two or more
    (``fill_empty_clusters``, scikit-learn's rule).
    Returns the labels and the mean squared distance to the assigned centre.
    """
    n = X.shape[0]
    check_n_clusters(k, n)
    if engine == "auto":
        engine = "torch" if X.device.type == "cuda" else "faiss"
    if engine not in ("faiss", "torch"):
        raise ValueError(f"engine must be 'auto', 'faiss' or 'torch', not {engine!r}")
    gen = torch.Generator().manual_seed(int(seed))
    if init == "random":
        C0 = X[torch.randperm(n, generator=gen)[:k].to(X.device)].clone()
    elif init == "k-means++":
        C0 = kmeans_plusplus(X, k, gen)
    else:
        raise ValueError(f"init must be 'random' or 'k-means++', got {init!r}")
    if engine == "torch":
        _, labels, d, _ = lloyd(X, C0, n_iter, tol=0.0)
        labels, d = labels.cpu().numpy(), d.cpu().numpy()
    else:
        Xn = np.ascontiguousarray(X.detach().cpu().numpy(), dtype=np.float32)
        km = faiss.Kmeans(Xn.shape[1], k, niter=n_iter, seed=int(seed), min_points_per_centroid=1,
                          max_points_per_centroid=n, verbose=False)
        km.train(Xn, init_centroids=np.ascontiguousarray(C0.cpu().numpy(), dtype=np.float32))
        d, labels = km.index.search(Xn, 1)
        labels, d = labels.ravel().astype(np.int64), np.maximum(d.ravel(), 0)
    labels, d = fill_empty_clusters(labels, d, k)
    return labels, float(d.mean())


def pic_cluster(X: np.ndarray, n_neighbors: int = 5, sigma: float = 0.2, alpha: float = 0.001,
                n_iter: int = 200, distribute_singletons: bool = True) -> np.ndarray:
    """Power iteration clustering (Lin & Cohen 2010) as DeepCluster runs it.

    A symmetric kNN graph with Gaussian weights ``exp(-d^2 / sigma^2)``; a random walk
    with restart (``v <- alpha W v + (1 - alpha) / n``, L1-normalised) for ``n_iter``
    steps; then every node points to the neighbour ``j`` maximising ``W_ij (v_j - v_i)``
    (itself when none is higher) and each cluster is the basin of a local maximum of
    ``v``. The number of clusters is found, not set. Singletons join the cluster of
    their nearest non-singleton neighbour.
    """
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    kn = min(n_neighbors, n - 1)
    d2, idx = nearest_neighbours(X, kn)
    A = sp.csr_matrix((np.exp(-d2 / sigma ** 2).ravel(), idx.ravel(), np.arange(0, n * kn + 1, kn)),
                      shape=(n, n))
    W = (A + A.T).tocsr()
    v = np.full(n, 1.0 / n)
    for _ in range(n_iter):
        v = alpha * (W.T @ v) + (1 - alpha) / n
        v /= v.sum()
    # pointer to the neighbour of largest weighted ascent (itself when no neighbour is higher)
    Wc = W.tocoo()
    gain = Wc.data * (v[Wc.col] - v[Wc.row])
    order = np.lexsort((gain, Wc.row))  # by row, then gain: each row's best edge comes last
    rows, cols, gains = Wc.row[order], Wc.col[order], gain[order]
    last = np.r_[rows[1:] != rows[:-1], True]
    take = last & (gains > 0)
    pointer = np.arange(n)
    pointer[rows[take]] = cols[take]
    root = pointer.copy()  # follow the pointers to a local maximum (pointer jumping)
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    _, labels = np.unique(root, return_inverse=True)
    if distribute_singletons:
        sizes = np.bincount(labels)
        for i in np.flatnonzero(sizes[labels] == 1):
            for j in idx[i]:
                if sizes[labels[j]] > 1:
                    sizes[labels[i]] -= 1
                    labels[i] = labels[j]
                    sizes[labels[j]] += 1
                    break
        _, labels = np.unique(labels, return_inverse=True)
    return labels


def uniform_label_sampler(labels: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` indices drawn uniformly over the non-empty pseudo-classes.

    Each non-empty class gets ``n_samples // m`` or one more draws (``m`` classes), from
    its own members (with replacement only where it has fewer members than draws), in
    a random order. A class of 3 images and a class of 3000 are seen equally often.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    m = len(classes)
    counts = np.full(m, n_samples // m)
    counts[rng.choice(m, n_samples - counts.sum(), replace=False)] += 1
    out = []
    for c, cnt in zip(classes, counts):
        members = np.flatnonzero(labels == c)
        out.append(rng.choice(members, cnt, replace=cnt > len(members)))
    out = np.concatenate(out)
    return out[rng.permutation(len(out))]
