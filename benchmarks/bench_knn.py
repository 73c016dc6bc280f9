"""Exact k-nearest-neighbour graphs (JULE's affinities, neighbour consistency, the report's
confidence): faiss's exact index, as :func:`mvcpaper.cluster.neighbours.nearest_neighbours` uses
it, against scikit-learn's brute-force ``NearestNeighbors`` on COIL-100.

Two inputs: the three EfficientNet-Lite views concatenated (7200 x 3840, the first
period of JULE on CC) and a 160-d embedding (JULE's later periods; a seeded Gaussian of
that shape). Reports seconds, the ratio and the fraction of identical neighbours.

Usage: MVCPAPER_DATA=../shared/data python benchmarks/bench_knn.py [--k 20]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.neighbors import NearestNeighbors

from mvcpaper.cluster.neighbours import nearest_neighbours
from mvcpaper.data import load_dataset
from mvcpaper.features import OFFLINE_BACKBONES, extract_features
from mvcpaper.preprocessing import l2_normalize


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--k", type=int, default=20)
    a = ap.parse_args()
    ds = load_dataset("coil100", root=a.data_root)
    cc = np.concatenate([l2_normalize(extract_features(ds, b, progress=False)) for b in OFFLINE_BACKBONES], axis=1)
    inputs = {"views concatenated": cc.astype(np.float32),
              "160-d embedding": np.random.default_rng(0).normal(size=(len(ds), 160)).astype(np.float32)}
    print(f"# COIL-100, {len(ds)} points, k={a.k}, {os.cpu_count()} cores\n")
    print("| input | scikit-learn s | faiss s | speed-up | same neighbours |\n|---|---:|---:|---:|---:|")
    for name, Z in inputs.items():
        t0 = time.perf_counter()
        ref = NearestNeighbors(n_neighbors=a.k + 1, algorithm="brute").fit(Z).kneighbors(Z, return_distance=False)
        t_sk = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = nearest_neighbours(Z, a.k)[1]
        t_fa = time.perf_counter() - t0
        same = np.mean([len(set(r[1:]) & set(o)) / a.k for r, o in zip(ref, ours)])
        print(f"| {name} ({Z.shape[1]}-d) | {t_sk:.2f} | {t_fa:.2f} | {t_sk / t_fa:.1f}x | {same:.4f} |")


if __name__ == "__main__":
    main()
