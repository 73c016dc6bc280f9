"""What flushing denormal floats to zero saves in the deep methods' fits.

``import mvcpaper`` turns on flush-to-zero for the process (``torch.set_flush_denormal``,
see ``mvcpaper/__init__.py``). Here each method is fitted twice, each time in a fresh Python
process, with the offline preset's settings (notebook 04's). One process keeps the flush.
The other turns it off again straight after the import, before torch starts its worker
threads: that is the behaviour from before the change. The table gives seconds, their
ratio, and whether the labels and the NMI are the same.

Rows: IDEC on one view and DMVC-fix (IDEC) on the three views of ``--idec-dataset``, and
JULE on one view of ``--jule-dataset``. The views are EfficientNet-Lite features from the
feature cache, seed 0.

Usage: MVCPAPER_DATA=../shared/data python benchmarks/bench_denormals.py
           [--idec-dataset umist] [--jule-dataset coil100] [--device auto]

Close other work first: on 2 cores a concurrent process slows torch several-fold.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import pandas as pd
import torch

from mvcpaper._utils import cpu_label, resolve_device
from mvcpaper.cluster import make_method
from mvcpaper.metrics import nmi
from mvcpaper.presets import resolve


def fit_once(method: str, dataset: str, flush: bool, device: str) -> dict:
    """One fit in this process (called in a child process): seconds, NMI and the labels."""
    if not flush:
        torch.set_flush_denormal(False)  # before any parallel op: the workers start without it
    cfg = resolve("offline", datasets=[dataset], device=device)
    ds = cfg.load(dataset)
    views = list(cfg.views(ds, progress=False).values())
    X = views if method.startswith("dmvc") else views[0]
    est = make_method(method, ds.n_classes, seed=0, device=device, progress=False, **cfg.params(method))
    t0 = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "nmi": nmi(ds.labels, est.labels_), "labels": est.labels_.tolist()}


def run_child(method: str, dataset: str, flush: bool, device: str) -> dict:
    cmd = [sys.executable, __file__, "--child", method, dataset, "flush" if flush else "keep", "--device", device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idec-dataset", default="umist")
    ap.add_argument("--jule-dataset", default="coil100")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "DATASET", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, dataset, mode = args.child
        print(json.dumps(fit_once(method, dataset, mode == "flush", args.device)))
        return
    rows = []
    for method, dataset in [("idec", args.idec_dataset), ("dmvc_idec", args.idec_dataset),
                            ("jule", args.jule_dataset)]:
        kept = run_child(method, dataset, False, args.device)
        flushed = run_child(method, dataset, True, args.device)
        rows.append({"method": method, "data": f"{dataset} ({'3 views' if method.startswith('dmvc') else 'Lite0'})",
                     "s (denormals kept)": round(kept["seconds"], 1), "s (flushed)": round(flushed["seconds"], 1),
                     "speed-up": round(kept["seconds"] / flushed["seconds"], 2),
                     "same labels": kept["labels"] == flushed["labels"],
                     "NMI kept": round(kept["nmi"], 4), "NMI flushed": round(flushed["nmi"], 4)})
        print(rows[-1], flush=True)
    print(f"\n{cpu_label()} CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {resolve_device(args.device)}\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
