"""JULE (Yang, Parikh & Batra, CVPR 2016) on feature vectors.

Joint Unsupervised LEarning: agglomerative clustering and a representation learned from
it, alternated in a recurrent process ("partially unrolled periods"):

0. **Initial clusters** on the input: the connected components of the graph linking every
   sample to its nearest neighbour (split at their weakest links when fewer than
   ``n_clusters``).
1. **Representation learning** (backward pass): the network is trained for
   ``epochs_per_period`` epochs on the current clusters with a weighted triplet loss on
   its L2-normalised output, ``max(0, pos_weight |a - p|^2 - |a - n|^2 + margin)``, the
   triplets built inside each mini-batch (every same-cluster pair, ``n_neg`` negatives
   from the batch's other clusters).
2. **Merging** (forward pass) on the new embedding: sample affinity
   ``w_ij = exp(-d_ij^2 / sigma^2)`` for ``j`` among the ``k_s`` nearest neighbours of
   ``i`` (``sigma^2`` = mean squared kNN distance); AGDL's cluster affinity (Zhang et al.,
   ECCV 2012)::

       A(a, b) = 1'W_ab W_ba 1 / |a|^2 + 1'W_ba W_ab 1 / |b|^2

   Each step merges the cluster ``i`` and its most affine neighbour ``j`` that maximise
   JULE's criterion ``A(i, j) + lambda / (K_c - 1) * sum_{k=2..K_c} (A(i, j) - A(i, n_k))``
   (``n_k``: the k-th most affine neighbour of ``i``), which favours pairs that stand out
   from the rest of ``i``'s neighbourhood. A period makes ``ceil(eta * c)`` merges (``c``:
   clusters at its start), never below ``n_clusters``.

Steps 1-2 repeat until ``n_clusters`` remain; with ``recluster=True`` (JULE-RC) the final
embedding is then clustered once more from scratch (steps 0 and 2) to give ``labels_``.
With the reference's ``eta = 0.2`` a set of a few hundred to a few thousand samples
takes 10-15 periods, and every merge is made on the learned representation.

The cluster affinity is maintained exactly and incrementally: with ``H`` the one-hot
label matrix, ``M1 = H'W`` (in-weights from each cluster to each sample) and
``M2 = W H`` (out-weights), ``A_unsym[a, b] = sum_{j in b} M1[a, j] M2[j, a]``, which is
additive in ``b``; a merge updates one row and one column. Every one of these matrices
has at most ``n * k_s`` non-zero entries, which is all the merger stores
(:class:`AffinityMerger`), so memory grows linearly with the number of samples.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from torch import nn
from torch.nn import functional as F

from .._utils import resolve_device, seeded, tqdm
from ..metrics import nmi
from ..preprocessing import l2_normalize
from ._base import ClusterBase, check_n_clusters
from .neighbours import nearest_neighbours

__all__ = ["JULE", "knn_affinity", "initial_clusters", "AffinityMerger", "MLPEmbedding",
           "triplet_loss", "batch_triplets", "cluster_batches", "graph_neighbours"]


# --------------------------------------------------------------------------- graph
def knn_affinity(Z: np.ndarray, k: int):
    """Sparse kNN affinity ``W`` (n x n, csr, zero diagonal) and the neighbour indices (n x k)."""
    n = Z.shape[0]
    k = int(min(k, n - 1))
    d2, idx = nearest_neighbours(Z, k)
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
    """Greedy agglomeration under JULE's criterion with exact AGDL affinities, kept sparse.

    Every matrix of the incremental update (module docstring) is stored by its non-zero
    entries only, as one dict per cluster: ``M1[a]`` (sample -> in-weight from ``a``),
    ``M2[a]`` (sample -> out-weight to ``a``), ``U`` by rows and by columns, and the
    symmetric affinity ``A[a]`` (neighbouring cluster -> affinity). A sample's ``k_s``
    neighbours bound them all, so memory is ``O(n * k_s)`` whatever the number of clusters,
    and a merge costs ``O(k_s * |a|)`` for the merged cluster ``a`` plus rescoring its
    neighbours.

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
        M1 = (H.T @ W).tocsr()                             # c x n: in-weight from cluster a to sample j
        M2 = (H.T @ W.T).tocsr()                           # c x n: out-weight from sample j to cluster a
        U = (M1.multiply(M2) @ H).tocsr()                  # U[a, b] = sum_{j in b} M1[a, j] M2[a, j]
        U.setdiag(0)
        U.eliminate_zeros()
        self.M1, self.M2 = _rows(M1), _rows(M2)
        self.U_rows, self.U_cols = _rows(U), _rows(U.T.tocsr())
        self.size = np.bincount(self.labels, minlength=c).astype(np.float64)
        self.members = [list(m) for m in np.split(np.argsort(self.labels, kind="stable"),
                                                  np.cumsum(self.size[:-1].astype(np.int64)))]
        self.active = np.ones(c, dtype=bool)
        self._n_active = c
        S = sparse.diags(1.0 / self.size ** 2) @ U
        self.A = _rows((S + S.T).tocsr())
        self.score = np.empty(c)
        self.partner = np.empty(c, dtype=np.int64)
        for i in range(c):
            self._rescore(i)

    @property
    def n_clusters(self) -> int:
        return self._n_active

    def affinity(self, a: int, b: int) -> float:
        """AGDL's affinity between the clusters ``a`` and ``b`` (0 when no sample links them)."""
        return self.A[a].get(b, 0.0)

    def _rescore(self, i: int):
        kc = min(self.k_c, self._n_active - 1)
        row = self.A[i]
        if not self.active[i] or kc < 1 or not row:
            self.score[i], self.partner[i] = -np.inf, -1
            return
        # plain floats, not numpy: this runs after every merge for every cluster the merge touched
        top = sorted(row.values(), reverse=True)[:kc]
        top += [0.0] * (kc - len(top))  # active clusters with no link to i have affinity 0
        best = top[0]
        extra = self.lam / (kc - 1) * sum(best - v for v in top[1:]) if kc > 1 else 0.0
        self.score[i] = best + extra if best > 0 else -np.inf
        self.partner[i] = max(row, key=row.get)  # the first of equals in the row's order, as a stable sort

    def compact_labels(self) -> np.ndarray:
        _, lab = np.unique(self.labels, return_inverse=True)
        return lab

    def _fallback_pair(self):
        """No positive affinity left (disconnected graph): merge the smallest cluster with any other."""
        ids = np.flatnonzero(self.active)
        a = ids[np.argmin(self.size[ids])]
        b = ids[ids != a][0]
        return a, b

    def _next_pair(self) -> tuple[int, int]:
        """The pair that maximises the criterion (a fallback pair when none is linked)."""
        i = int(np.argmax(self.score))
        return self._fallback_pair() if not np.isfinite(self.score[i]) else (i, int(self.partner[i]))

    def merge_once(self) -> tuple[int, int]:
        """Merge the pair that maximises the criterion; returns ``(a, b)``, ``b`` merged into ``a``."""
        return self._merge(*self._next_pair())

    def _merge(self, a: int, b: int) -> tuple[int, int]:
        touched = set(self.A[a]) | set(self.A[b])  # whose top-k_c may change
        _add_into(self.M1, a, b)
        _add_into(self.M2, a, b)
        # U's column a gains column b (the members of b join a); rows a and b go, row a is rebuilt
        for x, v in self.U_cols[b].items():
            if x != a:
                self.U_cols[a][x] = self.U_cols[a].get(x, 0.0) + v
                row = self.U_rows[x]
                row[a] = row.get(a, 0.0) + v
                del row[b]
        self.U_cols[b] = {}
        for gone in (a, b):
            for y in self.U_rows[gone]:
                self.U_cols[y].pop(gone, None)
            self.U_rows[gone] = {}
        self.labels[self.members[b]] = a
        self.members[a] += self.members[b]
        self.members[b] = []
        self.size[a] += self.size[b]
        self.size[b] = 0
        self.active[b] = False
        self._n_active -= 1
        m1, m2 = self.M1[a], self.M2[a]
        if len(m2) < len(m1):
            m1, m2 = m2, m1
        new_row = {}
        for j, w in m1.items():
            w2 = m2.get(j)
            if w2 is not None:
                t = int(self.labels[j])
                if t != a:
                    new_row[t] = new_row.get(t, 0.0) + w * w2
        self.U_rows[a] = new_row
        for y, v in new_row.items():
            self.U_cols[y][a] = v
        # A: only the pairs involving a or b change
        for gone in (a, b):
            for x in self.A[gone]:
                self.A[x].pop(gone, None)
            self.A[gone] = {}
        size_a2 = self.size[a] ** 2
        new_a = {x: new_row.get(x, 0.0) / size_a2 + self.U_cols[a].get(x, 0.0) / self.size[x] ** 2
                 for x in set(new_row) | set(self.U_cols[a])}
        self.A[a] = new_a
        for x, v in new_a.items():
            self.A[x][a] = v
        touched |= set(new_a)
        touched.add(a)
        touched.discard(b)
        self._rescore(b)
        for t in touched:
            self._rescore(t)
        return a, b

    def merge(self, steps: int) -> list[tuple[int, float]]:
        """Up to ``steps`` merges; for each, the clusters before it and the merged pair's
        affinity (0: no two clusters share a kNN link any more, the pair is a fallback)."""
        made = []
        for _ in range(int(steps)):
            if self._n_active <= 1:
                break
            a, b = self._next_pair()
            made.append((self._n_active, self.affinity(a, b)))
            self._merge(a, b)
        return made


def _rows(M) -> list[dict]:
    """Each row of a CSR matrix as a dict ``{column: value}``."""
    return [dict(zip(M.indices[s:e].tolist(), M.data[s:e].tolist())) for s, e in zip(M.indptr[:-1], M.indptr[1:])]


def _add_into(rows: list[dict], a: int, b: int):
    """``rows[a] += rows[b]`` (the smaller dict added into the larger), ``rows[b]`` emptied."""
    big, small = (rows[a], rows[b]) if len(rows[a]) >= len(rows[b]) else (rows[b], rows[a])
    for j, v in small.items():
        big[j] = big.get(j, 0.0) + v
    rows[a], rows[b] = big, {}


def graph_neighbours(n_samples: int, n_clusters: int, most: int) -> int:
    """Neighbours of a sample in JULE's kNN graphs: ``most``, but at most half the mean
    cluster size ``n_samples / n_clusters`` and at least 3. A cluster can only stand apart
    when its samples' neighbours lie inside it: JULE's 20 neighbours link every class of
    fewer than about 40 images to others."""
    return min(int(most), max(3, n_samples // (2 * n_clusters)))


# --------------------------------------------------------------------------- network
class MLPEmbedding(nn.Module):
    """``x -> L2-normalise(MLP(x))``: JULE's representation on feature vectors."""

    def __init__(self, in_dim: int, hidden=(), embed_dim: int = 160):
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


def triplet_loss(emb, a, p, n, margin: float = 0.2, pos_weight: float = 1.0):
    """JULE's weighted triplet loss, ``max(0, pos_weight |a-p|^2 - |a-n|^2 + margin)`` averaged
    over the triplets ``(a[i], p[i], n[i, j])``: pairs ``(a, p)`` and their negatives ``n``
    (pairs x negatives), indices into the batch's embeddings ``emb``. The squared distances
    come from the batch's Gram matrix, so tens of thousands of triplets cost a gather of
    scalars, not of embedding rows, and each pair's distance is gathered once."""
    b = emb.shape[0]
    sq = (emb * emb).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0).reshape(-1)
    d_ap = d2.index_select(0, a * b + p)
    d_an = d2.index_select(0, (a[:, None] * b + n).reshape(-1)).reshape(n.shape)
    return F.relu(pos_weight * d_ap[:, None] - d_an + margin).mean()


def batch_triplets(labels: torch.Tensor, n_neg: int, generator: torch.Generator):
    """Triplets inside one mini-batch whose clusters are contiguous runs (:func:`cluster_batches`),
    as JULE's reference code builds them: every pair of samples of one cluster (anchor,
    positive), each with ``n_neg`` negatives drawn uniformly from the batch's samples of
    other clusters. Returns index tensors ``(a, p)`` (one per pair) and ``n`` (pairs x
    ``n_neg``); none when the batch holds a single cluster (no negative) or only singletons."""
    b = len(labels)
    starts = torch.ones(b, dtype=torch.bool)
    starts[1:] = labels[1:] != labels[:-1]
    run = torch.cumsum(starts, 0) - 1                      # run id of every sample
    none = torch.empty(0, dtype=torch.int64)
    no_triplet = none, none, none.reshape(0, n_neg)
    if run[-1] == 0:
        return no_triplet
    first = torch.nonzero(starts).flatten()
    size = torch.diff(torch.cat([first, torch.tensor([b])]))
    a, p = torch.triu(run[:, None] == run[None, :], diagonal=1).nonzero(as_tuple=True)
    if len(a) == 0:
        return no_triplet
    s, m = first[run[a]], size[run[a]]                     # the anchor's run: [s, s + m)
    u = (torch.rand((len(a), n_neg), generator=generator) * (b - m)[:, None]).long()
    n = torch.where(u < s[:, None], u, u + m[:, None])     # skip over the anchor's own run
    return a, p, n


def cluster_batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's mini-batches: the clusters in random order, each cluster's members
    together (shuffled), cut every ``batch_size`` samples, so that a batch holds whole
    clusters and with them same-cluster pairs even when clusters are small."""
    order = np.lexsort((rng.random(len(labels)), rng.permutation(int(labels.max()) + 1)[labels]))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------- estimator
class JULE(ClusterBase):
    """Joint unsupervised learning of a representation and agglomerative clusters.

    The recurrent process of the authors' code (``jwyang/JULE.torch``, ``train.lua``):
    initial clusters on the input; then, every period, the network is trained for
    ``epochs_per_period`` epochs on the current clusters, the samples are embedded,
    and ``ceil(eta * c)`` merges are made on the embedding's kNN graph; when
    ``n_clusters`` remain, the final embedding is clustered once more from scratch
    (JULE-RC). Every merge is made on the learned representation.

    Where we follow the reference: ``eta=0.2``; 20 epochs per period; K_s = 20, K_c = 5,
    lambda = 1; triplets built inside each mini-batch (every same-cluster pair, 20
    negatives from the batch's other clusters), weighted triplet loss with positive weight
    1 and margin 0.2; SGD with momentum 0.9, weight decay 5e-5, learning rate 0.01 decayed
    as ``(1 + 1e-4 * iteration) ** -0.75``; L2-normalised output (160-d, as the
    reference's networks); the input re-clustered by the final network (JULE-RC).
    Where we differ, and why: the network is an MLP on feature vectors (the reference
    trains a CNN on pixels; the paper's authors' port on CNN features is an MLP too);
    each epoch's batches hold whole clusters (:func:`cluster_batches`) where the
    reference draws random batches of 100: with hundreds of clusters of 2-4 samples, a
    random batch holds almost no same-cluster pair to learn from; batches are 200
    samples; the initial clusters are split at their weakest links when there are
    fewer than ``n_clusters`` of them (:func:`initial_clusters`); the graphs have K_s = 20
    neighbours only where classes average 40 samples or more, fewer below (half the mean
    cluster size, at least 3: :func:`graph_neighbours`; the reference's sets have 29-72
    images per class. Seeds 0-2, NMI of CC / DMVC-fix with 20 neighbours -> with the rule
    (its neighbours): UMist .978/.980 -> .988/.984 (14), UMist at 10 per person
    .859/.839 -> .943/.934 (5), 1000 COIL-100 images .944/.941 -> .963/.964 (5); lower on
    UMist's first 10 people (13; the kept DMVC-fix of ``label_free_choices.py``, seed 0:
    .971 -> .950); COIL-100 keeps 20); and for large sets only,
    a period trains at most ``max_period_updates`` updates (above 10,000 samples) and the
    kNN graphs are approximate (above 20,000, :func:`~mvcpaper.cluster.neighbours.nearest_neighbours`),
    so that 100,000 samples cost about as many updates as 10,000 (``benchmarks/bench_scale.py``).

    Parameters
    ----------
    n_clusters : int
    k_s : int
        Nearest neighbours per sample in the affinity graphs, at most half the mean
        cluster size ``n / n_clusters`` (at least 3; :func:`graph_neighbours`): ``k_s_``.
    k_c : int
        Neighbouring clusters in the merging criterion.
    eta : float
        Unfolding rate: each period merges ``ceil(eta * c)`` of its ``c`` clusters.
    lam : float
        Weight of the merging criterion's neighbourhood term.
    embed_dim : int
        Size of the learned (L2-normalised) representation.
    hidden : tuple of int
        Hidden widths of the MLP (``()``: one linear layer, ``d -> embed_dim``).
    epochs_per_period : int
        Training epochs before each merging period.
    batch_size : int
        Samples per mini-batch (whole clusters, see above).
    lr, momentum, weight_decay, lr_decay, lr_power : SGD settings; the learning rate at
        iteration ``t`` (counted over the whole fit) is ``lr * (1 + lr_decay * t) ** -lr_power``.
    margin, pos_weight : triplet loss settings.
    n_neg : int
        Negatives per anchor-positive pair.
    max_period_updates : int or None
        At most this many updates per period, in whole epochs (at least one): 20 epochs of
        200-sample batches are 1000 updates at 10,000 samples, so smaller sets train their
        full ``epochs_per_period``, and above that a period's cost stops growing with the
        set (100,000 samples: 2 epochs). The reference counts epochs only; ``None`` does too.
    recluster : bool
        Cluster the final representation again from scratch (JULE-RC).
    device, random_state, progress : as everywhere.

    Attributes
    ----------
    labels_, embedding_ (the final representation of the training data), history_ (one
    dict per period: clusters before and after its merges, the training loss, seconds,
    and ``nmi`` when ``fit`` was given true labels ``y``, which are only logged),
    merge_affinity_ (clusters before a merge -> the merged pair's affinity, over every
    period: it reaches 0 once no two clusters share a kNN link in the learned embedding,
    the basis of the ``jule`` estimate of k in :mod:`~mvcpaper.cluster.model_selection`).
    """

    def __init__(self, n_clusters: int = 8, k_s: int = 20, k_c: int = 5, eta: float = 0.2, lam: float = 1.0,
                 embed_dim: int = 160, hidden=(), epochs_per_period: int = 20, batch_size: int = 200,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-5, lr_decay: float = 1e-4,
                 lr_power: float = 0.75, margin: float = 0.2, pos_weight: float = 1.0, n_neg: int = 20,
                 max_period_updates: int | None = 1000, recluster: bool = True, device: str = "auto",
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
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_decay = lr_decay
        self.lr_power = lr_power
        self.margin = margin
        self.pos_weight = pos_weight
        self.n_neg = n_neg
        self.max_period_updates = max_period_updates
        self.recluster = recluster
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # hooks for subclasses (DMVC) ------------------------------------------------
    def _inputs(self, X) -> list[np.ndarray]:
        """The network's inputs (one array per branch). Single view: the (concatenated) features."""
        return [self._single(X)]

    def _initial_representation(self, inputs: list[np.ndarray]) -> np.ndarray:
        """What the initial clusters are found on: the input (several views: the L2-normalised
        concatenation of the L2-normalised views, as CC)."""
        if len(inputs) == 1:
            return inputs[0].reshape(len(inputs[0]), -1)
        return l2_normalize(np.concatenate([l2_normalize(x.reshape(len(x), -1)) for x in inputs], axis=1))

    def _build_network(self, inputs: list[np.ndarray]) -> nn.Module:
        return MLPEmbedding(inputs[0].shape[1], self.hidden, self.embed_dim)

    def _param_groups(self):
        return [{"params": [p for p in self.net_.parameters() if p.requires_grad]}]

    def _stop_early(self) -> bool:
        """Whether to end the recurrent process after the current period (never here; the
        ``jule`` estimate of k stops once its answer is known)."""
        return False

    # ---------------------------------------------------------------------------
    @torch.no_grad()
    def _embed(self, tensors) -> np.ndarray:
        self.net_.eval()
        n = len(tensors[0])
        out = [self.net_([t[s:s + 1024] for t in tensors]).cpu() for s in range(0, n, 1024)]
        return torch.cat(out).numpy()

    def _period_epochs(self, n: int) -> int:
        """Epochs per period: ``epochs_per_period``, fewer when that exceeds ``max_period_updates``."""
        if self.max_period_updates is None:
            return int(self.epochs_per_period)
        batches = math.ceil(n / self.batch_size)
        return max(1, min(int(self.epochs_per_period), int(self.max_period_updates) // batches))

    def _train(self, tensors, labels: np.ndarray, rng: np.random.Generator, gen: torch.Generator,
               bar=None) -> float:
        """:meth:`_period_epochs` epochs of the triplet loss on ``labels``; the mean loss."""
        dev = tensors[0].device
        lab = torch.as_tensor(labels)
        self.net_.train()
        total, count = 0.0, 0
        for _ in range(self.epochs_):
            for idx in cluster_batches(labels, self.batch_size, rng):
                idx_t = torch.as_tensor(idx, device=dev)
                a, p, n = batch_triplets(lab[idx], self.n_neg, gen)
                if len(a) == 0:
                    continue
                rate = self.lr * (1 + self.lr_decay * self.iteration_) ** -self.lr_power
                for group in self.opt_.param_groups:
                    group["lr"] = rate * group.get("lr_scale", 1.0)
                emb = self.net_([t[idx_t] for t in tensors])
                a, p, n = a.to(dev), p.to(dev), n.to(dev)
                loss = triplet_loss(emb, a, p, n, self.margin, self.pos_weight)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_.step()
                self.iteration_ += 1
                total += loss.item()
                count += 1
            if bar is not None:
                bar.update(1)
        return total / max(count, 1)

    def fit(self, X, y=None):
        """Cluster ``X``; ``y`` (true labels, optional) is only logged (``nmi`` per period)."""
        with seeded(self.random_state, resolve_device(self.device)):  # weight init, without the global RNG
            return self._fit(X, y)

    def _fit(self, X, y):
        inputs = self._inputs(X)
        k = check_n_clusters(self.n_clusters, len(inputs[0]))
        if y is not None and len(y) != len(inputs[0]):
            raise ValueError(f"y has {len(y)} labels for {len(inputs[0])} samples")
        dev = resolve_device(self.device)
        rng = np.random.default_rng(int(self.random_state))
        gen = torch.Generator().manual_seed(int(self.random_state))
        tensors = [torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) for x in inputs]
        self.k_s_ = graph_neighbours(len(inputs[0]), k, self.k_s)
        W, nn_idx = knn_affinity(self._initial_representation(inputs), self.k_s_)
        self.net_ = self._build_network(inputs).to(dev)
        self.opt_ = torch.optim.SGD(self._param_groups(), lr=self.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay, fused=True)
        self.iteration_ = 0
        labels = initial_clusters(nn_idx, W, min_clusters=k)
        plan, c = [], int(labels.max()) + 1  # merges per period, known from the start (for the bar)
        while c > k:
            plan.append(min(max(math.ceil(self.eta * c), 1), c - k))
            c -= plan[-1]
        self.history_, self.merge_affinity_ = [], {}
        self.epochs_ = self._period_epochs(len(labels))
        bar = tqdm(total=len(plan) * self.epochs_, desc=type(self).__name__, leave=False,
                   disable=not self.progress)
        Z = None
        for period, steps in enumerate(plan):
            t0 = time.perf_counter()
            loss = self._train(tensors, labels, rng, gen, bar)
            Z = self._embed(tensors)
            t1 = time.perf_counter()
            W, _ = knn_affinity(Z, self.k_s_)
            merger = AffinityMerger(W, labels, self.k_c, self.lam)
            before = merger.n_clusters
            self.merge_affinity_.update(merger.merge(steps))
            labels = merger.compact_labels()
            t2 = time.perf_counter()
            rec = {"period": period, "clusters_before": before, "clusters_after": merger.n_clusters, "loss": loss,
                   "train_seconds": round(t1 - t0, 3), "merge_seconds": round(t2 - t1, 3),
                   "epochs": self.epochs_}
            if y is not None:
                rec["nmi"] = nmi(y, labels)
            self.history_.append(rec)
            bar.set_postfix(clusters=merger.n_clusters, loss=f"{loss:.3f}")
            if self._stop_early():
                break
        bar.close()
        if Z is None:  # no period: the initial clusters are already n_clusters
            Z = self._embed(tensors)
        elif self.recluster:
            W, nn_idx = knn_affinity(Z, self.k_s_)
            final = AffinityMerger(W, initial_clusters(nn_idx, W, min_clusters=k), self.k_c, self.lam)
            final.merge(max(final.n_clusters - k, 0))
            labels = final.compact_labels()
        self.embedding_ = Z
        self._set_labels(labels)
        return self

    def transform(self, X) -> np.ndarray:
        """The learned representation (L2-normalised rows) of ``X``."""
        dev = next(self.net_.parameters()).device
        tensors = [torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) for x in self._inputs(X)]
        return self._embed(tensors)
