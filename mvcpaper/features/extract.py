"""Batched feature extraction into an on-disk cache.

``extract_features(dataset, backbone)`` returns an ``(n_images, dim)`` float32 array
of one layer's (globally pooled) activations. The array is cached under
``<cache root>/features/<data set>/``, keyed by everything that changes it (data set
fingerprint, backbone, weights, layer, input size, precision), written atomically
and reused on the next call (memory-mapped).

Large sets are extracted in chunks of :data:`CHUNK_ROWS` images, each cached as soon as it
is complete: an interrupted extraction (Ctrl-C, a killed job) resumes from the chunks it
finished. ``engine="ray"`` spreads the images over the workers of a Ray cluster
(:func:`ray_batches`).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn
from torchvision import transforms as T

from .._utils import resolve_device, tqdm
from ..cache import (
    entry_path,
    load_array,
    read_entry,
    save_array,
    stable_hash,
    write_entry,
)
from ..errors import UnknownNameError
from .backbones import BackboneSpec, get_backbone
from .weights import build_model, resolve_weights

__all__ = ["extract_features", "feature_cache_path", "image_transform", "FeatureExtractor",
           "list_layers", "TorchImageDataset", "default_num_workers", "onnx_extractor", "onnxruntime_available",
           "global_pool", "ray_batches", "CHUNK_ROWS"]

PREPROCESS_VERSION = 1  # bump when the preprocessing changes, to invalidate caches

#: images per cached chunk of a running extraction (a few seconds to a minute of work on a CPU)
CHUNK_ROWS = 1024


def image_transform(spec: BackboneSpec, input_size: int | None = None):
    """Resize the whole image to the network's square input, to tensor, normalise.

    The whole image is kept (no centre crop): the object sets the paper uses are
    centred and fill most of the frame, and a crop would cut the object.
    """
    size = input_size or spec.input_size
    interp = T.InterpolationMode.BICUBIC if spec.interpolation == "bicubic" else T.InterpolationMode.BILINEAR
    return T.Compose([T.Resize((size, size), interpolation=interp, antialias=True), T.ToTensor(),
                      T.Normalize(spec.mean, spec.std)])


class TorchImageDataset:
    """A torch map-style view of an :class:`~mvcpaper.data.ImageDataset` (decode + transform):
    item ``j`` is ``(image, index)`` of the ``j``-th of ``indices`` (default: every image)."""

    def __init__(self, dataset, transform, indices=None):
        self.dataset, self.transform = dataset, transform
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = int(self.indices[j])
        return self.transform(self.dataset.load_image(i)), i


class _Stop(Exception):
    pass


def global_pool(x):
    """Average over the spatial axes (maps) or tokens; flatten anything else."""
    if x.ndim == 4:
        return x.float().mean(dim=(2, 3))
    if x.ndim == 3:  # tokens (B, N, C)
        return x.float().mean(dim=1)
    return x.float().flatten(1)


def list_layers(backbone: str | BackboneSpec) -> list[str]:
    """Names of the modules whose output can be extracted (besides ``pool`` and ``logits``)."""
    spec = get_backbone(backbone)
    model = timm.create_model(spec.timm_name, pretrained=False)
    return ["pool", "logits"] + [n for n, _ in model.named_modules() if n]


class FeatureExtractor(nn.Module):
    """Wrap a timm model so that calling it returns ``(batch, dim)`` features of ``layer``.

    ``pool``: the pooled pre-logits vector (``forward_head(..., pre_logits=True)``);
    ``logits``: the class scores; any other module name: that module's output, globally
    average-pooled (the forward pass stops right after it), or the whole activation map
    with ``pool=False``.
    """

    def __init__(self, model, layer: str = "pool", pool: bool = True):
        super().__init__()
        self.model = model
        self.layer = layer
        self.pool = pool
        self._captured = None
        if layer not in ("pool", "logits"):
            modules = dict(model.named_modules())
            if layer not in modules:
                raise UnknownNameError("layer", layer, ["pool", "logits", *(n for n in modules if n)],
                                       where="See mvcpaper.features.list_layers(backbone)")
            modules[layer].register_forward_hook(self._hook)
        self.eval()

    def _hook(self, _module, _inp, out):
        self._captured = out
        raise _Stop

    def forward(self, x):
        if self.layer == "pool":
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float().flatten(1)
        if self.layer == "logits":
            return self.model(x).float()
        try:
            self.model(x)
        except _Stop:
            pass
        out, self._captured = self._captured, None
        return global_pool(out) if self.pool else out.float()


def default_num_workers(n_items: int) -> int:
    """DataLoader workers: none for tiny sets, else half the cores (decoding is light)."""
    if n_items < 256:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _resolve_precision(precision: str, device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', not {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' is for CUDA; on the CPU use 'bf16' or 'fp32'")
    return precision


def _maybe_compile(module, compile, n_items: int):
    """``torch.compile`` the module when asked (or worth it); fall back to eager on failure."""
    if compile == "auto":
        compile = n_items >= 1500
    if not compile:
        return module
    compiled = torch.compile(module, dynamic=False)

    def run(x):
        nonlocal compiled
        if compiled is not module:
            try:
                return compiled(x)
            except Exception as exc:  # no C++ compiler, unsupported op, ...
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); extracting in eager mode",
                              stacklevel=2)
                compiled = module
        return module(x)

    return run


def onnxruntime_available() -> bool:
    """Whether the ONNX Runtime CPU engine can be used (``onnx`` and ``onnxruntime`` import)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


#: the extraction engines: ``auto`` picks ``onnxruntime`` for fp32 on the CPU when installed, else ``torch``
ENGINES = ("auto", "torch", "onnxruntime", "ray")


def _resolve_engine(engine: str, device, precision: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")
    if engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ImportError("engine='ray' needs Ray Data: pip install 'mvcpaper[distributed]' "
                              "(or use engine='auto')")
        return engine
    if engine == "auto":
        return "onnxruntime" if device.type == "cpu" and precision == "fp32" and onnxruntime_available() else "torch"
    if engine == "onnxruntime":
        if device.type != "cpu" or precision != "fp32":
            raise ValueError("engine='onnxruntime' runs fp32 on the CPU; use engine='torch' for "
                             f"device={device.type!r}, precision={precision!r}")
        if not onnxruntime_available():
            raise ImportError("engine='onnxruntime' needs the packages onnx and onnxruntime: "
                              "pip install onnx onnxruntime (or use engine='torch')")
    return engine


def onnx_extractor(extractor: nn.Module, size: int, key: dict, cache_dir=None):
    """The extractor as an ONNX Runtime session on the CPU: ``run(x: ndarray) -> ndarray``.

    The graph is exported once (TorchScript-based exporter, batch axis dynamic) and cached
    under ``<cache root>/onnx``, keyed by ``key`` (backbone, weights, layer, size) and the
    torch version. ONNX Runtime's fused CPU kernels ran EfficientNet-Lite 2x faster than
    compiled torch on the reference CPU, with features equal to 1e-5
    (``benchmarks/bench_extraction.py``).
    """
    import onnxruntime as ort  # heavy (native libraries), and only the CPU engine needs it

    full_key = {**key, "torch": torch.__version__, "size": size, "exporter": 1}
    path = entry_path("onnx", f"{key.get('backbone', 'model')}__{stable_hash(full_key, 12)}.onnx",
                      cache_dir=cache_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3

    def open_session(p):
        return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])

    got = read_entry(path, open_session)  # a corrupt or modified file is deleted here, then rebuilt
    if got is None:
        dummy = torch.zeros(2, 3, size, size)

        def export(tmp):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(extractor.eval(), (dummy,), str(tmp), dynamo=False, input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})

        try:
            write_entry(path, export, {"key": full_key})
        except Exception as exc:  # an op the exporter does not know, ...
            raise RuntimeError(f"ONNX export failed ({type(exc).__name__}: {exc})") from exc
        got = read_entry(path, open_session)
        if got is None:
            raise RuntimeError(f"ONNX Runtime cannot open the graph it just exported ({path})")
    session = got[0]
    return lambda x: session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def feature_cache_path(dataset, backbone: str | BackboneSpec, layer: str | None = None,
                       weights_id: str = "", input_size: int | None = None, precision: str = "fp32",
                       cache_dir=None) -> Path:
    """Where the features of this (data set, backbone, weights, layer, size, precision) live:
    ``<cache root>/features/<data set>/<backbone>__<layer>__<size>px__<precision>__<key>.npy``,
    the key covering the data set's content fingerprint and everything else that changes them."""
    spec = get_backbone(backbone)
    layer = layer or spec.default_layer
    size = input_size or spec.input_size
    key = {"dataset": dataset.name, "fingerprint": dataset.fingerprint(), "backbone": spec.name,
           "timm": spec.timm_name, "weights": weights_id, "layer": layer, "size": size,
           "precision": precision, "preprocess": PREPROCESS_VERSION}
    fname = f"{spec.name}__{layer.replace('.', '-')}__{size}px__{precision}__{stable_hash(key, 12)}.npy"
    return entry_path("features", dataset.name, fname, cache_dir=cache_dir)


def extract_features(dataset, backbone: str | BackboneSpec, layer: str | None = None, *,
                     weights: str | os.PathLike | None = "imagenet", device: str = "auto",
                     batch_size: int | None = None, num_workers: int | None = None, precision: str = "auto",
                     input_size: int | None = None, compile: str | bool = "auto", cache_dir=None,
                     use_cache: bool = True, download: bool = False, progress: bool = True,
                     pool: bool = True, engine: str = "auto", chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Extract one layer's features of every image of ``dataset`` with ``backbone``.

    Parameters
    ----------
    dataset : ImageDataset
        From :func:`mvcpaper.data.load_dataset`.
    backbone : str
        A name of :data:`mvcpaper.features.BACKBONES`.
    layer : str, optional
        ``"pool"`` (default), ``"logits"`` or a module name (:func:`list_layers`).
    weights : str or path
        ``"imagenet"`` (resolved offline first, see :mod:`mvcpaper.features.weights`),
        a file path, or ``"random"``.
    device : str
        ``"auto"`` picks CUDA when present.
    batch_size, num_workers : int, optional
        Defaults: 8 on CPU (small batches keep activations in cache: about 2x the
        throughput of batch 64 on the reference CPU, see ``benchmarks/bench_extraction.py``),
        256 on CUDA; workers from :func:`default_num_workers`.
    precision : str
        ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        On this project's reference CPU (2 AMD EPYC cores that expose AVX2 but neither AVX-512-BF16
        nor AMX to the VM, so bf16 is emulated), bf16 autocast was ~10x *slower*
        than fp32 for EfficientNet-Lite (``benchmarks/bench_extraction.py``), hence fp32.
    compile : "auto" or bool
        ``torch.compile`` the extractor (engine ``"torch"``). ``"auto"`` compiles for 1500
        images or more, where the ~30 s compilation pays for itself (1.5x faster on the CPU
        here); a failed compilation falls back to eager mode with a warning.
    engine : str
        ``"auto"`` (ONNX Runtime for fp32 on the CPU when ``onnx`` and ``onnxruntime``
        are installed, else torch), ``"torch"`` or ``"onnxruntime"``
        (:func:`onnx_extractor`: about 2x faster than compiled torch on the CPU here; a
        failed export falls back to torch with a warning), or ``"ray"`` (:func:`ray_batches`:
        the images spread over the actors of a Ray cluster; needs the ``distributed``
        extra). All give the same features to about 1e-5, so the cache is shared.
    cache_dir : path, optional
        Cache root (default ``$MVCPAPER_CACHE`` or ``~/.cache/mvcpaper``).
    use_cache : bool
        Read and write the feature cache.
    chunk_rows : int
        Images per chunk cached while the extraction runs (see the module docstring).
    pool : bool
        For a module ``layer``: average-pool its output (default) or keep the whole map
        (``(n_images, C, H, W)``; DMVC fine-tunes the layers after it).

    Returns
    -------
    ndarray of float32, shape (n_images, dim), or (n_images, C, H, W) with ``pool=False``;
    read-only and memory-mapped when it comes from the cache.
    """
    spec = get_backbone(backbone)
    layer = layer or spec.default_layer
    dev = resolve_device(device)
    prec = _resolve_precision(precision, dev)
    size = input_size or spec.input_size
    # resolve weights first: a missing file fails here, before any work
    src = resolve_weights(spec, weights, download=download)
    if not pool and layer in ("pool", "logits"):
        raise ValueError(f"pool=False needs a module name as layer (got {layer!r}); see list_layers()")
    engine = _resolve_engine(engine, dev, prec)
    if spec.pixels and engine != "ray":
        engine = "torch"
    path = feature_cache_path(dataset, spec, layer if pool else f"{layer}.map", src.weights_id, size, prec,
                              cache_dir)
    if use_cache:
        feats = load_array(path, rows=len(dataset), mmap=True)
        if feats is not None:
            return feats

    chunks = _Chunks(path, len(dataset), chunk_rows if use_cache else len(dataset))
    out = chunks.load()
    todo = chunks.missing_rows()
    meta = {"dataset": dataset.name, "fingerprint": dataset.fingerprint(), "n_images": len(dataset),
            "backbone": spec.name, "timm": spec.timm_name, "weights": src.weights_id, "weights_kind": src.kind,
            "layer": layer, "input_size": size, "precision": prec, "device": str(dev), "engine": engine}
    t0 = time.perf_counter()
    if len(todo):
        bs = min(batch_size or (256 if dev.type == "cuda" else 8), len(todo))
        if engine == "ray":
            batches = ray_batches(dataset, spec, weights, layer, size, pool, prec, todo, bs, num_workers,
                                  download=download)
        else:
            run, engine, static_shape = _local_runner(spec, weights, layer, size, pool, dev, engine, compile,
                                                      len(todo), cache_dir, download)
            nw = default_num_workers(len(todo)) if num_workers is None else num_workers
            batches = _local_batches(run, TorchImageDataset(dataset, image_transform(spec, size), todo), bs, nw,
                                     dev, prec, pad=static_shape)
        with tqdm(total=len(dataset), initial=len(dataset) - len(todo), desc=f"{spec.name} on {dataset.name}",
                  unit="img", disable=not progress) as bar:
            for idx, f in batches:
                if out is None:
                    out = np.empty((len(dataset), *f.shape[1:]), dtype=np.float32)
                out[idx] = f
                if use_cache:
                    chunks.record(idx, out, meta)
                bar.update(len(idx))
    seconds = time.perf_counter() - t0
    if not np.isfinite(out).all():
        raise FloatingPointError(f"{spec.name} produced non-finite features on {dataset.name}; "
                                 "try precision='fp32'")
    if use_cache:
        meta.update(engine=engine, dim=int(out.shape[1]), seconds=round(seconds, 2))
        save_array(path, out, meta)
        chunks.remove()
    return out


class _Chunks:
    """The chunks of ``chunk_rows`` images of one extraction, each cached in
    ``<features file>.chunks/`` as soon as its last row is extracted (in any order), so an
    interrupted extraction resumes from them; removed once the whole array is saved. A set
    of one chunk writes none."""

    def __init__(self, path: Path, n_rows: int, chunk_rows: int):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive number of images, not {chunk_rows}")
        self.dir = path.with_name(path.stem + ".chunks")
        self.chunk_rows = chunk_rows
        self.bounds = [(a, min(a + chunk_rows, n_rows)) for a in range(0, n_rows, chunk_rows)]
        self.left = np.array([b - a for a, b in self.bounds])  # rows still to extract, per chunk
        self.enabled = len(self.bounds) > 1

    def _file(self, c: int) -> Path:
        a, b = self.bounds[c]
        return self.dir / f"rows_{a:09d}-{b:09d}.npy"

    def load(self) -> np.ndarray | None:
        """The rows of the chunks cached so far in a new ``(n_rows, ...)`` array (``None``
        when there are none)."""
        out = None
        for c, (a, b) in enumerate(self.bounds if self.enabled else ()):
            part = load_array(self._file(c), rows=b - a)
            if part is not None:
                if out is None:
                    out = np.empty((self.bounds[-1][1], *part.shape[1:]), dtype=np.float32)
                out[a:b], self.left[c] = part, 0
        return out

    def missing_rows(self) -> np.ndarray:
        return np.concatenate([np.arange(a, b) for (a, b), left in zip(self.bounds, self.left) if left]
                              or [np.empty(0, dtype=np.int64)])

    def record(self, idx: np.ndarray, out: np.ndarray, meta: dict) -> None:
        """Rows ``idx`` of ``out`` are extracted: cache every chunk this completes."""
        if not self.enabled:
            return
        ids, counts = np.unique(np.asarray(idx) // self.chunk_rows, return_counts=True)
        for c, k in zip(ids, counts):
            self.left[c] -= k
            if self.left[c] == 0:
                a, b = self.bounds[c]
                self.dir.mkdir(parents=True, exist_ok=True)
                save_array(self._file(c), out[a:b], {**meta, "rows": [a, b]})

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _local_runner(spec, weights, layer, size, pool, dev, engine, compile, n_items, cache_dir, download):
    """``(run, engine, static_shape)``: the function from a batch tensor to features on this
    process, the engine it uses, and whether it needs every batch of one shape (a compiled graph)."""
    if spec.pixels:  # the resized image is the feature vector
        return nn.Flatten(), "torch", False
    model, src = build_model(spec, weights, download=download)
    extractor = FeatureExtractor(model, layer, pool=pool).to(dev).to(memory_format=torch.channels_last)
    if engine == "onnxruntime":
        try:
            ort_run = onnx_extractor(extractor, size, cache_dir=cache_dir,
                                     key={"backbone": spec.name, "weights": src.weights_id, "layer": layer,
                                          "pool": pool})
            return (lambda x: torch.from_numpy(ort_run(x.numpy()))), engine, False
        except Exception as exc:  # the export failed, or ONNX Runtime cannot run the graph
            warnings.warn(f"{spec.name}: {exc}; extracting with torch", stacklevel=3)
    run = _maybe_compile(extractor, compile, n_items)
    return run, "torch", run is not extractor


def _local_batches(run, images: TorchImageDataset, batch_size: int, num_workers: int, dev, precision: str,
                   pad: bool):
    """``(indices, features)`` per batch of ``images``, decoded by a DataLoader, run on ``dev``;
    ``pad``: fill the last batch up to ``batch_size`` (one static shape for a compiled graph)."""
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=False)
    for x, idx in loader:
        n = x.shape[0]
        if pad and n < batch_size:
            x = torch.cat([x, x.new_zeros((batch_size - n, *x.shape[1:]))])
        yield idx.numpy(), _run_batch(run, x, dev, precision)[:n]


def _run_batch(run, x: torch.Tensor, dev, precision: str) -> np.ndarray:
    """``run`` on the image batch ``x`` moved to ``dev``, under autocast for bf16/fp16: float32 features."""
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        return run(x).float().cpu().numpy()


class _RayExtractor:
    """A Ray Data actor: builds the extractor once, then maps ``{"index"}`` batches to
    ``{"index", "features"}`` (images decoded on the worker, so only indices and features travel)."""

    def __init__(self, dataset, spec, weights, layer, size, pool, precision, download):
        self.dataset, self.transform, self.precision = dataset, image_transform(spec, size), precision
        self.device = resolve_device("auto")
        self.run, _, _ = _local_runner(spec, weights, layer, size, pool, self.device, "torch", False, 0, None,
                                       download)

    def __call__(self, batch: dict) -> dict:
        x = torch.stack([self.transform(self.dataset.load_image(int(i))) for i in batch["index"]])
        return {"index": batch["index"], "features": _run_batch(self.run, x, self.device, self.precision)}


def ray_batches(dataset, spec: BackboneSpec, weights, layer: str, size: int, pool: bool, precision: str,
                indices: np.ndarray, batch_size: int, num_workers: int | None = None, download: bool = False):
    """``(indices, features)`` per batch, computed by a pool of Ray Data actors.

    Joins the Ray cluster of ``ray.init`` (``RAY_ADDRESS``, or a local instance when none is
    running). Actors: one per GPU when the cluster has GPUs, else ``num_workers`` (default: one
    per CPU). Every worker must read the image files and the weights at the same paths as
    this process (a shared file system), and builds the same model, so the features equal the
    local engine's (same cache entry).
    """
    import ray  # optional (the `distributed` extra)

    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        actors, resources = gpus, {"num_gpus": 1}
    else:
        actors, resources = num_workers or max(1, int(ray.cluster_resources().get("CPU", 1))), {"num_cpus": 1}
    # blocks of a few batches each, so that every actor gets work
    blocks = np.array_split(np.asarray(indices, dtype=np.int64), max(actors, -(-len(indices) // (4 * batch_size))))
    items = ray.data.from_numpy(blocks).rename_columns({"data": "index"})
    features = items.map_batches(
        _RayExtractor, fn_constructor_args=(dataset, spec, weights, layer, size, pool, precision, download),
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), **resources)
    for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
        yield batch["index"], batch["features"]
