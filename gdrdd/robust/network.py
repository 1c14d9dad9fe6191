"""Training a network on real data with a group-robust loss (``cvar.target=network``; the paper's Algorithm 1).

The real images are grouped by their nearest synthetic image of their class in the network's current
embedding, and the network minimises the risk measure (CVaR, alpha convention of ``gdrdd.robust.risk``) of
the groups' mean cross-entropy, differentiated end to end. With mass weights and alpha 0 this is the plain
mean cross-entropy. Used between matching steps by gradient matching, and to train MTT's robust experts.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.data.spec import class_major_labels
from gdrdd.models.fit import backward_and_step
from gdrdd.robust.grouping import Grouping, assign_labelled, segment_means
from gdrdd.robust.risk import RiskMeasure
from gdrdd.utils.runtime import gradient_scaler


class GroupRobustLoss:
    """The group-robust training loss, as a ``loss_fn`` of ``gdrdd.models.fit.run_epochs``: every image joins a
    group of its class by ``grouping`` (nearest synthetic image) in the network's current embedding; the risk
    measure (CVaR) of the groups' mean loss, differentiated end to end. ``synthetic``: ``(C, ipc, ch, H, W)``;
    ``per_sample(net, images, labels)`` -> ``(B,)`` losses (default: cross-entropy; IDC: CutMix-ed cross-entropy,
    the images grouped as they were before mixing). With mass weights and alpha 0 it equals the mean loss."""

    def __init__(self, synthetic: torch.Tensor, grouping: Grouping, risk: RiskMeasure,
                 per_sample: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.synthetic, self.grouping, self.risk = synthetic, grouping, risk
        self.per_sample = per_sample or cross_entropy_per_sample

    def __call__(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c, ipc = self.synthetic.shape[:2]
        ids = self.group_ids(net, images, labels)
        per_sample = self.per_sample(net, images, labels)
        means, counts = segment_means(per_sample, ids, c * self.grouping.groups_per_class(ipc))
        return self.risk(means, counts).objective

    def group_ids(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Global group ids ``(B,)`` of ``images`` ``(B, ch, H, W)`` with class ``labels`` ``(B,)``."""
        c, ipc = self.synthetic.shape[:2]
        synthetic_features, real_features = embed_jointly(net, self.synthetic.flatten(0, 1), images)
        return assign_labelled(self.grouping, real_features, labels, synthetic_features.view(c, ipc, -1))


@torch.no_grad()
def embed_jointly(net: nn.Module, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``net.embed`` of the concatenated ``batches`` in one forward pass, split back: in train mode a batch-norm
    network normalises every batch with the same statistics, so distances between them mean what they do in one
    batch (separate passes would centre each batch on its own mean). Running statistics are left as they were:
    grouping is not training."""
    buffers = [b.clone() for b in net.buffers()]
    features = net.embed(torch.cat(batches))
    for buffer, saved in zip(net.buffers(), buffers):
        buffer.copy_(saved)
    return features.split([len(b) for b in batches])


def cross_entropy_per_sample(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(images), labels, reduction="none")


class RobustNetworkTraining:
    """``cvar.target=network``: the matcher's network trains on *real* data with a group-robust loss.

    Each step draws a class-balanced real batch of ``batch_size`` images, groups every image with its nearest
    synthetic image of its class in the network's embedding, and minimises the risk (CVaR) of the groups'
    mean cross-entropy, differentiated end to end. At alpha 0 with mass weights this is the plain mean
    cross-entropy on real data.
    """

    def __init__(self, sample_real: Callable[[int], torch.Tensor], grouping: Grouping, risk: RiskMeasure,
                 batch_size: int = 256) -> None:
        self.sample_real, self.grouping, self.risk, self.batch_size = sample_real, grouping, risk, batch_size
        self.scaler: torch.amp.GradScaler | None = None

    def step(self, net: nn.Module, optimizer: torch.optim.Optimizer, synthetic: torch.Tensor,
             augment: DSA | None = None) -> torch.Tensor:
        """One SGD step of ``net``; ``synthetic`` is ``(C, ipc, ch, H, W)``. Returns the robust loss."""
        c = synthetic.shape[0]
        real = self.sample_real(max(1, self.batch_size // c))
        images = real.flatten(0, 1)
        if augment is not None:
            images = augment(images)
        net.train()
        labels = class_major_labels(c, real.shape[1], images.device)
        loss = GroupRobustLoss(synthetic, self.grouping, self.risk)(net, images, labels)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            self.scaler = gradient_scaler(images.device)  # float16: one scaler for the run, its scale adapts
        backward_and_step(loss, optimizer, self.scaler)
        return loss.detach()
