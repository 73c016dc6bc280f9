"""Run a grid of (data set, views, method, seed) and collect tidy result records.

A record is one row: ``dataset, views, method, seed, nmi, acc, ari, seconds, device``
(plus ``n_clusters`` asked, ``n_clusters_found`` and ``preset``). Tables and plots are pure
functions of them.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import atomic_path, resolve_device, tqdm
from .cache import code_stamp, entry_path, load_arrays, save_arrays, stable_hash
from .cluster import get_method, make_method
from .metrics import evaluate

__all__ = ["run_methods", "records_frame", "save_records", "fit_cached", "consensus_cached", "RECORD_COLUMNS"]

RECORD_COLUMNS = ["dataset", "views", "method", "seed", "nmi", "acc", "ari", "seconds", "device",
                  "n_clusters", "n_clusters_found", "preset"]


def run_methods(dataset: str, views: dict[str, np.ndarray], labels, methods, seeds=(0,), n_clusters=None,
                device: str = "auto", preset: str = "", progress: bool = True, **method_params) -> list[dict]:
    """Cluster every view with every method and seed; one record per run.

    ``views`` maps a view name (the backbone, or ``"a+b"`` for a concatenation) to its
    feature matrix; features are used as given (normalise them before, see
    :func:`mvcpaper.preprocessing.l2_normalize`).
    """
    labels = np.asarray(labels)
    k = int(n_clusters or len(np.unique(labels)))
    dev = str(resolve_device(device))
    jobs = [(v, m, s) for v in views for m in methods
            for s in ((seeds[0],) if get_method(m).deterministic else seeds)]
    records = []
    for view, method, seed in tqdm(jobs, desc=f"cluster {dataset}", disable=not progress):
        est = make_method(method, n_clusters=k, seed=int(seed), device=device, **method_params.get(method, {}))
        t0 = time.perf_counter()
        pred = est.fit_predict(views[view])
        seconds = time.perf_counter() - t0
        records.append({"dataset": dataset, "views": view, "method": method, "seed": int(seed),
                        **evaluate(labels, pred), "seconds": round(seconds, 3), "device": dev,
                        "n_clusters": k, "n_clusters_found": int(len(np.unique(pred))), "preset": preset})
    return records


def records_frame(records) -> pd.DataFrame:
    """Records (list of dicts or a frame) -> a frame with the standard columns first."""
    df = pd.DataFrame(list(records)) if not isinstance(records, pd.DataFrame) else records.copy()
    cols = [c for c in RECORD_COLUMNS if c in df.columns] + [c for c in df.columns if c not in RECORD_COLUMNS]
    return df[cols]


def save_records(records, path) -> Path:
    """Write records to CSV atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        records_frame(records).to_csv(tmp, index=False)
    return path


def fit_cached(est, X, key: dict, cache_dir=None, use_cache: bool = True, y=None) -> dict:
    """Fit ``est`` on ``X`` once; later calls with the same key load the result from disk.

    ``key`` names the input (data set fingerprint, views, feature cache ids); the
    estimator's class, its parameters and a stamp of its code (:func:`~mvcpaper.cache.code_stamp`:
    the source of every module it depends on) are added to it, so a changed method never
    returns an old fit. The result holds ``labels``, ``embedding`` (``embedding_`` where the
    method learns a representation, else ``None``), ``seconds`` of the original fit and
    ``history``. Written atomically under ``<cache root>/fits`` and validated on read (a
    damaged entry is deleted and refitted), so an interrupted grid resumes. ``y`` (true
    labels) is passed to ``fit`` for the methods that log with it (JULE's NMI per period);
    no method trains on it.
    """
    def fit():
        est.fit(X, y)
        return est.labels_, getattr(est, "embedding_", None), getattr(est, "history_", [])

    return _cached(est, key, fit, cache_dir, use_cache)


def consensus_cached(est, partitions, key: dict, cache_dir=None, use_cache: bool = True) -> dict:
    """``est.consensus(partitions)`` (an ensemble method on base partitions given as one list
    per view) once; cached as :func:`fit_cached`, the partitions' content part of the key."""
    h = hashlib.sha256()
    for view in partitions:
        for p in view:
            h.update(np.ascontiguousarray(p, dtype=np.int64).tobytes())
        h.update(b"|")
    digest = h.hexdigest()[:20]
    return _cached(est, {**key, "partitions": digest}, lambda: (est.consensus(partitions), None, []),
                   cache_dir, use_cache)


def _cached(est, key: dict, compute, cache_dir, use_cache: bool) -> dict:
    """``compute() -> (labels, embedding or None, history)`` through the fit cache, keyed by
    ``key``, the estimator's class, parameters and code stamp."""
    params = {k: v for k, v in est.get_params().items() if k not in ("progress", "device")}
    full = {**key, "method": type(est).__name__, "code": code_stamp(est),
            "params": {k: repr(v) for k, v in sorted(params.items())}}
    path = entry_path("fits", f"{stable_hash(full, 20)}.npz", cache_dir=cache_dir)
    if use_cache:
        got = load_arrays(path)
        if got is not None:
            arrays, meta = got
            emb = arrays["embedding"] if "embedding" in arrays else None
            return {"labels": arrays["labels"], "embedding": emb, "seconds": float(meta["seconds"]),
                    "history": meta["history"], "cached": True}
    t0 = time.perf_counter()
    labels, emb, history = compute()
    seconds = time.perf_counter() - t0
    out = {"labels": np.asarray(labels), "embedding": None if emb is None else np.asarray(emb, np.float32),
           "seconds": seconds, "history": history, "cached": False}
    if use_cache:
        arrays = {"labels": out["labels"]} | ({} if emb is None else {"embedding": out["embedding"]})
        save_arrays(path, arrays, {"seconds": seconds, "history": out["history"], "key": full})
    return out
