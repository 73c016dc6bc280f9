"""Label-free choices of k and of the method against the truth, on real sets and sets made
from them (issue 13).

Usage::

    MVCPAPER_DATA=../shared/data python scripts/label_free_choices.py k [--estimators eigengap agreement ...]
    MVCPAPER_DATA=../shared/data python scripts/label_free_choices.py method [--sets umist ...]

Sets: COIL-100 and UMist whole; COIL-100 with 10, 20 and 50 of its classes (evenly spaced
class ids); UMist with its first 10 people; UMist + 20 COIL-100 objects mixed (40 classes);
COIL-100's every 7th image (10-11 per object); the synthetic set. Views: the offline
preset's (EfficientNet-Lite0/1/2, L2-normalised, from the feature cache), rows of the
whole set's features, so subsets extract nothing.

``k``: per set and estimator, k-hat, |k-hat - k| / k, seconds, and Ward's NMI on the
concatenated views at k-hat and at the true k. ``method``: per set, at the true k, every
candidate of ``select_partition`` with its NMI and neighbour consistency, the kept one, the best
candidate and the best single view under KMeans and Ward. Fits go through the fit cache
(``$MVCPAPER_CACHE``) with notebook 04's keys where the set is whole, so JULE on CC of a
reproduced run is not fitted again.
"""
from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from mvcpaper.cluster import make_method
from mvcpaper.cluster.model_selection import K_ESTIMATORS, estimate_k, select_partition
from mvcpaper.experiments import fit_cached
from mvcpaper.metrics import nmi
from mvcpaper.pipeline import feature_key
from mvcpaper.presets import resolve


def labelled_sets():
    """``{name: (views {backbone: array}, labels, fit-cache key)}``."""
    cfg = resolve("offline", datasets=["coil100", "umist"])
    full = {}
    for name in ("coil100", "umist"):
        ds = cfg.load(name)
        full[name] = (cfg.views(ds, progress=False), ds.labels, feature_key(cfg, ds))
    smoke = resolve("smoke")
    ds = smoke.load("synthetic")
    full["synthetic"] = (smoke.views(ds, progress=False), ds.labels, feature_key(smoke, ds))

    def pick(name, classes):
        return take(name, np.flatnonzero(np.isin(full[name][1], classes)))

    def take(name, rows):
        views, y, key = full[name]
        digest = hashlib.sha256(rows.tobytes()).hexdigest()[:12]
        return ({b: v[rows] for b, v in views.items()}, np.unique(y[rows], return_inverse=True)[1],
                {**key, "rows": digest})

    sets = dict(full)
    for n in (10, 20, 50):
        sets[f"coil100/{n} classes"] = pick("coil100", np.arange(0, 100, 100 // n))
    sets["umist/10 people"] = pick("umist", np.arange(10))
    # 10-11 images per object, as a folder of every 7th image
    sets["coil100/every 7th image"] = take("coil100", np.arange(0, len(full["coil100"][1]), 7))
    cv, cy, ck = pick("coil100", np.arange(0, 100, 5))
    uv, uy, uk = full["umist"]
    sets["umist + 20 coil objects"] = ({b: np.concatenate([uv[b], cv[b]]) for b in uv},
                                       np.concatenate([uy, cy + uy.max() + 1]), {"mix": [uk, ck]})
    return sets


def k_part(sets, estimators):
    print(f"{'set':26s} {'n':>5s} {'k':>4s} {'estimator':11s} {'k-hat':>5s} {'err':>5s} {'s':>6s} "
          f"{'NMI@k-hat':>9s} {'NMI@k':>6s}", flush=True)
    for name, (views, y, _) in sets.items():
        k = len(np.unique(y))
        cc = np.concatenate(list(views.values()), axis=1)
        at_k = nmi(y, make_method("agglomerative", k).fit_predict(cc))
        for est in estimators:
            t0 = time.perf_counter()
            got = estimate_k(list(views.values()), est)
            secs = time.perf_counter() - t0
            at_hat = nmi(y, make_method("agglomerative", got.k).fit_predict(cc))
            print(f"{name:26s} {len(y):5d} {k:4d} {est:11s} {got.k:5d} {abs(got.k - k) / k:5.2f} {secs:6.1f} "
                  f"{at_hat:9.3f} {at_k:6.3f}", flush=True)


def _cached_fit(key: dict, multi: str):
    def fit(est, inp, X):  # notebook 04's input names, so a reproduced run's fits are reused
        return fit_cached(est, X, {**key, "input": "DMVC-fix" if inp == multi else inp})["labels"]

    return fit


def method_part(sets):
    for name, (views, y, key) in sets.items():
        k = len(np.unique(y))
        t0 = time.perf_counter()
        choice = select_partition(views, k, fit=_cached_fit(key, "+".join(views)))
        secs = time.perf_counter() - t0
        print(f"\n{name}: {len(y)} images, k = {k} ({secs:.0f} s)", flush=True)
        scores = []
        for c, labels in zip(choice.candidates, choice.partitions):
            scores.append(nmi(y, labels))
            print(f"  {c['method']:14s} {c['input'][:40]:40s} NMI {scores[-1]:.3f}  consistency {c['consistency']:.3f}"
                  f"  {c['seconds']:.0f} s", flush=True)
        single = max(s for s, c in zip(scores, choice.candidates)
                     if c["method"] in ("kmeans", "agglomerative") and c["input"] in views)
        print(f"  kept: {choice.method} on {choice.input[:40]}: NMI {nmi(y, choice.labels):.3f} | best candidate "
              f"{max(scores):.3f} | best single view (KM, Ward) {single:.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["k", "method"])
    ap.add_argument("--estimators", nargs="+", default=list(K_ESTIMATORS))
    ap.add_argument("--sets", nargs="+", default=None, help="a subset of the sets, by name")
    args = ap.parse_args()
    sets = labelled_sets()
    if args.sets:
        sets = {n: sets[n] for n in args.sets}
    if args.part == "k":
        k_part(sets, args.estimators)
    else:
        method_part(sets)


if __name__ == "__main__":
    main()
