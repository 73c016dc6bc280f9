"""What the explorer of notebook ``07_explore`` computes, without a widget in sight.

:func:`compute_state` turns choices (data set, views, two methods, a seed) into an
:class:`ExplorerState`: the clustered features, their t-SNE map, each method's labels,
scores and Hungarian match, through the package's caches (features, t-SNE, fits with
notebooks 03-04's keys, so what ``reproduce`` computed opens at once). The other
functions derive what the explorer draws: the matched confusion matrix, the colour of
every point, a cluster's members worst-fitting first, thumbnails.
:mod:`mvcpaper.widgets` only displays these.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from sklearn.metrics.cluster import contingency_matrix

from .cluster import METHODS, make_method
from .experiments import fit_cached
from .metrics import evaluate, hungarian_match
from .pipeline import feature_key
from .plots import class_palette, tsne

__all__ = ["ExplorerState", "compute_state", "partition_state", "fit_on_views", "matched_confusion", "point_colours",
           "worst_fitting", "thumbnail_png", "palette_hex"]


def matched_confusion(labels_true, labels_pred, class_names=None) -> pd.DataFrame:
    """Contingency table, clusters (rows) against classes (columns), in matched order.

    Columns are the classes in their own order; rows are the clusters ordered by the
    class the Hungarian matching gives them (so a perfect clustering is diagonal), then
    the unmatched clusters by size. Row labels are ``"cluster c → class"``; the cluster
    ids in row order are in ``.attrs["clusters"]``.
    """
    t, p = np.asarray(labels_true), np.asarray(labels_pred)
    classes, clusters = np.unique(t), np.unique(p)
    cm = contingency_matrix(p, t)  # rows: clusters (sorted), cols: classes (sorted)
    match = hungarian_match(t, p)
    col_of = {int(c): j for j, c in enumerate(classes)}
    sizes = cm.sum(1)

    def key(r):
        m = match[int(clusters[r])]
        return (0, col_of[m], 0) if m >= 0 else (1, 0, -sizes[r])

    order = sorted(range(len(clusters)), key=key)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    if len(names) != len(classes):  # class_names indexed by class id
        names = [str(class_names[int(c)]) for c in classes]
    rows = []
    for r in order:
        m = match[int(clusters[r])]
        rows.append(f"cluster {clusters[r]} → {names[col_of[m]] if m >= 0 else 'unmatched'}")
    out = pd.DataFrame(cm[order], index=pd.Index(rows, name="cluster"), columns=pd.Index(names, name="class"))
    out.attrs["clusters"] = [int(clusters[r]) for r in order]
    return out


def worst_fitting(X, labels, cluster) -> np.ndarray:
    """Indices of ``cluster``'s members, farthest from the cluster's mean first."""
    X, labels = np.asarray(X, dtype=np.float32), np.asarray(labels)
    members = np.flatnonzero(labels == cluster)
    if len(members) == 0:
        raise ValueError(f"cluster {cluster!r} has no members; clusters are {sorted(np.unique(labels).tolist())}")
    d = np.linalg.norm(X[members] - X[members].mean(0), axis=1)
    return members[np.argsort(-d, kind="stable")]


def thumbnail_png(dataset, i: int, size: int = 112) -> bytes:
    """Image ``i`` of ``dataset`` as PNG bytes, its longer side ``size`` px."""
    img = dataset.load_image(int(i)).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def palette_hex(n: int) -> list[str]:
    """``n`` distinct colours as ``#rrggbb`` (the static figures' palette)."""
    return [to_hex(rgb) for rgb in class_palette(n)]


@dataclass
class ExplorerState:
    """What the explorer shows now (plain data, for tests and for reuse in a notebook)."""

    dataset: object = None
    views: tuple = ()
    X: np.ndarray | None = None          # the clustered features (L2-normalised views, concatenated)
    xy: np.ndarray | None = None         # the t-SNE map
    labels: dict | None = None           # "A" / "B" -> predicted labels
    scores: dict | None = None           # "A" / "B" -> {"nmi", "acc", "ari"}; None without labels
    match: dict | None = None            # "A" / "B" -> {cluster: matched reference id or -1}
    reference: np.ndarray | None = None  # what colours and the matrix compare with: the classes, or B's clusters
    reference_names: list | None = None  # a name per reference id
    reference_kind: str = "class"        # "class", or "B cluster" for a set without labels
    selected: int | None = None          # index of the image shown as a thumbnail
    cluster: int | None = None           # the cluster in the gallery
    gallery: np.ndarray | None = None    # its indices, worst-fitting first


def point_colours(labels_true, labels, match: dict, by: str = "cluster") -> list[str]:
    """The colour of every point: by ``"class"``, one colour per class; by ``"cluster"``, each
    cluster in the colour of the class the Hungarian ``match`` gives it (so panels and the
    class view compare at a glance), unmatched clusters in colours of their own."""
    labels_true = np.asarray(labels_true)
    classes = np.unique(labels_true)
    if by == "class":
        pal = palette_hex(len(classes))
        return [pal[j] for j in np.searchsorted(classes, labels_true)]
    if by != "cluster":
        raise ValueError(f"colour by 'cluster' or 'class', not {by!r}")
    extra = sorted(c for c, m in match.items() if m < 0)
    pal = palette_hex(len(classes) + len(extra))
    col_of = {c: (int(np.searchsorted(classes, m)) if m >= 0 else len(classes) + extra.index(c))
              for c, m in match.items()}
    return [pal[col_of[int(c)]] for c in labels]


def fit_on_views(cfg, method: str, ds, views: tuple, feats: dict, seed: int) -> np.ndarray:
    """Labels of ``method`` on the chosen views (multi-view methods take them separately, the
    others their concatenation), through the fit cache with notebooks 03-04's keys."""
    k, joined = ds.n_classes, "+".join(views)
    if METHODS[method].multiview:  # DMVC-fix on all the run's views is notebook 04's fit
        everything = tuple(views) == tuple(cfg.backbones) and method in ("dmvc_jule", "dmvc_idec")
        inp, X = ("DMVC-fix" if everything else f"{method}:{joined}"), [feats[v] for v in views]
    elif len(views) == 1:
        inp, X = views[0], feats[views[0]]
    else:
        inp = "CC" if tuple(views) == tuple(cfg.backbones) else f"CC:{joined}"
        X = np.concatenate([feats[v] for v in views], axis=1)
    est = make_method(method, n_clusters=k, seed=seed, device=cfg.device, progress=True, **cfg.params(method))
    fit = fit_cached(est, X, {**feature_key(cfg, ds), "input": inp}, cache_dir=cfg.cache_dir, y=ds.labels)
    return np.asarray(fit["labels"])


def compute_state(cfg, ds, views: tuple, methods: dict, seed: int = 0,
                  report: Callable[[int, int, str], None] | None = None,
                  capture: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> ExplorerState:
    """Everything the explorer shows for these choices: features (L2-normalised, concatenated),
    t-SNE map, and per slot of ``methods`` (e.g. ``{"A": "kmeans", "B": "jule"}``) the labels,
    NMI/ACC/ARI and Hungarian match. ``report(step, n_steps, message)`` hears of each step;
    ``capture()`` wraps the steps that draw their own progress bars."""
    report = report or (lambda *_: None)
    n = len(views) + 2 + len(methods)
    feats = {}
    for i, v in enumerate(views):
        report(i, n, f"features of {v} on {ds.name} ({len(ds)} images; extracted once, then cached) …")
        with capture():
            feats[v] = cfg.features(ds, v, normalize=True, progress=True)
    X = np.concatenate([feats[v] for v in views], axis=1)
    report(len(views), n, f"t-SNE of {len(ds)} points (cached after the first time; about a minute for a few "
                          "thousand points) …")
    xy = tsne(X, seed=seed, cache_dir=cfg.cache_dir)
    labels = {}
    for j, (slot, m) in enumerate(methods.items()):
        report(len(views) + 1 + j, n, f"method {slot}: {m} on {'+'.join(views)} (cached after the first fit) …")
        with capture():
            labels[slot] = fit_on_views(cfg, m, ds, views, feats, seed)
    return partition_state(ds, views, X, xy, labels)


def partition_state(dataset, views: tuple, X, xy, labels: dict) -> ExplorerState:
    """The state for two partitions ``labels`` (``{"A": ..., "B": ...}``) of ``dataset``:
    scored and matched against the classes when the set is labelled; without labels, A's
    clusters are matched to B's (so both panels colour the same groups alike) and the
    matrix compares A's clusters with B's."""
    labels = {slot: np.asarray(lab) for slot, lab in labels.items()}
    if dataset.labelled:
        ref, names, kind = dataset.labels, list(dataset.class_names), "class"
        scores = {slot: evaluate(ref, lab) for slot, lab in labels.items()}
    else:
        ref, kind, scores = labels["B"], "B cluster", None
        names = [f"B{c}" for c in range(int(ref.max()) + 1)]
    match = {slot: hungarian_match(ref, lab) for slot, lab in labels.items()}
    return ExplorerState(dataset=dataset, views=tuple(views), X=X, xy=xy, labels=labels, scores=scores, match=match,
                         reference=ref, reference_names=names, reference_kind=kind)
