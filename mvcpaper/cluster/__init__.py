"""Clustering methods, one registry, one estimator interface (see DESIGN.md).

>>> from mvcpaper.cluster import make_method
>>> km = make_method("kmeans", n_clusters=20, seed=0)
>>> labels = km.fit_predict(features)          # doctest: +SKIP
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..errors import UnknownNameError
from ._base import ClusterBase, FewerClustersWarning, check_n_clusters, check_views
from .baselines import Agglomerative, KMeans
from .ensemble import MVECCoassoc, MVECTao, co_association_consensus
from .idec import DEC, IDEC
from .jule import JULE
from .kmeans import TorchKMeans
from .multiview import DMVC, DMVCIDEC, DMVCJULE

__all__ = ["METHODS", "MethodSpec", "get_method", "make_method", "list_methods", "method_label", "ClusterBase",
           "FewerClustersWarning", "check_views", "check_n_clusters",
           "KMeans", "Agglomerative", "TorchKMeans", "IDEC", "DEC", "JULE", "DMVCJULE", "DMVCIDEC", "DMVC", "MVECTao",
           "MVECCoassoc", "co_association_consensus"]

@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: the estimator class and how grids, tables and the explorer treat it.

    ``multiview``: takes the views separately (a list); any other method concatenates the
    views it is given. ``deterministic``: the labels do not depend on the seed, so a grid
    runs it once (recorded with the first seed).
    """

    cls: type
    label: str
    multiview: bool = False
    deterministic: bool = False


METHODS: dict[str, MethodSpec] = {
    "kmeans": MethodSpec(KMeans, "KM"),
    "agglomerative": MethodSpec(Agglomerative, "AC", deterministic=True),
    "torch_kmeans": MethodSpec(TorchKMeans, "KM (torch)"),
    "idec": MethodSpec(IDEC, "IDEC"),
    "dec": MethodSpec(DEC, "DEC"),
    "jule": MethodSpec(JULE, "JULE"),
    "dmvc_jule": MethodSpec(DMVCJULE, "DMVC-fix (JULE)", multiview=True),
    "dmvc_idec": MethodSpec(DMVCIDEC, "DMVC-fix (IDEC)", multiview=True),
    "mvec_tao": MethodSpec(MVECTao, "MVEC", multiview=True),
    "mvec_coassoc": MethodSpec(MVECCoassoc, "MVEC (co-association)", multiview=True),
    "dmvc": MethodSpec(DMVC, "DMVC", multiview=True),
}


def get_method(name: str) -> MethodSpec:
    """A registry entry by name; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("method", name, METHODS) from None


def list_methods() -> list[str]:
    return sorted(METHODS)


def make_method(name: str, n_clusters: int, seed: int = 0, device: str = "auto", progress: bool | None = None,
                **params) -> ClusterBase:
    """Build a registered method with its seed, device and progress bars (``None``: its default)."""
    cls = get_method(name).cls
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(params) - accepted
    if unknown:
        raise TypeError(f"method {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(accepted)}")
    kwargs = {"n_clusters": n_clusters, "random_state": seed, "device": device, **params}
    if progress is not None:
        kwargs["progress"] = progress
    return cls(**kwargs)


def method_label(name: str) -> str:
    """The short label tables use (the name itself when it is not a registered method)."""
    return METHODS[name].label if name in METHODS else name
