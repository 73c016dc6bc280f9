"""What ``mvcpaper cluster`` writes: per-image scores, contact sheets, a self-contained HTML report.

Everything here takes a finished clustering (labels, the embedding it was scored in, a
2-D map) and only writes files; :mod:`mvcpaper.folder` decides the clustering.
"""
from __future__ import annotations

import base64
import html
import io
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from ._utils import atomic_path, tqdm
from .cluster.neighbours import nearest_neighbours
from .explore import matched_confusion, palette_hex, worst_fitting
from .metrics import evaluate

__all__ = ["membership_scores", "contact_sheet", "relative_paths", "write_assignments", "write_report", "link_clusters"]

N_TYPICAL, N_ATYPICAL = 8, 4


def membership_scores(X: np.ndarray, labels: np.ndarray, n_neighbors: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, typicality)`` of every image.

    ``confidence`` (0-1): the fraction of the image's ``m`` nearest neighbours (Euclidean
    in ``X``, the L2-normalised views concatenated) that lie in its cluster, ``m`` = 10 or
    its cluster's size - 1 if smaller (a cluster of one: 0); 1 means its whole
    neighbourhood agrees with the assignment. ``typicality``: the rank
    of the image's distance to its cluster's mean, 1 = the most typical member.
    """
    X, labels = np.asarray(X, dtype=np.float32), np.asarray(labels)
    n_neighbors = min(n_neighbors, len(X) - 1)
    if n_neighbors < 1:
        return np.ones(len(X)), np.ones(len(X), dtype=int)
    neighbours = nearest_neighbours(X, n_neighbors)[1]
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    m = np.minimum(n_neighbors, counts[inverse] - 1)
    same = np.cumsum(labels[neighbours] == labels[:, None], axis=1)
    confidence = np.where(m > 0, same[np.arange(len(X)), np.maximum(m, 1) - 1] / np.maximum(m, 1), 0.0)
    typicality = np.empty(len(X), dtype=int)
    for c in np.unique(labels):
        closest_first = worst_fitting(X, labels, c)[::-1]
        typicality[closest_first] = np.arange(1, len(closest_first) + 1)
    return confidence, typicality


def _thumb(dataset, i: int, size: int) -> Image.Image:
    img = dataset.load_image(int(i))
    img.thumbnail((size, size))
    return img


def contact_sheet(dataset, indices, size: int = 96, cols: int = 8, path=None) -> Image.Image:
    """The images ``indices`` of ``dataset`` on a grid of ``cols`` columns, ``size`` px cells."""
    indices = list(indices)
    rows = max(1, -(-len(indices) // cols))
    sheet = Image.new("RGB", (cols * size, rows * size), "white")
    for j, i in enumerate(indices):
        t = _thumb(dataset, i, size)
        sheet.paste(t, ((j % cols) * size + (size - t.width) // 2, (j // cols) * size + (size - t.height) // 2))
    if path is not None:
        with atomic_path(path) as tmp:
            sheet.save(tmp, format="PNG")
    return sheet


def _data_uri(img: Image.Image | bytes, fmt: str = "JPEG") -> str:
    if isinstance(img, Image.Image):
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=85)
        img = buf.getvalue()
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(img).decode()}"


def _figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return _data_uri(buf.getvalue(), "PNG")


def relative_paths(dataset) -> list[str]:
    """Each image's path as given under the folder the set was read from (``assignments.csv``'s ``path``)."""
    root = Path(dataset.info.get("root", "."))
    out = []
    for p in dataset.paths:
        try:
            out.append(str(Path(p).relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out


def write_assignments(path, dataset, labels, confidence, typicality) -> pd.DataFrame:
    """``assignments.csv``: ``path`` (relative to the image folder), ``cluster``,
    ``confidence``, ``typicality`` and, for a labelled folder, ``label``."""
    df = pd.DataFrame({"path": relative_paths(dataset), "cluster": np.asarray(labels, dtype=int),
                       "confidence": np.round(confidence, 4), "typicality": typicality})
    if dataset.labelled:
        df["label"] = [dataset.class_names[c] for c in dataset.labels]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return df


def link_clusters(out_dir, dataset, labels) -> Path:
    """``<out_dir>/clusters/cluster_<c>/``: a symbolic link per member to the original file
    (``<typicality order>_<file name>``); the originals are never touched. Replaces an
    earlier ``clusters/`` of this output folder."""
    root = Path(out_dir) / "clusters"
    if root.is_symlink() or root.is_file():
        raise FileExistsError(f"{root} exists and is not a folder; remove it or choose another --out")
    shutil.rmtree(root, ignore_errors=True)
    width = len(str(int(np.max(labels))))
    for c in np.unique(labels):
        d = root / f"cluster_{int(c):0{width}d}"
        d.mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(labels == c)):
            src = Path(dataset.paths[i]).resolve()
            os.symlink(src, d / f"{j:05d}_{src.name}")
    return root


def _map_figure(xy, labels):
    clusters = np.unique(labels)
    pal = np.array(palette_hex(len(clusters)))
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c=pal[np.searchsorted(clusters, labels)], linewidths=0)
    for c in clusters:
        cx, cy = np.median(xy[labels == c], axis=0)
        ax.text(cx, cy, str(c), fontsize=8, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("2-D map (t-SNE of the concatenated views), coloured by cluster")
    return fig


def _confusion_figure(confusion: pd.DataFrame):
    n_rows, n_cols = confusion.shape
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.12 * n_cols), min(14, 3 + 0.12 * n_rows)))
    ax.imshow(confusion.to_numpy(), cmap="Blues", aspect="auto", interpolation="nearest")
    if n_cols <= 40:
        ax.set_xticks(range(n_cols), confusion.columns, rotation=90, fontsize=7)
    if n_rows <= 40:
        ax.set_yticks(range(n_rows), confusion.index, fontsize=7)
    ax.set_xlabel("class")
    ax.set_ylabel("cluster (matched order)")
    ax.set_title("clusters against the folder's labels")
    return fig


def _curve_figure(k_choice: dict):
    ks, scores = zip(*sorted((int(k), v) for k, v in k_choice["curve"].items()))
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.plot(ks, scores, lw=1)
    ax.axvline(k_choice["k"], color="C3", ls="--", lw=1)
    ax.set_xlabel("k")
    ax.set_ylabel(k_choice["estimator"])
    ax.set_title(f"k = {k_choice['k']}: the highest {k_choice['estimator']} score")
    return fig


def _summary_html(summary: dict) -> str:
    """The run's choices, readable: k and how it was chosen (with its curve), the method and
    why (with every candidate's score), the views and the time per stage."""
    e = html.escape
    kc, mc = summary.get("k_choice", {}), summary.get("method_choice", {})
    k_text = f"{summary.get('k')} ({kc.get('estimator', '')}"
    k_text += f", searched {kc['k_range'][0]}..{kc['k_range'][1]})" if "k_range" in kc else ")"
    rows = [("k", k_text), ("method", f"{mc.get('method')} on {mc.get('input', 'the views')}: {mc.get('why', '')}"),
            ("views", ", ".join(f"{v['name']} ({v['dim']}-d)" for v in summary.get("views", []))),
            ("seconds", ", ".join(f"{k} {v:.1f}" for k, v in summary.get("seconds", {}).items()))]
    out = "<table>" + "".join(f"<tr><th>{e(a)}</th><td>{e(str(b))}</td></tr>" for a, b in rows) + "</table>"
    if "curve" in kc:
        out += f"<p><img src='{_figure_uri(_curve_figure(kc))}' alt='k curve'></p>"
    if mc.get("candidates"):
        out += ("<p>candidates (neighbour consistency: how well each one's clusters hold every image's 10 "
                "nearest neighbours, chance-corrected; the highest is kept)</p>"
                + pd.DataFrame(mc["candidates"]).to_html(index=False, border=0))
    return out


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
img.t{margin:2px;border:1px solid #ccc;vertical-align:middle}
section{border-top:1px solid #ddd;padding:.5em 0}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.muted{color:#666}"""


def write_report(path, dataset, labels, confidence, typicality, xy, summary: dict, sheets: dict | None = None,
                 thumb_size: int = 96, progress: bool = True) -> Path:
    """``report.html``: one self-contained page (thumbnails and figures embedded, contact
    sheets linked relatively): the run's summary, the 2-D map, for a labelled folder the
    scores and the matched confusion matrix, and per cluster its size, mean confidence,
    most and least typical members."""
    labels = np.asarray(labels)
    rel = relative_paths(dataset)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mvcpaper: {e(dataset.name)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{e(dataset.name)}: {len(labels)} images in {len(np.unique(labels))} clusters</h1>",
             _summary_html(summary)]
    skipped = dataset.info.get("skipped") or []
    if skipped:
        parts.append(f"<h2>{len(skipped)} unreadable file(s), skipped</h2><ul>"
                     + "".join(f"<li>{e(p)}: {e(why)}</li>" for p, why in skipped) + "</ul>")
    parts.append(f"<h2>Map</h2><img src='{_figure_uri(_map_figure(xy, labels))}' alt='2-D map'>")
    if dataset.labelled:
        scores = evaluate(dataset.labels, labels)
        parts.append("<h2>Against the folder's labels</h2><p>" + ", ".join(
            f"{k.upper()} {v:.3f}" for k, v in scores.items()) + f" ({dataset.n_classes} classes)</p>")
        confusion = matched_confusion(dataset.labels, labels, dataset.class_names)
        parts.append(f"<img src='{_figure_uri(_confusion_figure(confusion))}' alt='confusion matrix'>")
    for c in tqdm(np.unique(labels), desc="report", unit="cluster", disable=not progress):
        members = np.flatnonzero(labels == c)
        order = members[np.argsort(typicality[members], kind="stable")]
        typical = order[:N_TYPICAL]
        atypical = order[N_TYPICAL:][-N_ATYPICAL:]
        parts.append(f"<section id='cluster-{c}'><h3>Cluster {c}</h3><p>{len(members)} images, mean "
                     f"confidence {confidence[members].mean():.2f}"
                     + (f" · <a href='{e(sheets[c])}'>contact sheet</a>" if sheets and c in sheets else "")
                     + "</p><p>most typical: ")
        parts += [f"<img class='t' src='{_data_uri(_thumb(dataset, i, thumb_size))}' title='{e(rel[i])}' "
                  f"alt='{e(rel[i])}'>" for i in typical]
        if len(atypical):
            parts.append("</p><p>least typical: ")
            parts += [f"<img class='t' src='{_data_uri(_thumb(dataset, i, thumb_size))}' title='{e(rel[i])} "
                      f"(confidence {confidence[i]:.2f})' alt='{e(rel[i])}'>" for i in atypical]
        parts.append("</p></section>")
    parts.append("<p class='muted'>Made by mvcpaper; assignments.csv and summary.json are beside this page. To "
                 "explore it interactively and compare with another method: notebook 07_explore with "
                 "<code>cluster_output</code> set to this folder.</p></body></html>")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(parts), encoding="utf-8")
    return Path(path)
