"""openTSNE (FFT-accelerated gradients) against scikit-learn's TSNE (Barnes-Hut) on COIL-100.

Both embed the same input (the L2-normalised EfficientNet-Lite views concatenated, PCA to
50 dimensions, as :func:`mvcpaper.plots.tsne` does) with the same perplexity, PCA
initialisation and seed; the quality measure is scikit-learn's trustworthiness with 10
neighbours, computed against the 50-d input. One engine at a time, nothing else running.
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
from mvcpaper.plots import TSNE_ENGINES
from mvcpaper.preprocessing import l2_normalize


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
    print("| engine | seconds | trustworthiness (10 NN) | speed-up vs sklearn |\n|---|---:|---:|---:|")
    rows = {}
    engines = {e: TSNE_ENGINES[e] for e in ("sklearn", "opentsne")}
    opentsne = TSNE_ENGINES["opentsne"]
    if a.fft:
        engines["opentsne (FFT gradients)"] = functools.partial(opentsne, negative_gradient_method="fft")
    if a.loose:
        engines["opentsne (theta 1.0, 250 iterations)"] = functools.partial(opentsne, theta=1.0, n_iter=250)
    for engine, embed in engines.items():
        secs, trust = [], []
        for s in a.seeds:
            t0 = time.perf_counter()
            Y = embed(Z, 30.0, s)
            secs.append(time.perf_counter() - t0)
            trust.append(trustworthiness(Z, Y, n_neighbors=10))
        rows[engine] = (np.mean(secs), np.mean(trust))
    for engine, (sec, tr) in rows.items():
        print(f"| {engine} | {sec:.1f} | {tr:.4f} | {rows['sklearn'][0] / sec:.1f}x |")


if __name__ == "__main__":
    main()
