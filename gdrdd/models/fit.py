"""Fitting a network to a (small) training set: the evaluation protocol of DC/DSA/DM, the epoch loop shared
with matchers that train their network between matching steps and with expert training, and prediction.

Evaluation protocol (``train_network``): SGD (lr, momentum 0.9, weight decay 5e-4), batch 256, ``epochs``
epochs, lr x 0.1 at half, per-sample DSA. IDC's protocol changes the schedule (lr x 0.2 at 2/3 and 5/6 of the
epochs), the batch (64) and adds CutMix (``CutMix``, probability 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.utils.runtime import compiled, gradient_scaler, to_device

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainSettings:
    """``milestones``: fractions of ``epochs`` after which the lr is multiplied by ``gamma``; ``cutmix``: the
    probability that a batch is CutMix-ed (0: never), with box areas from Beta(``cutmix_beta``, ``cutmix_beta``);
    ``channels_last``: the network and its training images in channels-last memory format (the same numerics
    up to summation order; not faster on the measured 2-core CPU, docs/benchmarks.md); ``compile``: train and
    predict with ``torch.compile`` of the network (``gdrdd.utils.runtime.compiled``)."""

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    milestones: tuple[float, ...] = (0.5,)
    gamma: float = 0.1
    cutmix: float = 0.0
    cutmix_beta: float = 1.0
    channels_last: bool = False
    compile: bool = False

    def milestone_epochs(self) -> list[int]:
        """The epochs after which the lr drops (``floor(fraction * epochs)``, as ``2 * epochs // 3`` would)."""
        return [int(m * self.epochs + 1e-9) for m in self.milestones]


class CutMix:
    """CutMix (Yun et al. 2019) as a ``loss_fn``: with probability ``p`` the batch gets, in a random box, the
    pixels of a random permutation of itself, the box's side ``sqrt(1 - lam)`` of the image's, ``lam ~ Beta(beta,
    beta)``, centred uniformly and clipped at the borders; the loss of each image is then ``r * CE(own label) +
    (1 - r) * CE(the other image's label)``, ``r`` the image area outside the box. ``per_sample`` returns the
    ``(B,)`` losses, ``__call__`` their mean."""

    def __init__(self, p: float, beta: float = 1.0, generator: torch.Generator | None = None) -> None:
        self.p, self.beta, self.generator = p, beta, generator

    def per_sample(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(1, generator=self.generator)) >= self.p:
            return F.cross_entropy(net(images), labels, reduction="none")
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
        lam = float(np.random.default_rng(seed).beta(self.beta, self.beta))
        perm = to_device(torch.randperm(len(images), generator=self.generator), images.device)
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (int(torch.randint(n, (1,), generator=self.generator)) for n in (h, w))
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = images.clone()
        mixed[:, :, y1:y2, x1:x2] = images[perm, :, y1:y2, x1:x2]
        kept = 1 - (y2 - y1) * (x2 - x1) / (h * w)
        logits = net(mixed)
        return (kept * F.cross_entropy(logits, labels, reduction="none")
                + (1 - kept) * F.cross_entropy(logits, labels[perm], reduction="none"))

    def __call__(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.per_sample(net, images, labels).mean()


def train_network(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
                  augment: DSA | None = None, generator: torch.Generator | None = None,
                  on_epoch: Callable[[int], None] | None = None, loss_fn: LossFn | None = None) -> nn.Module:
    """Train ``net`` in place on ``images`` ``(N, ch, H, W)`` and ``labels`` ``(N,)``; returns it in eval mode
    (with ``settings.compile``, its compiled version, which shares its parameters). ``on_epoch(epoch)`` after
    each epoch (progress). ``loss_fn`` replaces the protocol's loss (cross-entropy, or CutMix-ed with
    ``settings.cutmix``), e.g. a teacher's targets."""
    if settings.channels_last:
        net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    net = compiled(net, settings.compile)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, settings.milestone_epochs(), gamma=settings.gamma)
    if loss_fn is None and settings.cutmix > 0:
        loss_fn = CutMix(settings.cutmix, settings.cutmix_beta, generator)
    run_epochs(net, optimizer, images, labels, settings.epochs, settings.batch_size, augment, generator, scheduler,
               loss_fn=loss_fn, on_epoch=on_epoch)
    return net.eval()


def run_epochs(net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               epochs: int, batch_size: int, augment: DSA | None = None, generator: torch.Generator | None = None,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, loss_fn: LossFn | None = None,
               on_epoch: Callable[[int], None] | None = None) -> None:
    """``epochs`` passes of shuffled mini-batch training, per-sample augmentation if given; the loss is
    ``loss_fn(net, x, y)`` (default: mean cross-entropy); the scheduler (if any) steps once per epoch, then
    ``on_epoch(epoch)`` is called. Each batch is moved to ``net``'s device (a no-op when ``images`` are there
    already). Under float16 autocast the loss is scaled (``gradient_scaler``: a step whose
    gradients overflow is skipped and the scale lowered). Leaves ``net`` in train mode."""
    loss_fn = loss_fn or cross_entropy
    images, labels = images.detach(), labels.detach()
    device = next(net.parameters()).device  # images may stay on the host (a training set too large for it)
    scaler = gradient_scaler(device)
    net.train()
    for epoch in range(epochs):
        order = to_device(torch.randperm(len(images), generator=generator), images.device)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x = to_device(images[idx], device)
            if augment is not None:
                x = augment(x, generator)
            loss = loss_fn(net, x, to_device(labels[idx], device))
            optimizer.zero_grad(set_to_none=True)
            backward_and_step(loss, optimizer, scaler)
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()`` then ``optimizer.step()``, through ``scaler`` when there is one (float16: the loss
    scaled, a step whose gradients overflow skipped and the scale lowered)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def cross_entropy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(images), labels)


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
            batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes ``(N,)`` and per-sample cross-entropy ``(N,)``."""
    preds, losses = [], []
    for start in range(0, len(images), batch_size):
        logits = net(images[start:start + batch_size])
        preds.append(logits.argmax(1))
        losses.append(F.cross_entropy(logits, labels[start:start + batch_size], reduction="none"))
    return torch.cat(preds), torch.cat(losses)
