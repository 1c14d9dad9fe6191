"""Distribution matching (DM, Zhao & Bilen 2023) with per-group losses.

Each iteration draws a fresh network (no gradient into it) for its single update, augments each class's
real and synthetic images with one shared DSA draw, and embeds both. Group ``g`` of class ``c`` scores

    L_g = || mean embedding of group g's real images - mean embedding of S_c ||^2.

With ``ByClass`` grouping there is one group per class and the sum of the losses is plain DM's loss.

``embed_batch``: real images per forward pass; ``channels_last``: the step's network in channels-last memory
format (same numerics up to summation order; faster pooling on CPUs); ``compile``: the embeddings through
``torch.compile`` (``gdrdd.utils.runtime.compiled``; compiled once, reused by every step's fresh network).
Robust options: ``group_encoder`` (a fixed network) forms the groups in its features instead of the step's
network's; ``shrink`` pulls each group's real mean toward its class mean with a prior of that many images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.matchers.base import GroupLosses
from gdrdd.matchers.registry import DistillConfig, MatcherInputs, Method, register
from gdrdd.models import has_batchnorm
from gdrdd.robust.grouping import Grouping, group_means, shrink_to_pooled
from gdrdd.utils.checks import integer
from gdrdd.utils.runtime import compiled


class DistributionMatcher:
    updates_per_iteration = 1

    def __init__(self, make_network: Callable[[], nn.Module], augment: DSA | None = None,
                 group_encoder: nn.Module | None = None, shrink: float = 0.0, embed_batch: int | None = None,
                 channels_last: bool = False, compile: bool = False) -> None:
        self.make_network = make_network
        self.embed_batch = embed_batch
        self.embed = compiled(network_embedding, compile)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.augment = augment
        self.group_encoder, self.shrink = group_encoder, shrink
        self.net: nn.Module | None = None

    def start_iteration(self, device: torch.device | str) -> None:
        self.net = self.make_network().to(device, memory_format=self.memory_format).train().requires_grad_(False)

    def embedding_network(self) -> nn.Module:
        """The step's network, whose ``embed`` picks the k-means real batch (``method.real_batch=kmeans``)."""
        return self.net

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None:
        """DM trains no network."""

    def group_losses(self, real: torch.Tensor, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses:
        c = real.shape[0]
        ipc = synthetic.shape[1]
        net = self.net
        if self.augment is not None:
            pairs = [self.augment.siamese(real[i], synthetic[i]) for i in range(c)]
            real = torch.stack([p[0] for p in pairs])
            synthetic = torch.stack([p[1] for p in pairs])
        with torch.no_grad():
            real_emb = embed_classwise(net, real, self.embed_batch, self.embed)
        syn_emb = embed_classwise(net, synthetic, self.embed_batch, self.embed)
        k = grouping.groups_per_class(ipc)
        if self.group_encoder is not None and k > 1:
            with torch.no_grad():
                ids = grouping.assign(embed_classwise(self.group_encoder, real, self.embed_batch),
                                      embed_classwise(self.group_encoder, synthetic, self.embed_batch))
        else:
            ids = grouping.assign(real_emb, syn_emb.detach())
        means, counts = group_means(real_emb, ids, k, across_ranks=True)
        if self.shrink > 0:
            means = torch.stack([shrink_to_pooled(m, n, self.shrink) for m, n in zip(means, counts)])
        losses = ((means - syn_emb.mean(dim=1, keepdim=True)) ** 2).sum(dim=-1)
        losses = torch.where(counts > 0, losses, torch.zeros_like(losses))
        return GroupLosses(losses.flatten(), counts.flatten(), k)


def network_embedding(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``net.embed(images)``, as a function of the network, so that one compiled version serves every network."""
    return net.embed(images)


def embed_classwise(net: nn.Module, images: torch.Tensor, batch: int | None = None,
                    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor] = network_embedding) -> torch.Tensor:
    """Embeddings ``(C, n, D)`` in float32 of ``(C, n, ch, H, W)``, computed by ``embed(net, x)``.

    The images of all classes go through the network together, in forward passes of at most ``batch`` images
    (``None``: one pass; on a CPU, passes of a few hundred images keep the activations in cache and are faster
    than one huge pass). A network with batch norm takes them in one pass whatever ``batch``, so its statistics
    are those of every class's images together, as the reference DM computes them (it embeds all real images
    in one pass and all synthetic images in another). Under autocast the convolutions run in low precision and
    the means and distances in float32.
    """
    c, n = images.shape[:2]
    flat = images.flatten(0, 1)
    chunks = [flat] if batch is None or has_batchnorm(net) else flat.split(batch)
    return torch.cat([embed(net, x) for x in chunks]).unflatten(0, (c, n)).float()


@dataclass
class DMConfig(DistillConfig):
    """``method=dm``: ``embed_batch`` real images per forward pass (``None``: one pass); ``channels_last``;
    ``compile``."""

    embed_batch: Optional[int] = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_batch is not None:
            integer("method.embed_batch", self.embed_batch)


def build(inputs: MatcherInputs) -> DistributionMatcher:
    m = inputs.method
    return DistributionMatcher(inputs.make_network, inputs.augment, group_encoder=inputs.group_encoder,
                               shrink=inputs.shrink, embed_batch=m.embed_batch, channels_last=m.channels_last,
                               compile=m.compile)


register(Method("dm", DMConfig, build, groups_real=True, reference_iterations=20_000))
