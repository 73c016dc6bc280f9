"""Every registered method with its defaults on subsets shaped like the sets it will meet.

Usage::

    MVCPAPER_DATA=../shared/data python scripts/defaults_on_subsets.py [--methods kmeans jule ...] [--seed 0]

Issue 12 judges the methods' defaults on image sets the project never saw: a few hundred
to a few thousand images, 10 to 100 classes, not always balanced. This draws such subsets
from the offline preset's cached features (EfficientNet-Lite0/1/2, L2-normalised; images
drawn at random inside each class, seeded): UMist with 6 faces per person (120 images, 20
classes), the first 10 COIL-100 objects with all 72 poses (720, 10), COIL-100 with 3 poses
per object (300, 100) and the first 40 objects with 2 to 30 poses each (621, 40). Every
method runs as ``make_method(name, k, seed=seed)`` with k the true number of classes, on
the views (multi-view methods) or their concatenation, and the script prints its NMI, the
clusters it found, its seconds and any warning or error, one line each. ``dmvc`` is left
out: it clusters CNN activation maps, not feature vectors.
"""
from __future__ import annotations

import argparse
import time
import traceback
import warnings

import numpy as np

from mvcpaper.cluster import METHODS, make_method
from mvcpaper.metrics import nmi
from mvcpaper.presets import resolve

#: name -> (data set, number of leading classes, images drawn from each)
SUBSETS = {
    "UMist, 6 per person": ("umist", 20, [6] * 20),
    "COIL-100, 10 objects x 72": ("coil100", 10, [72] * 10),
    "COIL-100, 3 per object": ("coil100", 100, [3] * 100),
    "COIL-100, 40 objects x 2..30": ("coil100", 40, np.linspace(2, 30, 40).astype(int).tolist()),
}


def draw(labels: np.ndarray, per_class: list[int], rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class[c]`` images of each class ``c`` (at random, sorted)."""
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False)
                                   for c, n in enumerate(per_class)]))


def main():
    methods = [m for m in METHODS if m != "dmvc"]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=methods, choices=methods)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    loaded = {}
    for subset, (name, _, per_class) in SUBSETS.items():
        if name not in loaded:
            cfg = resolve("offline", datasets=[name])
            ds = cfg.load(name)
            loaded[name] = ds.labels, list(cfg.views(ds, progress=False).values())
        labels, views = loaded[name]
        idx = draw(labels, per_class, rng)
        y, parts = labels[idx], [v[idx] for v in views]
        print(f"\n{subset}: {len(idx)} images, {len(per_class)} classes", flush=True)
        for method in args.methods:
            X = parts if METHODS[method].multiview else np.concatenate(parts, axis=1)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    found = make_method(method, len(per_class), seed=args.seed, progress=False).fit_predict(X)
                    result = f"NMI {nmi(y, found):.3f}, {len(np.unique(found))} clusters"
                except Exception as err:  # a method that fails is reported, and the others still run
                    result = "FAILED: " + traceback.format_exception_only(err)[-1].strip()
            said = sorted({str(w.message).splitlines()[0][:120] for w in caught})
            print(f"  {method:14s} {time.perf_counter() - t0:6.1f} s  {result}{'  warned: ' if said else ''}"
                  f"{'; '.join(said)}", flush=True)


if __name__ == "__main__":
    main()
