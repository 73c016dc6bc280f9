"""Studies of a trained DeepCluster network: frozen conv features, linear probes, KMeans per
layer, nearest neighbours and top-activating images."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ...metrics import nmi
from ...preprocessing import l2_normalize
from .network import DeepClusterNet

__all__ = ["conv_features", "linear_probe", "layer_study", "nearest_neighbours", "top_activating"]


@torch.no_grad()
def conv_features(net: DeepClusterNet, images: torch.Tensor, max_dim: int = 2048, batch_size: int = 256,
                  layers=None) -> list[np.ndarray]:
    """Every conv block's output (or those in ``layers``, list indices), average-pooled to at most ``max_dim`` values.

    Each map of C channels is pooled to the largest s x s grid with C * s^2 <= max_dim
    (at least 1 x 1), then flattened: the frozen features a linear probe reads.
    """
    net.eval()
    dev = net.mean.device
    outs: list[list[torch.Tensor]] = []
    for s in range(0, len(images), batch_size):
        maps = net.conv_outputs(images[s:s + batch_size].to(dev))
        if layers is not None:  # negative indices count from the last conv layer
            maps = [maps[i] for i in layers]
        if not outs:
            outs = [[] for _ in maps]
        for store, m in zip(outs, maps):
            c, h = m.shape[1], m.shape[-1]
            g = max(1, min(h, int(math.sqrt(max_dim / c))))
            store.append(F.adaptive_avg_pool2d(m, g).flatten(1).float().cpu())
    return [torch.cat(o).numpy() for o in outs]


def linear_probe(features: np.ndarray, labels, seed: int = 0, test_size: float = 0.5, C: float = 1.0) -> dict:
    """Logistic regression on frozen features: train on a stratified half, accuracy on the other half."""
    Xtr, Xte, ytr, yte = train_test_split(features, np.asarray(labels), test_size=test_size, random_state=seed,
                                          stratify=labels)
    scaler = StandardScaler().fit(Xtr)
    clf = LogisticRegression(C=C, max_iter=300).fit(scaler.transform(Xtr), ytr)
    return {"probe_train_acc": float(clf.score(scaler.transform(Xtr), ytr)),
            "probe_test_acc": float(clf.score(scaler.transform(Xte), yte))}


def layer_study(net: DeepClusterNet, images: torch.Tensor, labels, seed: int = 0, max_dim: int = 2048,
                probe: bool = True, n_init: int = 1) -> list[dict]:
    """Per conv layer: KMeans NMI with the true number of classes (best of ``n_init`` starts),
    and linear-probe accuracy."""
    labels = np.asarray(labels)
    k = len(np.unique(labels))
    recs = []
    for i, f in enumerate(conv_features(net, images, max_dim)):
        km = KMeans(k, n_init=n_init, random_state=seed).fit_predict(l2_normalize(f))
        rec = {"layer": f"conv{i + 1}", "dim": f.shape[1], "kmeans_nmi": nmi(labels, km)}
        if probe:
            rec.update(linear_probe(f, labels, seed))
        recs.append(rec)
    return recs


@torch.no_grad()
def nearest_neighbours(net: DeepClusterNet, images: torch.Tensor, queries, n: int = 5, layer: int = -1) -> np.ndarray:
    """For each query index, the ``n`` nearest other images (cosine, pooled conv ``layer`` features)."""
    f = l2_normalize(conv_features(net, images, max_dim=4096, layers=[layer])[0])
    sims = f[np.asarray(queries)] @ f.T
    sims[np.arange(len(sims)), np.asarray(queries)] = -np.inf
    return np.argsort(-sims, axis=1)[:, :n]


@torch.no_grad()
def top_activating(net: DeepClusterNet, images: torch.Tensor, layer: int, filters, n: int = 6,
                   batch_size: int = 256) -> np.ndarray:
    """For each filter of conv ``layer`` (0-based), the ``n`` images of highest mean activation."""
    net.eval()
    dev = net.mean.device
    acts = []
    for s in range(0, len(images), batch_size):
        m = net.conv_outputs(images[s:s + batch_size].to(dev))[layer]
        acts.append(m[:, list(filters)].mean(dim=(2, 3)).float().cpu())
    acts = torch.cat(acts).numpy()  # (n_images, n_filters)
    return np.argsort(-acts, axis=0)[:n].T
