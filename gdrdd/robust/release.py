"""The robust-DD release's network training (``cvar=release``): what the authors' program optimises.

Between two matching steps of gradient matching the released program (``distill_rdd.py``) trains its network on a
pool of real images gathered in that outer step, not on the synthetic set:

1. pool: for each class the real batch it matched (as augmented for the matching) and a second random batch of
   ``batch_real`` images of the class;
2. groups: each pooled image joins the group of its nearest synthetic image over *all* classes (Euclidean, in the
   network's embedding; the synthetic images as augmented for the matching). With 50 images per class only 10
   of each class are group centres, picked by ``farthest_walk``;
3. training: ``epochs`` passes over the shuffled pool in batches of ``batch_size``, each SGD step on the batch's
   mean cross-entropy (``per_sample`` losses averaged), the batches augmented again as the method trains its
   network. Every ``log_every``-th batch (the first included) the program adds a "CVaR" term written
   ``mean + (value - mean)`` with ``value`` rebuilt from detached numbers: the term's gradient is zero, so

       gradient of each step = gradient of the batch's mean cross-entropy,

   and the CVaR changes the logged number only. ``release_value`` computes that number as the release does.

This is not the paper's Algorithm 1 (``cvar.target=network``, ``gdrdd.robust.network``), which differentiates the
CVaR of the group losses. The alpha convention is the release's: ``release_group_value`` averages the *lowest*
``floor(alpha * L)`` entries of a group's zero-padded loss row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from gdrdd.models.fit import backward_and_step
from gdrdd.utils.runtime import gradient_scaler

IPC_WITH_FEWER_CENTRES, CENTRES_AT_THAT_IPC = 50, 10  # the release: at IPC 50, 10 group centres per class
EMBED_CHUNK = 256  # the release embeds the pool in chunks of this many images


def farthest_walk(images: torch.Tensor, count: int) -> torch.Tensor:
    """Indices ``(count,)`` into ``images`` ``(k, ...)``: image 0, then repeatedly the not yet chosen image
    farthest (Euclidean, over every pixel) from the *last* chosen one (the release's selection at IPC 50)."""
    flat = images.flatten(1).float()
    chosen = [0]
    remaining = torch.ones(len(flat), dtype=torch.bool, device=flat.device)
    remaining[0] = False
    while len(chosen) < min(count, len(flat)):
        distance = (flat - flat[chosen[-1]]).norm(dim=1).masked_fill(~remaining, -1.0)
        chosen.append(int(distance.argmax()))
        remaining[chosen[-1]] = False
    return torch.tensor(chosen, device=flat.device)


def group_centres(synthetic: torch.Tensor, centres: int | None) -> torch.Tensor:
    """The group centres ``(C * k', ...)`` of ``synthetic`` ``(C, k, ...)``, class-major: every image, or per class
    the ``farthest_walk`` of ``centres`` images when a class has more (``None``: the release's rule, 10 at 50
    images per class, else all)."""
    k = synthetic.shape[1]
    if centres is None:
        centres = CENTRES_AT_THAT_IPC if k == IPC_WITH_FEWER_CENTRES else k
    if centres >= k:
        return synthetic.flatten(0, 1)
    return torch.cat([images[farthest_walk(images, centres)] for images in synthetic])


@torch.no_grad()
def nearest_centre(net: nn.Module, images: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Group ids ``(N,)``: the index of each image's nearest centre ``(S, ...)`` over all classes, in
    ``net.embed``, the images embedded in chunks of ``EMBED_CHUNK`` as the release does."""
    centre_features = net.embed(centres).float()
    return torch.cat([torch.cdist(net.embed(chunk).float(), centre_features).argmin(dim=1)
                      for chunk in images.split(EMBED_CHUNK)])


def release_group_value(row: torch.Tensor, alpha: float) -> torch.Tensor:
    """The release's per-group "CVaR" of a zero-padded loss row ``(L,)``: with the row sorted ascending and
    ``r = max(1, floor(alpha * L))``, ``(mean of the non-zero entries of the first r + row[r - 1] * (alpha - r / L))
    / alpha``."""
    ordered = row.sort().values
    r = max(1, int(alpha * len(ordered)))
    head = ordered[:r]
    nonzero = head[head != 0]
    mean = nonzero.mean() if len(nonzero) else head.new_zeros(())
    return (mean + ordered[r - 1] * (alpha - r / len(ordered))) / alpha


def release_value(group_losses: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """The number the release logs: the per-sample losses ``group_losses[g]`` ``(n_g,)`` since the last log, padded
    with zeros to the longest group, ``release_group_value`` per group; the mean of the non-zero values plus their
    maximum."""
    longest = max((len(x) for x in group_losses), default=0)
    if longest == 0:
        return torch.zeros(())
    rows = torch.stack([torch.cat([x, x.new_zeros(longest - len(x))]) for x in group_losses])
    values = torch.stack([release_group_value(row, alpha) for row in rows])
    nonzero = values[values != 0]
    return (nonzero.mean() if len(nonzero) else values.new_zeros(())) + values.max()


def by_group(ids: torch.Tensor, values: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """``values`` ``(N,)`` split by group id ``ids`` ``(N,)``: one tensor per group, empty ones included."""
    return [values[ids == g] for g in range(groups)]


@dataclass
class ReleasePool:
    """The real images pooled in one outer step, with their class labels: ``add`` each matched batch."""

    images: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)

    def add(self, images: torch.Tensor, label: int) -> None:
        self.images.append(images.detach())
        self.labels.append(torch.full((len(images),), label, dtype=torch.long, device=images.device))

    def add_classes(self, batch: torch.Tensor) -> None:
        """``batch`` ``(C, n, ...)``: ``n`` images of every class, class-major."""
        for label, images in enumerate(batch):
            self.add(images, label)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(N, ...)`` and labels ``(N,)`` grouped by class in the order added (the release's pool order:
        class 0's matched batch, its second batch, then class 1's, ...)."""
        labels = torch.cat(self.labels)
        order = labels.argsort(stable=True)
        return torch.cat(self.images)[order], labels[order]


class ReleaseNetworkTraining:
    """``cvar=release`` (module docstring): the network's training between matching steps on the pooled real set.

    ``sample_real(n)`` -> ``(C, n, ...)`` the second random batch per class; ``per_sample(net, x, y)`` -> ``(B,)``
    losses (cross-entropy; IDC's CutMix-ed one); ``augment`` applied to every pool batch (``None``: none);
    ``alpha``, ``log_every``: of the logged value only; ``centres``: ``group_centres``. ``logged`` holds the last
    outer step's ``release/cvar`` (the release's number), ``release/loss`` (the mean cross-entropy of its last
    batch) and ``release/nonempty_groups``."""

    def __init__(self, sample_real: Callable[[int], torch.Tensor], batch_real: int, epochs: int, batch_size: int,
                 per_sample: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, alpha: float = 0.8,
                 log_every: int = 3, centres: int | None = None) -> None:
        self.sample_real, self.batch_real, self.epochs, self.batch_size = sample_real, batch_real, epochs, batch_size
        self.per_sample, self.augment = per_sample, augment
        self.alpha, self.log_every, self.centres = alpha, log_every, centres
        self.logged: dict[str, torch.Tensor] = {}

    def train(self, net: nn.Module, optimizer: torch.optim.Optimizer, pool: ReleasePool,
              synthetic: torch.Tensor) -> None:
        """Complete ``pool`` with a second random batch per class, group it around ``synthetic`` ``(C, k, ...)``
        (the images as matched), and train ``net`` ``epochs`` passes over it."""
        pool.add_classes(self.sample_real(self.batch_real))
        images, labels = pool.tensors()
        centres = group_centres(synthetic.detach(), self.centres)
        ids = nearest_centre(net, images, centres)
        net.train()
        scaler = gradient_scaler(images.device)
        window: tuple[torch.Tensor, torch.Tensor] | None = None  # the last logging window's group ids and losses
        for _ in range(self.epochs):  # one epoch: the release's epoch_mix, whose logging state starts afresh
            pending_ids, pending_losses = [], []
            for batch, idx in enumerate(torch.randperm(len(images), device=images.device).split(self.batch_size)):
                x = images[idx]
                if self.augment is not None:
                    with torch.no_grad():
                        x = self.augment(x)
                losses = self.per_sample(net, x, labels[idx])
                pending_ids.append(ids[idx])
                pending_losses.append(losses.detach())
                if batch % self.log_every == 0:  # the release logs a value here; the last window's is logged
                    window = torch.cat(pending_ids), torch.cat(pending_losses)
                    pending_ids, pending_losses = [], []
                loss = losses.mean()
                optimizer.zero_grad(set_to_none=True)
                backward_and_step(loss, optimizer, scaler)
        if window is not None:  # computed once: only the iteration's last value reaches the log
            self.logged["release/cvar"] = release_value(by_group(*window, len(centres)), self.alpha)
        self.logged["release/loss"] = loss.detach()
        self.logged["release/nonempty_groups"] = torch.tensor(float(len(ids.unique())))
