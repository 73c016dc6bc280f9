"""Tables as pure functions of data sets and result records, paper values beside them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import atomic_path
from .cluster import method_label
from .paper import TABLE1, TABLE2, TABLE3

__all__ = ["table1", "baseline_table", "save_table", "fmt_mean_std", "table2", "table3"]


def table1(datasets) -> pd.DataFrame:
    """The paper's Table 1 for the loaded data sets: images, classes, size, and the paper's."""
    rows = []
    for ds in datasets:
        p = TABLE1.get(ds.name, {})
        rows.append({"dataset": ds.name, "images": len(ds), "classes": ds.n_classes, "size (HxW)": ds.size_label(),
                     "paper images": p.get("n_images"), "paper classes": p.get("n_classes"),
                     "paper size": p.get("size"), "layout": ds.info.get("layout", "")})
    return pd.DataFrame(rows)


def fmt_mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=0):.3f}"


def baseline_table(records, metric: str = "nmi", method_labels: dict | None = None) -> pd.DataFrame:
    """Rows = views, columns = (data set, method); cells ``mean ± std`` over seeds."""
    df = pd.DataFrame(records)
    df["col"] = df["dataset"] + " " + df["method"].map(method_labels.get if method_labels else method_label)
    cells = df.groupby(["views", "col"], sort=False)[metric].apply(fmt_mean_std).unstack("col")
    cells = cells[[c for c in dict.fromkeys(df["col"])]]
    cells.index.name = f"view ({metric.upper()})"
    return cells.reindex(list(dict.fromkeys(df["views"])))


def save_table(df: pd.DataFrame, name: str, out_dir, note: str = "") -> dict[str, Path]:
    """Write ``<out_dir>/<name>.csv`` and ``.md`` atomically; the note heads the Markdown."""
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}
    index = df.index.name is not None or not isinstance(df.index, pd.RangeIndex)
    with atomic_path(paths["csv"]) as tmp:
        df.to_csv(tmp, index=index)
    with atomic_path(paths["md"]) as tmp:
        md = df.to_markdown(index=index, disable_numparse=True)
        tmp.write_text((note.strip() + "\n\n" if note else "") + md + "\n")
    return paths


def _paper_cell(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def table2(records, datasets=None, frameworks=("jule", "idec")) -> pd.DataFrame:
    """Table 2: rows = views, CC, MVEC, DMVC-fix, DMVC; columns = (data set, framework) with the
    reproduced NMI (``mean ± std`` over seeds) and the paper's value beside it.

    A cell is empty ("not run") only where no record exists; the paper's value is "—" where
    its table is empty or names a different CNN.
    """
    df = pd.DataFrame(records)
    datasets = list(datasets or dict.fromkeys(df["dataset"]))
    rows = list(dict.fromkeys(df["views"]))
    out = {}
    for ds in datasets:
        for fw in frameworks:
            sub = df[(df["dataset"] == ds) & (df["method"] == fw)]
            cells = sub.groupby("views", sort=False)["nmi"].apply(fmt_mean_std)
            col = f"{ds} {fw.upper()}"
            out[col] = [cells.get(r, "not run") for r in rows]
            out[f"{col} (paper)"] = [_paper_cell(TABLE2.get(r, {}).get(ds, {}).get(fw.upper()))
                                     for r in rows]
    t = pd.DataFrame(out, index=rows)
    t.index.name = "row (NMI)"
    return t


def table3(records, datasets=None) -> pd.DataFrame:
    """Table 3: KMeans NMI on four representations, reproduced beside the paper's value."""
    df = pd.DataFrame(records)
    datasets = list(datasets or dict.fromkeys(df["dataset"]))
    rows = list(dict.fromkeys(df["representation"]))
    stages = dict(zip(rows, df.drop_duplicates("representation")["stage"]))
    out = {}
    for ds in datasets:
        cells = df[df["dataset"] == ds].groupby("representation", sort=False)["nmi"].apply(fmt_mean_std)
        out[ds] = [cells.get(r, "not run") for r in rows]
        out[f"{ds} (paper)"] = [_paper_cell(TABLE3.get(stages[r], {}).get(ds)) for r in rows]
    t = pd.DataFrame(out, index=rows)
    t.index.name = "representation (KMeans NMI)"
    return t
