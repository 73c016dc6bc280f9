"""Run the notebooks in order through papermill: executed copies + tables + figures."""
from __future__ import annotations

import os
import sys
import time
from unittest import mock
from datetime import datetime
from pathlib import Path

__all__ = ["NOTEBOOKS", "INTERACTIVE", "ALL_NOTEBOOKS", "notebooks_dir", "kernel_name", "reproduce"]

#: the notebooks `reproduce` runs, in order (later issues append theirs)
NOTEBOOKS = ["01_datasets", "02_features", "03_baselines", "04_multiview", "05_representations", "06_deepcluster"]
#: notebooks for a live kernel (widgets): not run by default, but ``--notebooks`` may name them
INTERACTIVE = ["07_explore"]
ALL_NOTEBOOKS = NOTEBOOKS + INTERACTIVE


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (the package is used from a checkout)."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    if not here.is_dir():
        raise FileNotFoundError(f"notebooks folder not found at {here}; run from a clone of the repository "
                                "(pip install -e .) or pass notebooks_path=...")
    return here


def kernel_name() -> str:
    """``mvcpaper`` when that kernel is registered (make setup does it), else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "mvcpaper" if "mvcpaper" in KernelSpecManager().find_kernel_specs() else "python3"


def reproduce(preset: str = "auto", data_root=None, out_dir=".", device: str = "auto", cache_dir=None,
              datasets=None, backbones=None, notebooks=None, notebooks_path=None, kernel: str | None = None,
              seed: int = 0, log=print, stream: bool = False) -> Path:
    """Execute the notebooks with papermill; return the run folder.

    Executed copies go to ``<out_dir>/runs/<timestamp>-<preset>/``, tables to
    ``<out_dir>/tables/`` and figures to ``<out_dir>/figures/``. With ``stream``, the
    kernels' stderr (progress bars, warnings) is shown on this process' stderr.
    """
    import papermill as pm

    from .presets import resolve

    unknown = [n for n in (notebooks or []) if n not in ALL_NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; the notebooks are {ALL_NOTEBOOKS}")
    cfg = resolve(preset, datasets=datasets, backbones=backbones, data_root=data_root, device=device,
                  cache_dir=cache_dir)  # fails fast on a bad name, missing data or missing weights
    log(cfg.describe())
    out = Path(out_dir).resolve()
    run_dir = out / "runs" / f"{datetime.now():%Y%m%d-%H%M%S}-{preset}"
    run_dir.mkdir(parents=True, exist_ok=True)
    src = Path(notebooks_path) if notebooks_path else notebooks_dir()
    params = {"preset": preset, "datasets": list(datasets) if datasets else None,
              "backbones": list(backbones) if backbones else None,
              "data_root": str(Path(cfg.data_root).resolve()) if cfg.data_root else None,
              "device": device, "seed": seed, "out_dir": str(out),
              "cache_dir": str(Path(cache_dir).resolve()) if cache_dir else None}
    kern = kernel or kernel_name()
    # the kernels draw text progress bars (streamed to stderr), not widgets
    with mock.patch.dict(os.environ, {"MVCPAPER_TEXT_PROGRESS": "1"}):
        for name in notebooks or NOTEBOOKS:
            t0 = time.perf_counter()
            log(f"[{name}] running ...")
            pm.execute_notebook(str(src / f"{name}.ipynb"), str(run_dir / f"{name}.ipynb"), parameters=params,
                                kernel_name=kern, cwd=str(out), progress_bar=False,
                                stderr_file=sys.stderr if stream else None)
            log(f"[{name}] done in {time.perf_counter() - t0:.0f} s -> {run_dir / (name + '.ipynb')}")
    log(f"tables in {out / 'tables'}, figures in {out / 'figures'}, executed notebooks in {run_dir}")
    return run_dir
