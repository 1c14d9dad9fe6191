"""The one small interface every base matcher implements: per-group losses.

A matcher receives the real batch ``(C, n, ch, H, W)`` (class-balanced, class-major) and the synthetic set
``(C, ipc, ch, H, W)``, forms groups with the given ``Grouping`` in its own feature space, and returns one loss
per group. It knows nothing of CVaR: the risk measure turns the losses into the scalar to minimise.

One distillation *iteration* is: ``start_iteration()`` (draw the iteration's network), then
``updates_per_iteration`` times: ``group_losses`` -> risk -> synthetic update -> ``after_update``
(where a matcher may train its network, as gradient matching does between matching steps).

Optional: ``uses_real = False`` when ``group_losses`` ignores the real batch (plain MTT), so none is drawn;
``update_classes(update)`` -> the classes an update matches (called before that update's ``group_losses``, whose
real batch then holds those classes only; IDC updates one class at a time); without it every class;
``splits_real = False`` when, in a distributed run, the matcher wants the whole real batch on every rank
rather than its slice (by default it gets a slice and sums its group statistics over ranks);
a matcher with learnable tensors of its own (MTT's step size) is an ``nn.Module`` with
``param_groups()`` (extra optimiser parameter groups) and ``learned_lr`` (the evaluation learning rate, a detached
0-dim tensor); one that learns the labels (DATM) has ``learned_labels`` (detached ``(C*ipc, C)`` logits, what the
set is saved and evaluated with); ``set_iteration(i)`` is called with the iteration index before
``start_iteration`` (DATM's window widens with it); ``accepts(base)`` -> a 0-dim bool tensor: ``False`` skips the
update (DATM's threshold on its trajectory loss ``GroupLosses.base``); ``embedding_network()`` -> the network in
whose ``embed`` the k-means real batch is picked (``method.real_batch=kmeans``; called after ``start_iteration``);
``logged()`` -> a dict of scalars the module logs after each iteration (``cvar=release``'s logged values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from gdrdd.robust.grouping import Grouping


@dataclass
class GroupLosses:
    """``losses`` ``(C*k,)`` (differentiable in the synthetic images) and real-image ``counts`` ``(C*k,)``;
    group ``c*k + j`` is group ``j`` of class ``c``. Empty groups have count 0 and loss 0.

    ``base``: a loss that is not split by group (MTT's trajectory loss), added to the risk of the group losses;
    ``None`` for matchers whose whole loss is per group. ``k`` may be 0 (no group losses at all)."""

    losses: torch.Tensor
    counts: torch.Tensor
    groups_per_class: int
    base: torch.Tensor | None = None


class Matcher(Protocol):
    updates_per_iteration: int

    def start_iteration(self, device: torch.device) -> None: ...

    def group_losses(self, real: torch.Tensor, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses: ...

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None: ...
