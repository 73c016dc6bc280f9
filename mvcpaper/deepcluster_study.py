"""DeepCluster's study at small scale: the runs, the layer study and the figures of notebook 06.

:func:`deepcluster_step` trains DeepCluster over the run's seeds (checkpointed under the
cache, so an interrupted notebook resumes), then compares the trained network with
its own random initialisation: KMeans NMI (true number of classes) and linear-probe
accuracy of every conv layer's frozen features, nearest neighbours of a few query
images and the top-activating images of a few filters. A second, shorter sweep
measures the final quality against k. Everything it makes goes under ``out_dir``
(``tables/deepcluster_*.csv|md``, ``figures/dc_*.png``).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .cache import entry_path, stable_hash
from .cluster.deepcluster import (
    DeepCluster,
    distributed,
    layer_study,
    load_image_tensor,
    nearest_neighbours,
    top_activating,
)
from .experiments import save_records
from .metrics import nmi
from .plots import save_figure
from .presets import DeepClusterSettings
from .tables import fmt_mean_std, save_table

__all__ = ["deepcluster_step", "train_deepcluster", "plot_history", "plot_k_sweep", "plot_layer_study",
           "plot_image_rows", "layer_table"]


def _subset(ds, max_images: int | None):
    """Every ``step``-th image of each class, so that at most ``max_images`` remain."""
    if not max_images or len(ds) <= max_images:
        return ds
    step = int(np.ceil(len(ds) / max_images))
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[::step] for c in np.unique(ds.labels)])
    return ds.subset(np.sort(keep), name=f"{ds.name}-every{step}")


def _checkpoint_dir(cfg, ds, s: DeepClusterSettings, k: int, epochs: int, seed: int) -> Path:
    key = {"dataset": ds.name, "fingerprint": ds.fingerprint(), "arch": s.arch, "size": s.input_size, "k": k,
           "sobel": s.sobel, "clusterer": s.clusterer, "fc": s.fc_dim, "batch": s.batch_size, "lr": s.lr,
           "reassign": s.reassign, "crop": list(s.crop_scale), "epochs": epochs, "seed": seed}
    return entry_path("deepcluster", f"{ds.name}-{s.arch}-k{k}-s{seed}-{stable_hash(key, 10)}", cache_dir=cfg.cache_dir)


def _estimator(s: DeepClusterSettings, k: int, epochs: int, seed: int, device: str, progress: bool,
               checkpoint_dir) -> DeepCluster:
    return DeepCluster(n_clusters=k, arch=s.arch, input_size=s.input_size, sobel=s.sobel, clusterer=s.clusterer,
                       epochs=epochs, fc_dim=s.fc_dim, batch_size=s.batch_size, lr=s.lr, reassign=s.reassign,
                       crop_scale=tuple(s.crop_scale), device=device, random_state=seed, progress=progress,
                       checkpoint_dir=checkpoint_dir)


def _fit(cfg, ds, images, s: DeepClusterSettings, k: int, epochs: int, seed: int, progress: bool):
    dc = _estimator(s, k, epochs, seed, cfg.device, progress, _checkpoint_dir(cfg, ds, s, k, epochs, seed))
    return dc.fit(images, ds.labels)


def train_deepcluster(dataset, out_dir, settings: DeepClusterSettings | None = None, device: str = "auto",
                      seed: int = 0, progress: bool = True) -> DeepCluster:
    """Train DeepCluster on ``dataset`` (labels, when it has them, are only logged) and write
    ``out_dir/history.csv`` (per epoch) and ``out_dir/assignments.csv`` (``index, cluster``,
    and ``label`` when known); checkpoints in ``out_dir/checkpoint`` (a rerun resumes).

    Under ``torchrun`` it runs data parallel (call
    :func:`mvcpaper.cluster.deepcluster.init_from_env` first; see :class:`DeepCluster`),
    and only rank 0 writes. ``settings``: :class:`DeepClusterSettings` (k by its
    :meth:`~DeepClusterSettings.resolved_k`).
    """
    s = settings or DeepClusterSettings()
    out = Path(out_dir)
    dc = _estimator(s, s.resolved_k(dataset.n_classes, len(dataset)), s.epochs, seed, device, progress,
                    out / "checkpoint")
    dc.fit(load_image_tensor(dataset, s.input_size, progress=progress and distributed.world()[0] == 0),
           dataset.labels)
    if distributed.world()[0] == 0:
        save_records([{**h, "processes": distributed.world()[1]} for h in dc.history_], out / "history.csv")
        rows = pd.DataFrame({"index": np.arange(len(dataset)), "cluster": dc.labels_})
        if dataset.labels is not None:
            rows["label"] = dataset.labels
        save_records(rows, out / "assignments.csv")
    return dc


def deepcluster_step(cfg, out_dir, settings: DeepClusterSettings | None = None, progress: bool = True, **overrides):
    """Run DeepCluster's study; return ``(results dict, figures dict)``.

    ``results``: ``history`` (per seed and epoch), ``layers`` (per seed, network and
    conv layer: KMeans NMI and probe accuracy), ``layer_table`` (mean ± std),
    ``k_sweep``; ``figures``: ``history``, ``k``, ``layers``, ``neighbours``, ``filters``.
    """
    s = replace(settings or cfg.deepcluster, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(out_dir)
    name = s.dataset or ("coil100" if "coil100" in cfg.datasets else cfg.datasets[0])
    ds = _subset(cfg.load(name), s.max_images)
    y = ds.labels
    images = load_image_tensor(ds, s.input_size, progress=progress)
    k = s.resolved_k(ds.n_classes, len(ds))
    setting = (f"{ds.name} ({len(ds)} images, {ds.n_classes} classes), {s.arch} at {s.input_size}px, "
               f"Sobel {'on' if s.sobel else 'off'}, {s.clusterer}, k={k}, {s.epochs} epochs")
    history, layers, runs = [], [], {}
    for seed in cfg.seeds:
        dc = _fit(cfg, ds, images, s, k, s.epochs, seed, progress)
        runs[seed] = dc
        history += [{"seed": seed, **h} for h in dc.history_]
        for net_name, net in (("trained", dc.model_), ("random", dc.random_network())):
            layers += [{"seed": seed, "network": net_name, **r} for r in layer_study(net, images, y, seed=seed)]
    history, layers = pd.DataFrame(history), pd.DataFrame(layers)
    sweep = []
    for kk in s.resolved_k_values(ds.n_classes, len(ds)):
        seed = cfg.seeds[0]
        dc = _fit(cfg, ds, images, s, kk, s.k_epochs, seed, progress)
        study = layer_study(dc.model_, images, y, seed=seed, probe=False)
        best = max(study, key=lambda r: r["kmeans_nmi"])
        sweep.append({"k": kk, "seed": seed, "epochs": s.k_epochs, "nmi_pseudo_true": nmi(y, dc.labels_),
                      "best_conv_kmeans_nmi": best["kmeans_nmi"], "best_conv_layer": best["layer"],
                      "last_conv_kmeans_nmi": study[-1]["kmeans_nmi"]})
    sweep = pd.DataFrame(sweep)
    save_records(history, out / "tables" / "deepcluster_history.csv")
    save_records(layers, out / "tables" / "deepcluster_layers_records.csv")
    save_records(sweep, out / "tables" / "deepcluster_k.csv")
    table = layer_table(layers)
    save_table(table, "deepcluster_layers", out / "tables",
               note=f"DeepCluster, {setting}: per conv layer, KMeans NMI (true k) and linear-probe test accuracy "
                    f"(logistic regression, stratified half split) of the trained network and of its random "
                    f"initialisation, mean ± std over seeds {list(cfg.seeds)}.")
    # qualitative figures from the first seed
    dc = runs[cfg.seeds[0]]
    rng = np.random.default_rng(0)
    queries = rng.choice(len(ds), size=min(4, len(ds)), replace=False)
    nets = {"random": dc.random_network(), "trained": dc.model_}
    found = {name: nearest_neighbours(net, images, queries, n=6) for name, net in nets.items()}
    rows, titles = [], []
    for i, q in enumerate(queries):  # each query: the random network's row, then the trained one's
        for net_name, nn_idx in found.items():
            rows.append([q, *nn_idx[i]])
            titles.append(f"{net_name}: query {q}, same class {int((y[nn_idx[i]] == y[q]).sum())}/6")
    layer_idx = len(layers["layer"].unique()) - 1
    n_filters = dc.model_.feature_shape[0]  # the last conv layer's channels
    filters = rng.choice(n_filters, size=min(6, n_filters), replace=False)
    top = top_activating(dc.model_, images, layer_idx, filters, n=8)
    figs = {
        "history": plot_history(history, setting),
        "k": plot_k_sweep(sweep, setting),
        "layers": plot_layer_study(layers, setting),
        "neighbours": plot_image_rows(images, rows, titles, "Nearest neighbours (last conv layer, cosine): "
                                                              "random vs trained network, first image = query"),
        "filters": plot_image_rows(images, top.tolist(), [f"conv{layer_idx + 1} filter {f}" for f in filters],
                                   "Top-activating images of some filters of the trained network's last conv layer"),
    }
    for key, fig in figs.items():
        save_figure(fig, out / "figures" / f"dc_{key}.png")
    return {"history": history, "layers": layers, "layer_table": table, "k_sweep": sweep, "setting": setting}, figs


def layer_table(layers: pd.DataFrame) -> pd.DataFrame:
    """Rows = conv layers; columns = KMeans NMI and probe accuracy, trained vs random (mean ± std)."""
    cols = {}
    for metric, label in (("kmeans_nmi", "KMeans NMI"), ("probe_test_acc", "probe acc.")):
        if metric not in layers:
            continue
        for net in ("trained", "random"):
            sub = layers[layers["network"] == net]
            cols[f"{label} ({net})"] = sub.groupby("layer", sort=False)[metric].apply(fmt_mean_std)
    t = pd.DataFrame(cols)
    t.index.name = "layer"
    return t


# ----------------------------------------------------------------------------- figures

def plot_history(history: pd.DataFrame, title: str = ""):
    """(a) NMI(pseudo-labels, true labels) per epoch; (b) NMI between consecutive epochs; loss."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, col, label in zip(axes, ("nmi_true", "nmi_prev", "loss"),
                              ("NMI(clusters, true classes)", "NMI(epoch t-1, epoch t)", "training loss")):
        data = history.dropna(subset=[col])
        if len(data):
            sns.lineplot(data=data, x="epoch", y=col, marker="o", errorbar="sd", ax=ax)
        ax.set_ylabel(label)
        ax.set_xlabel("epoch")
    axes[0].set_title("(a) cluster quality")
    axes[1].set_title("(b) stability of the assignment")
    axes[2].set_title("loss (mean ± sd over seeds)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_k_sweep(sweep: pd.DataFrame, title: str = ""):
    """(c) final quality against k."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(sweep["k"], sweep["best_conv_kmeans_nmi"], "o-", label="KMeans NMI, best conv layer (true k)")
    ax.plot(sweep["k"], sweep["last_conv_kmeans_nmi"], "^:", label="KMeans NMI, last conv layer (true k)")
    ax.plot(sweep["k"], sweep["nmi_pseudo_true"], "s--", label="NMI(final clusters, classes)")
    ax.set_xscale("log")
    ax.set_xlabel("k (pseudo-classes)")
    ax.set_ylabel("NMI")
    ax.set_title("(c) effect of k")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_layer_study(layers: pd.DataFrame, title: str = ""):
    """Per conv layer: KMeans NMI and linear-probe accuracy, trained vs random network."""
    metrics = [m for m in ("kmeans_nmi", "probe_test_acc") if m in layers]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.barplot(data=layers, x="layer", y=m, hue="network", errorbar="sd", ax=ax)
        ax.set_ylabel({"kmeans_nmi": "KMeans NMI (true k)", "probe_test_acc": "linear probe accuracy"}[m])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_image_rows(images, rows, titles, title: str = ""):
    """A grid of images from a uint8 (n, 3, H, W) tensor: one row per list of indices."""
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.2 * ncol, 1.35 * len(rows)), squeeze=False)
    for r, (idx, t) in enumerate(zip(rows, titles)):
        for j, ax in enumerate(axes[r]):
            ax.axis("off")
            if j < len(idx):
                ax.imshow(images[int(idx[j])].permute(1, 2, 0).numpy())
        axes[r][0].set_title(t, fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
