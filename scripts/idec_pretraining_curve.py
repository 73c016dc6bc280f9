"""How IDEC's pretrained code clusters as its autoencoder trains (issue 12, item 3).

Usage::

    MVCPAPER_DATA=../shared/data python scripts/idec_pretraining_curve.py \
        --datasets umist coil100:4 coil100:72:10 [--steps 2000] [--every 100] [--seed 0]

Data set specs as in ``scripts/idec_vs_kmeans.py`` (``NAME:N`` keeps N images per class,
``NAME:N:C`` also only the first C classes); the views are the offline preset's cached
features (EfficientNet-Lite0/1/2, L2-normalised), concatenated (CC). The autoencoder is
IDEC's with its defaults (``d-500-500-2000-10``, Adam at IDEC's rate, IDEC's batch size,
IDEC's input scaling ``scale="rms"``), trained on reconstruction alone for ``--steps``
updates on 90% of the images; the other 10% are held out to tell a code that generalises
from one that memorises. Every ``--every`` updates it prints the reconstruction error
(mean square, scaled inputs) on both parts and the NMI of KMeans (faiss, IDEC's restarts)
on the code of every image, which is IDEC's start had pretraining stopped there. The
header gives the same for a linear code as wide (PCA fitted on the 90%) and KMeans on
the input itself.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch.nn import functional as F

from mvcpaper.cluster import IDEC
from mvcpaper.cluster.faiss_kmeans import faiss_kmeans
from mvcpaper.cluster.idec import MLPAutoencoder
from mvcpaper.data import parse_subset
from mvcpaper.metrics import nmi
from mvcpaper.presets import resolve


def kmeans_nmi(Z, labels, k: int, n_init: int, seed: int) -> float:
    return nmi(labels, faiss_kmeans(np.ascontiguousarray(Z), k, n_init=n_init, seed=seed)[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["umist", "coil100:4", "coil100:72:10"])
    ap.add_argument("--steps", type=int, default=2000, help="pretraining updates (IDEC's default: 1000)")
    ap.add_argument("--every", type=int, default=100, help="updates between two measurements")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for spec in args.datasets:
        name, options = parse_subset(spec)
        cfg = resolve("offline", datasets=[name])
        ds = cfg.load(name, **options)
        cc = np.concatenate(list(cfg.views(ds, progress=False).values()), axis=1)
        idec = IDEC(ds.n_classes)
        X = torch.as_tensor(cc / np.sqrt((cc ** 2).mean()), dtype=torch.float32)  # IDEC's scale="rms"
        gen = torch.Generator().manual_seed(args.seed)
        order = torch.randperm(len(X), generator=gen)
        held, train = order[:len(X) // 10], order[len(X) // 10:]
        score = dict(labels=ds.labels, k=ds.n_classes, n_init=idec.n_init, seed=args.seed)
        pca = PCA(idec.embed_dim, random_state=args.seed).fit(X[train].numpy())
        residual = ((X.numpy() - pca.inverse_transform(pca.transform(X.numpy()))) ** 2).mean(1)
        print(f"\n{spec}: {len(ds)} images, {ds.n_classes} classes. KMeans on the input "
              f"{kmeans_nmi(X.numpy(), **score):.3f}; PCA-{idec.embed_dim}: KMeans "
              f"{kmeans_nmi(pca.transform(X.numpy()), **score):.3f}, reconstruction "
              f"{residual[train].mean():.4f} trained on, {residual[held].mean():.4f} held out")
        print(f"  {'updates':>7s}  {'trained on':>10s}  {'held out':>8s}  KMeans on the code")
        torch.manual_seed(args.seed)
        model = MLPAutoencoder([X.shape[1], *idec.hidden, idec.embed_dim])
        opt = torch.optim.Adam(model.parameters(), lr=idec.lr)
        step, rows = 0, []
        while step < args.steps:
            batches = train[torch.randperm(len(train), generator=gen)].split(idec.batch_size)
            for idx in batches[:args.steps - step]:
                loss = F.mse_loss(model(X[idx])[1], X[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % args.every == 0:
                    with torch.no_grad():
                        z, x_hat = model(X)
                    error = ((x_hat - X) ** 2).mean(1)
                    rows.append((step, float(error[held].mean()), kmeans_nmi(z.numpy(), **score)))
                    print(f"  {step:7d}  {float(error[train].mean()):10.4f}  {rows[-1][1]:8.4f}  {rows[-1][2]:.3f}",
                          flush=True)
        best, lowest = max(rows, key=lambda r: r[2]), min(rows, key=lambda r: r[1])
        print(f"  best code at {best[0]} updates (NMI {best[2]:.3f}); lowest held-out error at {lowest[0]} "
              f"(NMI {lowest[2]:.3f})")


if __name__ == "__main__":
    main()
