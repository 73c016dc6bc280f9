"""Clustering methods, one registry, one estimator interface (see DESIGN.md).

>>> from mvcpaper.cluster import make_method
>>> km = make_method("kmeans", n_clusters=20, seed=0)
>>> labels = km.fit_predict(features)          # doctest: +SKIP
"""
from __future__ import annotations

import inspect

from ..errors import UnknownNameError
from ._base import ClusterBase, FewerClustersWarning, check_n_clusters, check_views
from .baselines import Agglomerative, KMeans
from .idec import DEC, IDEC
from .jule import JULE
from .kmeans import TorchKMeans
from .multiview import DMVC, DMVCIDEC, DMVCJULE, MVEC, co_association_consensus

__all__ = ["METHODS", "make_method", "list_methods", "ClusterBase", "FewerClustersWarning", "check_views", "check_n_clusters",
           "KMeans", "Agglomerative", "TorchKMeans", "IDEC", "DEC", "JULE", "DMVCJULE", "DMVCIDEC", "DMVC", "MVEC",
           "co_association_consensus"]

#: name -> (class, short label used in tables)
METHODS: dict[str, tuple[type, str]] = {
    "kmeans": (KMeans, "KM"),
    "agglomerative": (Agglomerative, "AC"),
    "torch_kmeans": (TorchKMeans, "KM (torch)"),
    "idec": (IDEC, "IDEC"),
    "dec": (DEC, "DEC"),
    "jule": (JULE, "JULE"),
    "dmvc_jule": (DMVCJULE, "DMVC-fix (JULE)"),
    "dmvc_idec": (DMVCIDEC, "DMVC-fix (IDEC)"),
    "mvec": (MVEC, "MVEC (co-association)"),
    "dmvc": (DMVC, "DMVC"),
}


def list_methods() -> list[str]:
    return sorted(METHODS)


def make_method(name: str, n_clusters: int, seed: int = 0, device: str = "auto", progress: bool | None = None,
                **params) -> ClusterBase:
    """Build a registered method with its seed (and device and progress bars, where it has them)."""
    try:
        cls, _ = METHODS[name]
    except KeyError:
        raise UnknownNameError("method", name, METHODS) from None
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {"n_clusters": n_clusters, "random_state": seed, **params}
    if "device" in accepted:
        kwargs["device"] = device
    if progress is not None and "progress" in accepted:
        kwargs["progress"] = progress
    unknown = set(kwargs) - set(accepted)
    if unknown:
        raise TypeError(f"method {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(set(accepted) - {'self'})}")
    return cls(**kwargs)


def method_label(name: str) -> str:
    return METHODS[name][1] if name in METHODS else name
