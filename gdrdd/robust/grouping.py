"""Grouping of real images, done per class.

Shapes: real features ``(C, n, D)``, synthetic features ``(C, k, D)``; group ids ``(C, n)`` with values in
``[0, groups_per_class)``. The global group index of id ``j`` in class ``c`` is ``c * groups_per_class + j``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from gdrdd.utils.distributed import all_reduce_sum


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


class NearestAnySynthetic:
    """Each real image joins the group of its nearest (Euclidean) synthetic image of *any* class
    (``cvar.groups=nearest_any``): id ``j`` in ``[0, C * ipc)`` is image ``j`` of the class-major synthetic set
    (of class ``j // ipc``). Class ``c``'s groups with ``j // ipc != c`` hold its real images that sit nearer
    another class's synthetic images than any of its own: the modes a classifier confuses, which a per-class
    grouping merges with the class's nearest common mode."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def groups_per_class(self, ipc: int) -> int:
        return self.num_classes * ipc

    @torch.no_grad()
    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        """``real`` ``(C, n, D)``, ``synthetic`` ``(C, ipc, D)`` of every class -> ids ``(C, n)``."""
        c, n = real.shape[:2]
        return torch.cdist(real.flatten(0, 1).float(), synthetic.flatten(0, 1).float()).argmin(dim=1).view(c, n)


class KnownGroups:
    """Each real image's group is its known subgroup label (``cvar.groups=known``; the shift benchmark's
    subgroups), not a function of features. The module hands over the labels of each real batch with
    ``set_batch(ids)`` (``(C, n)``, values in ``[0, count)``) before the matcher runs; ``assign`` returns them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.batch_ids: torch.Tensor | None = None

    def groups_per_class(self, ipc: int) -> int:
        return self.count

    def set_batch(self, ids: torch.Tensor) -> None:
        self.batch_ids = ids

    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        if self.batch_ids is None or self.batch_ids.shape != real.shape[:2]:
            shape = None if self.batch_ids is None else tuple(self.batch_ids.shape)
            raise RuntimeError(f"known subgroup ids {shape} do not match the real batch {tuple(real.shape[:2])}; "
                               "set_batch must receive the ids of the batch being grouped")
        return self.batch_ids


def group_means(features: torch.Tensor, ids: torch.Tensor, groups_per_class: int,
                across_ranks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group mean features ``(C, k, D)`` and counts ``(C, k)`` from features ``(C, n, D)`` and ids ``(C, n)``.

    Empty groups get a zero mean and a count of 0. One scatter, no Python loop over groups. ``across_ranks``:
    sums and counts are summed over the ranks of a distributed run first (for features without gradient).
    """
    c, n, d = features.shape
    flat_ids = (ids + torch.arange(c, device=ids.device).view(c, 1) * groups_per_class).reshape(-1)
    means, counts = segment_means(features.reshape(c * n, d), flat_ids, c * groups_per_class, across_ranks)
    return means.view(c, groups_per_class, d), counts.view(c, groups_per_class)


def segment_means(values: torch.Tensor, ids: torch.Tensor, num_groups: int,
                  across_ranks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Means ``(G, *rest)`` and counts ``(G,)`` of ``values`` ``(N, *rest)`` by global group id ``ids`` ``(N,)``;
    an empty group has mean 0 and count 0. ``across_ranks``: over the ranks' values together."""
    sums = values.new_zeros(num_groups, *values.shape[1:]).index_add_(0, ids, values)
    counts = torch.zeros(num_groups, device=ids.device).index_add_(0, ids, torch.ones(len(ids), device=ids.device))
    counts = counts.to(values.dtype)  # counted in float32 (exact below 2^24), not bincount: any device, meta too
    if across_ranks:
        all_reduce_sum(sums, counts)
    return sums / counts.clamp(min=1).view(-1, *[1] * (values.dim() - 1)), counts


def shrink_to_pooled(values: torch.Tensor, counts: torch.Tensor, prior: float) -> torch.Tensor:
    """Group means ``values`` ``(k, *rest)`` with real-image ``counts`` ``(k,)`` pulled toward their pooled mean:
    ``(n_g * v_g + prior * pooled) / (n_g + prior)``, as if each group also held ``prior`` images at the pooled
    mean (small groups move most; ``prior = 0`` leaves them unchanged)."""
    if prior <= 0:
        return values
    w = counts.to(values.dtype).view(-1, *[1] * (values.dim() - 1))
    pooled = (values * w).sum(0, keepdim=True) / w.sum().clamp(min=1)
    return (w * values + prior * pooled) / (w + prior)


@torch.no_grad()
def assign_labelled(grouping: Grouping, features: torch.Tensor, labels: torch.Tensor,
                    synthetic: torch.Tensor) -> torch.Tensor:
    """Global group ids ``(N,)`` for features ``(N, D)`` with any class labels ``(N,)``, given synthetic features
    ``(C, ipc, D)``: ``label * groups_per_class + group within the class``. For the per-class groupings only
    (``ByClass``, ``NearestSynthetic``): each image is grouped among its own class's synthetic images. One
    distance matrix to every synthetic image, the other classes' columns masked: no loop over classes and no
    host synchronisation."""
    if isinstance(grouping, ByClass):
        return labels.clone()
    if not isinstance(grouping, NearestSynthetic):
        raise ValueError(f"assign_labelled groups each class's images among that class's synthetic images only; "
                         f"{type(grouping).__name__} groups across classes or by known labels; accepted: a "
                         "per-class grouping (ByClass, NearestSynthetic)")
    c, k = synthetic.shape[:2]
    distances = torch.cdist(features.float(), synthetic.flatten(0, 1).float())  # (N, C * k)
    owner = torch.arange(c, device=labels.device).repeat_interleave(k)  # the class of each column
    return distances.masked_fill(owner[None, :] != labels[:, None], float("inf")).argmin(dim=1)
