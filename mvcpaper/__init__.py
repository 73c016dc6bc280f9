"""mvcpaper: a reproducible companion to Guerin & Boots (2018), "Improving Image Clustering
With Multiple Pretrained CNN Feature Extractors", and to DeepCluster (Caron et al., 2018).

Sub-packages: :mod:`mvcpaper.data` (data sets), :mod:`mvcpaper.features` (pretrained
views), :mod:`mvcpaper.cluster` (methods), :mod:`mvcpaper.metrics`; then
:mod:`mvcpaper.experiments`, :mod:`mvcpaper.tables`, :mod:`mvcpaper.plots`,
:mod:`mvcpaper.pipeline` (what notebooks call) and :mod:`mvcpaper.cli`.
"""
__version__ = "0.1.0"

from .folder import cluster_folder  # noqa: E402  (the one-call entry for your own images)

__all__ = ["cluster_folder"]
