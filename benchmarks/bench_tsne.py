"""openTSNE (FFT-accelerated gradients) against scikit-learn's TSNE (Barnes-Hut) on COIL-100.

Both embed the same input (the L2-normalised EfficientNet-Lite views concatenated, PCA to
50 dimensions, as :func:`mvcpaper.plots.tsne` does) with the same perplexity, PCA
initialisation and seed. Two quality measures: scikit-learn's trustworthiness with 10
neighbours against the 50-d input, and the exact KL divergence of each map from one shared
P (the package's neighbour graph and openTSNE's perplexity calibration, as the openTSNE rows
use), which keeps falling after trustworthiness has stopped moving, so it shows what fewer
or coarser iterations cost. One engine at a time, nothing else running.
``--fft`` adds openTSNE forced to its FFT-interpolated gradients (what it picks by itself
above 10,000 points) on the same neighbour graph. ``--loose`` adds openTSNE with a coarser
Barnes-Hut (``theta=1.0`` instead of 0.5) and half the iterations after the early
exaggeration (250 instead of 500): how far settings alone take the speed-up.

Usage: MVCPAPER_DATA=../shared/data python benchmarks/bench_tsne.py [--dataset coil100] [--seeds 0] [--fft]
       [--loose]
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness

from mvcpaper._utils import cpu_label
from mvcpaper.data import load_dataset
from mvcpaper.features import OFFLINE_BACKBONES, extract_features
from mvcpaper.plots import TSNE_ENGINES, tsne_affinities
from mvcpaper.preprocessing import l2_normalize


def shared_affinities(Z: np.ndarray, perplexity: float):
    """The symmetric P (sparse, summing to 1, no stored zeros) that every map is scored against."""
    P = tsne_affinities(Z, perplexity).P
    P = P / P.sum()
    P.eliminate_zeros()  # neighbours far beyond the perplexity's scale underflow to p = 0
    return P


def exact_kl(P, Y: np.ndarray, block: int = 1024) -> float:
    """KL(P || Q) of the map ``Y`` with Q's normalisation summed over every pair (no tree):
    sum p log p - sum p log w + log sum w, w = 1 / (1 + |y_i - y_j|^2)."""
    Y = np.asarray(Y, dtype=np.float64)
    sq = (Y * Y).sum(1)
    total_w = -float(len(Y))  # the diagonal's w = 1, not a pair
    for s in range(0, len(Y), block):
        d2 = np.maximum(sq[s:s + block, None] - 2.0 * Y[s:s + block] @ Y.T + sq[None, :], 0.0)
        total_w += float((1.0 / (1.0 + d2)).sum())
    P = P.tocoo()
    d2_edges = ((Y[P.row] - Y[P.col]) ** 2).sum(1)
    return float((P.data * np.log(P.data)).sum() + (P.data * np.log1p(d2_edges)).sum() + np.log(total_w))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="coil100")
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fft", action="store_true", help="add openTSNE with FFT-interpolated gradients")
    ap.add_argument("--loose", action="store_true", help="add openTSNE with theta 1.0 and 250 iterations")
    a = ap.parse_args()
    ds = load_dataset(a.dataset, root=a.data_root)
    X = np.concatenate([l2_normalize(extract_features(ds, b, progress=False)) for b in OFFLINE_BACKBONES], axis=1)
    Z = PCA(50, random_state=0).fit_transform(X).astype(np.float32)
    print(f"# {a.dataset}: {len(Z)} points, PCA-50 of {X.shape[1]}-d, perplexity 30, seeds {a.seeds}, "
          f"{os.cpu_count()} cores ({cpu_label()})\n")
    print("| engine | seconds | trustworthiness (10 NN) | KL (exact, shared P) | speed-up vs sklearn |\n"
          "|---|---:|---:|---:|---:|")
    P = shared_affinities(Z, 30.0)
    rows = {}
    engines = {e: TSNE_ENGINES[e] for e in ("sklearn", "opentsne")}
    opentsne = TSNE_ENGINES["opentsne"]
    if a.fft:
        engines["opentsne (FFT gradients)"] = functools.partial(opentsne, negative_gradient_method="fft")
    if a.loose:
        engines["opentsne (theta 1.0, 250 iterations)"] = functools.partial(opentsne, theta=1.0, n_iter=250)
    for engine, embed in engines.items():
        secs, trust, kl = [], [], []
        for s in a.seeds:
            t0 = time.perf_counter()
            Y = embed(Z, 30.0, s)
            secs.append(time.perf_counter() - t0)
            trust.append(trustworthiness(Z, Y, n_neighbors=10))
            kl.append(exact_kl(P, Y))
        rows[engine] = (np.mean(secs), np.mean(trust), np.mean(kl))
    for engine, (sec, tr, div) in rows.items():
        print(f"| {engine} | {sec:.1f} | {tr:.4f} | {div:.3f} | {rows['sklearn'][0] / sec:.1f}x |")


if __name__ == "__main__":
    main()
