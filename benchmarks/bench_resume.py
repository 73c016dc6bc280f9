"""A feature extraction killed mid-way resumes from its chunks: a folder of real image files.

Writes ``--images`` PNG files (the seeded synthetic set's renderings, one sub-folder per
object) under ``--folder``, then extracts one view of them with the package's defaults
(chunks of ``CHUNK_ROWS`` rows) in a child process that is SIGKILLed once ``--kill-at``
of its chunks are cached; reruns the extraction in this process, and extracts once more
without the cache. Reports the times (the rerun's beside what the missing rows cost at the
uninterrupted rate) and the largest difference between the resumed and uninterrupted
features, as Markdown (stdout and ``<out>/bench_resume.md``).

Usage: python benchmarks/bench_resume.py [--images 20000] [--backbone efficientnet_lite0]
                                         [--folder /tmp/mvc_resume] [--kill-at 0.6] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mvcpaper.data import load_dataset
from mvcpaper.features import extract_features
from mvcpaper.features.extract import CHUNK_ROWS

CHILD = """
import sys
from mvcpaper.data import load_dataset
from mvcpaper.features import extract_features
extract_features(load_dataset("folder", path=sys.argv[1]), sys.argv[2], cache_dir=sys.argv[3], progress=False)
"""


def write_folder(folder: Path, n_images: int) -> None:
    """``n_images`` PNGs: 100 synthetic objects, ``n_images / 100`` poses each, 96 px."""
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == n_images:
        return
    shutil.rmtree(folder, ignore_errors=True)
    ds = load_dataset("synthetic", n_objects=100, n_poses=math.ceil(n_images / 100), size=96, seed=0)
    for i in range(n_images):
        path = folder / f"object_{ds.labels[i]:03d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.load_image(i).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--folder", default="/tmp/mvc_resume")
    p.add_argument("--kill-at", type=float, default=0.6)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    folder, cache = Path(a.folder) / "images", Path(a.folder) / "cache"
    write_folder(folder, a.images)
    shutil.rmtree(cache, ignore_errors=True)
    n_chunks = math.ceil(a.images / CHUNK_ROWS)

    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), a.backbone, str(cache)])
    done = []
    while len(done) < a.kill_at * n_chunks and child.poll() is None:
        time.sleep(0.5)
        done = list(cache.rglob("*.chunks/*.npy.json"))
    child.kill()
    child.wait()
    killed_after = time.perf_counter() - t0
    done = list(cache.rglob("*.chunks/*.npy.json"))
    if not done or len(done) == n_chunks:
        sys.exit(f"the child was not caught mid-way ({len(done)} of {n_chunks} chunks); exit code {child.returncode}")

    spans = [f.name.split(".")[0].removeprefix("rows_").split("-") for f in done]  # rows_<start>-<stop>
    finished = sum(int(stop) - int(start) for start, stop in spans)
    ds = load_dataset("folder", path=folder)
    t0 = time.perf_counter()
    resumed = np.array(extract_features(ds, a.backbone, cache_dir=cache, progress=False))
    resume_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    whole = extract_features(ds, a.backbone, use_cache=False, progress=False)
    whole_s = time.perf_counter() - t0

    lines = [
        "# bench_resume", "",
        f"`python benchmarks/bench_resume.py --images {a.images} --backbone {a.backbone}` on {platform.machine()}, "
        f"{os.cpu_count()} cores: a folder of {a.images} PNG files, chunks of {CHUNK_ROWS} rows.", "",
        "| step | seconds | what |", "|---|---:|---|",
        f"| extraction, SIGKILLed | {killed_after:.0f} | {len(done)} of {n_chunks} chunks cached when killed |",
        f"| rerun (resumes) | {resume_s:.0f} | the {n_chunks - len(done)} missing chunks hold {a.images - finished} "
        f"rows: {whole_s * (a.images - finished) / a.images:.0f} s at the uninterrupted rate |",
        f"| uninterrupted, no cache | {whole_s:.0f} | reference |", "",
        f"Largest absolute difference between the resumed and the uninterrupted features: "
        f"{float(np.abs(resumed - whole).max()):.2e} (features {whole.shape[0]} x {whole.shape[1]}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "bench_resume.md").write_text(text)


if __name__ == "__main__":
    main()
