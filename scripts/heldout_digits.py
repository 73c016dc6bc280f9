"""The methods' defaults on an image set the project was never developed on: scikit-learn's
handwritten digits (1797 images of 8 x 8 pixels, 10 classes; shipped with scikit-learn, so
it runs offline).

Usage::

    python scripts/heldout_digits.py [--seeds 0 1 2] [--rows idec ...] [--set gamma=0.01 ...]
        [--folder /tmp/mvcpaper-digits]

The digits are written once as PNG files (grey, scaled to 32 x 32 pixels, one sub-folder per
class) and read back through the generic ``folder`` loader, as a user's own set would be.
The views are the offline preset's: EfficientNet-Lite0/1/2 features, L2-normalised; CC is
their concatenation (as in notebook 04). Rows: KMeans, JULE and IDEC on CC; DMVC-fix under
JULE and under IDEC, and MVEC (Tao), on the three views; every method with its defaults
(``make_method(name, 10, seed=s)``) unless ``--set`` changes some, for a diagnosis (values
read as Python literals, passed to every row). Prints the NMI per seed, then the mean and
std; for IDEC rows also the starts (KMeans on the pretrained embedding, the first logged
NMI). The labels are only used for the scores.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from mvcpaper._utils import cpu_label
from mvcpaper.cluster import get_method, make_method
from mvcpaper.data import load_dataset
from mvcpaper.features import OFFLINE_BACKBONES, extract_features
from mvcpaper.metrics import nmi
from mvcpaper.preprocessing import l2_normalize

ROWS = ["kmeans", "jule", "dmvc_jule", "idec", "dmvc_idec", "mvec_tao"]


def write_digits(folder: Path, size: int = 32) -> Path:
    """scikit-learn's digits as PNG files under ``folder/<digit>/``, written once (into a
    temporary folder beside it, then renamed, so a run cut short leaves no partial set)."""
    if folder.is_dir():
        return folder
    digits = load_digits()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for i, (img, label) in enumerate(zip(digits.images, digits.target)):
            (tmp / str(label)).mkdir(exist_ok=True)
            grey = Image.fromarray(np.round(img * 255 / 16).astype(np.uint8))
            grey.resize((size, size), Image.NEAREST).save(tmp / str(label) / f"{i:04d}.png")
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "mvcpaper-digits")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="method parameters for a diagnosis, e.g. max_steps=400 gamma=0.01")
    args = ap.parse_args()
    params = {name: ast.literal_eval(value) for name, _, value in (item.partition("=") for item in args.set)}
    ds = load_dataset("folder", root=write_digits(args.folder))
    views = [l2_normalize(extract_features(ds, b, progress=False)) for b in OFFLINE_BACKBONES]
    cc = np.concatenate(views, axis=1)
    print(f"{ds.name}: {len(ds)} images, {ds.n_classes} classes; views {', '.join(OFFLINE_BACKBONES)}; "
          f"seeds {args.seeds}; {params or 'defaults'}; {cpu_label()}")
    for row in args.rows:
        X = views if get_method(row).multiview else cc
        scores, starts, t0 = [], [], time.perf_counter()
        for seed in args.seeds:
            est = make_method(row, ds.n_classes, seed=seed, progress=False, **params).fit(X, ds.labels)
            scores.append(nmi(ds.labels, est.labels_))
            if "idec" in row:
                starts.append(est.history_[0]["nmi"])
        start = (f"  start {' '.join(f'{v:.3f}' for v in starts)}  mean {np.mean(starts):.3f} ± {np.std(starts):.3f}"
                 if starts else "")
        print(f"  {get_method(row).label:18s} {' '.join(f'{s:.3f}' for s in scores)}  mean {np.mean(scores):.3f} "
              f"± {np.std(scores):.3f}{start}  ({(time.perf_counter() - t0) / len(args.seeds):.0f} s/fit)",
              flush=True)


if __name__ == "__main__":
    main()
