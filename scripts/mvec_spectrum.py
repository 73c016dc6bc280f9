"""Is the spectral step of Tao's MVEC well posed on Table 2's partitions?

Usage::

    MVCPAPER_DATA=../shared/data python scripts/mvec_spectrum.py [--datasets umist coil100] \
        [--framework jule] [--seeds 0 1 2]

For every data set and seed it takes Table 2's base partitions (the framework's fit on each
view, with notebook 04's settings, through the fit cache, so after ``mvcpaper reproduce
--preset offline`` nothing is refitted), builds ``mvec_tao``'s consensus and prints: the
micro-clusters, the k-th and (k+1)-th eigenvalues of its normalised affinity (spectral
clustering keeps the k leading eigenvectors), the NMI, and the NMI range when the affinity
is perturbed by 1e-12 of its largest entry (five draws). A k-th eigenvalue equal to the
(k+1)-th (both 1: the consensus graph falls apart into more pieces than clusters) leaves the
embedding undetermined: which k eigenvectors of the shared eigenspace span it, and so the
labels, is decided by rounding, and a rerun on another CPU may give other labels.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import linalg

from mvcpaper.cluster import make_method
from mvcpaper.cluster.ensemble import block_spectral_clustering
from mvcpaper.experiments import fit_cached
from mvcpaper.metrics import nmi
from mvcpaper.pipeline import feature_key
from mvcpaper.presets import resolve


def leading_eigenvalues(W: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    """The k+1 largest eigenvalues of the normalised affinity spectral clustering embeds
    (the block form of :func:`mvcpaper.cluster.ensemble.block_spectral_clustering`)."""
    degree = W @ sizes - np.diag(W)
    scale = np.sqrt(sizes / np.where(degree > 0, degree, 1.0))
    reduced = scale[:, None] * W * scale[None, :] - np.diag(np.diag(W) / np.where(degree > 0, degree, 1.0))
    return linalg.eigvalsh(reduced, subset_by_index=[len(sizes) - k - 1, len(sizes) - 1])[::-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["umist", "coil100"])
    ap.add_argument("--framework", default="jule", choices=["jule", "idec"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    for name in args.datasets:
        cfg = resolve("offline", datasets=[name])
        ds = cfg.load(name)
        views, key, k = cfg.views(ds, progress=False), feature_key(cfg, ds), ds.n_classes
        print(f"\n{name}: {len(ds)} images, {k} classes; base partitions: {args.framework} on each view")
        for seed in args.seeds:
            parts = []
            for view, X in views.items():
                est = make_method(args.framework, k, seed=seed, progress=False, **cfg.params(args.framework))
                parts.append(fit_cached(est, X, {**key, "input": view}, cache_dir=cfg.cache_dir, y=ds.labels)["labels"])
            mvec = make_method("mvec_tao", k, seed=seed, progress=False)
            labels = mvec.consensus([[p] for p in parts])
            if mvec.consensus_ is None:
                print(f"  seed {seed}: no more micro-clusters than clusters; NMI {nmi(ds.labels, labels):.4f}")
                continue
            sizes = np.bincount(mvec.groups_).astype(float)
            W = np.clip((mvec.consensus_ + mvec.consensus_.T) / 2, 0, None)
            vals = leading_eigenvalues(W, sizes, k)
            rng = np.random.default_rng(seed)
            moved = []
            for _ in range(5):
                noise = rng.standard_normal(W.shape)
                W2 = np.clip(W + 1e-12 * W.max() * (noise + noise.T) / 2, 0, None)
                moved.append(nmi(ds.labels, block_spectral_clustering(W2, sizes, k)[mvec.groups_]))
            print(f"  seed {seed}: {len(sizes)} micro-clusters; eigenvalues k, k+1: "
                  f"{vals[k - 1]:.9f} {vals[k]:.9f}; NMI {nmi(ds.labels, labels):.4f}, perturbed "
                  f"{min(moved):.4f}-{max(moved):.4f}", flush=True)


if __name__ == "__main__":
    main()
