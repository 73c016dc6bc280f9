"""The steps behind each notebook: notebooks only pick parameters, call these, display.

Every step writes what it makes under ``out_dir`` (``tables/*.csv|md``,
``figures/*.png``) atomically and returns the objects to display.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import resolve_device, tqdm
from .cluster import make_method
from .cluster.multiview import finetune_cut
from .experiments import consensus_cached, fit_cached, records_frame, run_methods, save_records
from .features import extract_features, get_backbone, resolve_weights
from .metrics import evaluate
from .plots import plot_embeddings, plot_periods, sample_grid, save_figure, tsne
from .presets import RunConfig
from .tables import baseline_table, save_table, table1, table2, table3

__all__ = ["datasets_step", "features_step", "fig3_step", "baselines_step", "multiview_step",
           "representations_step", "feature_key", "dmvc_maps", "table3_view"]


def _views_note(cfg: RunConfig) -> str:
    return (f"Views: {cfg.views_label} (preset `{cfg.preset}`). The paper used VGG16, VGG19, InceptionV3, "
            "Xception and ResNet50." + "".join(f" Note: {n}." for n in cfg.notes))


def datasets_step(cfg: RunConfig, out_dir):
    """Table 1 (with the paper's values) and a grid of sample images per data set (drawn with
    the run's first seed)."""
    out = Path(out_dir)
    datasets = [cfg.load(n) for n in cfg.datasets]
    t1 = table1(datasets)
    save_table(t1, "table1", out / "tables", note="Table 1: data sets (reproduced beside the paper's values).")
    figs = {}
    for ds in datasets:
        figs[ds.name] = fig = sample_grid(ds, seed=cfg.seeds[0])
        save_figure(fig, out / "figures" / f"samples_{ds.name}.png")
    return t1, figs


def features_step(cfg: RunConfig, progress: bool = True) -> pd.DataFrame:
    """Extract (or load from the cache) every view of every data set; a summary table."""
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


def fig3_step(cfg: RunConfig, out_dir, n_views: int = 3):
    """Fig. 3: t-SNE (the run's first seed) of three views of COIL-100 (or the run's first data
    set), by class."""
    ds = cfg.load(cfg.tsne_dataset)
    panels = {}
    for b in cfg.backbones[:n_views]:
        X = cfg.features(ds, b, normalize=True, progress=False)
        panels[b] = (tsne(X, seed=cfg.seeds[0], cache_dir=cfg.cache_dir), ds.labels)
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


# --------------------------------------------------------------------------- Tables 2 and 3
#: framework -> (single-view method, DMVC-fix method); DMVC (fine-tuned) exists under JULE only
FRAMEWORKS = {"jule": ("jule", "dmvc_jule"), "idec": ("idec", "dmvc_idec")}


def feature_key(cfg: RunConfig, ds) -> dict:
    """What a fit's input is, for the fit cache: the data set's content and each view's weights."""
    return {"dataset": ds.name, "fingerprint": ds.fingerprint(), "input_size": cfg.input_size,
            "features": {b: resolve_weights(b).weights_id for b in cfg.backbones}, "normalized": True}


def _fit(cfg: RunConfig, method: str, X, k: int, seed: int, key: dict, y, **extra) -> dict:
    """A fit through the cache; ``y`` is only logged by the methods that log (JULE: NMI per period)."""
    est = make_method(method, n_clusters=k, seed=seed, device=cfg.device, progress=False,
                      **{**cfg.params(method), **extra})
    return fit_cached(est, X, key, cache_dir=cfg.cache_dir, y=y)


def _record(cfg, ds, row, framework, seed, k, result, labels_true) -> dict:
    return {"dataset": ds.name, "views": row, "method": framework, "seed": int(seed),
            **evaluate(labels_true, result["labels"]), "seconds": round(result["seconds"], 3),
            "device": str(resolve_device(cfg.device)), "n_clusters": k,
            "n_clusters_found": int(len(np.unique(result["labels"]))), "preset": cfg.preset,
            "from_cache": bool(result.get("cached", False))}


def dmvc_maps(cfg: RunConfig, ds, progress: bool = True) -> list:
    """DMVC's inputs: each backbone's activation map below its fine-tuned tail (cached)."""
    return [extract_features(ds, b, layer=finetune_cut(b), pool=False, device=cfg.device,
                             input_size=cfg.input_size, cache_dir=cfg.cache_dir, progress=progress)
            for b in cfg.backbones]


def _dmvc(cfg, maps, seed, k, key, y):
    return _fit(cfg, "dmvc", maps, k, seed, {**key, "input": "DMVC"}, y, backbones=tuple(cfg.backbones))


def _periods(ds, row, seed, result) -> list[dict]:
    """The NMI after each of a JULE fit's periods, from its history (tidy rows)."""
    return [{"dataset": ds.name, "views": row, "seed": int(seed), "period": h["period"],
             "clusters": h["clusters_after"], "nmi": h["nmi"]} for h in result["history"]
            if "period" in h and "nmi" in h]  # IDEC's history logs NMI per epoch, not per period


def multiview_step(cfg: RunConfig, out_dir, progress: bool = True):
    """Table 2: every view, CC, MVEC (Tao's and the co-association one), DMVC-fix and DMVC under
    JULE and IDEC, over the seeds;
    and the NMI after each of JULE's periods for CC and DMVC-fix (``figures/jule_periods.png``).

    Fits are cached (``<cache>/fits``), so notebook 05 and a resumed run reuse them; the
    records keep the seconds of the original fit. Returns the records, Table 2 and the
    per-period figure.
    """
    out = Path(out_dir)
    records, periods, skipped = [], [], []
    for name in cfg.datasets:
        ds = cfg.load(name)
        views = cfg.views(ds, progress=progress)
        k, y = ds.n_classes, ds.labels
        key = feature_key(cfg, ds)
        maps = dmvc_maps(cfg, ds, progress) if "jule" in cfg.frameworks and cfg.run_dmvc(ds) else None
        jobs = [(fw, s) for fw in cfg.frameworks for s in cfg.seeds]
        for fw, seed in tqdm(jobs, desc=f"Table 2 on {name}", disable=not progress):
            single, fixed = FRAMEWORKS[fw]
            parts, secs = [], 0.0
            for v, X in views.items():
                r = _fit(cfg, single, X, k, seed, {**key, "input": v}, y)
                records.append(_record(cfg, ds, v, fw, seed, k, r, y))
                periods += _periods(ds, v, seed, r)
                parts.append(r["labels"])
                secs += r["seconds"]
            cc = np.concatenate(list(views.values()), axis=1)
            r = _fit(cfg, single, cc, k, seed, {**key, "input": "CC"}, y)
            records.append(_record(cfg, ds, "CC", fw, seed, k, r, y))
            periods += _periods(ds, "CC", seed, r)
            for row, ensemble in (("MVEC", "mvec_tao"), ("MVEC (co-assoc.)", "mvec_coassoc")):
                est = make_method(ensemble, k, seed=seed, device=cfg.device, progress=False)
                r = consensus_cached(est, [[p] for p in parts], {**key, "input": f"{fw} partitions"}, cfg.cache_dir)
                records.append(_record(cfg, ds, row, fw, seed, k, {**r, "seconds": secs + r["seconds"]}, y))
            r = _fit(cfg, fixed, list(views.values()), k, seed, {**key, "input": "DMVC-fix"}, y)
            records.append(_record(cfg, ds, "DMVC-fix", fw, seed, k, r, y))
            periods += _periods(ds, "DMVC-fix", seed, r)
            if fw == "jule":
                if maps is not None:
                    r = _dmvc(cfg, maps, seed, k, key, y)
                    records.append(_record(cfg, ds, "DMVC", fw, seed, k, r, y))
                    periods += _periods(ds, "DMVC", seed, r)
                elif name not in skipped:
                    skipped.append(name)
    df = records_frame(records)
    save_records(df, out / "tables" / "table2_records.csv")
    t2 = table2(df, cfg.datasets, cfg.frameworks)
    note = (f"Table 2: NMI, mean ± std over seeds {cfg.seeds}, beside the paper's value. MVEC is Tao et al.'s "
            "low-rank + sparse consensus of the views' co-association matrices, clustered spectrally (mvec_tao, on "
            "the framework's partition of each view); MVEC (co-assoc.) is the average-linkage co-association "
            "consensus of the same partitions (mvec_coassoc). DMVC "
            "fine-tunes the last layers of each CNN (BackboneSpec.finetune_tail in mvcpaper.features). "
            "IDEC's records repeat to the digit on one CPU model; on another a record moved by up to .056 and a "
            "cell by up to .017 (its training carries the rounding of its k-means start on; "
            "scripts/compare_records.py). "
            f"Method settings: {cfg.method_params or 'defaults'}. {_views_note(cfg)}")
    if skipped:
        note += (f" DMVC not run on {', '.join(skipped)}: more than {cfg.dmvc_max_images_cpu} images on the CPU "
                 "(set device='cuda' or RunConfig.dmvc_max_images_cpu).")
    save_table(t2, "table2", out / "tables", note=note)
    periods = pd.DataFrame(periods, columns=["dataset", "views", "seed", "period", "clusters", "nmi"])
    save_records(periods, out / "tables" / "jule_periods.csv")
    fig = plot_periods(periods[periods["views"].isin(["CC", "DMVC-fix"])],
                       title=f"JULE: NMI after each period, CC vs DMVC-fix (mean ± sd over seeds {cfg.seeds})")
    save_figure(fig, out / "figures" / "jule_periods.png")
    return df, t2, fig


def table3_view(cfg: RunConfig) -> str:
    """The view of Table 3 and Fig. 5: InceptionV3 as in the paper when used, else the first."""
    return "inception_v3" if "inception_v3" in cfg.backbones else cfg.backbones[0]


def representations_step(cfg: RunConfig, out_dir, progress: bool = True, fig_dataset: str | None = None):
    """Table 3 (KMeans NMI on four representations) and Fig. 5 (their t-SNE on UMist).

    Representations: one view's raw features, its JULE embedding, DMVC-fix's (JULE) and
    DMVC's. The fits come from the cache that notebook 04 filled (computed if absent).
    """
    out = Path(out_dir)
    view = table3_view(cfg)
    fig_dataset = fig_dataset or ("umist" if "umist" in cfg.datasets else cfg.datasets[-1])
    records, panels = [], {}
    for name in cfg.datasets:
        ds = cfg.load(name)
        views = cfg.views(ds, progress=progress)
        k, y = ds.n_classes, ds.labels
        key = feature_key(cfg, ds)
        maps = dmvc_maps(cfg, ds, progress) if cfg.run_dmvc(ds) else None
        for seed in tqdm(cfg.seeds, desc=f"Table 3 on {name}", disable=not progress):
            reps = {(f"{view} (raw)", "InceptionV3"): views[view]}
            r = _fit(cfg, "jule", views[view], k, seed, {**key, "input": view}, y)
            reps[(f"{view} + JULE", "InceptionV3+JULE")] = r["embedding"]
            r = _fit(cfg, "dmvc_jule", list(views.values()), k, seed, {**key, "input": "DMVC-fix"}, y)
            reps[("DMVC-fix", "DMVC-fix")] = r["embedding"]
            if maps is not None:
                reps[("DMVC", "DMVC")] = _dmvc(cfg, maps, seed, k, key, y)["embedding"]
            for (rep, stage), Z in reps.items():
                pred = make_method("kmeans", n_clusters=k, seed=seed).fit_predict(Z)
                records.append({"dataset": name, "representation": rep, "stage": stage, "seed": int(seed),
                                **evaluate(y, pred), "preset": cfg.preset})
            if name == fig_dataset and seed == cfg.seeds[0]:
                panels = {rep: (tsne(Z, seed=seed, cache_dir=cfg.cache_dir), y) for (rep, _), Z in reps.items()}
    df = pd.DataFrame(records)
    save_records(df, out / "tables" / "table3_records.csv")
    t3 = table3(df, cfg.datasets)
    save_table(t3, "table3", out / "tables",
               note=f"Table 3: KMeans NMI (true k, mean ± std over seeds {cfg.seeds}) on each representation; "
                    f"the paper's rows use InceptionV3, this run uses {view}. {_views_note(cfg)}")
    fig = plot_embeddings(panels, title=f"Fig. 5: t-SNE of {fig_dataset} at four stages (seed {cfg.seeds[0]}), "
                                        "coloured by class", ncols=len(panels))
    save_figure(fig, out / "figures" / "fig5_tsne.png")
    return df, t3, fig
