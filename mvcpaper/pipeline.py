"""The steps behind each notebook: notebooks only pick parameters, call these, display.

Every step writes what it makes under ``out_dir`` (``tables/*.csv|md``,
``figures/*.png``) atomically and returns the objects to display.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .experiments import records_frame, run_methods, save_records
from .features import get_backbone
from .plots import plot_embeddings, sample_grid, save_figure, tsne
from .presets import RunConfig
from .tables import baseline_table, save_table, table1

__all__ = ["datasets_step", "features_step", "fig3_step", "baselines_step"]


def _views_note(cfg: RunConfig) -> str:
    return (f"Views: {cfg.views_label} (preset `{cfg.preset}`). The paper used VGG16, VGG19, InceptionV3, "
            "Xception and ResNet50." + "".join(f" Note: {n}." for n in cfg.notes))


def datasets_step(cfg: RunConfig, out_dir, seed: int = 0):
    """Table 1 (with the paper's values) and a grid of sample images per data set."""
    out = Path(out_dir)
    datasets = [cfg.load(n) for n in cfg.datasets]
    t1 = table1(datasets)
    save_table(t1, "table1", out / "tables", note="Table 1: data sets (reproduced beside the paper's values).")
    figs = {}
    for ds in datasets:
        figs[ds.name] = fig = sample_grid(ds, seed=seed)
        save_figure(fig, out / "figures" / f"samples_{ds.name}.png")
    return t1, figs


def features_step(cfg: RunConfig, progress: bool = True) -> pd.DataFrame:
    """Extract (or load from the cache) every view of every data set; a summary table."""
    import time

    from .features import feature_cache_path, resolve_weights

    rows = []
    for name in cfg.datasets:
        ds = cfg.load(name)
        for b in cfg.backbones:
            t0 = time.perf_counter()
            X = cfg.features(ds, b, progress=progress)
            src = resolve_weights(b)
            spec = get_backbone(b)
            rows.append({"dataset": name, "backbone": b, "images": X.shape[0], "dim": X.shape[1],
                         "layer": spec.default_layer, "input": cfg.input_size or spec.input_size,
                         "weights": src.kind, "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows)


def fig3_step(cfg: RunConfig, out_dir, seed: int = 0, n_views: int = 3):
    """Fig. 3: t-SNE of three views of COIL-100 (or the run's first data set), by class."""
    ds = cfg.load(cfg.tsne_dataset)
    panels = {}
    for b in cfg.backbones[:n_views]:
        X = cfg.features(ds, b, normalize=True, progress=False)
        panels[b] = (tsne(X, seed=seed, cache_dir=cfg.cache_dir), ds.labels)
    fig = plot_embeddings(panels, title=f"t-SNE of {ds.name} features, coloured by class ({len(ds)} images)")
    save_figure(fig, Path(out_dir) / "figures" / "fig3_tsne.png")
    return fig


def baselines_step(cfg: RunConfig, out_dir, progress: bool = True):
    """KMeans and Ward agglomerative on every L2-normalised view: records and an NMI table."""
    out = Path(out_dir)
    records = []
    for name in cfg.datasets:
        ds = cfg.load(name)
        views = cfg.views(ds, progress=progress)
        records += run_methods(name, views, ds.labels, cfg.methods, seeds=cfg.seeds, device=cfg.device,
                               preset=cfg.preset, progress=progress)
    df = records_frame(records)
    save_records(df, out / "tables" / "baselines_records.csv")
    tables = {}
    for metric in ("nmi", "acc", "ari"):
        tables[metric] = baseline_table(df, metric)
        save_table(tables[metric], f"baselines_{metric}", out / "tables",
                   note=f"KM and AC (Ward) {metric.upper()} on each view, mean ± std over seeds {cfg.seeds} "
                        f"(AC is deterministic: one run). {_views_note(cfg)}")
    return df, tables
