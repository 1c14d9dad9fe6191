"""IDC (Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization", ICML 2022): gradient
matching of a multi-formation synthetic set, with a network trained on *real* data between the matching steps.

The synthetic tensors are learnt in ``[0, 1]`` pixel space, clamped there at the start of every iteration, and
each trains as ``factor^2`` decoded images (``gdrdd.distill.parameterization``). One iteration (IDC's outer
iteration) draws a fresh network, then ``inner_loop`` times:

1. for each class in turn, one update of the synthetic set (``update_classes``): a real batch of the class
   (``batch_real``) and at most ``batch_syn_max`` of its decoded synthetic images (a random subset when there are
   more), augmented together with one draw of IDC's stacked augmentation (``gdrdd.augment.stacked``, strategy
   ``strategy``); the loss is the distance ``metric`` (``mse``: squared, ``l1``: absolute differences, summed)
   between the real and synthetic gradients of the cross-entropy with respect to the convolution weights
   (biases, norm parameters and the classifier are not matched); the synthetic SGD steps once per class, as
   IDC's does, so the momentum of every class's images moves at each class's step;
2. then the network trains on ``n_data`` random real images (batches of ``batch_net``; SGD ``lr_net``,
   ``momentum_net``, ``weight_decay_net``; per-sample augmentation of the same stack without cutout; CutMix with
   probability ``cutmix``), except after the iteration's last update.

Group losses: the class's augmented real images are grouped by their nearest decoded synthetic image of the class
in the network's embedding, and each group's loss is its gradient distance; with ``ByClass`` grouping (``cvar=none``)
it is IDC's loss. ``cvar.target=network|both`` is the paper's Algorithm 1: step 2 minimises the CVaR over
nearest-synthetic groups of the per-sample (CutMix-ed) cross-entropy instead of its mean. ``cvar=release``
(``gdrdd.robust.release``): step 2 instead trains ``cvar.release.epochs`` passes (null: one; batches of
``batch_net``, the same augmentation and CutMix-ed loss, averaged) over the real images pooled in the inner step:
every class's matched batch as augmented plus a second random ``batch_real`` batch per class, grouped around the
matched synthetic images for logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gdrdd.augment.dsa import FAMILIES
from gdrdd.augment.stacked import StackedAugment, without
from gdrdd.data.datamodule import RealDataModule
from gdrdd.matchers.base import GroupLosses
from gdrdd.matchers.gradient import gradient_distance, group_gradients
from gdrdd.matchers.registry import DistillConfig, MatcherInputs, Method, register
from gdrdd.models.fit import CutMix, LossFn, backward_and_step
from gdrdd.robust.grouping import Grouping, NearestSynthetic, shrink_to_pooled
from gdrdd.robust.network import GroupRobustLoss, cross_entropy_per_sample
from gdrdd.robust.objective import acts_as_released, acts_on_network, network_risk, release_options
from gdrdd.robust.release import ReleaseNetworkTraining, ReleasePool
from gdrdd.utils.checks import integer, one_of, positive, require
from gdrdd.utils.runtime import gradient_scaler, scaled_grad

METRICS = ("mse", "l1")


def matched_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters IDC matches: neither 1-D (biases, norm scales) nor 2-D (the classifier's weight)."""
    return [p for p in net.parameters() if p.requires_grad and p.dim() not in (1, 2)]


class IDCMatcher:
    def __init__(self, make_network: Callable[[], nn.Module], num_classes: int, real: RealDataModule,
                 augment: StackedAugment | None, net_augment: StackedAugment | None,
                 metric: str = "mse", inner_loop: int = 100, batch_syn_max: int = 128, lr_net: float = 0.01,
                 momentum_net: float = 0.9, weight_decay_net: float = 5e-4, n_data: int = 2000, batch_net: int = 64,
                 cutmix: float = 0.5, cutmix_beta: float = 1.0, robust_network: Callable | None = None,
                 group_encoder: nn.Module | None = None, shrink: float = 0.0,
                 release_network: ReleaseNetworkTraining | None = None) -> None:
        """``real``: the training set the network trains on (network inputs, gathered by class-major index);
        ``robust_network(synthetic, per_sample) -> loss_fn``: the group-robust loss of Algorithm 1;
        ``group_encoder`` (a fixed network) forms the groups instead of the step's network; ``shrink`` pulls each
        group's real gradient toward the class's with a prior of that many images; ``release_network``: the
        release's training on the pooled real set (``cvar=release``) instead of step 2's."""
        self.make_network, self.num_classes = make_network, num_classes
        self.real = real
        self.augment, self.net_augment, self.metric = augment, net_augment, metric
        self.inner_loop, self.batch_syn_max = inner_loop, batch_syn_max
        self.lr_net, self.momentum_net, self.weight_decay_net = lr_net, momentum_net, weight_decay_net
        self.n_data, self.batch_net, self.cutmix, self.cutmix_beta = n_data, batch_net, cutmix, cutmix_beta
        self.robust_network, self.group_encoder, self.shrink = robust_network, group_encoder, shrink
        self.release_network = release_network
        self.splits_real = release_network is None  # the release's pool: the whole batch on every rank
        self.pool, self.matched_synthetic = ReleasePool(), []  # cvar=release: this inner step's matched images
        self.updates_per_iteration = inner_loop * num_classes
        self.current_class = 0
        self.net: nn.Module | None = None

    def start_iteration(self, device: torch.device | str) -> None:
        self.net = self.make_network().to(device).train()
        self.params = matched_parameters(self.net)
        self.net_optimizer = torch.optim.SGD(self.net.parameters(), lr=self.lr_net, momentum=self.momentum_net,
                                             weight_decay=self.weight_decay_net)

    def embedding_network(self) -> nn.Module:
        """The step's network, whose ``embed`` picks the k-means real batch (``method.real_batch=kmeans``)."""
        return self.net

    def update_classes(self, update: int) -> list[int]:
        """Update ``u`` matches class ``u mod C``: the classes in turn, ``inner_loop`` times."""
        self.current_class = update % self.num_classes
        return [self.current_class]

    def group_losses(self, real: torch.Tensor, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses:
        """``real`` ``(1, n, ch, H, W)``: the current class's batch; ``synthetic`` ``(C, k, ...)`` decoded."""
        c, k = self.current_class, synthetic.shape[1]
        groups = grouping.groups_per_class(k)
        images, chosen = synthetic[c], torch.arange(k, device=synthetic.device)
        if k > self.batch_syn_max:
            chosen = torch.randperm(k, device=synthetic.device)[:self.batch_syn_max]
            images = images[chosen]
        r, s = real[0], images
        if self.augment is not None:
            r, s = self.augment.siamese(r, s)
        ids = self._group_ids(grouping, r, s, chosen, groups)
        if self.release_network is not None:
            if c == 0:
                self.pool, self.matched_synthetic = ReleasePool(), []
            self.pool.add(r, c)
            self.matched_synthetic.append(s.detach())
        g_real, counts = group_gradients(self.net, self.params, r, c, ids, groups)
        if self.shrink > 0:
            g_real = [shrink_to_pooled(g, counts, self.shrink) for g in g_real]
        syn_loss = F.cross_entropy(self.net(s), torch.full((len(s),), c, device=s.device))
        g_syn = scaled_grad(syn_loss, self.params, create_graph=True)
        distance = gradient_distance(g_real, list(g_syn), self.metric)
        losses = distance.new_zeros(self.num_classes, groups)
        all_counts = distance.new_zeros(self.num_classes, groups)
        losses[c] = torch.where(counts > 0, distance, torch.zeros_like(distance))
        all_counts[c] = counts.to(distance.dtype)
        return GroupLosses(losses.flatten(), all_counts.flatten(), groups)

    @torch.no_grad()
    def _group_ids(self, grouping: Grouping, real: torch.Tensor, synthetic: torch.Tensor, chosen: torch.Tensor,
                   groups: int) -> torch.Tensor:
        """Group ids ``(n,)`` in ``[0, groups)``: the index, among all the class's decoded images, of each real
        image's nearest sampled synthetic image (all zeros with one group)."""
        if groups == 1:
            return torch.zeros(len(real), dtype=torch.long, device=real.device)
        features = self.group_encoder or self.net
        nearest = grouping.assign(features.embed(real)[None], features.embed(synthetic)[None])[0]
        return chosen[nearest] if isinstance(grouping, NearestSynthetic) else nearest

    def logged(self) -> dict[str, torch.Tensor]:
        """``cvar=release``: the values the release logs for its network's training (else nothing)."""
        return self.release_network.logged if self.release_network is not None else {}

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None:
        """After the last class of an inner step (not after the iteration's last update): the network's training
        on real data."""
        if self.current_class != self.num_classes - 1 or is_last:
            return
        if self.release_network is not None:
            self.release_network.train(self.net, self.net_optimizer, self.pool, torch.stack(self.matched_synthetic))
            return
        per_sample = CutMix(self.cutmix, self.cutmix_beta).per_sample if self.cutmix > 0 else cross_entropy_per_sample
        loss_fn: LossFn = (self.robust_network(synthetic, per_sample) if self.robust_network is not None
                           else lambda net, x, y: per_sample(net, x, y).mean())
        batches = -(-self.n_data // self.batch_net)  # IDC stops after the batch that reaches n_data images
        order = torch.randperm(self.real.training_size)[:batches * self.batch_net]
        self.net.train()
        scaler = gradient_scaler(synthetic.device)
        for idx in order.split(self.batch_net):
            x, y = self.real.training_images(idx)
            if self.net_augment is not None:
                with torch.no_grad():
                    x = self.net_augment(x)
            loss = loss_fn(self.net, x, y)
            self.net_optimizer.zero_grad(set_to_none=True)
            backward_and_step(loss, self.net_optimizer, scaler)


@dataclass
class IDCConfig(DistillConfig):
    """``method=idc`` (``conf/method/idc.yaml``, the author-provided CIFAR-10 settings; the ``idc_*`` experiments
    hold the other data sets and IPCs). ``strategy``: IDC's augmentation of the matching batches (``augment=dsa``
    turns it on); the network trains with it minus cutout when ``cutmix`` > 0."""

    factor: int = 2
    metric: str = "mse"
    strategy: str = "color_crop_cutout"
    inner_loop: int = 100
    batch_syn_max: int = 128
    lr_net: float = 0.01
    momentum_net: float = 0.9
    weight_decay_net: float = 5e-4
    n_data: int = 2000
    batch_net: int = 64
    cutmix: float = 0.5
    cutmix_beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("method.metric", self.metric, METRICS)
        require(all(f in FAMILIES for f in self.strategy.split("_")), "method.strategy", self.strategy,
                f"families joined by '_' from {', '.join(FAMILIES)}")
        for key in ("inner_loop", "batch_syn_max", "n_data", "batch_net"):
            integer(f"method.{key}", getattr(self, key))
        for key in ("lr_net", "cutmix_beta"):
            positive(f"method.{key}", getattr(self, key))
        require(0 <= self.momentum_net < 1, "method.momentum_net", self.momentum_net, "a number in [0, 1)")
        require(self.weight_decay_net >= 0, "method.weight_decay_net", self.weight_decay_net, "a number >= 0")
        require(0 <= self.cutmix <= 1, "method.cutmix", self.cutmix, "a probability in [0, 1]")


def build(inputs: MatcherInputs) -> IDCMatcher:
    m, cfg = inputs.method, inputs.cfg
    match_augment = StackedAugment(m.strategy) if m.augment == "dsa" else None
    net_strategy = without(m.strategy, "cutout") if m.cutmix > 0 else m.strategy
    net_augment = StackedAugment(net_strategy) if m.augment == "dsa" and net_strategy else None
    robust = None
    if acts_on_network(cfg.cvar):
        risk = network_risk(cfg.cvar)
        robust = lambda synthetic, per_sample: GroupRobustLoss(synthetic, NearestSynthetic(), risk,  # noqa: E731
                                                               per_sample=per_sample)
    release = None
    if acts_as_released(cfg.cvar):
        per_sample = CutMix(m.cutmix, m.cutmix_beta).per_sample if m.cutmix > 0 else cross_entropy_per_sample
        release = ReleaseNetworkTraining(inputs.data.sample_real, m.batch_real, batch_size=m.batch_net,
                                         per_sample=per_sample, augment=net_augment,
                                         **release_options(cfg.cvar, epochs=1))
    matcher = IDCMatcher(inputs.make_network, inputs.spec.num_classes, inputs.data, match_augment, net_augment,
                         metric=m.metric, inner_loop=m.inner_loop, batch_syn_max=m.batch_syn_max, lr_net=m.lr_net,
                         momentum_net=m.momentum_net, weight_decay_net=m.weight_decay_net, n_data=m.n_data,
                         batch_net=m.batch_net, cutmix=m.cutmix, cutmix_beta=m.cutmix_beta, robust_network=robust,
                         group_encoder=inputs.group_encoder, shrink=inputs.shrink, release_network=release)
    return matcher


register(Method("idc", IDCConfig, build, groups_real=True, trains_network=True, trains_as_released=True,
                updates_all_classes=False,
                stores_pixels=True, stateless_norm="it matches per group with one pass per group, exact only without "
                "batch statistics (the IDC ConvNet's norm is instancenorm)", reference_iterations=2_000))
