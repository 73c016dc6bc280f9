"""MVEC (Tao) consensus on the micro-clusters against the same solver on the samples.

The base partitions are notebook 04's: JULE (the offline preset's settings) on each
EfficientNet-Lite view of the data set, through the fit cache (read, not refitted, after
``mvcpaper reproduce --preset offline``). Then, one after the other:

- samples: ``low_rank_sparse_consensus`` on the n x n co-association matrices and
  scikit-learn's ``SpectralClustering`` (precomputed, cluster_qr) of the n x n consensus;
- micro-clusters: ``MVECTao.consensus`` (the same problem on the m distinct label
  combinations, weighted by their sizes; spectral clustering of the expanded matrix
  computed on the m x m one).

Usage: MVCPAPER_DATA=../shared/data python benchmarks/bench_consensus.py [--dataset coil100] [--seeds 0]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.cluster import SpectralClustering

from mvcpaper.cluster import make_method
from mvcpaper.cluster.ensemble import co_association, low_rank_sparse_consensus
from mvcpaper.experiments import fit_cached
from mvcpaper.metrics import nmi
from mvcpaper.pipeline import feature_key
from mvcpaper.presets import resolve


def on_samples(partitions, k: int, seed: int):
    Z, _, iterations = low_rank_sparse_consensus([co_association([p]) for p in partitions])
    spectral = SpectralClustering(k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed)
    return spectral.fit_predict(np.clip((Z + Z.T) / 2, 0, None)), Z, iterations


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="coil100")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = ap.parse_args()
    cfg = resolve("offline", datasets=[a.dataset])
    ds = cfg.load(a.dataset)
    views, k, y = cfg.views(ds, progress=False), ds.n_classes, ds.labels
    print(f"# {a.dataset}: {len(ds)} images, k={k}; base partitions: JULE on {', '.join(views)}; "
          f"{os.cpu_count()} cores\n")
    print("| seed | micro-clusters | samples s | micro-clusters s | speed-up | iterations | NMI samples "
          "| NMI micro-clusters | NMI between | max abs Z difference |\n|---|" + "---:|" * 9)
    for seed in a.seeds:
        parts = []
        for v, X in views.items():
            est = make_method("jule", n_clusters=k, seed=seed, device=cfg.device, progress=False, **cfg.params("jule"))
            parts.append(fit_cached(est, X, {**feature_key(cfg, ds), "input": v}, cache_dir=cfg.cache_dir,
                                    y=y)["labels"])
        t0 = time.perf_counter()
        dense, Z, iterations = on_samples(parts, k, seed)
        dense_s = time.perf_counter() - t0
        tao = make_method("mvec_tao", k, seed=seed, device=cfg.device, progress=False)
        t0 = time.perf_counter()
        ours = tao.consensus([[p] for p in parts])
        ours_s = time.perf_counter() - t0
        group = tao.groups_
        diff = np.abs(tao.consensus_[group][:, group] - Z).max()
        print(f"| {seed} | {group.max() + 1} | {dense_s:.1f} | {ours_s:.2f} | {dense_s / ours_s:.0f}x "
              f"| {iterations} / {tao.n_iter_} | {nmi(y, dense):.4f} | {nmi(y, ours):.4f} | {nmi(dense, ours):.4f} "
              f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
