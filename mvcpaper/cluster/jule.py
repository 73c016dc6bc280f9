"""JULE (Yang, Parikh & Batra, CVPR 2016) on feature vectors.

Joint Unsupervised LEarning alternates two steps until ``n_clusters`` remain:

1. **Merging** (forward pass): agglomerative clustering over a kNN graph of the current
   representation. Sample affinity ``w_ij = exp(-d_ij^2 / sigma^2)`` for ``j`` among the
   ``k_s`` nearest neighbours of ``i`` (``sigma^2`` = mean squared kNN distance). The
   cluster affinity is AGDL's (Zhang et al., ECCV 2012)::

       A(a, b) = 1'W_ab W_ba 1 / |a|^2 + 1'W_ba W_ab 1 / |b|^2

   The initial clusters are the connected components of the 1-nearest-neighbour graph.
   Each step merges the cluster ``i`` and its most affine neighbour ``j`` that maximise
   JULE's criterion ``A(i, j) + lambda / (K_c - 1) * sum_{k=2..K_c} (A(i, j) - A(i, n_k))``
   (``n_k``: the k-th most affine neighbour of ``i``), which favours pairs that stand
   out from the rest of ``i``'s neighbourhood. A period merges ``ceil(eta * n)`` times
   (``eta``: the unfolding rate, ``n``: clusters at its start), never below ``n_clusters``.
2. **Representation learning** (backward pass): after each period a network is trained
   for ``epochs_per_period`` epochs with a weighted triplet loss on its L2-normalised
   output, ``max(0, pos_weight * |a - p|^2 - |a - n|^2 + margin)``, anchor and positive
   from one cluster, negatives from any other cluster (``negatives="random"``, default)
   or from the ``k_c`` most affine clusters of the anchor's cluster (``"neighbours"``,
   JULE's paper). The graph and affinities are then recomputed on the new representation
   (the clusters are kept) and merging continues.

With ``recluster=True`` (JULE-RC in the paper) the final representation is clustered
once more from scratch (merging only) to give ``labels_``.

The cluster affinity is maintained exactly and incrementally: with ``H`` the one-hot
label matrix, ``M1 = H'W`` (in-weights from each cluster to each sample) and
``M2 = W H`` (out-weights), ``A_unsym[a, b] = sum_{j in b} M1[a, j] M2[j, a]``, which is
additive in ``b``; a merge updates one row and one column in ``O(n + c)``. Memory is
``O(n * c0)`` for ``c0`` initial clusters (about 0.4 GB for 7200 samples).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors
from torch import nn
from torch.nn import functional as F

from .._utils import resolve_device, seeded, tqdm
from ..preprocessing import l2_normalize
from ._base import ClusterBase, check_n_clusters

__all__ = ["JULE", "knn_affinity", "initial_clusters", "AffinityMerger", "MLPEmbedding", "triplet_loss"]


# --------------------------------------------------------------------------- graph
def knn_affinity(Z: np.ndarray, k: int):
    """Sparse kNN affinity ``W`` (n x n, csr, zero diagonal) and the neighbour indices (n x k)."""
    n = Z.shape[0]
    k = int(min(k, n - 1))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
    # drop each sample itself (with duplicates it may not come first); keep k others
    not_self = idx != np.arange(n)[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
    idx = np.take_along_axis(idx, order, 1)
    d2 = np.take_along_axis(dist, order, 1).astype(np.float64) ** 2
    sigma2 = max(float(d2.mean()), 1e-12)
    vals = np.exp(-d2 / sigma2)
    W = sparse.csr_matrix((vals.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    W.sum_duplicates()
    return W, idx


def initial_clusters(nn_idx: np.ndarray, W=None, min_clusters: int = 1) -> np.ndarray:
    """Connected components of the graph linking every sample to its nearest neighbour.

    When that gives fewer than ``min_clusters`` components (small sets, many clusters,
    duplicated points), the weakest links (lowest affinity in ``W``) are cut until there
    are at least ``min_clusters``: the graph is a forest plus one cycle per component, so
    each cut of a tree edge adds one component, and merging can then reach any number.
    """
    n = nn_idx.shape[0]
    src, dst = np.arange(n), nn_idx[:, 0]
    keep = np.ones(n, dtype=bool)
    while True:
        g = sparse.csr_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n))
        c, labels = connected_components(g, directed=True, connection="weak")
        if c >= min_clusters or not keep.any():
            return labels
        if W is None:
            raise ValueError("initial_clusters needs the affinities W to split components")
        edge = np.minimum(src, dst) * n + np.maximum(src, dst)  # undirected: a mutual pair is one link
        weight = np.asarray(W[src, dst]).ravel()
        live = np.unique(edge[keep])
        strength = {e: w for e, w in zip(edge, weight)}
        weakest = sorted(live, key=lambda e: (strength[e], e))[: min_clusters - c]
        keep &= ~np.isin(edge, weakest)


class AffinityMerger:
    """Greedy agglomeration under JULE's criterion with exact AGDL affinities.

    Parameters
    ----------
    W : sparse (n, n)
        Sample affinities.
    labels : ndarray (n,)
        Starting clusters (any integer labels).
    k_c : int
        Neighbouring clusters in the criterion.
    lam : float
        Weight of the "stands out from its neighbourhood" term (0: plain highest affinity).
    """

    def __init__(self, W, labels, k_c: int = 5, lam: float = 1.0):
        _, self.labels = np.unique(labels, return_inverse=True)
        self.labels = self.labels.astype(np.int64)
        n, c = len(self.labels), int(self.labels.max()) + 1
        self.k_c, self.lam = max(int(k_c), 2), float(lam)
        H = sparse.csr_matrix((np.ones(n), (np.arange(n), self.labels)), shape=(n, c))
        W = sparse.csr_matrix(W, dtype=np.float64)
        self.M1 = np.asarray((H.T @ W).todense())          # c x n: in-weight from cluster a to sample j
        self.M2 = np.asarray((W @ H).todense())            # n x c: out-weight from sample j to cluster a
        G = self.M1.T * self.M2                            # n x c
        self.U = np.asarray((H.T @ G).T)                   # U[a, b] = sum_{j in b} G[j, a]
        self.size = np.bincount(self.labels, minlength=c).astype(np.float64)
        self.active = np.ones(c, dtype=bool)
        self.A = self.U / self.size[:, None] ** 2
        self.A = self.A + self.A.T
        np.fill_diagonal(self.A, -np.inf)
        self.score = np.empty(c)
        self.partner = np.empty(c, dtype=np.int64)
        for i in range(c):
            self._rescore(i)

    @property
    def n_clusters(self) -> int:
        return int(self.active.sum())

    def _rescore(self, i: int):
        if not self.active[i]:
            self.score[i], self.partner[i] = -np.inf, -1
            return
        row = self.A[i]
        kc = min(self.k_c, self.n_clusters - 1)
        if kc < 1:
            self.score[i], self.partner[i] = -np.inf, -1
            return
        top = np.argpartition(-row, kc - 1)[:kc]
        top = top[np.argsort(-row[top])]
        s = row[top]
        best = s[0]
        extra = self.lam / (kc - 1) * float(((best - s[1:]).clip(min=0)).sum()) if kc > 1 else 0.0
        self.score[i] = best + extra if best > 0 else -np.inf
        self.partner[i] = top[0]

    def neighbours(self, k: int) -> list[np.ndarray]:
        """For each active cluster (in label order of :meth:`compact_labels`), its ``k`` most affine ones."""
        ids = np.flatnonzero(self.active)
        out = []
        for i in ids:
            row = self.A[i, ids]
            cand = np.flatnonzero(np.isfinite(row) & (row > 0))
            cand = cand[np.argsort(-row[cand])][:k]
            out.append(cand)
        return out

    def compact_labels(self) -> np.ndarray:
        _, lab = np.unique(self.labels, return_inverse=True)
        return lab

    def _fallback_pair(self):
        """No positive affinity left (disconnected graph): merge the smallest cluster with any other."""
        ids = np.flatnonzero(self.active)
        a = ids[np.argmin(self.size[ids])]
        b = ids[ids != a][0]
        return a, b

    def merge_once(self):
        i = int(np.argmax(self.score))
        if not np.isfinite(self.score[i]):
            a, b = self._fallback_pair()
        else:
            a, b = i, int(self.partner[i])
        # clusters whose best partner or top-k_c may change: every neighbour of a or b
        touched = set(np.flatnonzero(self.A[:, a] > 0)) | set(np.flatnonzero(self.A[:, b] > 0))
        self.M1[a] += self.M1[b]
        self.M2[:, a] += self.M2[:, b]
        self.U[:, a] += self.U[:, b]
        self.labels[self.labels == b] = a
        self.size[a] += self.size[b]
        self.size[b] = 0
        self.active[b] = False
        g = self.M1[a] * self.M2[:, a]
        self.U[a] = np.bincount(self.labels, weights=g, minlength=len(self.size))
        self.U[b] = 0
        self.U[:, b] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            new = self.U[a] / self.size[a] ** 2 + np.where(self.active, self.U[:, a] / self.size ** 2, 0)
        new[~self.active] = -np.inf
        new[a] = -np.inf
        self.A[a], self.A[:, a] = new, new
        self.A[b], self.A[:, b] = -np.inf, -np.inf
        touched |= set(np.flatnonzero(new > 0))
        touched.add(a)
        touched.discard(b)
        self._rescore(b)
        for t in touched:
            if self.active[t]:
                self._rescore(int(t))

    def merge(self, steps: int):
        for _ in range(int(steps)):
            if self.n_clusters <= 1:
                break
            self.merge_once()


# --------------------------------------------------------------------------- network
class MLPEmbedding(nn.Module):
    """``x -> L2-normalise(MLP(x))``: JULE's representation on feature vectors."""

    def __init__(self, in_dim: int, hidden=(), embed_dim: int = 100):
        super().__init__()
        layers, d = [], in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, embed_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, xs):
        x = xs[0] if isinstance(xs, (list, tuple)) else xs
        return F.normalize(self.net(x), dim=1)


def triplet_loss(a, p, n, margin: float = 0.2, pos_weight: float = 2.0):
    """JULE's weighted triplet loss on embeddings (squared Euclidean distances)."""
    dp = (a - p).pow(2).sum(1)
    dn = (a - n).pow(2).sum(1)
    return F.relu(pos_weight * dp - dn + margin).mean()


def sample_triplets(labels: np.ndarray, neighbours: list[np.ndarray] | None, n_neg: int, rng: np.random.Generator):
    """Anchor/positive from one cluster (every sample of a cluster with 2+ members is an
    anchor once), ``n_neg`` negatives each: drawn from the anchor cluster's affine
    neighbours, or, with ``neighbours=None``, uniformly from the samples of other clusters."""
    c = int(labels.max()) + 1
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=c)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    anchors = np.flatnonzero(counts[labels] >= 2)
    if len(anchors) == 0:
        return (np.empty(0, int),) * 3
    lab = labels[anchors]
    # a positive: a random other member of the same cluster
    off = rng.integers(0, counts[lab] - 1)
    # rank of the anchor in its cluster's member list
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts[labels[order]]
    pos_rank = off + (off >= rank[anchors])
    pos = order[starts[lab] + pos_rank]
    a_out, p_out, n_out = [], [], []
    for _ in range(n_neg):
        if neighbours is None:
            # uniform over the samples outside the anchor's cluster: draw, redraw the clashes
            neg = rng.integers(0, len(labels), len(anchors))
            for _ in range(100):
                clash = labels[neg] == lab
                if not clash.any():
                    break
                neg[clash] = rng.integers(0, len(labels), int(clash.sum()))
            a_out.append(anchors), p_out.append(pos), n_out.append(neg)
            continue
        neg_cluster = np.empty(len(anchors), dtype=np.int64)
        for cl in np.unique(lab):
            sel = np.flatnonzero(lab == cl)
            nb = neighbours[cl]
            if len(nb) == 0:
                nb = np.setdiff1d(np.arange(c), [cl])
            neg_cluster[sel] = nb[rng.integers(0, len(nb), len(sel))]
        neg = order[starts[neg_cluster] + rng.integers(0, counts[neg_cluster])]
        a_out.append(anchors), p_out.append(pos), n_out.append(neg)
    return np.concatenate(a_out), np.concatenate(p_out), np.concatenate(n_out)


# --------------------------------------------------------------------------- estimator
class JULE(ClusterBase):
    """Joint unsupervised learning of a representation and agglomerative clusters.

    Parameters
    ----------
    n_clusters : int
    k_s : int
        Nearest neighbours per sample in the affinity graph.
    k_c : int
        Neighbouring clusters in the merging criterion and for the triplets' negatives.
    eta : float
        Unfolding rate: each period merges ``ceil(eta * n)`` of its ``n`` clusters.
    lam : float
        Weight of the merging criterion's neighbourhood term.
    embed_dim : int
        Size of the learned (L2-normalised) representation.
    hidden : tuple of int
        Hidden widths of the MLP (``()``: one linear layer, ``d -> embed_dim``).
    epochs_per_period : int
        Training epochs after each merging period.
    batch_size, lr, weight_decay : training settings (Adam).
    margin, pos_weight : triplet loss settings.
    n_neg : int
        Negatives per anchor-positive pair.
    negatives : "random" or "neighbours"
        Where negatives come from: any other cluster (default, as in the Keras port the
        paper's authors used) or the ``k_c`` most affine clusters (JULE's paper). On
        pretrained features the initial clusters over-segment the classes, so the most
        affine clusters are mostly the same class, and pushing them apart hurt: COIL-100,
        EfficientNet-Lite0, seed 0: NMI .919 with "neighbours" (see the issue-3 note).
    recluster : bool
        Cluster the final representation again from scratch (JULE-RC).
    device, random_state, progress : as everywhere.

    Attributes
    ----------
    labels_, history_ (one dict per period: clusters before/after, loss, seconds),
    embedding_ (the final representation of the training data).
    """

    def __init__(self, n_clusters: int = 8, k_s: int = 20, k_c: int = 5, eta: float = 0.9, lam: float = 1.0,
                 embed_dim: int = 100, hidden=(), epochs_per_period: int = 20, batch_size: int = 200,
                 lr: float = 1e-3, weight_decay: float = 1e-4, margin: float = 0.2, pos_weight: float = 2.0,
                 n_neg: int = 2, negatives: str = "random", recluster: bool = True, device: str = "auto",
                 random_state: int = 0, progress: bool = True):
        self.n_clusters = n_clusters
        self.k_s = k_s
        self.k_c = k_c
        self.eta = eta
        self.lam = lam
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.epochs_per_period = epochs_per_period
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.margin = margin
        self.pos_weight = pos_weight
        self.n_neg = n_neg
        self.negatives = negatives
        self.recluster = recluster
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # hooks for subclasses (DMVC) ------------------------------------------------
    def _inputs(self, X) -> list[np.ndarray]:
        """The network's inputs (one array per branch). Single view: the (concatenated) features."""
        return [self._single(X)]

    def _initial_representation(self, inputs: list[np.ndarray]) -> np.ndarray:
        return l2_normalize(np.concatenate([l2_normalize(x.reshape(len(x), -1)) for x in inputs], axis=1)
                            if len(inputs) > 1 else inputs[0].reshape(len(inputs[0]), -1))

    def _build_network(self, inputs: list[np.ndarray]) -> nn.Module:
        return MLPEmbedding(inputs[0].shape[1], self.hidden, self.embed_dim)

    def _param_groups(self):
        return [{"params": [p for p in self.net_.parameters() if p.requires_grad]}]

    # ---------------------------------------------------------------------------
    @torch.no_grad()
    def _embed(self, tensors) -> np.ndarray:
        self.net_.eval()
        n = len(tensors[0])
        out = [self.net_([t[s:s + 1024] for t in tensors]).cpu() for s in range(0, n, 1024)]
        return torch.cat(out).numpy()

    def _train(self, tensors, labels, neighbours, rng, bar=None) -> float:
        dev = tensors[0].device
        self.net_.train()
        total, count = 0.0, 0
        for _ in range(self.epochs_per_period):
            a, p, n = sample_triplets(labels, neighbours, self.n_neg, rng)  # fresh triplets every epoch
            if len(a) == 0:
                return float("nan")
            perm = rng.permutation(len(a))
            for s in range(0, len(perm), self.batch_size):
                sel = perm[s:s + self.batch_size]
                idx = np.concatenate([a[sel], p[sel], n[sel]])
                uniq, inv = np.unique(idx, return_inverse=True)
                ut = torch.as_tensor(uniq, device=dev)
                emb = self.net_([t[ut] for t in tensors])
                inv = torch.as_tensor(inv, device=dev)
                m = len(sel)
                loss = triplet_loss(emb[inv[:m]], emb[inv[m:2 * m]], emb[inv[2 * m:]], self.margin, self.pos_weight)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_.step()
                total += loss.item() * m
                count += m
            if bar is not None:
                bar.update(1)
        return total / max(count, 1)

    def fit(self, X, y=None):
        with seeded(self.random_state, resolve_device(self.device)):  # weight init, without the global RNG
            return self._fit(X)

    def _fit(self, X):
        if self.negatives not in ("random", "neighbours"):
            raise ValueError(f"negatives must be 'random' or 'neighbours', got {self.negatives!r}")
        inputs = self._inputs(X)
        k = check_n_clusters(self.n_clusters, len(inputs[0]))
        dev = resolve_device(self.device)
        rng = np.random.default_rng(int(self.random_state))
        tensors = [torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) for x in inputs]
        Z = self._initial_representation(inputs)
        self.net_ = self._build_network(inputs).to(dev)
        self.opt_ = torch.optim.Adam(self._param_groups(), lr=self.lr, weight_decay=self.weight_decay)

        W, nn_idx = knn_affinity(Z, self.k_s)
        labels = initial_clusters(nn_idx, W, min_clusters=k)
        merger = AffinityMerger(W, labels, self.k_c, self.lam)
        # plan the periods from the start, so the progress bar knows its length
        plan, c = [], merger.n_clusters
        while c > k:
            step = min(max(math.ceil(self.eta * c), 1), c - k)
            plan.append(step)
            c -= step
        self.history_ = []
        bar = tqdm(total=len(plan) * self.epochs_per_period, desc="JULE", leave=False, disable=not self.progress)
        for p, steps in enumerate(plan):
            t0 = time.perf_counter()
            before = merger.n_clusters
            if p > 0:  # affinities on the representation learned in the last period
                W, _ = knn_affinity(Z, self.k_s)
                merger = AffinityMerger(W, merger.compact_labels(), self.k_c, self.lam)
            merger.merge(steps)
            labels = merger.compact_labels()
            t1 = time.perf_counter()
            nbrs = merger.neighbours(self.k_c) if self.negatives == "neighbours" else None
            loss = self._train(tensors, labels, nbrs, rng, bar)
            Z = self._embed(tensors)
            t2 = time.perf_counter()
            self.history_.append({"period": p, "clusters_before": before, "clusters_after": merger.n_clusters,
                                  "loss": loss, "merge_seconds": round(t1 - t0, 3),
                                  "train_seconds": round(t2 - t1, 3), "epochs": self.epochs_per_period,
                                  "seconds": round(t2 - t0, 3)})
            bar.set_postfix(clusters=merger.n_clusters, loss=f"{loss:.3f}")
        bar.close()
        if self.recluster and plan:  # (no plan: the initial clusters are already at most k)
            W, nn_idx = knn_affinity(Z, self.k_s)
            final = AffinityMerger(W, initial_clusters(nn_idx, W, min_clusters=k), self.k_c, self.lam)
            final.merge(max(final.n_clusters - k, 0))
            labels = final.compact_labels()
        self._set_labels(labels)
        self.embedding_ = Z
        return self

    def transform(self, X) -> np.ndarray:
        """The learned representation (L2-normalised rows) of ``X``."""
        dev = next(self.net_.parameters()).device
        tensors = [torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) for x in self._inputs(X)]
        return self._embed(tensors)
