"""The ConvNet family of the dataset-distillation literature.

Each block is conv 3x3 (padding 1) -> norm -> activation -> pool 2x2. Inputs are ``(B, channels, H, W)``;
28-pixel inputs get a first-layer padding of 3 so that shapes match 32-pixel inputs, as in the reference
code. ``embed(x)`` returns the flattened features ``(B, D)`` and ``forward(x)`` the logits ``(B, classes)``
of one linear layer on them.
"""

from __future__ import annotations

from torch import nn

from gdrdd.models.base import FeatureClassifier

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
POOLINGS = ("avgpooling", "maxpooling", "none")
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid")


def make_norm(kind: str, channels: int) -> nn.Module:
    """Norm layer by name. 'instancenorm' is GroupNorm with one group per channel (affine), as the
    reference implementations use."""
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; accepted: {', '.join(NORMS)}")


def make_activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if kind == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {kind!r}; accepted: {', '.join(ACTIVATIONS)}")


def make_pool(kind: str) -> nn.Module:
    if kind == "avgpooling":
        return nn.AvgPool2d(2, 2)
    if kind == "maxpooling":
        return nn.MaxPool2d(2, 2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {kind!r}; accepted: {', '.join(POOLINGS)}")


class ConvNet(FeatureClassifier):
    """ConvNet of ``depth`` blocks of ``width`` channels for square ``resolution``-pixel images."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        resolution: int,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        activation: str = "relu",
        pooling: str = "avgpooling",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            padding = 3 if (d == 0 and resolution == 28) else 1
            layers += [nn.Conv2d(in_ch, width, 3, padding=padding), make_norm(norm, width), make_activation(activation)]
            if pooling != "none":
                layers.append(make_pool(pooling))
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.attach_classifier(channels, resolution, num_classes)
