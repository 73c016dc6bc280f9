"""Exact k-nearest-neighbour graphs (JULE's affinities, neighbour consistency, the report's
confidence): faiss's exact index, as :func:`mvcpaper.cluster.neighbours.nearest_neighbours` uses
it, against scikit-learn's brute-force ``NearestNeighbors`` on COIL-100.

Two inputs: the three EfficientNet-Lite views concatenated (7200 x 3840, the first
period of JULE on CC) and a 160-d embedding (JULE's later periods; a seeded Gaussian of
that shape). Reports seconds, the ratio and the fraction of identical neighbours.

``--large N``: instead, the approximate graph that sets above ``EXACT_MAX_ROWS`` get, on
``bench_scale.py``'s N-sample mixture (its three views concatenated, 3840-d, and a 160-d
clustered embedding): its time and recall against the exact search for 2000 seeded
queries (whose time is scaled to all N, since the whole exact graph takes minutes), beside
faiss's inverted-file search (IVF-Flat), which the package used before.

Usage: MVCPAPER_DATA=../shared/data python benchmarks/bench_knn.py [--k 20] [--large 100000]
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from bench_scale import make_views
from sklearn.neighbors import NearestNeighbors

from mvcpaper._utils import cpu_label
from mvcpaper.cluster._faiss import faiss  # with the BLAS kernels the package loads it with
from mvcpaper.cluster.neighbours import EXACT_MAX_ROWS, nearest_neighbours
from mvcpaper.data import load_dataset
from mvcpaper.features import OFFLINE_BACKBONES, extract_features
from mvcpaper.preprocessing import l2_normalize


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--large", type=int, help="rows of the mixture for the approximate graph")
    a = ap.parse_args()
    if a.large:
        large(a.large, a.k)
        return
    ds = load_dataset("coil100", root=a.data_root)
    cc = np.concatenate([l2_normalize(extract_features(ds, b, progress=False)) for b in OFFLINE_BACKBONES], axis=1)
    inputs = {"views concatenated": cc.astype(np.float32),
              "160-d embedding": np.random.default_rng(0).normal(size=(len(ds), 160)).astype(np.float32)}
    print(f"# COIL-100, {len(ds)} points, k={a.k}, {os.cpu_count()} cores ({cpu_label()})\n")
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


def large(n: int, k: int, n_queries: int = 2000):
    if n <= EXACT_MAX_ROWS:
        raise SystemExit(f"--large must exceed EXACT_MAX_ROWS = {EXACT_MAX_ROWS}")
    rng = np.random.default_rng(0)
    views, y = make_views(n)
    cc = np.concatenate(views, axis=1)
    embedding = rng.normal(size=(100, 160))[y] + rng.normal(size=(n, 160))
    inputs = {"views concatenated": cc / np.linalg.norm(cc, axis=1, keepdims=True),
              "160-d embedding": embedding / np.linalg.norm(embedding, axis=1, keepdims=True)}
    queries = rng.choice(n, n_queries, replace=False)
    print(f"# bench_scale's mixture, {n} points, k={k}, {os.cpu_count()} cores ({cpu_label()})\n")
    print("Seconds and recall of the exact neighbours (2000 seeded queries; the exact time scaled to all rows) "
          "for faiss's inverted-file index (IVF-Flat, 4 sqrt(n) lists, 16 searched) and for the list-by-list "
          "brute-force searches of `nearest_neighbours` (sqrt(n) / 2 lists, 4 searched).\n")
    print("| input | exact s | faiss IVF-Flat s | recall | ours s | recall | ours vs IVF-Flat | ours vs exact |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, Z in inputs.items():
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        t0 = time.perf_counter()
        flat = faiss.IndexFlatL2(Z.shape[1])
        flat.add(Z)
        exact = flat.search(Z[queries], k + 1)[1]
        t_exact = (time.perf_counter() - t0) * n / n_queries
        t0 = time.perf_counter()
        ivf = ivf_flat_neighbours(Z, k)
        t_ivf = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = nearest_neighbours(Z, k)[1]
        t_ours = time.perf_counter() - t0
        r_ivf, r_ours = (np.mean([len(set(e[e != q]) & set(r)) / k for e, r, q in zip(exact, found[queries], queries)])
                         for found in (ivf, ours))
        print(f"| {name} ({Z.shape[1]}-d) | {t_exact:.0f} | {t_ivf:.1f} | {r_ivf:.4f} | {t_ours:.1f} | {r_ours:.4f} | "
              f"{t_ivf / t_ours:.1f}x | {t_exact / t_ours:.0f}x |")


def ivf_flat_neighbours(Z: np.ndarray, k: int) -> np.ndarray:
    """faiss's inverted-file search, as the package used it before (4 sqrt(n) lists, 16 searched);
    the k nearest other rows."""
    n, d = Z.shape
    n_lists = int(4 * math.sqrt(n))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, n_lists)
    index.train(Z[np.sort(np.random.default_rng(0).choice(n, 39 * n_lists, replace=False))])
    index.nprobe = 16
    index.add(Z)
    idx = index.search(Z, k + 1)[1]
    return np.array([[j for j in row if j != i][:k] for i, row in enumerate(idx)])

if __name__ == "__main__":
    main()
