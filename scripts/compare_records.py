"""How far a rerun's records moved from a committed run's: NMI record by record.

Usage (in a clone, after ``make reproduce``, which overwrites ``tables/``)::

    python scripts/compare_records.py [--rev HEAD] [--tables tables]

For each ``tables/*_records.csv`` that both the working tree and ``--rev`` hold, records
are matched on their identifying columns (every column but the metrics, timings and cache
flags) and, per group of them (seeds and views pooled: dataset and method, dataset and
representation, network and layer), it prints how many have the same NMI to the last
digit, the largest change of a record and the largest change of a cell (a mean over
seeds) they make up.
"""
from __future__ import annotations

import argparse
import io
import subprocess
from pathlib import Path

import pandas as pd

METRICS = {"nmi", "acc", "ari", "seconds", "from_cache", "device", "n_clusters_found", "kmeans_nmi",
           "probe_train_acc", "probe_test_acc"}
POOLED = {"seed", "views", "n_clusters", "preset", "dim", "stage"}  # identifying columns pooled in the printed groups


def committed(rev: str, path: Path) -> pd.DataFrame | None:
    shown = subprocess.run(["git", "show", f"{rev}:{path.as_posix()}"], capture_output=True, text=True)
    return pd.read_csv(io.StringIO(shown.stdout)) if shown.returncode == 0 else None


def compare(old: pd.DataFrame, new: pd.DataFrame, metric: str) -> pd.DataFrame:
    keys = [c for c in old.columns if c not in METRICS and c in new.columns]
    m = old.merge(new, on=keys, suffixes=("_old", "_new"))
    m["delta"] = m[f"{metric}_new"] - m[f"{metric}_old"]
    group = [c for c in keys if c not in POOLED]
    cell = [c for c in keys if c != "seed"]
    records = m.groupby(group)["delta"]
    return pd.DataFrame({
        "same": records.agg(lambda d: int((d == 0).sum())),
        "records": records.size(),
        "max |change|": records.agg(lambda d: d.abs().max()),
        "max |cell change|": m.groupby(cell)["delta"].mean().groupby(group).agg(lambda d: d.abs().max()),
    }).round(4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="the committed run to compare with (default: HEAD)")
    ap.add_argument("--tables", default="tables", type=Path)
    args = ap.parse_args()
    for path in sorted(args.tables.glob("*_records.csv")):
        old = committed(args.rev, path)
        if old is None:
            continue
        new = pd.read_csv(path)
        metric = "nmi" if "nmi" in new else "kmeans_nmi"
        print(f"\n{path} ({metric}, {len(new)} records against {len(old)} at {args.rev})")
        print(compare(old, new, metric).to_string())


if __name__ == "__main__":
    main()
