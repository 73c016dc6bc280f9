"""torch k-means against scikit-learn's KMeans on COIL-100 features: time ratio and NMI.

Both with k-means++ seeding and the same n_init, on the L2-normalised pooled features
of each EfficientNet-Lite view (extracted, or read from the feature cache).

Usage: python benchmarks/bench_kmeans.py [--dataset coil100] [--n-init 10] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from mvcpaper.cluster import TorchKMeans
from mvcpaper.data import load_dataset
from mvcpaper.features import OFFLINE_BACKBONES, extract_features
from mvcpaper.metrics import nmi
from mvcpaper.preprocessing import l2_normalize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="coil100")
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--n-init", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    ds = load_dataset(a.dataset, root=a.data_root)
    k = ds.n_classes
    dev = "cuda" if (a.device == "auto" and torch.cuda.is_available()) else ("cpu" if a.device == "auto" else a.device)
    print(f"# {a.dataset}: {len(ds)} images, k={k}, n_init={a.n_init}, seeds {a.seeds}; torch on {dev}, "
          f"{os.cpu_count()} cores\n")
    print("| view | sklearn s | torch s | speed-up | sklearn NMI | torch NMI |\n|---|---:|---:|---:|---:|---:|")
    for b in OFFLINE_BACKBONES:
        X = l2_normalize(extract_features(ds, b, progress=False))
        ts, tt, ns, nt = [], [], [], []
        for s in a.seeds:
            t = time.perf_counter()
            ls = KMeans(k, n_init=a.n_init, random_state=s).fit_predict(X)
            ts.append(time.perf_counter() - t)
            t = time.perf_counter()
            lt = TorchKMeans(k, n_init=a.n_init, random_state=s, device=dev).fit_predict(X)
            tt.append(time.perf_counter() - t)
            ns.append(nmi(ds.labels, ls))
            nt.append(nmi(ds.labels, lt))
        print(f"| {b} | {np.mean(ts):.2f} | {np.mean(tt):.2f} | {np.mean(ts) / np.mean(tt):.2f} | "
              f"{np.mean(ns):.3f} ± {np.std(ns):.3f} | {np.mean(nt):.3f} ± {np.std(nt):.3f} |")


if __name__ == "__main__":
    main()
