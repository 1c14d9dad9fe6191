"""Differentiable siamese augmentation (DSA).

Each call picks one transform family at random from the strategy (``color_crop_cutout_flip_scale_rotate``
by default; 'color' applies brightness, saturation and contrast in turn) and draws its parameters.

- ``siamese(a, b, ...)``: one parameter set for the whole call, applied identically to every batch passed
  (the real and synthetic images of one class during matching).
- ``__call__(x)``: parameters drawn per sample (training of evaluation networks).

All transforms act on normalised images ``(B, C, H, W)`` and are differentiable in the images.
Written for gdrdd rather than taken from kornia: the reference semantics need one parameter set broadcast
over two batches of different sizes and one transform family per call, which kornia's per-sample
generators do not express without extra copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from gdrdd.utils.runtime import to_device

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
AUGMENTATIONS = ("dsa", "none")  # the values of the method.augment and experts.augment keys
EVAL_AUGMENTATIONS = ("dsa", "idc", "none")  # of eval.augment


class Augmentation(Protocol):
    """What the matchers and training loops call: a shared draw over several batches, or draws per sample."""

    def siamese(self, *batches: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]: ...

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


@dataclass
class DSAParams:
    """One transform family and its random draws; each tensor has a leading dim of 1 (shared) or B."""

    family: str
    values: dict[str, torch.Tensor] = field(default_factory=dict)


class DSA:
    def __init__(
        self,
        strategy: str = "color_crop_cutout_flip_scale_rotate",
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        crop: float = 0.125,
        cutout: float = 0.5,
        flip: float = 0.5,
        scale: float = 1.2,
        rotate: float = 15.0,
    ) -> None:
        self.families = [f for f in strategy.split("_") if f]
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"unknown DSA strategy {strategy!r}; accepted families joined by '_': "
                             f"{', '.join(FAMILIES)}")
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.crop, self.cutout, self.flip_p = crop, cutout, flip
        self.scale, self.rotate = scale, rotate

    # ----------------------------------------------------------------------------------------- sampling
    def sample(self, n: int, size: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> DSAParams:
        """Draw one family and ``n`` parameter sets (``n=1``: shared by the whole batch) for ``size`` px."""
        family = self.families[int(torch.randint(len(self.families), (1,), generator=generator))]
        return self.sample_family(family, n, size, device, generator)

    def sample_family(self, family: str, n: int, size: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> DSAParams:
        """``n`` parameter sets of ``family`` for ``size`` px."""

        def uniform(*shape: int) -> torch.Tensor:
            return to_device(torch.rand(n, *shape, generator=generator), device)

        if family == "color":
            values = {"brightness": uniform(), "saturation": uniform(), "contrast": uniform()}
        elif family == "crop":
            shift = int(size * self.crop + 0.5)
            values = {"shift": to_device(torch.randint(-shift, shift + 1, (n, 2), generator=generator), device)}
        elif family == "cutout":
            cut = int(size * self.cutout + 0.5)
            values = {"centre": to_device(torch.randint(0, size + (1 - cut % 2), (n, 2), generator=generator), device)}
        elif family == "flip":
            values = {"flip": uniform()}
        elif family == "scale":
            values = {"scale": uniform(2)}
        else:
            values = {"rotate": uniform()}
        return DSAParams(family, values)

    # ----------------------------------------------------------------------------------------- applying
    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply ``params`` to ``x`` ``(B, C, H, W)``; shared parameters broadcast over the batch."""
        v = {k: t.expand(x.shape[0], *t.shape[1:]) for k, t in params.values.items()}
        return getattr(self, f"_{params.family}")(x, v).contiguous()

    def siamese(self, *batches: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Augment every batch with the same family and the same single parameter set."""
        params = self.sample(1, batches[0].shape[-1], batches[0].device, generator)
        return tuple(self.apply(b, params) for b in batches)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment with parameters drawn per sample."""
        return self.apply(x, self.sample(x.shape[0], x.shape[-1], x.device, generator))

    # ----------------------------------------------------------------------------------------- families
    def _color(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        x = x + (v["brightness"] - 0.5).view(-1, 1, 1, 1) * self.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (v["saturation"] * self.saturation).view(-1, 1, 1, 1) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (v["contrast"] + self.contrast).view(-1, 1, 1, 1) + mean

    def _crop(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        """Translate by an integer offset in [-shift, shift] per axis, filling with zeros."""
        b, _, h, w = x.shape
        pad = int(max(h, w) * self.crop + 0.5)
        padded = F.pad(x, [pad, pad, pad, pad])
        rows = torch.arange(h, device=x.device).view(1, h) + pad - v["shift"][:, :1]
        cols = torch.arange(w, device=x.device).view(1, w) + pad - v["shift"][:, 1:]
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _cutout(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        """Zero a square of side ``cutout * size`` centred at the drawn position (clipped at the border)."""
        _, _, h, w = x.shape
        cut = int(h * self.cutout + 0.5)
        start = v["centre"] - cut // 2
        rows = torch.arange(h, device=x.device).view(1, h)
        cols = torch.arange(w, device=x.device).view(1, w)
        in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + cut)
        in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + cut)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return x * keep.unsqueeze(1).to(x.dtype)

    def _flip(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.where((v["flip"] < self.flip_p).view(-1, 1, 1, 1), x.flip(3), x)

    def _scale(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        s = v["scale"] * (self.scale - 1.0 / self.scale) + 1.0 / self.scale
        zero = torch.zeros_like(s[:, 0])
        theta = torch.stack([torch.stack([s[:, 0], zero, zero], 1), torch.stack([zero, s[:, 1], zero], 1)], 1)
        return _warp(x, theta)

    def _rotate(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        angle = (v["rotate"] - 0.5) * 2 * self.rotate / 180 * math.pi
        cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
        return _warp(x, theta)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)
