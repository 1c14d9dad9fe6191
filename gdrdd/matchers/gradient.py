"""Gradient matching (DC, Zhao et al. 2021; DSA, Zhao & Bilen 2021) with per-group losses.

Each iteration draws a fresh network and makes ``outer_loop`` synthetic updates; between two of them the
network is trained ``inner_loop`` epochs on the synthetic set (SGD ``lr_net``). For each class, the loss
of group ``g`` is the distance between the gradient (w.r.t. the network parameters) of the cross-entropy of
the class's synthetic images and that of group ``g``'s real images; real gradients are detached, synthetic
ones keep their graph. With ``ByClass`` grouping this is plain DC/DSA, summed over classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.data.spec import class_major_labels
from gdrdd.matchers.base import GroupLosses
from gdrdd.matchers.registry import DistillConfig, MatcherInputs, Method, register
from gdrdd.models import batchnorm_layers, has_batchnorm
from gdrdd.models.fit import run_epochs
from gdrdd.robust.grouping import Grouping, NearestSynthetic, shrink_to_pooled
from gdrdd.robust.network import RobustNetworkTraining, cross_entropy_per_sample
from gdrdd.robust.objective import acts_as_released, acts_on_network, network_risk, release_options
from gdrdd.robust.release import ReleaseNetworkTraining, ReleasePool
from gdrdd.utils.checks import integer, one_of, positive, require
from gdrdd.utils.distributed import all_reduce_sum, is_distributed
from gdrdd.utils.runtime import compiled, scaled_grad

DISTANCES = ("ours", "mse", "cos", "l1")
# IPC -> (outer_loop, inner_loop) of the reference implementation.
LOOPS_BY_IPC = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
BN_BATCH_PER_CLASS = 16


def loops_for_ipc(ipc: int, outer_loop: int | None = None, inner_loop: int | None = None) -> tuple[int, int]:
    """(outer, inner) loop counts: the reference schedule by IPC unless both are given."""
    if outer_loop is not None and inner_loop is not None:
        return outer_loop, inner_loop
    require(ipc in LOOPS_BY_IPC, "ipc", ipc, f"one of {sorted(LOOPS_BY_IPC)} for the reference loop schedule "
            "of gradient matching, or set method.outer_loop and method.inner_loop")
    ref_outer, ref_inner = LOOPS_BY_IPC[ipc]
    return outer_loop or ref_outer, inner_loop or ref_inner


def gradient_distance(real: list[torch.Tensor], synthetic: list[torch.Tensor], metric: str = "ours") -> torch.Tensor:
    """Distance ``(G,)`` between ``G`` real gradients (each entry ``(G, *param_shape)``) and one synthetic
    gradient (entries ``param_shape``), per parameter tensor and summed.

    - ``ours``: sum over layers and output units of ``1 - cos`` (conv weights flattened per output channel;
      1-D parameters such as biases and norm scales contribute 0);
    - ``mse``: squared Euclidean distance of the concatenated gradients;
    - ``l1``: the absolute differences of the concatenated gradients, summed (IDC's ``l1``);
    - ``cos``: ``1 - cos`` of the concatenated gradients.
    """
    if metric == "ours":
        total = real[0].new_zeros(real[0].shape[0])
        for r, s in zip(real, synthetic):
            if s.dim() == 1:
                continue
            r_rows, s_rows = r.flatten(2) if s.dim() > 2 else r, s.flatten(1) if s.dim() > 2 else s
            cos = (r_rows * s_rows).sum(-1) / (r_rows.norm(dim=-1) * s_rows.norm(dim=-1) + 1e-6)
            total = total + (1 - cos).sum(-1)
        return total
    r_vec = torch.cat([r.flatten(1) for r in real], 1)
    s_vec = torch.cat([s.flatten() for s in synthetic]).unsqueeze(0)
    if metric == "mse":
        return ((s_vec - r_vec) ** 2).sum(-1)
    if metric == "l1":
        return (s_vec - r_vec).abs().sum(-1)
    if metric == "cos":
        return 1 - (r_vec * s_vec).sum(-1) / (r_vec.norm(dim=-1) * s_vec.norm(dim=-1) + 1e-6)
    raise ValueError(f"unknown gradient distance {metric!r}; accepted: {', '.join(DISTANCES)}")


def group_gradients(net: nn.Module, params: list[nn.Parameter], images: torch.Tensor, label: int,
                    ids: torch.Tensor, groups: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Detached gradients of each group's mean cross-entropy: entries ``(groups, *param_shape)``, and counts.

    One forward and backward per non-empty group on that group's images only, so the work adds up to one
    pass over the batch (exact: the norm layers used during matching have no batch coupling). In a distributed
    run each rank holds a slice of the batch: the groups' summed gradients and counts are summed over ranks,
    then divided, which gives the global groups' mean gradients.
    """
    if groups == 1:  # the plain method: one group holding every image, known without asking the device
        counts, present = torch.full((1,), len(ids), dtype=torch.long, device=ids.device), [0]
    else:  # the non-empty groups: one host synchronisation per class and update
        counts = torch.bincount(ids, minlength=groups)
        present = torch.nonzero(counts).flatten().tolist()
    grads = [p.new_zeros(groups, *p.shape) for p in params]
    reduction = "sum" if is_distributed() else "mean"
    for g in present:
        x = images if groups == 1 else images[ids == g]
        loss = F.cross_entropy(net(x), torch.full((len(x),), label, device=x.device), reduction=reduction)
        for acc, grad in zip(grads, scaled_grad(loss, params)):
            acc[g] = grad
    if is_distributed():
        all_reduce_sum(counts, *grads)
        grads = [g / counts.clamp(min=1).view(-1, *[1] * (g.dim() - 1)) for g in grads]
    return grads, counts


def freeze_batchnorm_statistics(net: nn.Module, real: torch.Tensor) -> None:
    """Set batch-norm statistics from a real batch, then keep them fixed (eval mode) while matching."""
    net.train()
    with torch.no_grad():
        net(real)
    for layer in batchnorm_layers(net):
        layer.eval()


class GradientMatcher:
    """DC/DSA. ``robust_network`` (if given) replaces the network's training on the synthetic set between
    matching steps by ``inner_loop`` robust steps on real data (``cvar.target=network`` or ``both``).
    ``group_encoder`` (a fixed network) forms the groups in its features instead of the step's network's;
    ``shrink`` pulls each group's real gradient toward the class's with a prior of that many images.
    ``compile``: the real images' gradients and the training between matching steps run through
    ``torch.compile`` of the network (``gdrdd.utils.runtime.compiled``); the synthetic images' gradients, which
    are differentiated twice, stay eager. ``release_network`` (``cvar=release``, ``gdrdd.robust.release``)
    replaces that training by ``cvar.release.epochs`` (null: ``inner_loop``) epochs on the real images pooled in
    the outer step (the matched batches as augmented, plus a second random batch per class), as the robust-DD
    release trains its network; the whole real batch then reaches every rank of a distributed run, since each
    trains the same network."""

    def __init__(self, make_network: Callable[[], nn.Module], augment: DSA | None = None, metric: str = "ours",
                 outer_loop: int = 10, inner_loop: int = 50, lr_net: float = 0.01, batch_train: int = 256,
                 robust_network: RobustNetworkTraining | None = None, group_encoder: nn.Module | None = None,
                 shrink: float = 0.0, compile: bool = False,
                 release_network: ReleaseNetworkTraining | None = None) -> None:
        if metric not in DISTANCES:
            raise ValueError(f"method.metric={metric!r} is unknown; accepted: {', '.join(DISTANCES)}")
        self.make_network, self.augment, self.metric = make_network, augment, metric
        self.updates_per_iteration, self.inner_loop = outer_loop, inner_loop
        self.lr_net, self.batch_train = lr_net, batch_train
        self.robust_network, self.release_network = robust_network, release_network
        self.splits_real = release_network is None
        self.group_encoder, self.shrink, self.compile = group_encoder, shrink, compile
        self.pool: ReleasePool | None = None  # cvar=release: this update's matched real images
        self.matched_synthetic: torch.Tensor | None = None  # and its synthetic images, as augmented
        self.net: nn.Module | None = None
        self.once_differentiable_net: nn.Module | None = None  # self.net, compiled if compile (start_iteration)

    def start_iteration(self, device: torch.device | str) -> None:
        self.net = self.make_network().to(device).train()
        self.once_differentiable_net = compiled(self.net, self.compile)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.net_optimizer = torch.optim.SGD(self.params, lr=self.lr_net)

    def embedding_network(self) -> nn.Module:
        """The step's network, whose ``embed`` picks the k-means real batch (``method.real_batch=kmeans``)."""
        return self.net

    def group_losses(self, real: torch.Tensor, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses:
        c, ipc = real.shape[0], synthetic.shape[1]
        k = grouping.groups_per_class(ipc)
        net = self.net
        if has_batchnorm(net):
            freeze_batchnorm_statistics(net, real[:, :BN_BATCH_PER_CLASS].flatten(0, 1))
        pairs = [self.augment.siamese(real[cls], synthetic[cls]) if self.augment is not None
                 else (real[cls], synthetic[cls]) for cls in range(c)]
        group_ids = self._group_ids(pairs, grouping, k)
        if self.release_network is not None:
            self.pool = ReleasePool()
            self.pool.add_classes(torch.stack([r for r, _ in pairs]))
            self.matched_synthetic = torch.stack([s for _, s in pairs]).detach()
        losses, counts = [], []
        for cls, (r, s) in enumerate(pairs):
            g_real, n_real = group_gradients(self.once_differentiable_net, self.params, r, cls, group_ids[cls],
                                             k)
            if self.shrink > 0:
                g_real = [shrink_to_pooled(g, n_real, self.shrink) for g in g_real]
            syn_loss = F.cross_entropy(net(s), torch.full((len(s),), cls, device=s.device))
            g_syn = scaled_grad(syn_loss, self.params, create_graph=True)
            distance = gradient_distance(g_real, list(g_syn), self.metric)
            losses.append(torch.where(n_real > 0, distance, torch.zeros_like(distance)))
            counts.append(n_real.to(distance.dtype))
        return GroupLosses(torch.cat(losses), torch.cat(counts), k)

    @torch.no_grad()
    def _group_ids(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], grouping: Grouping, k: int) -> torch.Tensor:
        """Group ids ``(C, n)`` of the augmented real images of every class, in one ``grouping.assign`` call on
        features of the grouping network (the group encoder, else the step's network); all zeros if ``k == 1``."""
        if k == 1:
            return torch.zeros(len(pairs), len(pairs[0][0]), dtype=torch.long, device=pairs[0][0].device)
        features = self.group_encoder or self.net
        return grouping.assign(torch.stack([features.embed(r) for r, _ in pairs]),
                               torch.stack([features.embed(s) for _, s in pairs]))

    def logged(self) -> dict[str, torch.Tensor]:
        """``cvar=release``: the values the release logs for its network's training (else nothing)."""
        return self.release_network.logged if self.release_network is not None else {}

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None:
        """Train the network between matching steps (not after the iteration's last update): ``inner_loop``
        epochs on the synthetic set, ``inner_loop`` robust steps on real data, or the release's epochs on the
        pooled real set (``cvar=release``)."""
        if is_last:
            return
        if self.release_network is not None:
            self.release_network.train(self.net, self.net_optimizer, self.pool, self.matched_synthetic)
            return
        if self.robust_network is not None:
            for _ in range(self.inner_loop):
                self.robust_network.step(self.net, self.net_optimizer, synthetic, self.augment)
            return
        c, ipc = synthetic.shape[:2]
        labels = class_major_labels(c, ipc, synthetic.device)
        # With DSA, the network trains with per-sample augmentation parameters, as in the reference.
        run_epochs(self.once_differentiable_net, self.net_optimizer, synthetic.flatten(0, 1), labels, self.inner_loop,
                   self.batch_train, self.augment)


@dataclass
class GradientConfig(DistillConfig):
    """``method=dc`` / ``dsa``: the gradient ``metric``; the network's SGD between matching steps (``lr_net``,
    ``batch_train``); ``outer_loop`` synthetic updates per iteration with ``inner_loop`` network epochs between
    them (``None``: the reference schedule for the IPC); ``compile`` (``GradientMatcher``)."""

    metric: str = "ours"
    lr_net: float = 0.01
    batch_train: int = 256
    outer_loop: Optional[int] = None
    inner_loop: Optional[int] = None
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("method.metric", self.metric, DISTANCES)
        positive("method.lr_net", self.lr_net)
        integer("method.batch_train", self.batch_train)
        for key, value in (("method.outer_loop", self.outer_loop), ("method.inner_loop", self.inner_loop)):
            if value is not None:
                integer(key, value)


def check_schedule(cfg: DictConfig) -> None:
    """Without explicit loops, the IPC must have a reference loop schedule; a robust network target needs the
    network to train between matching steps (``outer_loop`` > 1)."""
    outer, _ = loops_for_ipc(cfg.ipc, cfg.method.outer_loop, cfg.method.inner_loop)
    if acts_on_network(cfg.cvar) or acts_as_released(cfg.cvar):
        require(outer > 1, "cvar.target", cfg.cvar.target,
                f"'matching' with method.outer_loop=1 (the schedule of ipc={cfg.ipc} unless set): the network is never "
                "trained between matching steps, so the network training of cvar.target=network|both|release never "
                "runs; or set method.outer_loop > 1 and method.inner_loop (for example 5 and 5)")


def build(inputs: MatcherInputs) -> GradientMatcher:
    """The reference loop schedule by IPC unless both loops are set; with ``cvar.target=network|both`` the
    network trains on real data with the group-robust loss between matching steps; with ``cvar=release`` on the
    pooled real set, as the robust-DD release trains it."""
    m, cfg = inputs.method, inputs.cfg
    outer, inner = loops_for_ipc(cfg.ipc, m.outer_loop, m.inner_loop)
    robust_network = None
    if acts_on_network(cfg.cvar):
        # The whole real batch on every rank: each rank trains an identical copy of the network.
        robust_network = RobustNetworkTraining(inputs.data.sample_real, NearestSynthetic(), network_risk(cfg.cvar),
                                               batch_size=m.batch_train)
    release_network = None
    if acts_as_released(cfg.cvar):
        release_network = ReleaseNetworkTraining(inputs.data.sample_real, m.batch_real, batch_size=m.batch_train,
                                                 per_sample=cross_entropy_per_sample, augment=inputs.augment,
                                                 **release_options(cfg.cvar, epochs=inner))
    return GradientMatcher(inputs.make_network, inputs.augment, metric=m.metric, outer_loop=outer, inner_loop=inner,
                           lr_net=m.lr_net, batch_train=m.batch_train, robust_network=robust_network,
                           group_encoder=inputs.group_encoder, shrink=inputs.shrink, compile=m.compile,
                           release_network=release_network)


for _name in ("dc", "dsa"):
    register(Method(_name, GradientConfig, build, groups_real=True, trains_network=True, trains_as_released=True,
                    reference_iterations=1_000, check=check_schedule))
