"""What gdrdd needs to know about a data set, and the in-memory form of its images."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts of a data set (from ``conf/dataset/<name>.yaml``)."""

    name: str
    reader: str
    channels: int
    resolution: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dsa_strategy: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float ``(N, C, H, W)`` -> normalised float32."""
        x = unit_pixels(images)
        return (x - self._stat(self.mean, x)) / self._stat(self.std, x)

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ``(N, C, H, W)`` -> pixel values in [0, 1] (not clamped)."""
        return images * self._stat(self.std, images) + self._stat(self.mean, images)

    @staticmethod
    def _stat(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        return channel_constant(tuple(values), like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def channel_constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` as a ``(1, C, 1, 1)`` tensor on ``device``, made once per device and dtype (no copy from the
    host at every call). Read-only: it is shared."""
    return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def unit_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] images as float32 in [0, 1]."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def class_major_labels(num_classes: int, per_class: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels ``(num_classes * per_class,)`` in class-major order: ``[0]*per_class + [1]*per_class + ...``."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


@dataclass
class ImageSet:
    """``images``: uint8 ``(N, C, H, W)``; ``labels``: int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSet wants uint8 (N, C, H, W) images, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"ImageSet labels {tuple(self.labels.shape)} do not match {self.images.shape[0]} images")


@dataclass
class RealData:
    train: ImageSet
    test: ImageSet
