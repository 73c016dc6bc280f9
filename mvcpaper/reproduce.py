"""Run the notebooks in order through papermill: executed copies + tables + figures."""
from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from unittest import mock

from . import errors
from .errors import MvcpaperError, UnknownNameError
from .presets import resolve

__all__ = ["NOTEBOOKS", "INTERACTIVE", "ALL_NOTEBOOKS", "STANDALONE", "notebooks_dir", "kernel_name", "reproduce"]

#: the notebooks `reproduce` runs, in order (later issues append theirs)
NOTEBOOKS = ["01_datasets", "02_features", "03_baselines", "04_multiview", "05_representations", "06_deepcluster"]
#: notebooks for a live kernel (widgets): not run by default, but ``--notebooks`` may name them
INTERACTIVE = ["07_explore"]
ALL_NOTEBOOKS = NOTEBOOKS + INTERACTIVE
#: notebooks with parameters of their own (not a preset's), run by papermill directly
STANDALONE = ["08_your_images"]


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (the package is used from a checkout)."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    if not here.is_dir():
        raise MvcpaperError(f"notebooks folder not found at {here}; run from a clone of the repository "
                            "(pip install -e .) or pass notebooks_path=...")
    return here


def kernel_name() -> str:
    """``mvcpaper`` when that kernel is registered (make setup does it), else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "mvcpaper" if "mvcpaper" in KernelSpecManager().find_kernel_specs() else "python3"


def _user_error_names() -> set[str]:
    """Class names of every user-fixable error: a notebook stopped by one of them is reported in
    one line, like the same error raised here."""
    names, todo = set(), [errors.MvcpaperError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def _kernel_manager(log_path: Path):
    """A kernel manager class whose kernels write their own stderr (ipykernel's log lines, and
    its complaints when Ctrl-C cuts it off) to ``log_path`` instead of the terminal; the
    notebooks' outputs and progress bars still come through papermill."""
    from jupyter_client.manager import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            with open(log_path, "ab") as log:  # the kernel process keeps its own copy of the handle
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
                return await super().start_kernel(**kw)

    return KernelManager


def _print_now(line: str):
    print(line, flush=True)


def reproduce(preset: str = "auto", data_root=None, out_dir=".", device: str = "auto", cache_dir=None,
              datasets=None, backbones=None, notebooks=None, notebooks_path=None, kernel: str | None = None,
              seeds=None, log=None, stream: bool = False) -> Path:
    """Execute the notebooks with papermill; return the run folder.

    Every data set, backbone and weights file is checked before the first notebook starts.
    Executed copies (and the kernels' own log, ``kernels.log``) go to
    ``<out_dir>/runs/<timestamp>-<preset>/``, tables to
    ``<out_dir>/tables/`` and figures to ``<out_dir>/figures/``. With ``stream``, the
    kernels' stderr (progress bars, warnings) is shown on this process' stderr. A notebook
    stopped by a user-fixable error raises :class:`~mvcpaper.errors.MvcpaperError` naming
    the notebook, the error and the executed copy that holds the traceback. ``log`` takes
    each progress line (default: printed and flushed, so a pipe shows it at once).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    unknown = [n for n in (notebooks or []) if n not in ALL_NOTEBOOKS]
    if unknown:
        raise UnknownNameError("notebook", unknown[0], ALL_NOTEBOOKS)
    cfg = resolve(preset, datasets=datasets, backbones=backbones, seeds=seeds, data_root=data_root, device=device,
                  cache_dir=cache_dir)  # fails fast on a bad name, missing data or missing weights
    for name in cfg.datasets:
        cfg.load(name)  # reads every data set's layout now, not in the middle of a notebook
    log = log or _print_now
    log(cfg.describe())
    out = Path(out_dir).resolve()
    run_dir = out / "runs" / f"{datetime.now():%Y%m%d-%H%M%S}-{preset}"
    run_dir.mkdir(parents=True, exist_ok=True)
    src = Path(notebooks_path) if notebooks_path else notebooks_dir()
    params = {"preset": preset, "datasets": list(datasets) if datasets else None,
              "backbones": list(backbones) if backbones else None,
              "data_root": str(Path(cfg.data_root).resolve()) if cfg.data_root else None,
              "device": device, "seeds": list(seeds) if seeds else None, "out_dir": str(out),
              "cache_dir": str(Path(cache_dir).resolve()) if cache_dir else None}
    kern = kernel or kernel_name()
    manager = _kernel_manager(run_dir / "kernels.log")
    # papermill's and nbclient's log lines go to the run's log, next to the kernels' own
    log_handler = logging.FileHandler(run_dir / "kernels.log")
    pm_log = logging.getLogger("papermill")
    # the kernels draw text progress bars (streamed to stderr), not widgets
    with mock.patch.dict(os.environ, {"MVCPAPER_TEXT_PROGRESS": "1"}), \
            mock.patch.object(pm_log, "handlers", [log_handler]), mock.patch.object(pm_log, "propagate", False):
        for name in notebooks or NOTEBOOKS:
            t0 = time.perf_counter()
            executed = run_dir / f"{name}.ipynb"
            log(f"[{name}] running ...")
            try:
                pm.execute_notebook(str(src / f"{name}.ipynb"), str(executed), parameters=params,
                                    kernel_name=kern, cwd=str(out), progress_bar=False,
                                    stderr_file=sys.stderr if stream else None, kernel_manager_class=manager)
            except KeyboardInterrupt:
                # nbclient leaves a task waiting on the kernel it just shut down; asyncio would
                # report it at exit: the interrupt is the whole story
                logging.getLogger("asyncio").disabled = True
                raise
            except PapermillExecutionError as exc:
                if exc.ename == "KeyboardInterrupt":
                    raise KeyboardInterrupt from None
                if exc.ename in _user_error_names():
                    raise MvcpaperError(f"notebook {name} stopped: {exc.ename}: {exc.evalue} (the executed "
                                        f"notebook, with the traceback: {executed})") from None
                raise
            log(f"[{name}] done in {time.perf_counter() - t0:.0f} s -> {executed}")
    log(f"tables in {out / 'tables'}, figures in {out / 'figures'}, executed notebooks in {run_dir}")
    return run_dir
