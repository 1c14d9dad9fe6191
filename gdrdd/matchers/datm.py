"""Difficulty-aligned trajectory matching (DATM, Guo et al., ICLR 2024): MTT with learned soft labels, a start-epoch
window that widens with the iterations, and updates skipped when the match is poor.

On top of ``gdrdd.matchers.mtt`` (same experts, unroll and normalised parameter-distance loss):

- **Soft labels.** Each synthetic image carries learnable logits ``y`` ``(C*ipc, C)``; the student's steps take the
  soft cross-entropy against ``softmax(y)``, and ``y`` is learned through the unroll (SGD, ``lr_y``, momentum
  ``momentum_y``). They start as the mean last-epoch logits of the experts that classify the image correctly
  (all experts' mean where none does). Saved as ``label_kind="logits"``.
- **Start images** (``method.init=correct``): per class, a random order of its real images, and the first ``ipc``
  of them that expert 0 classifies correctly at its last epoch (then expert 1, ... if one expert finds too few).
- **Window.** The start epoch is uniform in ``[min_start_epoch, upper)``; with ``expansion_end_epoch = E`` set
  (sequential generation) ``upper = min(current_max_start_epoch + floor((max_start_epoch -
  current_max_start_epoch) * i / E), max_start_epoch)`` at iteration ``i`` (``E`` counts iterations, as the
  original's name does not say), fixed at ``max_start_epoch`` without it.
- **Threshold.** An update whose trajectory loss exceeds ``threshold`` changes nothing: no step of the images, the
  labels or the step size (their momentum buffers included); the run counts it as ``distill/skipped_threshold``.

With ``cvar.target=matching|both`` the robust risk term of MTT (the final student's cross-entropy on groups of real
images, hard labels) is added to the trajectory loss, as for MTT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Iterable, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call

from gdrdd.matchers.mtt import MTTConfig, TrajectoryMatcher, check_segment, expert_cache
from gdrdd.matchers.registry import INITS, MatcherInputs, Method, register
from gdrdd.robust.objective import acts_on_matching
from gdrdd.utils.checks import integer, positive, require
from gdrdd.utils.runtime import to_device

log = logging.getLogger(__name__)


def window_upper(iteration: int, current_max: int, max_start: int, expansion_end: int | None) -> int:
    """The exclusive upper bound of the start epoch at ``iteration`` (module docstring)."""
    if expansion_end is None:
        return max_start
    return min(current_max + int((max_start - current_max) * iteration / expansion_end), max_start)


def initial_label_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, C)``: per image the mean of ``logits`` ``(E, N, C)`` (E experts) over the experts whose prediction is
    its class ``labels`` ``(N,)``; over all experts for an image that none classifies correctly."""
    correct = (logits.argmax(2) == labels).to(logits.dtype)  # (E, N)
    count = correct.sum(0).unsqueeze(1)
    summed = (logits * correct.unsqueeze(2)).sum(0)
    return torch.where(count > 0, summed / count.clamp(min=1), logits.mean(0))


def first_correct(order: torch.Tensor, predictions: Iterable[torch.Tensor], label: int, n: int) -> torch.Tensor:
    """Indices ``(n,)``: the first ``n`` of ``order`` (a permutation of ``m`` images) that the first of
    ``predictions`` (``(m,)`` classes each, drawn one at a time) gives class ``label``, then those the next one does,
    ...; the rest of ``order``, in order, if all of them together find fewer than ``n``."""
    picked: dict[int, None] = {}  # ordered, no repeats
    for predicted in predictions:
        for i in order[predicted[order] == label].tolist():
            if len(picked) == n:
                break
            picked.setdefault(i)
        if len(picked) == n:
            return torch.tensor(list(picked))
    log.warning("the experts classify only %d images of class %d correctly; the start takes %d others",
                len(picked), label, n - len(picked))
    for i in order.tolist():
        if len(picked) == n:
            break
        picked.setdefault(i)
    return torch.tensor(list(picked))


class DifficultyAlignedMatcher(TrajectoryMatcher):
    """MTT's matcher with DATM's labels, window and threshold; ``learned_labels`` the detached logits."""

    def __init__(self, *args, lr_y: float, momentum_y: float, threshold: float | None, min_start_epoch: int,
                 current_max_start_epoch: int, expansion_end_epoch: int | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lr_y, self.momentum_y, self.threshold = lr_y, momentum_y, threshold
        self.min_start_epoch, self.current_max_start_epoch = min_start_epoch, current_max_start_epoch
        self.expansion_end_epoch = expansion_end_epoch
        self.iteration = 0
        self.label_logits = nn.Parameter(torch.zeros(0))  # set by initialise_labels

    def set_iteration(self, iteration: int) -> None:
        self.iteration = iteration

    def start_epochs(self) -> tuple[int, int]:
        return self.min_start_epoch, window_upper(self.iteration, self.current_max_start_epoch, self.max_start_epoch,
                                                  self.expansion_end_epoch)

    @torch.no_grad()
    def last_epoch_logits(self, expert: int, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """``(N, C)`` logits of ``images`` under expert ``expert``'s parameters after its last epoch."""
        last = {f"net.{k}": v for k, v in self.experts.load(expert)[-1].items()}
        device = images.device
        return torch.cat([functional_call(self.net, {k: to_device(v, device) for k, v in last.items()}, (x,))[1]
                          for x in images.split(batch)])

    def correctly_classified(self, class_images: list[torch.Tensor], n: int) -> torch.Tensor:
        """``(C, n, ...)`` start images (``method.init=correct``; module docstring), in a random order per class."""
        chosen = []
        for label, images in enumerate(class_images):
            order = torch.randperm(len(images), device=images.device)
            predictions = (self.last_epoch_logits(e, images).argmax(1) for e in range(self.num_experts))
            chosen.append(images[first_correct(order, predictions, label, n).to(images.device)])
        return torch.stack(chosen)

    def initialise_labels(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """The learnable logits of ``images`` ``(N, ...)`` with classes ``labels`` ``(N,)``: the mean logits of the
        experts that classify each correctly."""
        logits = torch.stack([self.last_epoch_logits(e, images) for e in range(self.num_experts)])
        init = initial_label_logits(logits, labels)
        log.info("soft labels from %d experts; %.1f %% of the start images classified correctly by their mean",
                 self.num_experts, 100 * float((init.argmax(1) == labels).float().mean()))
        self.label_logits = nn.Parameter(init)

    @property
    def learned_labels(self) -> torch.Tensor:
        """The label logits ``(C*ipc, C)``, detached."""
        return self.label_logits.detach()

    def param_groups(self) -> list[dict]:
        return [*super().param_groups(),
                {"params": [self.label_logits], "lr": self.lr_y, "momentum": self.momentum_y}]

    def student_targets(self, classes: int, ipc: int, device: torch.device) -> torch.Tensor:
        """``softmax`` of the learnable logits ``(C*ipc, C)``: the soft cross-entropy's targets."""
        return self.label_logits.softmax(dim=1)

    def accepts(self, base: torch.Tensor) -> torch.Tensor:
        """Whether an update with trajectory loss ``base`` is taken (a 0-dim bool tensor)."""
        return base <= self.threshold if self.threshold is not None else torch.ones((), dtype=torch.bool)


@dataclass
class DATMConfig(MTTConfig):
    """``method=datm``: MTT's keys plus the soft labels' SGD (``lr_y``, ``momentum_y``), the skip ``threshold``
    (``None``: never skip), and the start-epoch window ``[min_start_epoch, upper)`` whose upper bound grows from
    ``current_max_start_epoch`` to ``max_start_epoch`` over ``expansion_end_epoch`` iterations (``None``: fixed at
    ``max_start_epoch``). ``init=correct``: real images the experts classify correctly."""

    inits: ClassVar[tuple[str, ...]] = (*INITS, "correct")
    init: str = "correct"
    syn_steps: int = 80
    lr_student: float = 0.01
    lr_y: float = 2.0
    momentum_y: float = 0.9
    threshold: Optional[float] = 1.0
    min_start_epoch: int = 0
    current_max_start_epoch: int = 10
    expansion_end_epoch: Optional[int] = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("method.lr_y", self.lr_y)
        require(0 <= self.momentum_y < 1, "method.momentum_y", self.momentum_y, "a number in [0, 1)")
        if self.threshold is not None:
            positive("method.threshold", self.threshold)
        integer("method.min_start_epoch", self.min_start_epoch, minimum=0)
        integer("method.current_max_start_epoch", self.current_max_start_epoch)
        if self.expansion_end_epoch is not None:
            integer("method.expansion_end_epoch", self.expansion_end_epoch)
        high = self.max_start_epoch if self.expansion_end_epoch is None else self.current_max_start_epoch
        require(self.min_start_epoch < min(high, self.max_start_epoch), "method.min_start_epoch",
                self.min_start_epoch, f"below the window's first upper bound ({min(high, self.max_start_epoch)}: "
                "method.current_max_start_epoch with sequential generation, else method.max_start_epoch)")


def check(cfg: DictConfig) -> None:
    """MTT's segment check, and no multi-formation (each stored image has one learned label)."""
    check_segment(cfg)
    require(cfg.method.factor == 1, "method.factor", cfg.method.factor,
            "1 for method=datm (each stored image carries its own learned label)")


def build(inputs: MatcherInputs) -> DifficultyAlignedMatcher:
    """DATM from the expert cache of the run's settings (MTT's experts: the cache key does not name the method)."""
    m, cfg = inputs.method, inputs.cfg
    cache = expert_cache(cfg, inputs.spec, "datm")
    return DifficultyAlignedMatcher(
        inputs.make_network, cache, syn_steps=m.syn_steps, expert_epochs=m.expert_epochs,
        max_start_epoch=m.max_start_epoch, lr_student=m.lr_student, lr_lr=m.lr_lr, batch_syn=m.batch_syn,
        augment=inputs.augment, checkpoint=m.checkpoint, risk_term=acts_on_matching(cfg.cvar), lr_y=m.lr_y,
        momentum_y=m.momentum_y, threshold=m.threshold, min_start_epoch=m.min_start_epoch,
        current_max_start_epoch=m.current_max_start_epoch, expansion_end_epoch=m.expansion_end_epoch)


register(Method("datm", DATMConfig, build, trains_network=True, risk_is_term=True, matches_real=False,
                matches_experts=True, stateless_norm="its experts keep parameters only, as the reference does",
                reference_iterations=10_000, check=check))
