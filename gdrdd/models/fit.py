"""Fitting a network to a (small) training set: the evaluation protocol of DC/DSA/DM, the epoch loop shared
with matchers that train their network between matching steps and with expert training, and prediction.

Evaluation protocol (``train_network``): SGD (lr, momentum 0.9, weight decay 5e-4), batch 256, ``epochs``
epochs, lr x 0.1 at half, per-sample DSA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gdrdd.augment.dsa import DSA

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainSettings:
    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256


def train_network(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
                  augment: DSA | None = None, generator: torch.Generator | None = None,
                  on_epoch: Callable[[int], None] | None = None) -> nn.Module:
    """Train ``net`` in place on ``images`` ``(N, ch, H, W)`` and ``labels`` ``(N,)``; returns it in eval mode.
    ``on_epoch(epoch)`` after each epoch (progress)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [settings.epochs // 2], gamma=0.1)
    run_epochs(net, optimizer, images, labels, settings.epochs, settings.batch_size, augment, generator, scheduler,
               on_epoch=on_epoch)
    return net.eval()


def run_epochs(net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               epochs: int, batch_size: int, augment: DSA | None = None, generator: torch.Generator | None = None,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, loss_fn: LossFn | None = None,
               on_epoch: Callable[[int], None] | None = None) -> None:
    """``epochs`` passes of shuffled mini-batch training, per-sample augmentation if given; the loss is
    ``loss_fn(net, x, y)`` (default: mean cross-entropy); the scheduler (if any) steps once per epoch, then
    ``on_epoch(epoch)`` is called. Leaves ``net`` in train mode."""
    loss_fn = loss_fn or cross_entropy
    images, labels = images.detach(), labels.detach()
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x, generator)
            loss = loss_fn(net, x, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch)


def cross_entropy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(images), labels)


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
            batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes ``(N,)`` and per-sample cross-entropy ``(N,)``."""
    preds, losses = [], []
    for start in range(0, len(images), batch_size):
        logits = net(images[start:start + batch_size])
        preds.append(logits.argmax(1))
        losses.append(F.cross_entropy(logits, labels[start:start + batch_size], reduction="none"))
    return torch.cat(preds), torch.cat(losses)
