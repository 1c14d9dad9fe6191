"""Networks by name. ``build_model(cfg, channels, num_classes, resolution)`` for ``conf/model/*.yaml``."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from gdrdd.models.classic import VGG11, AlexNet, ResNet18
from gdrdd.models.convnet import ConvNet

MODELS = {"convnet": ConvNet, "alexnet": AlexNet, "vgg11": VGG11, "resnet18": ResNet18}


def build_model(cfg: Mapping[str, Any], channels: int, num_classes: int, resolution: int) -> nn.Module:
    options = {k: v for k, v in cfg.items() if k != "name"}
    name = cfg["name"]
    if name not in MODELS:
        raise ValueError(f"model.name={name!r} is unknown; accepted: {', '.join(sorted(MODELS))}")
    return MODELS[name](channels=channels, num_classes=num_classes, resolution=resolution, **options)


def batchnorm_layers(net: nn.Module) -> list[nn.Module]:
    """The layers of ``net`` that keep batch statistics."""
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(net: nn.Module) -> bool:
    """True if any layer keeps batch statistics (then classes cannot share one forward pass)."""
    return bool(batchnorm_layers(net))


__all__ = ["AlexNet", "ConvNet", "ResNet18", "VGG11", "MODELS", "batchnorm_layers", "build_model", "has_batchnorm"]
