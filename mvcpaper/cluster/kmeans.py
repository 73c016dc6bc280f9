"""k-means in torch: k-means++ seeding, Lloyd iterations, empty clusters re-seeded.

Runs on CUDA when present (``device="auto"``); the same code serves DeepCluster's
large-k clustering, so distances are computed in row chunks to bound memory.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._utils import resolve_device
from ._base import ClusterBase, center_distances, fill_empty_clusters

__all__ = ["TorchKMeans", "kmeans_plusplus", "assign", "lloyd"]


def _sq_norms(X):
    return (X * X).sum(1)


def assign(X, C, chunk: int = 32768):
    """Nearest centre of every row: ``(labels, squared distances)``, computed in chunks."""
    c2 = _sq_norms(C)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    dists = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for s in range(0, X.shape[0], chunk):
        x = X[s:s + chunk]
        d = _sq_norms(x)[:, None] - 2 * x @ C.T + c2[None, :]
        m, a = d.min(1)
        labels[s:s + chunk], dists[s:s + chunk] = a, m.clamp_min_(0)
    return labels, dists


def kmeans_plusplus(X, k: int, generator, n_local_trials: int | None = None):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, with local trials as in scikit-learn)."""
    n = X.shape[0]
    n_local_trials = n_local_trials or 2 + int(math.log(k))
    x2 = _sq_norms(X)
    first = torch.randint(n, (1,), generator=generator, device="cpu").item()
    centers = [X[first]]
    closest = (x2 - 2 * X @ X[first] + x2[first]).clamp_min(0)
    pot = closest.sum()
    for _ in range(1, k):
        probs = (closest / pot).double().cpu() if pot > 0 else torch.full((n,), 1.0 / n, dtype=torch.double)
        cand = torch.multinomial(probs, n_local_trials, replacement=True, generator=generator).to(X.device)
        d = (x2[None, :] - 2 * X[cand] @ X.T + x2[cand][:, None]).clamp_min(0)
        new_closest = torch.minimum(closest[None, :], d)
        pots = new_closest.sum(1)
        best = int(pots.argmin())
        centers.append(X[cand[best]])
        closest, pot = new_closest[best], pots[best]
    return torch.stack(centers)


def lloyd(X, C, max_iter: int, tol: float):
    """Lloyd iterations from centres ``C``: ``(centres, labels, squared distances, iterations)``.

    An empty cluster is re-seeded with the point farthest from its centre (never twice the
    same point, as scikit-learn relocates them); stop when the summed squared centre shift
    is at most ``tol`` and no cluster was empty.
    """
    k = C.shape[0]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        labels, d = assign(X, C)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        new_c = sums / counts.clamp_min(1)[:, None].to(X.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far = torch.argsort(d, descending=True)[: len(empty)]
            new_c[empty] = X[far]
        shift = ((new_c - C) ** 2).sum()
        C = new_c
        if shift <= tol and not len(empty):
            break
    labels, d = assign(X, C)
    return C, labels, d, n_iter


class TorchKMeans(ClusterBase):
    """k-means with k-means++ seeding in torch (CPU or CUDA).

    Parameters
    ----------
    n_clusters : int
    n_init : int
        Independent seedings; the one of lowest inertia wins.
    max_iter : int
        Lloyd iterations per seeding.
    tol : float
        Stop when the summed squared centre shift falls below ``tol`` times the mean
        feature variance (scikit-learn's rule).
    device : str
        ``"auto"`` picks CUDA when present.
    random_state : int
    progress : bool
        Accepted for a uniform interface (k-means shows no bar).

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, n_features)
    inertia_ : float
    n_iter_ : int
    """

    def __init__(self, n_clusters: int = 8, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                 device: str = "auto", random_state: int = 0, progress: bool = True):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y=None):
        Xn = self._single(X)
        dev = resolve_device(self.device)
        Xt = torch.as_tensor(Xn, device=dev)
        tol = float(self.tol * Xt.var(0).mean())
        gen = torch.Generator().manual_seed(int(self.random_state))
        best = None
        for _ in range(max(1, self.n_init)):
            C0 = kmeans_plusplus(Xt, self.n_clusters, gen)
            C, labels, d, n_iter = lloyd(Xt, C0, self.max_iter, tol)
            if best is None or float(d.sum()) < float(best[2].sum()):
                best = (C, labels, d, n_iter)
        C, labels, d, n_iter = best
        labels, d = fill_empty_clusters(labels.cpu().numpy(), d.cpu().numpy(), self.n_clusters)
        C = C.cpu().numpy()
        for j in np.unique(labels):  # centres of the clusters fill_empty_clusters changed
            C[j] = Xn[labels == j].mean(0)
        self.cluster_centers_ = C
        self.embedding_ = center_distances(Xn, C)
        self.inertia_ = float(d.sum())
        self.n_iter_ = n_iter
        self._set_labels(labels)
        return self

    def predict(self, X):
        Xn = self._single(X)
        dev = resolve_device(self.device)
        labels, _ = assign(torch.as_tensor(Xn, device=dev), torch.as_tensor(self.cluster_centers_, device=dev))
        return labels.cpu().numpy()

    def transform(self, X):
        """Distances to every centre, shape (n_samples, n_clusters)."""
        return center_distances(self._single(X), self.cluster_centers_)
