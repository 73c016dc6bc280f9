"""faiss and torch k-means against scikit-learn's KMeans on COIL-100 features: time ratio and NMI.

All three with k-means++ seeding, the same n_init, max_iter (300) and stopping rule
(tol 1e-4 of the mean variance), on the L2-normalised pooled features of each
EfficientNet-Lite view (extracted, or read from the feature cache); one at a time.

Usage: python benchmarks/bench_kmeans.py [--dataset coil100] [--n-init 10] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from mvcpaper._utils import cpu_label
from mvcpaper.cluster import KMeans, TorchKMeans
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
    print(f"# {a.dataset}: {len(ds)} images, k={k}, n_init={a.n_init}, max_iter 300, seeds {a.seeds}; torch on {dev}, "
          f"{os.cpu_count()} cores ({cpu_label()})\n")
    engines = {"sklearn": lambda s: KMeans(k, n_init=a.n_init, engine="sklearn", random_state=s),
               "faiss": lambda s: KMeans(k, n_init=a.n_init, engine="faiss", random_state=s),
               f"torch ({dev})": lambda s: TorchKMeans(k, n_init=a.n_init, random_state=s, device=dev)}
    print("| view | " + " | ".join(f"{e} s" for e in engines) + " | " + " | ".join(f"{e} NMI" for e in engines)
          + " | faiss speed-up | torch speed-up |\n|---|" + "---:|" * (2 * len(engines) + 2))
    for b in OFFLINE_BACKBONES:
        X = l2_normalize(extract_features(ds, b, progress=False))
        secs = {e: [] for e in engines}
        nmis = {e: [] for e in engines}
        for s in a.seeds:
            for e, make in engines.items():
                t = time.perf_counter()
                labels = make(s).fit_predict(X)
                secs[e].append(time.perf_counter() - t)
                nmis[e].append(nmi(ds.labels, labels))
        mean = {e: np.mean(v) for e, v in secs.items()}
        base, (fa, to) = mean["sklearn"], list(engines)[1:]
        print(f"| {b} | " + " | ".join(f"{mean[e]:.2f}" for e in engines) + " | "
              + " | ".join(f"{np.mean(nmis[e]):.3f} ± {np.std(nmis[e]):.3f}" for e in engines)
              + f" | {base / mean[fa]:.1f}x | {base / mean[to]:.1f}x |")

if __name__ == "__main__":
    main()
