"""Command line: ``mvcpaper reproduce | cluster | deepcluster | download | info``.

A problem the user can fix (a missing data set or weights file, a bad name, a failed
download, a notebook stopped by one of those) is one line on stderr and exit code 2;
Ctrl-C stops with one line and exit code 130; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._utils import resolve_device
from .cache import cache_root
from .cluster.deepcluster import distributed, init_from_env
from .data import DATASETS, data_root, download_dataset, find_dataset_folder, load_dataset, read_image_tree
from .deepcluster_study import train_deepcluster
from .errors import MvcpaperError
from .features import BACKBONES, WeightsNotFoundError, build_model, resolve_weights
from .folder import DEFAULT_BACKBONES, cluster_folder
from .presets import PRESET_NAMES, DeepClusterSettings
from .reproduce import reproduce

__all__ = ["main", "build_parser"]


def _cmd_reproduce(a) -> int:
    reproduce(preset=a.preset, data_root=a.data_root, out_dir=a.out, device=a.device, cache_dir=a.cache_dir,
              datasets=a.datasets, backbones=a.backbones, notebooks=a.notebooks, seeds=a.seeds,
              stream=not a.quiet)
    return 0


def _weights_files(items) -> dict:
    out = {}
    for item in items or []:
        name, sep, path = item.rpartition("=")
        if not sep or not name or not path:
            raise MvcpaperError(f"--weights takes NAME=FILE (e.g. timm:convnext_tiny=weights.pth), not {item!r}")
        out[name] = path
    return out


def _cmd_cluster(a) -> int:
    res = cluster_folder(a.image_dir, a.out, k=a.k, backbones=a.backbones, method=a.method, device=a.device,
                         seed=a.seed, cache_dir=a.cache_dir, weights=_weights_files(a.weights),
                         link=a.link_clusters, strict=a.strict, progress=not a.quiet)
    s = res.summary
    print(f"{s['n_images']} images ({s['n_unreadable']} unreadable, skipped) -> {s['k']} clusters "
          f"(k: {s['k_choice']['estimator']}; method: {s['method']} on {s['method_choice'].get('input', 'the views')}) "
          f"in {s['seconds']['total']:.0f} s; report: {a.out}/report.html")
    return 0


def _cmd_deepcluster(a) -> int:
    device = init_from_env(a.device)  # under torchrun: join the process group, one device per process
    ds = (read_image_tree(Path(a.data), progress=not a.quiet) if Path(a.data).is_dir()
          else load_dataset(a.data, root=a.data_root))
    settings = DeepClusterSettings(arch=a.arch, input_size=a.input_size, k=a.k, epochs=a.epochs, fc_dim=a.fc_dim,
                                   batch_size=a.batch_size, lr=a.lr, reassign=a.reassign)
    dc = train_deepcluster(ds, a.out, settings, device=device, seed=a.seed, progress=not a.quiet)
    if dc.history_ and distributed.world()[0] == 0:
        last = dc.history_[-1]
        print(f"DeepCluster on {ds.name} ({len(ds)} images): {len(dc.history_)} epochs, last loss {last['loss']:.3f}, "
              f"NMI with the labels {last['nmi_true']:.3f}; {a.out}/history.csv, {a.out}/assignments.csv")
    return 0


def _cmd_download(a) -> int:
    if not a.weights and not a.names:
        raise MvcpaperError("nothing to download: name data sets (coil100 umist voc2007) and/or --weights BACKBONE ...")
    for b in a.weights or []:
        _, src = build_model(b, download=True)
        print(f"{b}: weights ready ({src.kind}{' ' + str(src.path) if src.path else ''})")
    for n in a.names:
        print(f"{n}: {download_dataset(n, a.data_root)}")
    return 0


def _cmd_info(a) -> int:
    print(f"device (auto): {resolve_device('auto')}")
    print(f"cache root: {cache_root(a.cache_dir)}")
    try:
        root = data_root(a.data_root)
        print(f"data root: {root}")
        for n, spec in DATASETS.items():
            if spec.folders:
                f = find_dataset_folder(spec, root) if root.is_dir() else None
                print(f"  {n:10s} {'found at ' + str(f) if f else 'not found (' + spec.how_to_get + ')'}")
    except FileNotFoundError as exc:
        print(f"data root: {exc}")
    print("backbones:")
    for b, spec in BACKBONES.items():
        try:
            src = resolve_weights(b)
            status = f"weights: {src.kind} ({src.path})"
        except WeightsNotFoundError:
            status = "weights: not found (see `mvcpaper download --weights " + b + "`)"
        print(f"  {b:20s} {spec.input_size}px  {'paper ' if spec.paper else 'offline'}  {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvcpaper", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reproduce", help="run the notebooks through papermill: tables/, figures/, runs/")
    r.add_argument("--preset", default="auto", choices=PRESET_NAMES)
    r.add_argument("--data-root", default=None, help="folder holding coil-100/, umist/ ... (default $MVCPAPER_DATA)")
    r.add_argument("--out", default=".", help="where tables/, figures/ and runs/ go (default: here)")
    r.add_argument("--device", default="auto")
    r.add_argument("--cache-dir", default=None, help="default $MVCPAPER_CACHE or ~/.cache/mvcpaper")
    r.add_argument("--datasets", nargs="+", default=None)
    r.add_argument("--backbones", nargs="+", default=None)
    r.add_argument("--notebooks", nargs="+", default=None, help="subset of notebooks to run, by name")
    r.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="the seeds of every method and figure (default: the preset's, e.g. 0 1 2)")
    r.add_argument("--quiet", action="store_true", help="do not stream the notebooks' progress bars")
    r.set_defaults(func=_cmd_reproduce)

    c = sub.add_parser("cluster", help="cluster every image under a folder (no labels needed): assignments.csv, "
                                       "summary.json, report.html")
    c.add_argument("image_dir", help="the folder of images (read recursively)")
    c.add_argument("--out", required=True, help="the output folder")
    c.add_argument("--k", default="auto", help="number of clusters, or 'auto' (estimated without labels; default)")
    c.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES),
                   help="views: registry names, timm:<model> or pixels (default: %(default)s)")
    c.add_argument("--method", default="auto", help="a clustering method, or 'auto' (chosen without labels; default)")
    c.add_argument("--device", default="auto")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--cache-dir", default=None, help="default $MVCPAPER_CACHE or ~/.cache/mvcpaper")
    c.add_argument("--weights", nargs="+", default=None, metavar="NAME=FILE", help="a weights file for a view")
    c.add_argument("--link-clusters", action="store_true",
                   help="also write OUT/clusters/cluster_<c>/ with symbolic links to the originals")
    c.add_argument("--strict", action="store_true", help="stop at an unreadable image instead of skipping it")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=_cmd_cluster)

    dc = sub.add_parser("deepcluster", help="train DeepCluster on a data set or an image folder; under torchrun "
                                            "it runs data parallel (README: More than one machine)")
    dc.add_argument("data", help="a data set name (coil100, umist, synthetic, ...) or a folder of images")
    dc.add_argument("--out", required=True, help="where history.csv, assignments.csv and checkpoint/ go")
    dc.add_argument("--data-root", default=None)
    dc.add_argument("--k", type=int, default=None,
                    help="pseudo-classes (default: 10x the classes, or 100; at most half the images)")
    defaults = DeepClusterSettings()
    for opt in ("arch", "input_size", "epochs", "fc_dim", "batch_size", "lr", "reassign"):
        value = getattr(defaults, opt)
        dc.add_argument("--" + opt.replace("_", "-"), type=type(value), default=value,
                        help="global batch size, split across processes" if opt == "batch_size" else None)
    dc.add_argument("--device", default="auto")
    dc.add_argument("--seed", type=int, default=0)
    dc.add_argument("--quiet", action="store_true", help="no progress bars")
    dc.set_defaults(func=_cmd_deepcluster)

    d = sub.add_parser("download", help="fetch data sets and/or backbone weights (needs the internet)")
    d.add_argument("names", nargs="*", help="data sets: coil100 umist voc2007")
    d.add_argument("--weights", nargs="+", default=None, metavar="BACKBONE")
    d.add_argument("--data-root", default=None)
    d.set_defaults(func=_cmd_download)

    i = sub.add_parser("info", help="what is found here: device, data sets, weights")
    i.add_argument("--data-root", default=None)
    i.add_argument("--cache-dir", default=None)
    i.set_defaults(func=_cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MvcpaperError as exc:
        print(f"mvcpaper: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mvcpaper: interrupted; finished work is cached, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
