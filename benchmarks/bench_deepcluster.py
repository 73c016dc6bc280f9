"""DeepCluster's cost per epoch, split into extraction, clustering and training.

On N images of COIL-100 at 64 px (every k-th pose of each object, as notebook 06 takes
them), AlexNet-BN with Sobel, on the device ``--device`` picks (CPU here):

  paper     the reference settings: 4096-wide classifier, batches of 256, one pass per epoch
  cpu       the offline preset's settings (mvcpaper.presets): 1024-wide classifier, batches
            of 64, two passes per epoch (what makes the CPU run learn in 30 min)

Each is run for ``--epochs`` epochs; the table gives seconds per epoch (mean over the
epochs after the first, which includes warm-up) and training throughput (images seen / s).
Then the clustering step alone, as ratios against its slow variants in the same run, on
the 4096-d features of the network trained with the paper's settings: PCA-whitening by
full SVD vs randomised SVD (and the largest difference of the whitened features' Gram
matrices), k-means with the random start (reference) vs k-means++ (both in torch), and the
Lloyd steps by faiss (the CPU default) vs torch from the same random start.

Usage: python benchmarks/bench_deepcluster.py [--n 3600] [--epochs 3] [--k 300] [--device auto]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mvcpaper.cluster.deepcluster import DeepCluster, kmeans_pseudolabels, load_image_tensor, pca_whiten
from mvcpaper.data import load_dataset
from mvcpaper.deepcluster_study import _subset
from mvcpaper.presets import PRESETS

SETTINGS = {
    "paper": dict(fc_dim=4096, batch_size=256, lr=0.05, reassign=1.0, crop_scale=(0.2, 1.0)),
}


def _cpu_settings() -> dict:
    s = PRESETS["offline"]["deepcluster"]
    return dict(fc_dim=s.fc_dim, batch_size=s.batch_size, lr=s.lr, reassign=s.reassign, crop_scale=tuple(s.crop_scale))


def _timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--n", type=int, default=3600, help="images (every k-th pose of each object)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=300)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    if a.epochs < 2:
        ap.error("--epochs must be at least 2 (the first epoch is reported apart)")

    ds = _subset(load_dataset("coil100", root=a.data_root), a.n)
    images = load_image_tensor(ds, a.size, progress=False)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {a.device}")
    print(f"# data: {len(ds)} images of COIL-100 at {a.size}px, AlexNet-BN + Sobel, k={a.k}, {a.epochs} epochs, "
          f"seed 0\n")
    settings = {**SETTINGS, "cpu": _cpu_settings()}
    rows, trained = [], None
    for name, kw in settings.items():
        dc = DeepCluster(n_clusters=a.k, epochs=a.epochs, device=a.device, random_state=0, progress=False, **kw)
        dc.fit(images, ds.labels)
        h = dc.history_[1:]
        ext, clu, tr = (float(np.mean([r[key] for r in h])) for key in
                        ("seconds_extract", "seconds_cluster", "seconds_train"))
        seen = round(kw["reassign"] * len(ds))
        rows.append((name, kw, ext, clu, tr, dc.history_[0]["seconds"], seen / tr, dc.history_[-1]["nmi_true"]))
        if trained is None:  # the paper's 4096-wide features: where the PCA costs most
            trained = dc
    print("| settings | extract s | cluster s | train s | epoch s | first epoch s | train img/s | NMI last epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw, ext, clu, tr, first, ips, nmi_last in rows:
        print(f"| {name} ({kw['fc_dim']} fc, batch {kw['batch_size']}, {kw['reassign']:g} pass) | {ext:.1f} | "
              f"{clu:.2f} | {tr:.1f} | {ext + clu + tr:.1f} | {first:.1f} | {ips:.0f} | {nmi_last:.3f} |")

    # the clustering step alone, on the paper-settings network's 4096-d features
    feats = torch.as_tensor(trained.features(images))
    t_full, z_full = _timed(lambda: pca_whiten(feats, 256, svd="full"))
    t_rand, z_rand = _timed(lambda: pca_whiten(feats, 256, svd="randomized"))
    gram_diff = float((z_full @ z_full.T - z_rand @ z_rand.T).abs().max())
    t_rnd, (_, loss_rnd) = _timed(lambda: kmeans_pseudolabels(z_rand, a.k, 20, seed=0, engine="torch"))
    t_pp, (_, loss_pp) = _timed(lambda: kmeans_pseudolabels(z_rand, a.k, 20, seed=0, init="k-means++",
                                                            engine="torch"), repeat=1)
    t_faiss, (_, loss_faiss) = _timed(lambda: kmeans_pseudolabels(z_rand.cpu(), a.k, 20, seed=0, engine="faiss"))
    print(f"\n## clustering step ({len(ds)} x {feats.shape[1]} features -> 256 dims -> k={a.k})\n")
    print("| step | baseline s | ours s | speed-up | note |")
    print("|---|---|---|---|---|")
    print(f"| PCA-whitening | {t_full:.2f} (full SVD) | {t_rand:.2f} (randomised SVD) | {t_full / t_rand:.1f}x | "
          f"largest Gram difference {gram_diff:.1e} |")
    print(f"| k-means, 20 Lloyd steps | {t_pp:.2f} (k-means++ start) | {t_rnd:.2f} (random start) | "
          f"{t_pp / t_rnd:.1f}x | mean sq. distance {loss_pp:.3f} vs {loss_rnd:.3f} |")
    print(f"| k-means engine, 20 Lloyd steps, random start | {t_rnd:.2f} (torch, {z_rand.device.type}) | "
          f"{t_faiss:.2f} (faiss, cpu) | {t_rnd / t_faiss:.1f}x | mean sq. distance {loss_rnd:.3f} vs "
          f"{loss_faiss:.3f} |")


if __name__ == "__main__":
    main()
