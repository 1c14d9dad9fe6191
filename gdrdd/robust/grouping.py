"""Grouping of real images, done per class.

Shapes: real features ``(C, n, D)``, synthetic features ``(C, k, D)``; group ids ``(C, n)`` with values in
``[0, groups_per_class)``. The global group index of id ``j`` in class ``c`` is ``c * groups_per_class + j``.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Grouping(Protocol):
    def groups_per_class(self, ipc: int) -> int: ...

    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor: ...


class ByClass:
    """One group per class: the whole real batch of the class. The base methods' (non-robust) view."""

    def groups_per_class(self, ipc: int) -> int:
        return 1

    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return torch.zeros(real.shape[:2], dtype=torch.long, device=real.device)


class NearestSynthetic:
    """Each real image joins the group of its nearest (Euclidean) synthetic image of the same class."""

    def groups_per_class(self, ipc: int) -> int:
        return ipc

    @torch.no_grad()
    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return torch.cdist(real.float(), synthetic.float()).argmin(dim=2)


def group_means(features: torch.Tensor, ids: torch.Tensor, groups_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group mean features ``(C, k, D)`` and counts ``(C, k)`` from features ``(C, n, D)`` and ids ``(C, n)``.

    Empty groups get a zero mean and a count of 0. One scatter, no Python loop over groups.
    """
    c, n, d = features.shape
    flat_ids = (ids + torch.arange(c, device=ids.device).view(c, 1) * groups_per_class).reshape(-1)
    sums = features.new_zeros(c * groups_per_class, d).index_add_(0, flat_ids, features.reshape(c * n, d))
    counts = torch.bincount(flat_ids, minlength=c * groups_per_class).to(features.dtype)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return means.view(c, groups_per_class, d), counts.view(c, groups_per_class)
