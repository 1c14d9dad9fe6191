"""Trajectory matching (MTT, Cazenavette et al. 2022) with an optional group-robust risk term.

Each iteration picks an expert and a start epoch ``t`` uniform in ``[0, max_start_epoch)``. The student
starts from the expert's parameters at ``t`` and takes ``syn_steps`` SGD steps on the synthetic set (per-sample
DSA, a mini-batch of ``batch_syn`` images per step, all of them when ``None``) with the learnable step size
``syn_lr``. The loss is the normalised parameter distance

    ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2        (M = expert_epochs)

The student is unrolled with ``torch.func.functional_call`` on a parameter dict, differentiated through every
step (synthetic gradients with ``create_graph``). ``checkpoint=True`` keeps only the N + 1 parameter vectors
and replays one step at a time in the backward pass (``gdrdd.matchers.unroll.bounded_unroll``), so memory
stays at one step's graph whatever N; the gradient is the same.

Robust risk term (``group_losses``): the cross-entropy of the student's final parameters on each real group
(real images of a class grouped by nearest synthetic image in the final student's embedding); the module's
risk measure (CVaR scaled by ``cvar.weight``) aggregates them and adds them to the trajectory loss, which is
returned as ``GroupLosses.base``. With ``risk_term=False`` no group losses are formed: plain MTT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call

from gdrdd.augment.dsa import DSA
from gdrdd.data.spec import DatasetSpec, class_major_labels
from gdrdd.errors import ExpertsNotFoundError
from gdrdd.experts.cache import ExpertCache, experts_command, run_cache
from gdrdd.experts.trajectory import check_expert_settings
from gdrdd.matchers.base import GroupLosses
from gdrdd.matchers.registry import DistillConfig, MatcherInputs, Method, register
from gdrdd.matchers.unroll import StudentSteps, bounded_unroll, plain_unroll
from gdrdd.robust.grouping import Grouping, group_means
from gdrdd.robust.objective import acts_on_matching
from gdrdd.utils.checks import integer, positive, require
from gdrdd.utils.distributed import rank_and_world

Params = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


class _FeaturesAndLogits(nn.Module):
    """``net``'s embedding and logits in one call, so ``functional_call`` can evaluate both."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.embed(x)
        return features, self.net.classifier(features)


def parameter_distance(params: Params, target: Params) -> torch.Tensor:
    """Squared Euclidean distance between two parameter dicts (all tensors concatenated)."""
    return sum(((params[k] - target[k]) ** 2).sum() for k in target)


class TrajectoryMatcher(nn.Module):
    """``syn_lr`` is a learnable parameter (optimised with ``lr_lr`` beside the images); ``learned_lr`` is the
    step size evaluation networks train with."""

    updates_per_iteration = 1

    def __init__(self, make_network: Callable[[], nn.Module], experts: ExpertCache, syn_steps: int,
                 expert_epochs: int, max_start_epoch: int, lr_student: float, lr_lr: float,
                 batch_syn: int | None = None, augment: DSA | None = None, checkpoint: bool = False,
                 risk_term: bool = False) -> None:
        super().__init__()
        self.net = _FeaturesAndLogits(make_network())
        self.net.requires_grad_(False)
        self.experts, self.num_experts = experts, experts.count()
        self.syn_steps, self.expert_epochs, self.max_start_epoch = syn_steps, expert_epochs, max_start_epoch
        self.syn_lr = nn.Parameter(torch.tensor(float(lr_student)))
        self.lr_lr, self.batch_syn, self.augment = lr_lr, batch_syn, augment
        self.checkpoint, self.risk_term = checkpoint, risk_term
        self.uses_real = risk_term  # plain MTT needs no real batch
        self.splits_real = False    # each rank matches its own segment, with the whole real batch
        self.start: Params = {}
        self.target: Params = {}

    @property
    def learned_lr(self) -> torch.Tensor:
        """The step size as a detached 0-dim tensor (logged without a host synchronisation)."""
        return self.syn_lr.detach()

    def param_groups(self) -> list[dict]:
        """Extra optimiser parameter groups: the step size with its own learning rate."""
        return [{"params": [self.syn_lr], "lr": self.lr_lr}]

    def start_epochs(self) -> tuple[int, int]:
        """The range ``[low, high)`` the iteration's start epoch is drawn from, uniformly: ``[0, max_start_epoch)``."""
        return 0, self.max_start_epoch

    def start_iteration(self, device: torch.device | str) -> None:
        rank, world = rank_and_world()  # every rank draws all ranks' segments (same RNG), then takes its own
        expert = int(torch.randint(self.num_experts, (world,))[rank])
        start_epoch = int(torch.randint(*self.start_epochs(), (world,))[rank])
        trajectory = self.experts.load(expert)  # on the CPU; only the two snapshots used go to the device
        start, target = trajectory[start_epoch], trajectory[start_epoch + self.expert_epochs]
        self.set_segment({k: v.to(device) for k, v in start.items()}, {k: v.to(device) for k, v in target.items()})

    def set_segment(self, start: Params, target: Params) -> None:
        """The expert segment to match: parameters at epoch ``t`` and at ``t + M`` (keys prefixed as needed)."""
        self.start = {f"net.{k}": v.detach() for k, v in start.items()}
        self.target = {f"net.{k}": v.detach() for k, v in target.items()}

    def unroll(self, images: torch.Tensor, labels: torch.Tensor) -> Params:
        """``syn_steps`` differentiable SGD steps of the student from ``self.start`` on ``images`` ``(N, ...)``."""
        names = list(self.start)
        steps = StudentSteps.draw(self.net, names, labels, self._batches(len(images), images.device), self.augment,
                                  images.shape[-1])
        start = tuple(v.clone().requires_grad_(True) for v in self.start.values())
        unroll = bounded_unroll if self.checkpoint else plain_unroll
        return dict(zip(names, unroll(steps, images, self.syn_lr, start)))

    def _batches(self, n: int, device: torch.device) -> list[torch.Tensor]:
        """Index batches of the ``syn_steps`` student steps: consecutive chunks of random permutations."""
        size = self.batch_syn or n
        batches: list[torch.Tensor] = []
        while len(batches) < self.syn_steps:
            batches.extend(torch.randperm(n, device=device).split(size))
        return batches[:self.syn_steps]

    def student_targets(self, classes: int, ipc: int, device: torch.device) -> torch.Tensor:
        """What the student's cross-entropy is taken against: the class-major hard labels ``(C*ipc,)``."""
        return class_major_labels(classes, ipc, device)

    def trajectory_loss(self, final: Params) -> torch.Tensor:
        return parameter_distance(final, self.target) / parameter_distance(self.start, self.target).clamp(min=1e-12)

    def group_losses(self, real: torch.Tensor | None, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses:
        """``real`` ``(C, n, ...)`` is used by the risk term only (``None`` without it)."""
        c, ipc = synthetic.shape[:2]
        flat = synthetic.flatten(0, 1)
        final = self.unroll(flat, self.student_targets(c, ipc, flat.device))
        base = self.trajectory_loss(final)
        if not self.risk_term:
            empty = base.new_zeros(0)
            return GroupLosses(empty, empty, 0, base=base)
        n = real.shape[1]
        k = grouping.groups_per_class(ipc)
        features, logits = functional_call(self.net, final, (real.flatten(0, 1),))
        with torch.no_grad():
            synthetic_features = functional_call(self.net, final, (flat,))[0]
            ids = grouping.assign(features.detach().view(c, n, -1), synthetic_features.view(c, ipc, -1))
        per_sample = F.cross_entropy(logits, class_major_labels(c, n, real.device), reduction="none")
        losses, counts = group_means(per_sample.view(c, n, 1), ids, k)
        return GroupLosses(losses.flatten(), counts.flatten(), k, base=base)

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None:
        """Nothing to do: the student is rebuilt from the expert every iteration."""


@dataclass
class MTTConfig(DistillConfig):
    """``method=mtt``: ``syn_steps`` student steps (N) toward the expert ``expert_epochs`` (M) epochs after a
    start epoch drawn from ``[0, max_start_epoch)``; the learnable student step size starts at ``lr_student``
    and is trained with ``lr_lr``; ``batch_syn`` images per student step (``None``: all); ``checkpoint``: the
    memory-bounded unroll."""

    lr_lr: float = 1e-5
    lr_student: float = 1e-3
    syn_steps: int = 30
    expert_epochs: int = 2
    max_start_epoch: int = 20
    batch_syn: Optional[int] = None
    checkpoint: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("syn_steps", "expert_epochs", "max_start_epoch"):
            integer(f"method.{key}", getattr(self, key))
        for key in ("lr_lr", "lr_student"):
            positive(f"method.{key}", getattr(self, key))
        if self.batch_syn is not None:
            integer("method.batch_syn", self.batch_syn)


def check_segment(cfg: DictConfig) -> None:
    """The experts' settings, and that the last target epoch, ``max_start_epoch - 1 + expert_epochs``, exists in
    the experts."""
    check_expert_settings(cfg)
    m = cfg.method
    last = m.max_start_epoch - 1 + m.expert_epochs
    require(last <= cfg.experts.epochs, "method.max_start_epoch + method.expert_epochs",
            f"{m.max_start_epoch} + {m.expert_epochs}",
            f"at most experts.epochs + 1 = {cfg.experts.epochs + 1} (the last target epoch, start "
            f"{m.max_start_epoch - 1} + {m.expert_epochs} = {last}, must exist in the experts)")


def expert_cache(cfg: DictConfig, spec: DatasetSpec, method: str) -> ExpertCache:
    """The expert cache of the run's settings; a missing cache stops the run with the command that creates it."""
    cache = run_cache(cfg, spec)
    if cache.count() == 0:
        raise ExpertsNotFoundError(
            f"no expert trajectories for these settings in {cache.folder}. method={method} matches experts trained "
            f"beforehand; create them with\n    {experts_command()}\n(the same overrides plus task=experts; "
            f"experts.num and experts.epochs set how many and how long: reference 100 x 50).")
    if cache.count() < cfg.experts.num:
        log.warning("using the %d experts in %s (experts.num=%d)", cache.count(), cache.folder, cfg.experts.num)
    return cache


def build(inputs: MatcherInputs) -> TrajectoryMatcher:
    """MTT from the expert cache of the run's settings. With ``cvar.target=matching|both`` the robust risk term is
    on."""
    m, cfg = inputs.method, inputs.cfg
    cache = expert_cache(cfg, inputs.spec, "mtt")
    return TrajectoryMatcher(inputs.make_network, cache, syn_steps=m.syn_steps, expert_epochs=m.expert_epochs,
                             max_start_epoch=m.max_start_epoch, lr_student=m.lr_student, lr_lr=m.lr_lr,
                             batch_syn=m.batch_syn, augment=inputs.augment, checkpoint=m.checkpoint,
                             risk_term=acts_on_matching(cfg.cvar))


register(Method("mtt", MTTConfig, build, trains_network=True, risk_is_term=True, matches_real=False,
                matches_experts=True, stateless_norm="its experts keep parameters only, as the reference does",
                reference_iterations=5_000, check=check_segment))
