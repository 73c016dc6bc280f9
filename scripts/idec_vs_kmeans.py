"""IDEC and DMVC-fix (IDEC) against KMeans on the same input, over seeds (issue 12, item 3).

Usage::

    MVCPAPER_DATA=../shared/data python scripts/idec_vs_kmeans.py --datasets umist coil100:18 \
        [--rows CC DMVC-fix] [--seeds 0 1 2] [--set max_steps=200 pretrain_steps=300]

``NAME:N`` keeps at most N images per class (evenly spaced; ``coil100:18``: 1800 images,
100 classes); ``NAME:N:C`` also keeps only the first C classes (``coil100:72:10``: 10
objects). The offline preset's cached features (EfficientNet-Lite0/1/2, L2-normalised) are
the views. Rows: each view and CC under IDEC, and DMVC-fix (IDEC) on the three views.
Per row and seed it prints KMeans on the row's input (CC for DMVC-fix), KMeans on that
input's first ``embed_dim`` principal components (a linear bottleneck as wide as IDEC's
embedding), IDEC's start (KMeans on the pretrained embedding), its final NMI, and the NMI
logged at every target update (a sample of them); then the means over seeds. IDEC's
settings are notebook 04's (the offline preset's), changed by ``--set`` (values read as
Python literals). Fits go through the fit cache (``$MVCPAPER_CACHE``) with notebook 04's
keys, so after ``mvcpaper reproduce --preset offline`` the whole sets' rows are read, not
refitted; the start is the NMI logged at the first target update (KMeans on the pretrained
embedding).
"""
from __future__ import annotations

import argparse
import ast

import numpy as np
from sklearn.decomposition import PCA

from mvcpaper.cluster import make_method
from mvcpaper.data import parse_subset
from mvcpaper.experiments import fit_cached
from mvcpaper.metrics import nmi
from mvcpaper.pipeline import feature_key
from mvcpaper.presets import resolve


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["umist"])
    ap.add_argument("--rows", nargs="+", default=["CC", "DMVC-fix"],
                    help="view names, CC and/or DMVC-fix (default: CC DMVC-fix)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="IDEC parameters, e.g. pretrain_steps=300 max_steps=200 embed_dim=32")
    args = ap.parse_args()
    params = {}
    for item in args.set:
        name, _, value = item.partition("=")
        params[name] = ast.literal_eval(value)
    for spec in args.datasets:
        name, options = parse_subset(spec)
        cfg = resolve("offline", datasets=[name])
        ds = cfg.load(name, **options)
        views = cfg.views(ds, progress=False)
        cc = np.concatenate(list(views.values()), axis=1)
        print(f"\n{spec}: {len(ds)} images, {ds.n_classes} classes; IDEC settings: the offline preset's "
              f"{cfg.params('idec') or ''}, then {params or 'nothing'} changed")
        baselines = {}  # (KMeans input, seed, width) -> KMeans NMI on it and on its PCA: CC's serve both CC rows
        for row in args.rows:
            if row == "DMVC-fix":  # KMeans on the concatenation: the baseline DMVC-fix must beat
                method, X, km_name = "dmvc_idec", list(views.values()), "CC"
            else:
                method, X, km_name = "idec", cc if row == "CC" else views[row], row
            km_input = cc if km_name == "CC" else X
            res = []
            for seed in args.seeds:
                est = make_method(method, ds.n_classes, seed=seed, progress=False, **{**cfg.params(method), **params})
                fit = fit_cached(est, X, {**feature_key(cfg, ds), "input": row}, cache_dir=cfg.cache_dir, y=ds.labels)
                key = (km_name, seed, est.embed_dim)
                if key not in baselines:
                    pca = PCA(est.embed_dim, random_state=seed).fit_transform(km_input)
                    baselines[key] = tuple(nmi(ds.labels, make_method("kmeans", ds.n_classes, seed=seed).fit_predict(Z))
                                           for Z in (km_input, pca))
                km, km_pca = baselines[key]
                logged = [h["nmi"] for h in fit["history"] if "nmi" in h]
                start, final, secs = logged[0], nmi(ds.labels, fit["labels"]), fit["seconds"]
                res.append((km, km_pca, start, final, secs))
                print(f"  {row:18s} seed {seed}: KMeans {km:.3f}, on PCA-{est.embed_dim} {km_pca:.3f} | "
                      f"start {start:.3f} -> final {final:.3f} "
                      f"({len(fit['history'])} epochs, {secs:.0f} s{', cached' if fit['cached'] else ''}) | logged "
                      f"{' '.join(f'{x:.2f}' for x in logged[::max(1, len(logged) // 8)])}", flush=True)
            r = np.array(res)
            print(f"  {row:18s} mean: KMeans {r[:, 0].mean():.3f}, on PCA {r[:, 1].mean():.3f} | start "
                  f"{r[:, 2].mean():.3f} ± {r[:, 2].std():.3f} -> final {r[:, 3].mean():.3f} ± {r[:, 3].std():.3f} | "
                  f"{r[:, 4].mean():.0f} s/fit", flush=True)


if __name__ == "__main__":
    main()
