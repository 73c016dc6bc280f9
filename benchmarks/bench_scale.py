"""How every clustering method scales with the number of images: wall time and peak memory.

Data: a seeded three-view mixture standing in for three 1280-d CNN views of n images of
100 classes (each view: its own random class means plus Gaussian noise, rows
L2-normalised, as the package normalises real views), so it runs anywhere without data.
Every (method, n) is fitted with the method's defaults (k = 100, seed 0) in a fresh
process, whose peak resident memory (``wait4``'s ``ru_maxrss``, the data included) and fit
time are recorded, with a time limit per fit. A method that refuses a size says so in
one line, recorded as ``refused``. Each row names the CPU's widest vector extension
(``cpu``: AVX-512 or AVX2), since the same 2-core machine kind comes with either and
their times differ by up to 3x; slopes are only taken between rows of one CPU.

Writes ``<out>/bench_scale.csv`` (one row per method, n and CPU, written after every fit;
a rerun replaces the rows it runs), ``<out>/bench_scale.png`` (log-log time and memory
against n) and ``<out>/bench_scale.md`` (the table and each method's log-log slope of
time against n between the two largest sizes it finished on one CPU).

Usage: python benchmarks/bench_scale.py [--sizes 1000 10000 100000] [--methods kmeans jule ...]
                                        [--timeout 600] [--out benchmarks/results] [--report-only]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mvcpaper._utils import cpu_label

METHODS = ["kmeans", "torch_kmeans", "agglomerative", "idec", "dec", "jule", "dmvc_jule", "dmvc_idec",
           "mvec_coassoc", "mvec_tao"]
N_CLASSES, DIM, N_VIEWS, LATENT, NOISE = 100, 1280, 3, 32, 0.5


def make_views(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` samples of :data:`N_CLASSES` balanced classes in three L2-normalised views: each
    view's class means lie in a random 32-d subspace of its 1280 dimensions, and isotropic
    noise makes the classes overlap (at n = 3000, KMeans NMI .85/.84/.88 on the views, .98
    on their concatenation)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    views = []
    for _ in range(N_VIEWS):
        basis = np.linalg.qr(rng.standard_normal((DIM, LATENT)))[0].T.astype(np.float32)
        means = rng.standard_normal((N_CLASSES, LATENT), dtype=np.float32) @ basis
        x = means[y] + rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(NOISE)
        views.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return views, y


def child(method: str, n: int) -> None:
    """Fit one method on one size; print a JSON line (seconds, NMI, or the refusal)."""
    from mvcpaper.cluster import get_method, make_method
    from mvcpaper.errors import MvcpaperError
    from mvcpaper.metrics import nmi

    views, y = make_views(n)
    est = make_method(method, N_CLASSES, seed=0, progress=False)
    X = views if get_method(method).multiview else np.hstack(views)
    t0 = time.perf_counter()
    try:
        labels = est.fit_predict(X)
    except MvcpaperError as exc:
        print(json.dumps({"status": "refused", "note": str(exc)}))
        return
    print(json.dumps({"status": "ok", "seconds": time.perf_counter() - t0, "nmi": nmi(y, labels)}))


def run(method: str, n: int, timeout: float) -> dict:
    """One fit in a fresh process: its result, wall time and peak memory."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", method, str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + timeout
    status, usage = None, None
    while usage is None:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            usage = None
            if time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                return {"status": "timeout", "peak_gb": usage.ru_maxrss / 2 ** 20, "note": f"over {timeout:.0f} s"}
            time.sleep(0.2)
    out, err = proc.stdout.read(), proc.stderr.read()
    row = {"peak_gb": usage.ru_maxrss / 2 ** 20}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        reason = (err.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {**row, "status": "error", "note": reason[:200]}
    return {**row, **json.loads(lines[-1])}


def slope(rows: pd.DataFrame) -> tuple[float, str]:
    """Log-log slope of time against n between the two largest sizes finished, and those sizes."""
    ok = rows[rows["status"] == "ok"].sort_values("n").tail(2)
    if len(ok) < 2:
        return float("nan"), "-"
    (t0, t1), (n0, n1) = ok["seconds"].to_numpy(), ok["n"].to_numpy()
    return float(np.log(t1 / t0) / np.log(n1 / n0)), f"{n0}-{n1}"


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip(sorted(table["method"].unique()), plt.get_cmap("tab10").colors * 2))
    markers = dict(zip(sorted(table["cpu"].unique()), "os^v"))  # one colour per method, one marker per CPU
    for (method, cpu), rows in table[table["status"] == "ok"].groupby(["method", "cpu"]):
        rows = rows.sort_values("n")
        style = dict(color=colours[method], marker=markers[cpu], label=f"{method} ({cpu})")
        axes[0].plot(rows["n"], rows["seconds"], **style)
        axes[1].plot(rows["n"], rows["peak_gb"], **style)
    for ax, what in zip(axes, ("fit seconds", "peak memory, GB (data included)")):
        ax.set(xscale="log", yscale="log", xlabel="images (three 1280-d views)", ylabel=what)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--timeout", type=float, default=600, help="seconds per fit (default: 600)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--report-only", action="store_true", help="only redraw the table and plot from the CSV")
    p.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]))
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_label()
    print(f"# machine: {platform.machine()} ({cpu}), {os.cpu_count()} cores; k={N_CLASSES}, {N_VIEWS} views of "
          f"{DIM}-d", flush=True)
    if a.report_only:
        print("\n".join(report(out, [])))
        return
    for n in a.sizes:
        for method in a.methods:
            row = {"method": method, "n": n, "cpu": cpu, **run(method, n, a.timeout)}
            print(json.dumps(row), flush=True)
            slopes = report(out, [row])  # after every fit: a run cut off keeps what it measured
    print("\n".join(slopes))


def report(out: Path, new: list[dict]) -> list[str]:
    """Merge ``new`` rows into the CSV (replacing rows of the same method, n and CPU), then
    rewrite the Markdown table with its slopes and the plot; returns the slope table's lines."""
    csv = out / "bench_scale.csv"
    table = pd.DataFrame(new) if new else pd.DataFrame(columns=["method", "n", "cpu"])
    if csv.exists():
        old = pd.read_csv(csv)
        done = set(zip(table["method"], table["n"], table["cpu"]))
        table = pd.concat([old[[key not in done for key in zip(old["method"], old["n"], old["cpu"])]], table])
    table = table.sort_values(["method", "cpu", "n"]).reset_index(drop=True)
    table.to_csv(csv, index=False)
    if table.empty:
        return []
    plot(table, out / "bench_scale.png")
    slopes = {key: slope(rows) for key, rows in table.groupby(["method", "cpu"])}
    cols = [c for c in ("method", "n", "cpu", "status", "seconds", "peak_gb", "nmi", "note") if c in table]
    lines = ["# bench_scale", "", "`python benchmarks/bench_scale.py` (`cpu`: the widest vector extension of the "
             f"machine that ran the row); a seeded three-view mixture, k={N_CLASSES}, each method's defaults.", "",
             table[cols].fillna({"note": ""}).to_markdown(index=False, floatfmt=".3g"), "",
             "| method | cpu | log-log slope of time vs n | between n = |", "|---|---|---|---|",
             *(f"| {m} | {c} | {s:.2f} | {between} |" for (m, c), (s, between) in slopes.items())]
    (out / "bench_scale.md").write_text("\n".join(lines) + "\n")
    return lines[-len(slopes) - 2:]


if __name__ == "__main__":
    main()
