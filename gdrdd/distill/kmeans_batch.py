"""The k-means real batch (``method.real_batch=kmeans``): one image per k-means cluster of a class's batch.

Of the ``n`` real images drawn for a class (``method.batch_real``), k-means with ``k`` centres
(``method.kmeans_centres``; the robust-DD release: 128 of 256) runs in the embedding of the step's network, and
the real image nearest each centre is kept, so the matched batch has ``k`` images, one per cluster, whatever the
clusters' sizes. The centres start at random images of the batch, so the clusters follow the images' density: a
small mode gets about its share of the centres. Two centres may share their nearest image; it is then kept twice,
as the release keeps it.

k-means as the release runs it (``fast_pytorch_kmeans`` with its defaults): Euclidean Lloyd iterations from
``k`` distinct random points of the batch, at most 100 of them, stopping when the centres move less than 1e-4
(summed squared shift); a centre whose cluster empties keeps its place. Randomness comes from the global torch
RNG, which the distillation reseeds every iteration.
"""

from __future__ import annotations

import torch
from torch import nn

from gdrdd.robust.network import embed_jointly

MAX_ITERATIONS = 100
TOLERANCE = 1e-4


def default_centres(batch_real: int, centres: int | None) -> int:
    """``method.kmeans_centres``, or half the batch when it is ``None`` (the release: 128 of 256)."""
    return max(1, batch_real // 2) if centres is None else centres


@torch.no_grad()
def kmeans(points: torch.Tensor, k: int) -> torch.Tensor:
    """Centres ``(k, D)`` of ``points`` ``(n, D)``, ``k <= n`` (module docstring for the algorithm)."""
    centres = points[torch.randperm(len(points), device=points.device)[:k]].clone()
    for _ in range(MAX_ITERATIONS):
        nearest = torch.cdist(points, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, points)
        counts = torch.bincount(nearest, minlength=k)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].to(points.dtype), centres)
        shift = (moved - centres).pow(2).sum()
        centres = moved
        if shift <= TOLERANCE:
            break
    return centres


@torch.no_grad()
def nearest_to_centres(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """For each centre ``(k, D)`` the index of its nearest point of ``points`` ``(n, D)``: ``(k,)``."""
    return torch.cdist(centres, points).argmin(dim=1)


@torch.no_grad()
def kmeans_picks(net: nn.Module, real: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(C, k')`` into each class's images of ``real`` ``(C, n, ch, H, W)``: the image nearest each of the
    class's ``k' = min(k, n)`` k-means centres in ``net.embed`` (batch-norm statistics left untouched)."""
    c, n = real.shape[:2]
    k = min(k, n)
    features = embed_jointly(net, real.flatten(0, 1))[0].float().view(c, n, -1)
    return torch.stack([nearest_to_centres(f, kmeans(f, k)) for f in features])
