"""DeepCluster's images: decoded once to a uint8 tensor, then cropped and flipped in batches."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..._utils import tqdm

__all__ = ["load_image_tensor", "random_resized_crop", "random_crop_boxes", "crop_resize"]


def load_image_tensor(dataset, size: int, progress: bool = True) -> torch.Tensor:
    """Every image of ``dataset`` resized to ``size`` x ``size``: a uint8 tensor (n, 3, size, size)."""
    out = torch.empty((len(dataset), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(dataset)), desc=f"decode {dataset.name} at {size}px", unit="img", disable=not progress):
        img = dataset.load_image(i).resize((size, size), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def random_crop_boxes(n: int, generator: torch.Generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                      flip: bool = True) -> torch.Tensor:
    """``n`` random resized crops (and horizontal flips) as affine maps ``(n, 2, 3)`` for
    :func:`crop_resize`: each covers ``scale`` of the image's area with aspect ratio in
    ``ratio`` (log-uniform), inside the image: torchvision's ``RandomResizedCrop``."""
    u = torch.rand((n, 4), generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop width and height as fractions of the image
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)  # centre in [-1, 1] coordinates, crop inside the image
    cy = (2 * u[:, 3] - 1) * (1 - h)
    sx = w.clone()
    if flip:
        sx = torch.where(torch.rand(n, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta


def crop_resize(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Every image of the float batch ``x`` cropped by its box and resized back, as one ``grid_sample``."""
    grid = F.affine_grid(boxes.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                        flip: bool = True) -> torch.Tensor:
    """A random resized crop (and flip) per image of a float batch, drawn independently per
    image but applied in one batched operation on the batch's device."""
    return crop_resize(x, random_crop_boxes(x.shape[0], generator, scale, ratio, flip))
