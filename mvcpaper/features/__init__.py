"""Pretrained feature extractors: registry, weight resolution, batched cached extraction."""
from .backbones import (
    BACKBONES,
    OFFLINE_BACKBONES,
    PAPER_BACKBONES,
    BackboneSpec,
    get_backbone,
    list_backbones,
)
from .extract import (
    FeatureExtractor,
    default_num_workers,
    extract_features,
    feature_cache_path,
    global_pool,
    image_transform,
    list_layers,
)
from .weights import (
    WeightsFileError,
    WeightsNotFoundError,
    WeightsSource,
    build_model,
    convert_efficientnet_lite,
    resolve_weights,
)

__all__ = [
    "BACKBONES", "PAPER_BACKBONES", "OFFLINE_BACKBONES", "BackboneSpec", "get_backbone", "list_backbones",
    "FeatureExtractor", "extract_features", "feature_cache_path", "global_pool", "image_transform",
    "list_layers", "default_num_workers", "WeightsNotFoundError", "WeightsFileError", "WeightsSource", "build_model",
    "convert_efficientnet_lite", "resolve_weights", "available_backbones",
]


def available_backbones(names=None) -> list[str]:
    """The backbones among ``names`` (default: all) whose ImageNet weights are found offline."""
    out = []
    for n in names or list_backbones():
        try:
            resolve_weights(n)
        except WeightsNotFoundError:
            continue
        out.append(n)
    return out
