"""Label-free rarity weights for the distillation's real batches (``cvar.sampling=rarity``).

A rare subgroup of a class is, in any feature space where it is distinct, a region of low density among the
class's images. Each training image of a class gets the weight

    w_i = (d_i / median_j d_j) ** power,

where ``d_i`` is the Euclidean distance from image ``i`` to its ``neighbours``-th nearest other image of the
same class, in a low-resolution pixel space: the preprocessed (normalised) image average-pooled to
``resolution x resolution`` and flattened. For a density estimated from the ``k``-nearest-neighbour distance in
``D`` dimensions, ``d ** D`` is proportional to one over the density, so ``power`` plays the role of the data's
intrinsic dimension: 0 gives uniform weights (every image alike), larger values move batch mass from dense
regions (the common modes) to sparse ones (rare modes and outliers) and shrink the batch's effective size.
Distances are floored at 1e-3 of the median, so duplicates keep a positive weight.

The weights are computed once, when the data are set up, and replace the uniform draw of ``sample_real``
(a weighted draw without replacement); the group labels of a benchmark are never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Rarity:
    """``resolution``: side of the pooled pixel space; ``neighbours``: the k of the k-th nearest neighbour;
    ``power``: the exponent of the distance ratio (0: uniform)."""

    resolution: int = 8
    neighbours: int = 10
    power: float = 8.0

    @classmethod
    def from_config(cls, rarity) -> "Rarity":
        """From a ``cvar.rarity`` config node."""
        return cls(int(rarity.resolution), int(rarity.neighbours), float(rarity.power))

    def __post_init__(self) -> None:
        if self.resolution < 1 or self.neighbours < 1 or self.power < 0:
            raise ValueError(f"cvar.rarity={self} is not valid; accepted: resolution >= 1, neighbours >= 1, "
                             "power >= 0 (0: uniform weights)")


def pooled_pixels(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Features ``(n, ch * resolution**2)`` in float32 of images ``(n, ch, H, W)``."""
    return F.adaptive_avg_pool2d(images.float(), resolution).flatten(1)


def kth_neighbour_distance(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance ``(n,)`` from each row of ``features`` ``(n, D)`` to its ``k``-th nearest other row (``k`` is
    capped at ``n - 1``; a single row gets distance 1). Computed in blocks of ``chunk`` rows."""
    n = len(features)
    if n < 2:
        return torch.ones(n, device=features.device)
    k = min(k, n - 1)
    # k + 1 smallest distances include the row's zero distance to itself
    return torch.cat([torch.cdist(block, features).topk(k + 1, largest=False).values[:, -1]
                      for block in features.split(chunk)])


def rarity_weights(images: torch.Tensor, rarity: Rarity) -> torch.Tensor:
    """Sampling weights ``(n,)`` (float64, median-normalised, all > 0) of one class's images ``(n, ch, H, W)``."""
    distance = kth_neighbour_distance(pooled_pixels(images, rarity.resolution), rarity.neighbours)
    return weights_from_distances(distance, rarity.power)


def weights_from_distances(distance: torch.Tensor, power: float) -> torch.Tensor:
    """``(d / median d) ** power`` in float64 for k-th neighbour distances ``d`` ``(n,)``, ratios floored at 1e-3."""
    distance = distance.double()
    return (distance / distance.median().clamp(min=1e-12)).clamp(min=1e-3) ** power
