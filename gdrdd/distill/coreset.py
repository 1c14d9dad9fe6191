"""Coreset selection of real images per class in a fixed network's features, for the synthetic set's start
(``method.init=kcenter`` or ``herding``).

With ``f_1 .. f_n`` the features of a class's real images and ``mu`` their mean:

- k-center (greedy farthest-point): the first pick is the image nearest ``mu``; each next pick is the image whose
  distance to its nearest pick so far is largest, so the picks spread over the class's modes, rare ones included;
- herding: pick ``t`` is the image that brings the mean of picks ``1..t`` nearest ``mu``, so the picks' mean
  tracks the class mean (the common modes first).

Distances are Euclidean; ties go to the lowest index. Both are deterministic given the features.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from gdrdd.utils.runtime import to_device


def k_center(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(k,)`` into ``features`` ``(n, d)`` (``k <= n``) chosen by greedy farthest-point selection."""
    first = squared_distances(features, features.mean(dim=0)).argmin()
    picks = [int(first)]
    nearest = squared_distances(features, features[first])
    for _ in range(k - 1):
        nearest[picks] = -1.0  # never picked twice, even among duplicates
        pick = int(nearest.argmax())
        picks.append(pick)
        nearest = torch.minimum(nearest, squared_distances(features, features[pick]))
    return torch.tensor(picks)


def herding(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(k,)`` into ``features`` ``(n, d)`` (``k <= n``) chosen by herding towards their mean."""
    mean = features.mean(dim=0)
    total = torch.zeros_like(mean)
    picks: list[int] = []
    for t in range(1, k + 1):
        gap = squared_distances((total + features) / t, mean)
        gap[picks] = float("inf")
        pick = int(gap.argmin())
        picks.append(pick)
        total = total + features[pick]
    return torch.tensor(picks)


def squared_distances(points: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
    """``(n,)`` squared Euclidean distances of ``points`` ``(n, d)`` to one point ``to`` ``(d,)``."""
    return ((points - to) ** 2).sum(dim=1)


SELECTIONS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"kcenter": k_center, "herding": herding}


@torch.no_grad()
def features_of(net: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``(n, d)`` float32 embeddings ``net.embed`` of ``images`` ``(n, ch, H, W)``, in passes of ``batch``, on
    ``net``'s device (each pass's images are moved there: they may stay on the host)."""
    device = next(net.parameters()).device
    return torch.cat([net.embed(to_device(x, device)).flatten(1).float() for x in images.split(batch)])


def select_per_class(class_images: list[torch.Tensor], net: nn.Module, n: int, rule: str) -> torch.Tensor:
    """``(C, m, ch, H, W)``: per class the ``m = min(n, smallest class size)`` images that ``rule`` (a key of
    ``SELECTIONS``) picks in the features of the fixed network ``net``, in the order picked."""
    m = min(n, *(len(x) for x in class_images))
    select = SELECTIONS[rule]
    return torch.stack([x[select(features_of(net, x), m).to(x.device)] for x in class_images])
