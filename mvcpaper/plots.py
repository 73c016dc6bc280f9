"""Static figures (matplotlib/seaborn): sample grids and t-SNE maps of feature views."""
from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from openTSNE import TSNE as OpenTSNE
from openTSNE.affinity import PerplexityBasedNN
from openTSNE.nearest_neighbors import PrecomputedNeighbors
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from ._utils import atomic_path
from .cache import code_stamp, entry_path, load_array, save_array, stable_hash
from .cluster.neighbours import nearest_neighbours
from .errors import UnknownNameError

__all__ = ["tsne", "tsne_affinities", "TSNE_ENGINES", "plot_embeddings", "plot_periods", "sample_grid", "save_figure",
           "class_palette"]


def tsne_affinities(Z: np.ndarray, perplexity: float, seed: int | None = None) -> PerplexityBasedNN:
    """openTSNE's perplexity-calibrated affinities of ``Z`` on the 3 x perplexity nearest
    neighbours found by faiss (exact up to 20,000 rows, as every graph of the package), not
    openTSNE's Annoy: 0.2 s instead of 2 s on COIL-100."""
    d2, idx = nearest_neighbours(Z, min(int(3 * perplexity), len(Z) - 1))
    return PerplexityBasedNN(perplexity=perplexity, knn_index=PrecomputedNeighbors(idx, np.sqrt(d2)), n_jobs=-1,
                             random_state=seed)


def _opentsne(Z: np.ndarray, perplexity: float, seed: int, **options) -> np.ndarray:
    # gradients: openTSNE's own choice by size, Barnes-Hut below 10,000 points and
    # FFT-interpolated (Linderman et al. 2019) above; all cores; ``options``: other openTSNE
    # settings (benchmarks only; the figures use openTSNE's defaults)
    return np.asarray(OpenTSNE(2, initialization="pca", random_state=seed, n_jobs=-1, verbose=False,
                               **options).fit(Z, affinities=tsne_affinities(Z, perplexity, seed)), dtype=np.float32)


def _sklearn_tsne(Z: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z).astype(np.float32)


#: name -> embed(Z, perplexity, seed): openTSNE (the default) and scikit-learn's Barnes-Hut
#: t-SNE for comparison (``benchmarks/bench_tsne.py``)
TSNE_ENGINES = {"opentsne": _opentsne, "sklearn": _sklearn_tsne}


def tsne(X: np.ndarray, seed: int = 0, perplexity: float = 30.0, pca_dims: int = 50, cache_dir=None,
         use_cache: bool = True, engine: str = "opentsne") -> np.ndarray:
    """2-D t-SNE of ``X`` (PCA to ``pca_dims`` first) by ``engine`` (``TSNE_ENGINES``),
    cached on disk by content, settings, engine and the engine's code."""
    if engine not in TSNE_ENGINES:
        raise UnknownNameError("t-SNE engine", engine, TSNE_ENGINES)
    X = np.asarray(X, dtype=np.float32)
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()
    key = stable_hash({"x": digest, "shape": X.shape, "seed": seed, "perplexity": perplexity, "pca": pca_dims,
                       "engine": engine, "code": code_stamp(TSNE_ENGINES[engine])})
    path = entry_path("tsne", f"{key}.npy", cache_dir=cache_dir)
    if use_cache:
        Y = load_array(path, rows=len(X))
        if Y is not None:
            return Y
    Z = X
    if pca_dims and X.shape[1] > pca_dims and X.shape[0] > pca_dims:
        Z = PCA(pca_dims, random_state=seed).fit_transform(X)
    perp = min(perplexity, max(2.0, (X.shape[0] - 1) / 3))
    Y = TSNE_ENGINES[engine](np.ascontiguousarray(Z, dtype=np.float32), perp, seed)
    if use_cache:
        save_array(path, Y)
    return Y


def class_palette(n: int):
    """Distinct colours for n classes (husl for many classes, tab10/20 for few)."""
    if n <= 10:
        return sns.color_palette("tab10", n)
    if n <= 20:
        return sns.color_palette("tab20", n)
    return sns.color_palette("husl", n)


def plot_embeddings(panels: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "", ncols: int | None = None,
                    point_size: float = 4.0):
    """One scatter per panel: ``{panel title: (Y (n, 2), labels (n,))}``, coloured by label."""
    n = len(panels)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (name, (Y, lab)) in zip(axes.ravel(), panels.items()):
        lab = np.asarray(lab)
        classes = np.unique(lab)
        pal = class_palette(len(classes))
        colors = np.array(pal)[np.searchsorted(classes, lab)]
        ax.scatter(Y[:, 0], Y[:, 1], c=colors, s=point_size, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_periods(periods, title: str = ""):
    """NMI after each period of JULE's recurrent process, one panel per data set, one line
    per row (e.g. CC and DMVC-fix), mean ± sd over seeds; the top axis gives the clusters
    left after each period."""
    datasets = list(dict.fromkeys(periods["dataset"]))
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.2 * max(1, len(datasets)), 3.8), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        sub = periods[periods["dataset"] == name]
        sns.lineplot(data=sub, x="period", y="nmi", hue="views", marker="o", errorbar="sd", ax=ax)
        ax.set_title(name)
        ax.set_xlabel("period")
        ax.set_ylabel("NMI with the classes")
        ticks = sub.groupby("period")["clusters"].first()
        top = ax.secondary_xaxis("top")
        top.set_xticks(list(ticks.index))
        top.set_xticklabels([str(c) for c in ticks.values], fontsize=7)
        top.set_xlabel("clusters after the period", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sample_grid(dataset, n_classes: int = 10, per_class: int = 6, seed: int = 0):
    """A grid of images: ``n_classes`` rows (evenly spread classes), ``per_class`` columns."""
    rng = np.random.default_rng(seed)
    classes = np.unique(dataset.labels)
    rows = classes[np.linspace(0, len(classes) - 1, min(n_classes, len(classes))).round().astype(int)]
    fig, axes = plt.subplots(len(rows), per_class, figsize=(1.3 * per_class, 1.3 * len(rows)), squeeze=False)
    for r, c in enumerate(rows):
        idx = np.flatnonzero(dataset.labels == c)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        for j, ax in enumerate(axes[r]):
            ax.axis("off")
            if j < len(pick):
                ax.imshow(dataset.load_image(int(pick[j])))
        axes[r][0].set_title(str(dataset.class_names[c])[:14], fontsize=7, loc="left")
    fig.suptitle(f"{dataset.name}: {len(dataset)} images, {dataset.n_classes} classes", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 150) -> Path:
    """Save a figure atomically (PNG by default)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path
