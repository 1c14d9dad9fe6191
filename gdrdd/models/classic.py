"""The cross-architecture networks of the DD literature (as in the DC/DSA/DM reference code), for 28-128 px.

- ``AlexNet``: five convolutions (128-192-256-192-192; 5x5, 5x5, then 3x3), ReLU, three 2x2 max-pools, no
  norm (``norm`` may add one after each convolution, e.g. batchnorm for AlexNetBN); 28-px inputs get a first
  padding of 4 so shapes match 32 px.
- ``VGG11``: the VGG-11 convolution stack (64-M-128-M-256-256-M-512-512-M-512-512-M) with a norm after each
  convolution (instancenorm = GroupNorm per channel, or batchnorm for VGG11BN) and one linear layer.
- ``ResNet18``: BasicBlocks [2, 2, 2, 2] of widths 64-128-256-512 after a 3x3 stem (no max-pool), a norm
  after each convolution, global average pooling. ``downsample='avgpool'`` is the AP variant (stride-1
  convolutions followed by 2x2 average pooling instead of strided convolutions), used at 128 px.
"""

from __future__ import annotations

import torch
from torch import nn

from gdrdd.models.base import FeatureClassifier
from gdrdd.models.convnet import make_norm

VGG11_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class AlexNet(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, resolution: int, norm: str = "none") -> None:
        super().__init__()
        first_pad = 4 if resolution == 28 else 2
        spec = [(channels, 128, 5, first_pad, True), (128, 192, 5, 2, True), (192, 256, 3, 1, False),
                (256, 192, 3, 1, False), (192, 192, 3, 1, True)]
        layers: list[nn.Module] = []
        for c_in, c_out, k, pad, pool in spec:
            layers += [nn.Conv2d(c_in, c_out, k, padding=pad), make_norm(norm, c_out), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.attach_classifier(channels, resolution, num_classes)


class VGG11(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, resolution: int, norm: str = "instancenorm") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for item in VGG11_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            pad = 3 if (c_in == channels and resolution == 28) else 1
            layers += [nn.Conv2d(c_in, item, 3, padding=pad), make_norm(norm, item), nn.ReLU(inplace=True)]
            c_in = item
        self.features = nn.Sequential(*layers)
        self.attach_classifier(channels, resolution, num_classes)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, downsample: str) -> None:
        super().__init__()
        pooled = downsample == "avgpool" and stride > 1
        conv_stride = 1 if pooled else stride
        self.body = nn.Sequential(  # AP variant: pool after the first conv's norm and ReLU, as the reference
            nn.Conv2d(c_in, c_out, 3, conv_stride, 1, bias=False), make_norm(norm, c_out), nn.ReLU(inplace=True),
            *([nn.AvgPool2d(2, 2)] if pooled else []),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), make_norm(norm, c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, conv_stride, bias=False),
                                          *([nn.AvgPool2d(2, 2)] if pooled else []), make_norm(norm, c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, resolution: int, norm: str = "instancenorm",
                 downsample: str = "stride") -> None:
        super().__init__()
        if downsample not in ("stride", "avgpool"):
            raise ValueError(f"model.downsample={downsample!r} is unknown; accepted: stride, avgpool")
        layers: list[nn.Module] = [nn.Conv2d(channels, 64, 3, 1, 1, bias=False), make_norm(norm, 64),
                                   nn.ReLU(inplace=True)]
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, c_out, stride, norm, downsample), BasicBlock(c_out, c_out, 1, norm, downsample)]
            c_in = c_out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.attach_classifier(channels, resolution, num_classes)
