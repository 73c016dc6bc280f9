"""DeepCluster's networks: AlexNet or VGG16 with batch norm, optional Sobel input, a top
layer replaced every epoch."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnknownNameError

__all__ = ["ARCHITECTURES", "IMAGENET_MEAN", "IMAGENET_STD", "SobelFilter", "DeepClusterNet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: conv layers: (out channels, kernel, stride, padding) or "M" (3x3/2 max-pool for AlexNet, 2x2/2 for VGG)
ARCHITECTURES = {
    "alexnet": [(96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "M"],
    "vgg16": [(64, 3, 1, 1), (64, 3, 1, 1), "M", (128, 3, 1, 1), (128, 3, 1, 1), "M",
              (256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1),
              (512, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "M"],
}


class SobelFilter(nn.Module):
    """Grey image (channel mean), then the two fixed 3x3 Sobel filters: (n, 3, H, W) -> (n, 2, H, W)."""

    def __init__(self):
        super().__init__()
        grey = torch.full((1, 3, 1, 1), 1.0 / 3.0)
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("grey", grey)
        self.register_buffer("sobel", torch.stack([gx, gx.T])[:, None])

    def forward(self, x):
        return F.conv2d(F.conv2d(x, self.grey), self.sobel, padding=1)


class DeepClusterNet(nn.Module):
    """AlexNet or VGG16, both with batch norm, sized for ``input_size`` px inputs.

    ``features`` (conv blocks) -> flatten -> ``classifier`` (two fully-connected layers
    of ``fc_dim`` with dropout; the last ReLU is applied in :meth:`forward`, so
    :meth:`embed` returns the pre-activation output DeepCluster clusters) ->
    ``top_layer`` (one output per pseudo-class, replaced every epoch).
    """

    def __init__(self, arch: str = "alexnet", input_size: int = 64, sobel: bool = True, fc_dim: int = 4096,
                 n_outputs: int = 10):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise UnknownNameError("architecture", arch, ARCHITECTURES)
        self.arch, self.input_size = arch, input_size
        self.sobel = SobelFilter() if sobel else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        layers, c = [], 2 if sobel else 3
        pool = nn.MaxPool2d(3, 2) if arch == "alexnet" else nn.MaxPool2d(2, 2)
        for spec in ARCHITECTURES[arch]:
            if spec == "M":
                layers.append(pool)
            else:
                out, k, s, p = spec
                layers += [nn.Conv2d(c, out, k, s, p), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        try:
            with torch.no_grad():
                shape = self.features.eval()(torch.zeros(1, 2 if sobel else 3, input_size, input_size)).shape
        except RuntimeError:  # a pooling window larger than what is left of the image
            shape = (0, 0, 0, 0)
        self.features.train()
        if shape[-1] < 1:
            raise ValueError(f"input_size={input_size} is too small for {arch} (its conv stack shrinks it to "
                             f"nothing); use at least 64 px")
        self.feature_shape = tuple(shape[1:])
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(int(np.prod(shape[1:])), fc_dim), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc_dim, fc_dim))
        self.top_layer = nn.Linear(fc_dim, n_outputs)
        # He init for the convs (as the reference models) and for the fully-connected layers:
        # the reference's N(0, 0.01) keeps the signal only at its own sizes (9216 -> 4096 ->
        # 4096); at 64 px with 256 inputs it shrinks the logits to ~1e-5 and nothing learns
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.top_layer.weight, 0, 0.01)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images -> normalised (and Sobel-filtered) network input."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        x = (x - self.mean) / self.std
        return self.sobel(x) if self.sobel is not None else x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's output before its last ReLU (what DeepCluster clusters)."""
        return self.classifier(torch.flatten(self.features(self.preprocess(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top_layer(F.relu(self.embed(x)))

    def conv_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv block (after its ReLU), for probes and filter visualisation."""
        outs, h = [], self.preprocess(x)
        for m in self.features:
            h = m(h)
            if isinstance(m, nn.ReLU):
                outs.append(h)
        return outs

    def reset_top_layer(self, n_outputs: int, generator: torch.Generator | None = None):
        """A fresh top layer for ``n_outputs`` pseudo-classes (weights N(0, 0.01), zero bias)."""
        dev = self.mean.device
        top = nn.Linear(self.top_layer.in_features, n_outputs)
        with torch.no_grad():
            top.weight.copy_(torch.randn(top.weight.shape, generator=generator) * 0.01)
            top.bias.zero_()
        self.top_layer = top.to(dev)
        return self.top_layer
