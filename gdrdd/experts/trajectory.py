"""Training one expert: a fresh network trained on the real training set, parameters kept after every epoch.

MTT's expert protocol (``conf/experts/default.yaml``, the reference's): SGD lr 0.01, no momentum, no weight
decay, batch 256, per-sample DSA, 50 epochs; optionally the group-robust loss instead of cross-entropy (robust
experts, ``gdrdd.robust.network``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from gdrdd.augment.dsa import AUGMENTATIONS, DSA
from gdrdd.models.fit import LossFn, run_epochs
from gdrdd.utils.checks import integer, one_of, positive, require

Trajectory = list[dict[str, torch.Tensor]]


@dataclass
class ExpertSettings:
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256

    @classmethod
    def from_config(cls, experts: DictConfig) -> ExpertSettings:
        """From the ``experts`` config group."""
        return cls(epochs=experts.epochs, lr=experts.lr, momentum=experts.momentum,
                   weight_decay=experts.weight_decay, batch_size=experts.batch_size)


def check_expert_settings(cfg: DictConfig) -> None:
    """The ``experts`` group's values (the network's norm is checked with the method's, ``gdrdd.config.checks``)."""
    e = cfg.experts
    for key in ("num", "epochs", "batch_size"):
        integer(f"experts.{key}", e[key])
    positive("experts.lr", e.lr)
    require(isinstance(e.seed, int) and not isinstance(e.seed, bool), "experts.seed", e.seed, "an integer")
    one_of("experts.augment", e.augment, AUGMENTATIONS)


def parameters_of(net: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``net``'s parameters by name."""
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def train_expert(make_network: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor,
                 settings: ExpertSettings, seed: int, augment: DSA | None = None, loss_fn: LossFn | None = None,
                 on_epoch: Callable[[int], None] | None = None, device: torch.device | None = None) -> Trajectory:
    """Train a network seeded by ``seed`` on ``images`` ``(N, ch, H, W)`` / ``labels`` ``(N,)``; return the
    ``epochs + 1`` parameter snapshots (initial, then after each epoch). ``on_epoch(epoch)`` after each epoch.
    The network trains on ``device`` (default: the images')."""
    torch.manual_seed(seed)
    net = make_network().to(device or images.device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    trajectory = [parameters_of(net)]
    for epoch in range(settings.epochs):
        run_epochs(net, optimizer, images, labels, 1, settings.batch_size, augment, generator, loss_fn=loss_fn)
        trajectory.append(parameters_of(net))
        if on_epoch is not None:
            on_epoch(epoch)
    return trajectory
