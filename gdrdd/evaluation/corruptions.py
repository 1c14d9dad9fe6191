"""Test-time corruptions of the robustness evaluation, on pixel values in [0, 1] ``(N, C, H, W)``."""

from __future__ import annotations

import math
from typing import Callable

import torch
from kornia.filters import gaussian_blur2d

NOISE_VARIANCE = 0.005
BLUR_SIGMA = 2.0  # PIL's GaussianBlur "radius" is the standard deviation


def gaussian_noise(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return (x + noise * math.sqrt(NOISE_VARIANCE)).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """Each image blurred alone, ``chunk`` images per call (the filter's intermediates of a whole 10,000-image
    test set would take gigabytes)."""
    size = 2 * math.ceil(3 * BLUR_SIGMA) + 1
    return torch.cat([gaussian_blur2d(part, (size, size), (BLUR_SIGMA, BLUR_SIGMA), border_type="reflect")
                      for part in x.split(chunk)])


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


def corruptions(seed: int = 0) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The three corruptions by name, each mapping [0, 1] pixels to [0, 1] pixels; the noise is fixed by ``seed``
    (a generator of its own per call, so a corrupted copy does not depend on what was drawn before)."""
    return {"noise": lambda x: gaussian_noise(x, torch.Generator().manual_seed(seed)),
            "blur": gaussian_blur, "invert": invert}
