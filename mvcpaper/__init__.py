"""mvcpaper: a reproducible companion to Guerin & Boots (2018), "Improving Image Clustering
With Multiple Pretrained CNN Feature Extractors", and to DeepCluster (Caron et al., 2018).

Sub-packages: :mod:`mvcpaper.data` (data sets), :mod:`mvcpaper.features` (pretrained
views), :mod:`mvcpaper.cluster` (methods), :mod:`mvcpaper.metrics`; then
:mod:`mvcpaper.experiments`, :mod:`mvcpaper.tables`, :mod:`mvcpaper.plots`,
:mod:`mvcpaper.pipeline` (what notebooks call) and :mod:`mvcpaper.cli`.
"""
__version__ = "0.1.0"

import torch

# Denormal floats are flushed to zero in this process's CPU threads from here on. Adam's first
# moment for a weight that gets no gradient (a ReLU unit that stays silent for a batch) decays
# into the denormal range. x86 arithmetic there is about 20x slower: after IDEC's pretraining
# on UMist, 46% of those moments were denormal and the fused Adam step took 11 ms, not 3.
# torch's OpenMP workers copy the mode when they start, so it is set at import, before any
# parallel op. Values below 1.2e-38 read as 0 (benchmarks/bench_denormals.py).
torch.set_flush_denormal(True)

from .folder import cluster_folder  # noqa: E402  (the one-call entry for your own images)

__all__ = ["cluster_folder"]
