"""Multi-view ensemble clustering (MVEC): base partitions of each view, then a consensus.

Two consensus functions over the same base partitions (one or more per view, from any
registered method, JULE by default):

- :class:`MVECTao` (``mvec_tao``), Tao, Liu, Li, Ding & Fu, "From Ensemble Clustering to
  Multi-View Clustering" (IJCAI 2017): each view's base partitions give a co-association
  matrix ``S_v``; a consensus ``Z`` shared by the views and a sparse error ``E_v`` per view
  are found by

      min_{Z, E_v}  ||Z||_*  +  lam * sum_v ||E_v||_1     s.t.  S_v = Z + E_v  (every view)

  (robust PCA with one low-rank part shared by the views; inexact augmented Lagrangian,
  :func:`low_rank_sparse_consensus`), and spectral clustering of ``Z`` gives the labels.
  The paper couples a spectral-clustering term to this objective and solves the two
  jointly; we solve the decomposition first and cluster ``Z`` after it (the consensus is
  the same model; only the joint update of the spectral embedding is left out).
  Both steps run exactly on the micro-clusters (samples with the same label in every base
  partition): their rows of every ``S_v`` are equal, every iterate keeps that block
  structure, so the n x n problem reduces to an m x m one with the block sizes as weights
  (m, the distinct label combinations, is a few hundred on COIL-100's 7200 images).
- :class:`MVECCoassoc` (``mvec_coassoc``): the co-association consensus (Fred & Jain
  2005), the variant the paper's authors used in their own tutorial: the mean of the
  ``S_v`` clustered by average-linkage agglomeration.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg
from scipy.cluster.hierarchy import DisjointSet
from sklearn.base import clone

from .._utils import resolve_device
from ..errors import MvcpaperError
from ._base import ClusterBase, check_n_clusters
from .jule import JULE

__all__ = ["MVECTao", "MVECCoassoc", "co_association", "co_association_consensus", "low_rank_sparse_consensus",
           "micro_clusters", "weighted_average_linkage", "block_spectral_clustering", "MAX_MICRO_CLUSTERS",
           "MAX_TAO_MICRO_CLUSTERS"]


def co_association(partitions) -> np.ndarray:
    """``S[i, j]`` = fraction of the partitions that put samples i and j in one cluster."""
    parts = [np.asarray(p) for p in partitions]
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError(f"partitions must label the same samples; got lengths {[len(p) for p in parts]}")
    S = np.zeros((n, n), dtype=np.float32)
    for p in parts:
        codes = np.unique(p, return_inverse=True)[1]
        onehot = np.eye(int(codes.max()) + 1, dtype=np.float32)[codes]
        S += onehot @ onehot.T
    return S / len(parts)


#: largest number of distinct label combinations (micro-clusters) the co-association consensus
#: clusters: its m x m distances take 8 m^2 bytes (3.2 GB at 20,000)
MAX_MICRO_CLUSTERS = 20_000

#: most micro-clusters :class:`MVECTao` accepts: it keeps about a dozen m x m float32 matrices (4.5 GB at 10,000)
MAX_TAO_MICRO_CLUSTERS = 10_000


def micro_clusters(partitions) -> tuple[np.ndarray, np.ndarray]:
    """The samples grouped by their tuple of labels across ``partitions``: ``(group of each
    sample, one representative sample per group)``. Samples of one group are put together by
    every partition, so their co-association is 1 and their distances to every other sample
    are equal."""
    codes = np.stack([np.unique(np.asarray(p), return_inverse=True)[1] for p in partitions], axis=1)
    _, first, group = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return group.ravel(), first


def weighted_average_linkage(D: np.ndarray, sizes: np.ndarray, n_clusters: int) -> np.ndarray:
    """Average linkage (UPGMA) of ``m`` groups of ``sizes`` identical samples, cut at ``n_clusters``.

    ``D`` (m x m) holds the distances between groups. The result is that of average
    linkage on the samples themselves, whose first merges join each group at distance 0:
    by the Lance-Williams update a merged cluster's distance is the size-weighted mean of
    its parts'. The dendrogram is built by nearest-neighbour chains (O(m^2) time, D's
    memory), then its m - n_clusters lowest merges are applied. Returns each group's label.
    """
    m = len(D)
    D = np.array(D, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    size = np.asarray(sizes, dtype=np.float64).copy()
    merges, chain, alive = [], [], np.ones(m, dtype=bool)
    for _ in range(m - 1):
        while True:
            if not chain:
                chain.append(int(np.flatnonzero(alive)[0]))
            a = chain[-1]
            b = int(np.argmin(D[a]))
            if len(chain) > 1 and D[a, chain[-2]] <= D[a, b]:
                b = chain[-2]  # ties go to the previous link, so the chain ends in a reciprocal pair
            if len(chain) > 1 and b == chain[-2]:
                break
            chain.append(b)
        chain = chain[:-2]
        merges.append((D[a, b], a, b))
        D[a] = (size[a] * D[a] + size[b] * D[b]) / (size[a] + size[b])
        D[:, a] = D[a]
        D[a, a] = np.inf
        D[b], D[:, b] = np.inf, np.inf
        size[a] += size[b]
        alive[b] = False
    groups = DisjointSet(range(m))
    for _, a, b in sorted(merges, key=lambda t: t[0])[:m - n_clusters]:  # heights are monotone under UPGMA
        groups.merge(a, b)
    return np.unique([groups[i] for i in range(m)], return_inverse=True)[1]


def _micro_clusters_within(partitions, n_clusters: int, limit: int, consensus: str, remedy: str):
    """:func:`micro_clusters` of the partitions, after checking ``n_clusters`` against the
    samples; a one-line error when there are more than ``limit`` micro-clusters."""
    group, reps = micro_clusters(partitions)
    check_n_clusters(n_clusters, len(group))
    if len(reps) > limit:
        raise MvcpaperError(f"the base partitions split the samples into {len(reps)} distinct label combinations, "
                            f"more than {consensus} handles ({limit}); use {remedy}")
    return group, reps


def co_association_consensus(partitions, n_clusters: int) -> np.ndarray:
    """Average-linkage agglomeration of the co-association matrix (distance ``1 - S``), exactly,
    on the micro-clusters (:func:`micro_clusters`) instead of the samples: memory and time
    follow the number of distinct label combinations, not n^2 (an error above
    :data:`MAX_MICRO_CLUSTERS` of them)."""
    group, reps = _micro_clusters_within(partitions, n_clusters, MAX_MICRO_CLUSTERS, "the co-association consensus",
                                         "fewer or coarser base partitions")
    if len(reps) <= n_clusters:
        return np.unique(group, return_inverse=True)[1]
    S = co_association([np.asarray(p)[reps] for p in partitions])
    return weighted_average_linkage(1.0 - S, np.bincount(group), n_clusters)[group]


def _singular_value_threshold(B: torch.Tensor, tau: float, rank: int) -> tuple[torch.Tensor, int]:
    """The proximal map of ``tau * ||.||_*`` at a symmetric ``B`` and the number of singular
    values kept. Its singular values are the moduli of its eigenvalues; only those above
    ``tau`` matter, so the eigenpairs come from a randomised range finder of ``rank``
    columns (Halko et al. 2011; two power iterations), the rank doubled until the smallest
    one found is below ``tau``, and from a full eigendecomposition once ``rank`` reaches
    half the size (a full one of 7200 x 7200 takes 36 s on 2 cores, a rank-300 one 2 s)."""
    n = B.shape[0]
    while True:
        if 2 * rank >= n:
            vals, vecs = torch.linalg.eigh(B)
            break
        gen = torch.Generator(device=B.device).manual_seed(rank)
        Q = torch.linalg.qr(B @ torch.randn(n, rank + 10, generator=gen, device=B.device, dtype=B.dtype))[0]
        for _ in range(2):
            Q = torch.linalg.qr(B @ Q)[0]
        vals, small = torch.linalg.eigh(Q.T @ B @ Q)
        vecs = Q @ small
        if vals.abs().min() < tau:
            break
        rank *= 2
    kept = vals.abs() > tau
    vals, vecs = vals[kept], vecs[:, kept]
    return (vecs * (torch.sign(vals) * (vals.abs() - tau))) @ vecs.T, int(kept.sum())


def low_rank_sparse_consensus(S: list[np.ndarray], lam: float | None = None, mu: float | None = None,
                              rho: float = 1.5, tol: float = 1e-6, max_iter: int = 200, sizes=None,
                              device: str = "cpu"):
    """Solve ``min ||Z||_* + lam sum_v ||E_v||_1  s.t.  S_v = Z + E_v`` for symmetric ``S_v``.

    Inexact augmented Lagrangian method (as Lin, Chen & Ma's robust PCA solver, with the
    low-rank part shared by every view): alternately the singular value thresholding of the
    views' mean residual for ``Z``, soft thresholding for each ``E_v``, a dual ascent step,
    and ``mu *= rho``; stops when every constraint holds to ``tol`` relative to ``||S_v||_F``.
    ``lam`` defaults to robust PCA's ``1 / sqrt(n)``; ``mu`` to ``1.25 / ||mean S_v||_2``.

    ``sizes`` (m,), when given, says that row and column ``a`` of the m x m ``S_v`` stand
    for ``sizes[a]`` identical samples: the problem solved is the n x n one (n = the sum)
    of the expanded matrices, whose solution is block-constant, exactly. In the coordinates
    ``X' = X * sqrt(s_a s_b)`` the nuclear and Frobenius norms are those of the expanded
    matrices and the l1 norm is weighted by ``sqrt(s_a s_b)``, so the iterations are the
    unweighted ones with a soft threshold scaled per entry.

    Returns ``(Z, E, iterations)`` (per block when ``sizes`` is given), ``E`` a list, numpy arrays.
    """
    m = S[0].shape[0]
    if any(s.shape != (m, m) for s in S):
        raise ValueError(f"co-association matrices must all be {m} x {m}; got {[s.shape for s in S]}")
    sizes = np.ones(m) if sizes is None else np.asarray(sizes, dtype=np.float64)
    if sizes.shape != (m,) or (sizes < 1).any():
        raise ValueError(f"sizes must be {m} positive counts, one per row of S; got shape {sizes.shape}")
    dtype = torch.float64 if m <= 3000 else torch.float32  # float32 halves the memory of large sets
    root = torch.as_tensor(np.sqrt(sizes), dtype=dtype, device=device)
    G = root[:, None] * root[None, :]                                 # sqrt(s_a s_b)
    Ss = [torch.as_tensor(s, dtype=dtype, device=device) * G for s in S]
    lam = 1.0 / math.sqrt(sizes.sum()) if lam is None else float(lam)
    mean = sum(Ss) / len(Ss)
    if mu is None:  # robust PCA's 1.25 / ||.||_2, the norm by power iteration (a full SVD costs minutes)
        v = torch.ones(m, 1, dtype=dtype, device=device)
        for _ in range(50):
            v = mean @ v
            v /= torch.linalg.vector_norm(v)
        mu = 1.25 / float(torch.linalg.vector_norm(mean @ v))
    scale = max(float(torch.linalg.matrix_norm(s)) for s in Ss)
    Z = torch.zeros_like(Ss[0])
    E = [torch.zeros_like(s) for s in Ss]
    Y = [torch.zeros_like(s) for s in Ss]
    B, T, threshold = torch.empty_like(Z), torch.empty_like(Z), torch.empty_like(Z)  # work buffers
    it, rank = 0, 16
    while it < max_iter:
        it += 1
        B.zero_()
        for s, e, y in zip(Ss, E, Y):
            B.add_(s).sub_(e).add_(y, alpha=1.0 / mu)
        B.div_(len(Ss))
        Z, kept = _singular_value_threshold(B, 1.0 / (mu * len(Ss)), rank)
        rank = max(16, kept + 10)
        torch.mul(G, lam / mu, out=threshold)
        gap = 0.0
        for s, e, y in zip(Ss, E, Y):
            T.copy_(y).div_(mu).add_(s).sub_(Z)                      # E_v = shrink(S_v - Z + Y_v / mu)
            torch.minimum(torch.maximum(T, -threshold, out=e), threshold, out=e)
            e.neg_().add_(T)
            T.copy_(s).sub_(Z).sub_(e)                               # the constraint's residual
            y.add_(T, alpha=mu)
            gap = max(gap, float(torch.linalg.matrix_norm(T)) / scale)
        mu *= rho
        if gap < tol:
            break
    return (Z / G).cpu().numpy(), [(e / G).cpu().numpy() for e in E], it


def _cluster_qr(vectors: np.ndarray) -> np.ndarray:
    """Labels from a spectral embedding by column-pivoted QR (Damle, Minden & Ying 2019): the
    pivots pick one representative row per cluster, each row goes to the representative
    direction it is most aligned with after an orthogonal rotation."""
    k = vectors.shape[1]
    piv = linalg.qr(vectors.T, pivoting=True, mode="r")[1]
    u, _, vt = linalg.svd(vectors[piv[:k]].T)
    return np.abs(vectors @ (u @ vt)).argmax(1)


def block_spectral_clustering(W: np.ndarray, sizes, n_clusters: int) -> np.ndarray:
    """Spectral clustering of the n x n affinity whose blocks of ``sizes[a] x sizes[b]``
    samples all equal ``W[a, b]``, computed on the m x m ``W``: one label per block.

    It is scikit-learn's ``SpectralClustering(affinity="precomputed",
    assign_labels="cluster_qr")`` on the expanded matrix: the normalised Laplacian (self
    loops left out of the degrees, as scipy's), its ``n_clusters`` leading eigenvectors
    divided by the square root of the degrees, cluster-QR labels. Eigenvectors of the
    expanded matrix are either constant on every block (those of the m x m matrix below)
    or sum to zero inside one block with eigenvalue ``-W[a, a] / degree``; the leading
    ones are the former, so the embedding has one row per block.
    """
    s = np.asarray(sizes, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    degree = W @ s - np.diag(W)
    degree[degree <= 0] = 1.0  # an isolated sample, as scipy's Laplacian treats it
    scale = np.sqrt(s / degree)
    reduced = scale[:, None] * W * scale[None, :] - np.diag(np.diag(W) / degree)
    vectors = linalg.eigh(reduced, subset_by_index=[len(s) - n_clusters, len(s) - 1])[1]
    return _cluster_qr(vectors / np.sqrt(s * degree)[:, None])


class _MultiViewEnsemble(ClusterBase):
    """Base partitions of every view by a base method; subclasses combine them."""

    def __init__(self, n_clusters: int = 8, base=None, n_partitions: int = 1, device: str = "auto",
                 random_state: int = 0, progress: bool = True):
        self.n_clusters = n_clusters
        self.base = base
        self.n_partitions = n_partitions
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _base_partitions(self, X) -> list[list[np.ndarray]]:
        views = self._multiview(X)
        if int(self.n_partitions) < 1:
            raise ValueError(f"n_partitions must be at least 1; got {self.n_partitions}")
        template = self.base if self.base is not None else JULE()
        parts = []
        for v in views:
            parts.append([clone(template).set_params(n_clusters=self.n_clusters, random_state=self.random_state + r,
                                                     device=self.device, progress=self.progress).fit_predict(v)
                          for r in range(int(self.n_partitions))])
        return parts

    def fit(self, X, y=None):
        self.partitions_ = self._base_partitions(X)
        self._set_labels(self.consensus(self.partitions_))
        return self


class MVECCoassoc(_MultiViewEnsemble):
    """MVEC with the co-association consensus: average linkage on the mean co-association.

    Parameters
    ----------
    n_clusters : int
    base : estimator, optional
        The method that clusters each view (default ``JULE()``), as a template: each base
        partition is a clone with this estimator's ``n_clusters``, ``device`` and
        ``progress`` and the seed ``random_state + r``; its other parameters are kept
        (``MVECCoassoc(base=IDEC(max_steps=200))``).
    n_partitions : int
        Base partitions per view (seeds ``random_state``, ``random_state + 1``, ...).
    device, random_state, progress : as everywhere (passed to the base method).

    Attributes
    ----------
    labels_, partitions_ (the base partitions: one list per view).
    """

    def consensus(self, partitions) -> np.ndarray:
        """The consensus labels of base partitions given as one list per view."""
        return co_association_consensus([p for view in partitions for p in view], self.n_clusters)


class MVECTao(_MultiViewEnsemble):
    """MVEC as Tao et al. (IJCAI 2017): a low-rank consensus of the views' co-association
    matrices with a sparse error per view, clustered spectrally (module docstring).

    Parameters
    ----------
    n_clusters, base, n_partitions, device, random_state, progress : as :class:`MVECCoassoc`.
    lam : float or None
        Weight of the sparse errors (``None``: ``1 / sqrt(n)``, robust PCA's choice, the
        same scale-free default for every set).
    max_iter : int
        Augmented Lagrangian iterations at most.

    Attributes
    ----------
    labels_, partitions_, n_iter_
    groups_ : ndarray (n_samples,)
        Each sample's micro-cluster (same label in every base partition).
    consensus_ : ndarray (m, m) or None
        ``Z`` between micro-clusters (``consensus_[groups_][:, groups_]`` is the n x n one);
        None when there are no more micro-clusters than clusters (each is one cluster).
    """

    def __init__(self, n_clusters: int = 8, base=None, n_partitions: int = 1, lam: float | None = None,
                 max_iter: int = 200, device: str = "auto", random_state: int = 0, progress: bool = True):
        super().__init__(n_clusters=n_clusters, base=base, n_partitions=n_partitions, device=device,
                         random_state=random_state, progress=progress)
        self.lam = lam
        self.max_iter = max_iter

    def consensus(self, partitions) -> np.ndarray:
        """The consensus labels of base partitions given as one list per view."""
        group, reps = _micro_clusters_within([p for view in partitions for p in view], self.n_clusters,
                                             MAX_TAO_MICRO_CLUSTERS, "MVEC (Tao)",
                                             "'mvec_coassoc' (Tao's keeps a dozen dense matrices of that size) or "
                                             "fewer, coarser base partitions")
        self.groups_ = group
        if len(reps) <= self.n_clusters:
            self.consensus_, self.n_iter_ = None, 0
            return group
        S = [co_association([np.asarray(p)[reps] for p in view]) for view in partitions]
        sizes = np.bincount(group)
        Z, _, self.n_iter_ = low_rank_sparse_consensus(S, self.lam, max_iter=self.max_iter, sizes=sizes,
                                                       device=resolve_device(self.device))
        self.consensus_ = Z
        return block_spectral_clustering(np.clip((Z + Z.T) / 2, 0, None), sizes, self.n_clusters)[group]
