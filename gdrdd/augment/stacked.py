"""The differentiable augmentation of IDC (Kim et al. 2022): the same transforms as DSA (``gdrdd.augment.dsa``),
stacked differently. Of the strategy's families, flip and color (brightness, saturation and contrast, each with
its own draw) are applied at every call, then one of the others (crop, scale, rotate) chosen at random, then
cutout; DSA applies one family per call.

- ``siamese(a, b, ...)``: one draw for the whole call, applied identically to every batch passed (IDC augments
  the real and synthetic images of a class as one batch);
- ``__call__(x)``: draws per sample (training networks on real data, and evaluation).
"""

from __future__ import annotations

import torch

from gdrdd.augment.dsa import DSA, DSAParams

ALWAYS_FIRST = ("flip", "color")
ALWAYS_LAST = ("cutout",)


class StackedAugment:
    def __init__(self, strategy: str = "color_crop_cutout") -> None:
        self.dsa = DSA(strategy)
        families = self.dsa.families
        self.first = [f for f in ALWAYS_FIRST if f in families]
        self.chosen = [f for f in families if f not in ALWAYS_FIRST + ALWAYS_LAST]
        self.last = [f for f in ALWAYS_LAST if f in families]

    def sample(self, n: int, size: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> list[DSAParams]:
        """The transforms of one call, in order, each with ``n`` parameter sets (``n=1``: shared)."""
        families = list(self.first)
        if self.chosen:
            families.append(self.chosen[int(torch.randint(len(self.chosen), (1,), generator=generator))])
        families += self.last
        return [self.dsa.sample_family(f, n, size, device, generator) for f in families]

    def apply(self, x: torch.Tensor, params: list[DSAParams]) -> torch.Tensor:
        for p in params:
            x = self.dsa.apply(x, p)
        return x

    def siamese(self, *batches: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        params = self.sample(1, batches[0].shape[-1], batches[0].device, generator)
        return tuple(self.apply(b, params) for b in batches)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], x.shape[-1], x.device, generator))


def without(strategy: str, family: str) -> str:
    """``strategy`` without ``family`` (IDC trains networks with CutMix and without cutout)."""
    return "_".join(f for f in strategy.split("_") if f and f != family)
