"""Cluster a folder of your own images: ``mvcpaper cluster IMAGE_DIR --out OUT`` and
:func:`cluster_folder`.

Stages (each with a progress bar): read every image under the folder; extract each view
(cached by content, so a second run with another ``k`` extracts nothing); choose k and the
method without labels (:mod:`mvcpaper.cluster.model_selection`) unless given; cluster; score
every image; write ``assignments.csv``, ``summary.json``, ``report.html`` and a contact
sheet per cluster (:mod:`mvcpaper.report`).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import sklearn
import timm
import torch

from ._utils import atomic_path, resolve_device
from .cluster import METHODS, make_method
from .cluster.model_selection import estimate_k, select_partition
from .data import read_image_tree
from .errors import MvcpaperError
from .experiments import fit_cached
from .features import OFFLINE_BACKBONES, extract_features, get_backbone, resolve_weights
from .plots import tsne
from .preprocessing import l2_normalize
from .report import (
    contact_sheet,
    link_clusters,
    membership_scores,
    relative_paths,
    write_assignments,
    write_report,
)

__all__ = ["cluster_folder", "FolderClustering", "DEFAULT_BACKBONES", "fit_method", "load_output"]

DEFAULT_BACKBONES = OFFLINE_BACKBONES


@dataclass
class FolderClustering:
    """What :func:`cluster_folder` found; ``summary`` is what ``summary.json`` holds."""

    dataset: object
    views: dict
    labels: np.ndarray
    confidence: np.ndarray
    typicality: np.ndarray
    xy: np.ndarray
    summary: dict = field(default_factory=dict)


def _check_k(k, n_images: int):
    if k == "auto" or k is None:
        return "auto"
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise MvcpaperError(f"--k must be a whole number or 'auto', not {k!r}") from None
    if not 2 <= k <= n_images:
        raise MvcpaperError(f"--k {k} is not possible with {n_images} readable images; give 2 <= k <= {n_images} "
                            "or --k auto")
    return k


def cluster_folder(image_dir, out_dir, k="auto", backbones=None, method: str = "auto", device: str = "auto",
                   seed: int = 0, cache_dir=None, weights: dict | None = None, link: bool = False,
                   strict: bool = False, progress: bool = True) -> FolderClustering:
    """Cluster every image under ``image_dir`` and write the results to ``out_dir``.

    Parameters
    ----------
    k : int or "auto"
        The number of clusters, or estimated without labels (:func:`estimate_k`).
    backbones : list of str
        The views: registry names, ``timm:<model>`` or ``pixels`` (default: the offline
        EfficientNet-Lite0/1/2).
    method : str
        A registered method, or ``"auto"``: the label-free choice of
        :func:`~mvcpaper.cluster.model_selection.select_partition`.
    weights : dict
        ``{backbone: weights file}`` for views whose weights are not in a cache.
    link : bool
        Also write ``out_dir/clusters/cluster_<c>/``, symbolic links to the originals.
    strict : bool
        An unreadable image is an error instead of being skipped and listed.
    """
    t_start = time.perf_counter()
    image_dir, out = Path(image_dir).expanduser(), Path(out_dir).expanduser()
    backbones = list(backbones or DEFAULT_BACKBONES)
    weights = dict(weights or {})
    unused = set(weights) - set(backbones)
    if unused:
        raise MvcpaperError(f"--weights names {sorted(unused)}, which are not among the views {backbones}")
    weights_ids = _weights_ids(backbones, weights)  # an unknown name or a missing file fails here, before any work
    if method != "auto" and method not in METHODS:
        raise MvcpaperError(f"unknown method {method!r}; use 'auto' or one of {', '.join(METHODS)}")
    seconds = {}
    t0 = time.perf_counter()
    ds = read_image_tree(image_dir, strict=strict, exclude=[out], progress=progress)
    seconds["reading"] = time.perf_counter() - t0
    k = _check_k(k, len(ds))
    views = {}
    for b in backbones:
        t0 = time.perf_counter()
        views[b] = _view(ds, b, weights, device, cache_dir, progress)
        seconds[f"features {b}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if k == "auto":
        estimate = estimate_k(list(views.values()), seed=seed)
        k, k_choice = estimate.k, estimate.as_dict()
    else:
        k_choice = {"k": k, "estimator": "given (--k)"}
    seconds["choosing k"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = _cached_fitter(ds, weights_ids, cache_dir)
    if method == "auto":
        choice = select_partition(views, k, seed=seed, device=device, progress=progress, fit=fit)
        labels, method_choice = choice.labels, choice.as_dict()
    else:
        labels, inp = fit_method(method, views, k, fit, seed=seed, device=device, progress=progress)
        method_choice = {"method": method, "input": inp, "why": "given (--method)"}
    seconds["clustering"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    X = np.concatenate(list(views.values()), axis=1)
    confidence, typicality = membership_scores(X, labels)
    xy = tsne(X, seed=seed, cache_dir=cache_dir)
    seconds["scores and map"] = time.perf_counter() - t0
    result = FolderClustering(ds, views, labels, confidence, typicality, xy)
    result.summary["seconds"] = {s: round(v, 2) for s, v in seconds.items()}  # the report shows these
    t0 = time.perf_counter()
    result.summary.update({"seed": int(seed), "cache_dir": str(cache_dir) if cache_dir else None,
                           "weights": {b: str(weights.get(b, "imagenet")) for b in backbones}})
    _write(result, out, k, k_choice, method_choice, backbones, device, link, progress)
    seconds["report"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    result.summary["seconds"] = {s: round(v, 2) for s, v in seconds.items()}
    _write_summary(out / "summary.json", result.summary)
    return result


def _weights_ids(backbones, weights: dict) -> dict:
    """The weights id of every view (``weights``: ``{view: file}``, the others ImageNet's)."""
    return {b: resolve_weights(get_backbone(b), weights.get(b, "imagenet")).weights_id for b in backbones}


def _view(ds, backbone: str, weights: dict, device: str, cache_dir, progress: bool) -> np.ndarray:
    """One view of ``ds``: the backbone's features (cached by content), L2-normalised."""
    return l2_normalize(extract_features(ds, backbone, weights=weights.get(backbone, "imagenet"), device=device,
                                         cache_dir=cache_dir, progress=progress))


def _cached_fitter(ds, weights_ids: dict, cache_dir) -> Callable:
    """``fit(estimator, input name, X) -> labels`` through the fit cache, keyed on the folder's
    content and the views' weights: a second run at the same k refits nothing."""
    key = {"dataset": ds.name, "fingerprint": ds.fingerprint(), "views": weights_ids}

    def fit(est, inp, X):
        return fit_cached(est, X, {**key, "input": inp}, cache_dir=cache_dir)["labels"]

    return fit


def fit_method(method: str, views: dict, k: int, fit: Callable, seed: int = 0, device: str = "auto",
               progress: bool = True) -> tuple[np.ndarray, str]:
    """Labels of a registered ``method`` at ``k`` on ``views`` (multi-view methods take them
    separately, the others their concatenation ``"CC"``) and the input's name."""
    est = make_method(method, k, seed=seed, device=device, progress=progress)
    if METHODS[method].multiview:
        inp, X = "+".join(views), list(views.values())
    else:
        inp, X = "CC", np.concatenate(list(views.values()), axis=1)
    return np.asarray(fit(est, inp, X)), inp


def load_output(out_dir, cache_dir=None, device: str = "auto", progress: bool = True) -> tuple:
    """Reopen what ``mvcpaper cluster`` wrote to ``out_dir``: ``(FolderClustering, fit)``,
    the images read again, the views and the 2-D map from the caches (nothing is extracted
    again unless the caches were cleared), ``fit`` as :func:`fit_method` takes it, through
    the same fit cache. The images must be those of the run."""
    out = Path(out_dir).expanduser()
    if not (out / "summary.json").is_file() or not (out / "assignments.csv").is_file():
        raise MvcpaperError(f"{out} holds no summary.json and assignments.csv; give a folder written by "
                            "mvcpaper cluster IMAGE_DIR --out OUT")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    table = pd.read_csv(out / "assignments.csv", dtype={"path": str})
    cache_dir = cache_dir if cache_dir is not None else summary.get("cache_dir")
    ds = read_image_tree(summary["image_dir"], exclude=[out], progress=progress)
    if relative_paths(ds) != table["path"].tolist():
        raise MvcpaperError(f"the images under {summary['image_dir']} are not those clustered in {out} "
                            "(files added, removed or renamed since); run mvcpaper cluster again")
    backbones, weights = [v["name"] for v in summary["views"]], summary.get("weights", {})
    weights_ids = _weights_ids(backbones, weights)
    views = {b: _view(ds, b, weights, device, cache_dir, progress) for b in backbones}
    X = np.concatenate(list(views.values()), axis=1)
    result = FolderClustering(ds, views, table["cluster"].to_numpy(), table["confidence"].to_numpy(),
                              table["typicality"].to_numpy(), tsne(X, seed=summary.get("seed", 0), cache_dir=cache_dir),
                              summary)
    return result, _cached_fitter(ds, weights_ids, cache_dir)


def _versions() -> dict:
    return {"mvcpaper": version("mvcpaper"), "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "scikit-learn": sklearn.__version__}


def _write_summary(path: Path, summary: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


def _write(result: FolderClustering, out: Path, k: int, k_choice: dict, method_choice: dict, backbones, device: str,
           link: bool, progress: bool) -> None:
    ds, labels = result.dataset, result.labels
    out.mkdir(parents=True, exist_ok=True)
    clusters = np.unique(labels)
    width = len(str(int(clusters.max())))
    sheets = {}
    sheet_dir = out / "contact_sheets"
    sheet_dir.mkdir(exist_ok=True)
    for old in sheet_dir.glob("cluster_*.png"):  # a previous run's clusters must not linger
        old.unlink()
    for c in clusters:
        members = np.flatnonzero(labels == c)
        order = members[np.argsort(result.typicality[members], kind="stable")]
        name = f"contact_sheets/cluster_{int(c):0{width}d}.png"
        contact_sheet(ds, order[:64], path=out / name)
        sheets[int(c)] = name
    write_assignments(out / "assignments.csv", ds, labels, result.confidence, result.typicality)
    result.summary.update({
        "image_dir": str(Path(ds.info["root"]).resolve()), "n_images": len(ds), "n_unreadable": len(ds.info["skipped"]),
        "unreadable": ds.info["skipped"], "labels": ds.info["layout"], "k": int(k), "k_choice": k_choice,
        "method": method_choice.get("method"), "method_choice": method_choice,
        "views": [{"name": b, "dim": int(result.views[b].shape[1])} for b in backbones],
        "device": str(resolve_device(device)), "versions": _versions(),
        "confidence": "fraction of an image's 10 nearest neighbours (concatenated L2-normalised views; fewer in a "
                      "cluster of 10 or less) that share its cluster",
        "typicality": "rank of an image's distance to its cluster's mean, 1 = most typical",
    })
    if link:
        link_clusters(out, ds, labels)
    write_report(out / "report.html", ds, labels, result.confidence, result.typicality, result.xy,
                 result.summary, sheets, progress=progress)
    _write_summary(out / "summary.json", result.summary)
