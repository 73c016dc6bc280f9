"""Clustering quality against true labels: NMI, ACC (Hungarian matching), ARI."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

__all__ = ["nmi", "acc", "ari", "hungarian_match", "evaluate"]


def _check(labels_true, labels_pred):
    t, p = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"labels_true has {t.size} entries but labels_pred has {p.size}")
    if t.size == 0:
        raise ValueError("cannot score an empty labelling")
    return t, p


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's default)."""
    t, p = _check(labels_true, labels_pred)
    return float(normalized_mutual_info_score(t, p))


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index."""
    t, p = _check(labels_true, labels_pred)
    return float(adjusted_rand_score(t, p))


def hungarian_match(labels_true, labels_pred) -> dict[int, int]:
    """The one-to-one map cluster -> class that maximises the number of agreements.

    Clusters left unmatched (more clusters than classes) map to -1.
    """
    t, p = _check(labels_true, labels_pred)
    classes, t_idx = np.unique(t, return_inverse=True)
    clusters, p_idx = np.unique(p, return_inverse=True)
    cm = contingency_matrix(p_idx, t_idx)  # clusters x classes
    rows, cols = linear_sum_assignment(cm, maximize=True)
    mapping = {int(c): -1 for c in clusters}
    for r, c in zip(rows, cols):
        mapping[int(clusters[r])] = int(classes[c])
    return mapping


def acc(labels_true, labels_pred) -> float:
    """Unsupervised accuracy: the best one-to-one matching of clusters to classes."""
    t, p = _check(labels_true, labels_pred)
    m = hungarian_match(t, p)
    return float(np.mean(np.array([m[int(x)] for x in p]) == t))


def evaluate(labels_true, labels_pred) -> dict[str, float]:
    """``{"nmi": ..., "acc": ..., "ari": ...}``."""
    return {"nmi": nmi(labels_true, labels_pred), "acc": acc(labels_true, labels_pred),
            "ari": ari(labels_true, labels_pred)}
