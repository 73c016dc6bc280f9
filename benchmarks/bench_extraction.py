"""Feature-extraction throughput (images/s), as ratios against baselines in the same run.

Compared, on the same N images of a real data set (EfficientNet-Lite0 by default):
  naive     one PIL image at a time, batch 1, NCHW, eager (what a first script does)
  pipeline  mvcpaper.features.extract_features, eager (channels_last), at each of --batch-sizes,
            with 0 and 1 DataLoader workers (0: decoding in the main process)
  compiled  the same with torch.compile (compilation time reported apart)
  onnxruntime  the pipeline with engine="onnxruntime" (the CPU default when installed; the
            one-off ONNX export is reported apart), and its largest deviation from torch
  forward   the bare batched forward pass on pre-decoded tensors (channels_last, eager):
            an upper bound for an eager pipeline; decoding and resizing cost the rest
  bf16      bare forward under CPU bf16 autocast (with --bf16; plus its effect on NMI)

Usage: python benchmarks/bench_extraction.py [--dataset coil100] [--n 512] [--backbone efficientnet_lite0]
       [--batch-sizes 8 64] [--bf16]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time

import numpy as np
import torch

from mvcpaper.data import load_dataset
from mvcpaper.features import build_model, extract_features, get_backbone, image_transform
from mvcpaper.features.extract import FeatureExtractor, onnxruntime_available


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="coil100")
    ap.add_argument("--data-root", default=os.environ.get("MVCPAPER_DATA", "../shared/data"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--n", type=int, default=512, help="images timed (evenly spread over the set)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64],
                    help="batch sizes to compare; the first is used for torch.compile and bf16")
    ap.add_argument("--bf16", action="store_true", help="also time CPU bf16 autocast and its NMI effect")
    a = ap.parse_args()

    full = load_dataset(a.dataset, root=a.data_root)
    idx = np.linspace(0, len(full) - 1, min(a.n, len(full))).round().astype(int)
    ds = full.subset(idx, name=f"{a.dataset}-bench{len(idx)}")
    spec = get_backbone(a.backbone)
    tf = image_transform(spec)
    model, _ = build_model(spec)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print(f"# data: {len(ds)} images of {a.dataset}; backbone {a.backbone} at {spec.input_size}px\n")
    res = {}

    ext = FeatureExtractor(model, "pool")
    n_naive = min(len(ds), 128)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(n_naive):
            ext(tf(ds.load_image(i))[None])
    res["naive (PIL, batch 1, NCHW)"] = n_naive / (time.perf_counter() - t)

    for bs in a.batch_sizes:
        for nw in (0, 1):
            t = time.perf_counter()
            extract_features(ds, spec, compile=False, use_cache=False, progress=False, batch_size=bs, num_workers=nw,
                             engine="torch")
            res[f"pipeline (eager, batch {bs}, {nw} loader workers)"] = len(ds) / (time.perf_counter() - t)

    bs = a.batch_sizes[0]
    t = time.perf_counter()
    extract_features(ds, spec, compile=True, use_cache=False, progress=False, batch_size=bs, engine="torch")
    first = time.perf_counter() - t
    t = time.perf_counter()
    ref = extract_features(ds, spec, compile=True, use_cache=False, progress=False, batch_size=bs, engine="torch")
    res[f"pipeline (torch.compile, batch {bs}, steady)"] = len(ds) / (time.perf_counter() - t)
    res[f"pipeline (torch.compile, batch {bs}, incl. compile)"] = len(ds) / first

    ort_dev = None
    if onnxruntime_available():
        with tempfile.TemporaryDirectory() as tmp:  # an empty ONNX cache: the first call exports
            t = time.perf_counter()
            extract_features(ds, spec, use_cache=False, progress=False, batch_size=bs, engine="onnxruntime",
                             cache_dir=tmp)
            first = time.perf_counter() - t
            for nw in (0, 1):
                t = time.perf_counter()
                f = extract_features(ds, spec, use_cache=False, progress=False, batch_size=bs, num_workers=nw,
                                     engine="onnxruntime", cache_dir=tmp)
                res[f"pipeline (onnxruntime, batch {bs}, {nw} loader workers)"] = len(ds) / (time.perf_counter() - t)
            res[f"pipeline (onnxruntime, batch {bs}, incl. export)"] = len(ds) / first
            ort_dev = float(np.abs(f - ref).max())
    else:
        print("# onnxruntime not installed: its rows are left out")

    x = torch.stack([tf(ds.load_image(i)) for i in range(min(len(ds), 256))])
    xcl = x.contiguous(memory_format=torch.channels_last)
    mcl = ext.to(memory_format=torch.channels_last)

    def fwd(inp, bs, ctx=None):
        with torch.inference_mode(), (ctx() if ctx else contextlib.nullcontext()):
            mcl(inp[:bs])
            t0 = time.perf_counter()
            for s in range(0, len(inp), bs):
                mcl(inp[s:s + bs])
            return len(inp) / (time.perf_counter() - t0)

    for bs in a.batch_sizes:
        res[f"bare forward (pre-decoded, channels_last, batch {bs})"] = fwd(xcl, bs)
    if a.bf16:
        res[f"bare forward, bf16 autocast, batch {a.batch_sizes[0]}"] = fwd(
            xcl[:32], a.batch_sizes[0], lambda: torch.autocast("cpu", dtype=torch.bfloat16))

    base = res["naive (PIL, batch 1, NCHW)"]
    print("| method | images/s | x naive |\n|---|---:|---:|")
    for k, v in res.items():
        print(f"| {k} | {v:.1f} | {v / base:.2f} |")
    if ort_dev is not None:
        print(f"\nonnxruntime vs torch features: largest absolute difference {ort_dev:.2e}")

    if a.bf16:
        from mvcpaper.cluster import make_method
        from mvcpaper.metrics import nmi
        from mvcpaper.preprocessing import l2_normalize

        small = load_dataset("umist", root=a.data_root, max_per_class=10)
        f32 = extract_features(small, spec, precision="fp32", use_cache=False, progress=False)
        b16 = extract_features(small, spec, precision="bf16", use_cache=False, progress=False)
        cos = (l2_normalize(f32) * l2_normalize(b16)).sum(1)
        k = small.n_classes
        s32, s16 = (np.mean([nmi(small.labels, make_method("kmeans", k, seed=s).fit_predict(l2_normalize(f)))
                             for s in range(3)]) for f in (f32, b16))
        print(f"\nbf16 vs fp32 on {len(small)} UMist images: feature cosine min {cos.min():.4f} mean {cos.mean():.4f}; "
              f"KMeans NMI fp32 {s32:.3f}, bf16 {s16:.3f} (3 seeds)")


if __name__ == "__main__":
    main()
