"""Seconds per epoch of IDEC, JULE and DMVC-fix on COIL-100 features (three EfficientNet-Lite views).

Usage::

    MVCPAPER_DATA=../shared/data python benchmarks/bench_deep.py [--epochs 3] [--device auto]

Features come from the cache (extracted on first use). Each method trains for a few
epochs only; the table gives seconds per epoch of each stage and, as the baseline
measured in the same run, the ratio to one KMeans fit (k=100, n_init=1, sklearn) on
the same input. Close other work first: on 2 cores a concurrent process slows torch
several-fold.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mvcpaper.cluster import make_method
from mvcpaper.presets import resolve


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="coil100")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    cfg = resolve("offline", datasets=[args.dataset], device=args.device)
    ds = cfg.load(args.dataset)
    views = list(cfg.views(ds).values())
    k, n = ds.n_classes, len(ds)
    cc = np.concatenate(views, axis=1)
    e = args.epochs

    def kmeans_seconds(X):
        t0 = time.perf_counter()
        make_method("kmeans", k, n_init=1).fit(X)
        return time.perf_counter() - t0

    rows = []

    def add(method, inp, stage, per_epoch, base):
        rows.append({"method": method, "input": inp, "stage": stage, "s/epoch": round(per_epoch, 3),
                     "x KMeans fit": round(per_epoch / base, 2)})

    for name, X, label in [("idec", views[0], "Lite0 (1280-d)"), ("idec", cc, "CC (3840-d)"),
                           ("dmvc_idec", views, "3 views")]:
        base = kmeans_seconds(X if not isinstance(X, list) else cc)
        m = make_method(name, k, device=args.device, progress=False, pretrain_steps=None, pretrain_epochs=e,
                        max_epochs=e, tol=0).fit(X)
        add(name, label, "pretrain epoch", m.pretrain_seconds_ / m.pretrain_epochs_, base)
        add(name, label, "clustering epoch", float(np.mean([h["seconds"] for h in m.history_ if "seconds" in h])), base)
    for name, X, label in [("jule", views[0], "Lite0 (1280-d)"), ("jule", cc, "CC (3840-d)"),
                           ("dmvc_jule", views, "3 views")]:
        base = kmeans_seconds(X if not isinstance(X, list) else cc)
        m = make_method(name, k, device=args.device, progress=False, epochs_per_period=e).fit(X)
        h = m.history_
        add(name, label, "training epoch", sum(p["train_seconds"] for p in h) / sum(p["epochs"] for p in h), base)
        add(name, label, "merging period", float(np.mean([p["merge_seconds"] for p in h])), base)
    df = pd.DataFrame(rows)
    print(f"{args.dataset}: {n} images, k={k}, device {cfg.device}")
    print(df.to_markdown(index=False))


if __name__ == "__main__":
    main()
