"""The LightningModule: learnable synthetic images and the robust distillation step."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn

from gdrdd.data.spec import class_major_labels
from gdrdd.distill.group_stats import GroupStats
from gdrdd.distill.kmeans_batch import kmeans_picks
from gdrdd.distill.parameterization import Parameterization
from gdrdd.errors import NonFiniteError
from gdrdd.evaluation.labels import training_targets
from gdrdd.matchers.base import Matcher
from gdrdd.robust.grouping import Grouping, KnownGroups
from gdrdd.robust.risk import CVaR, RiskMeasure
from gdrdd.utils.distributed import rank_slice

log = logging.getLogger(__name__)


class DistillModule(L.LightningModule):
    """Stored synthetic tensors ``images`` ``(C*ipc, ch, H, W)`` (class-major) with fixed ``labels`` ``(C*ipc,)``;
    the ``parameterization`` turns them into the training images the matcher sees, ``(C, ipc * f^2, ch, H, W)``
    network inputs (``synthetic_by_class``; without multi-formation and pixel storage: the tensors themselves).

    One training step is one distillation iteration: the matcher draws its network, then for each of its
    ``updates_per_iteration`` updates: a class-balanced real batch from the DataModule -> matcher -> per-group
    losses -> risk measure (plus the matcher's ``base`` loss, if any) -> backward -> SGD update of the images
    and of the matcher's own learnable tensors (manual optimisation) -> the matcher's ``after_update`` hook. The
    logged values are those of the iteration's last update.

    Each iteration reseeds the global RNG from ``(seed, iteration)``, so an iteration's network, real batch
    and augmentation draws depend only on the run seed and the iteration index; the iteration index is
    Lightning's ``batch_idx``, restored with the loop state when a run resumes from a checkpoint, so a resumed
    run repeats exactly the iterations an uninterrupted one would have made.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, matcher: Matcher, grouping: Grouping,
                 risk: RiskMeasure, lr_img: float, momentum: float = 0.5, batch_real: int = 256, seed: int = 0,
                 skip_nonfinite: bool = False, parameterization: Parameterization | None = None,
                 kmeans_centres: int | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.images = nn.Parameter(images.detach().clone())
        self.register_buffer("labels", labels.detach().clone())
        self.num_classes = int(labels.max()) + 1
        self.ipc = len(labels) // self.num_classes
        self.parameterization = parameterization or Parameterization()
        self.matcher, self.grouping, self.risk = matcher, grouping, risk
        self.lr_img, self.momentum, self.batch_real, self.seed = lr_img, momentum, batch_real, seed
        self.kmeans_centres = kmeans_centres  # method.real_batch=kmeans: real images kept per class (None: all)
        self.skip_nonfinite, self.skipped_updates = skip_nonfinite, 0
        self.threshold_skips = 0  # updates the matcher declined (DATM's threshold)
        self.last_group_stats: GroupStats | None = None  # the last update's groups, for the dashboard

    def configure_optimizers(self) -> torch.optim.Optimizer:
        extra = self.matcher.param_groups() if hasattr(self.matcher, "param_groups") else []
        return torch.optim.SGD([{"params": [self.images]}, *extra], lr=self.lr_img, momentum=self.momentum)

    def evaluation_lr(self) -> float | None:
        """The learning rate evaluation networks should use instead of the protocol's (MTT: the learned one,
        unless it has become <= 0, which SGD cannot use: then the protocol's, with a warning)."""
        lr = getattr(self.matcher, "learned_lr", None)
        lr = None if lr is None else float(lr)
        if lr is not None and lr <= 0:
            log.warning("the learned step size is %g <= 0; evaluating with eval.lr instead", lr)
            return None
        return lr

    def _real_batch(self, classes: list[int] | None = None) -> torch.Tensor | None:
        """The class-balanced real batch of one update (of ``classes`` only, if given); in a distributed run this
        rank's slice of it, unless the matcher works on the whole batch (``splits_real = False``); ``None`` if the
        matcher uses none. With ``kmeans_centres``, each class's batch is cut to the image nearest each k-means
        centre in the matcher's network (``gdrdd.distill.kmeans_batch``; on the whole batch, then sliced). With
        ``KnownGroups``, the batch's subgroup labels go to the grouping."""
        if not getattr(self.matcher, "uses_real", True):
            return None
        split = getattr(self.matcher, "splits_real", True)
        known = isinstance(self.grouping, KnownGroups)
        drawn = self.trainer.datamodule.sample_real(self.batch_real, split=split and self.kmeans_centres is None,
                                                    with_subgroups=known, classes=classes)
        batch, ids = drawn if known else (drawn, None)
        if self.kmeans_centres is not None:
            picks = kmeans_picks(self.matcher.embedding_network(), batch, self.kmeans_centres)  # (C, k)
            rows = torch.arange(len(picks), device=picks.device)[:, None]
            batch, ids = batch[rows, picks], None if ids is None else ids[rows, picks]
            if split:
                batch, ids = rank_slice(batch, dim=1), None if ids is None else rank_slice(ids, dim=1)
        if known:
            self.grouping.set_batch(ids)
        return batch

    def _finite(self, objective: torch.Tensor, iteration: int, update: int) -> bool:
        """True if the loss and every gradient are finite. Otherwise raise ``NonFiniteError`` (the images are
        still the last good ones), or with ``skip_nonfinite`` count the skip and return False."""
        grads = [] if self._loss_scaled() else [p.grad for p in self.parameters() if p.grad is not None]
        checks = [torch.isfinite(objective).all(), *(torch.isfinite(g).all() for g in grads)]
        if bool(torch.stack(checks).all()):  # the one host synchronisation of an update: it decides the step
            return True
        if not self.skip_nonfinite:
            raise NonFiniteError(f"the distillation loss or its gradient is not finite at iteration {iteration} "
                                 f"(update {update}, loss {float(objective)}); the synthetic set is kept as it was "
                                 "before this update. Lower method.lr_img, or set guard.skip_nonfinite=true to skip "
                                 "such updates")
        self.skipped_updates += 1
        self.log("guard/skipped_updates", float(self.skipped_updates))
        return False

    def _accepted(self, base: torch.Tensor | None) -> bool:
        """Whether the matcher takes this update (``accepts(base)``; DATM skips poor matches), decided on the mean
        of ``base`` over the ranks of a distributed run so that every rank takes or skips it alike; a declined one
        is counted and logged as ``distill/skipped_threshold``."""
        accepts = getattr(self.matcher, "accepts", None)
        if accepts is None or bool(accepts(self.trainer.strategy.reduce(base.detach(), reduce_op="mean"))):
            return True
        self.threshold_skips += 1
        self.log("distill/skipped_threshold", float(self.threshold_skips))
        return False

    def _loss_scaled(self) -> bool:
        """Lightning scales the loss (``trainer.precision=16-mixed``): its scaler checks the gradients, skipping an
        update whose scaled gradients overflow and lowering the scale, so the guard checks the loss only."""
        plugin = getattr(self._trainer, "precision_plugin", None)
        return getattr(plugin, "scaler", None) is not None

    def on_fit_start(self) -> None:
        self.trainer.datamodule.to(self.device)

    def synthetic_by_class(self) -> torch.Tensor:
        """The training images ``(C, ipc * f^2, ch, H, W)`` (network inputs, differentiable in ``images``)."""
        return self.parameterization.decode(self.images.view(self.num_classes, self.ipc, *self.images.shape[1:]))

    def stored_labels(self) -> tuple[torch.Tensor, str]:
        """The labels of the stored tensors and their kind (``gdrdd.evaluation.labels``): the matcher's learned
        ``(C*ipc, C)`` logits if it learns labels (DATM), else the fixed class indices ``(C*ipc,)``."""
        learned = getattr(self.matcher, "learned_labels", None)
        return (self.labels, "hard") if learned is None else (learned, "logits")

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images, flattened and detached ``(C * ipc * f^2, ch, H, W)``, with their targets: class
        indices, or class probabilities ``(N, C)`` for learned labels (one stored image, one label: no
        multi-formation then)."""
        images = self.synthetic_by_class().detach()
        labels, kind = self.stored_labels()
        if kind == "hard":
            return images.flatten(0, 1), class_major_labels(self.num_classes, images.shape[1], images.device)
        return images.flatten(0, 1), training_targets(labels, kind)

    def stored_inputs(self) -> torch.Tensor:
        """The stored tensors as network inputs ``(C*ipc, ch, H, W)``, not decoded (what ``distilled.pt`` keeps)."""
        return self.parameterization.inputs(self.images.detach())

    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        self.parameterization.project_(self.images)
        torch.manual_seed(iteration_seed(self.seed, batch_idx))
        if hasattr(self.matcher, "set_iteration"):
            self.matcher.set_iteration(batch_idx)
        self.matcher.start_iteration(self.device)
        self.risk.start_iteration(batch_idx)
        updates = self.matcher.updates_per_iteration
        update_classes = getattr(self.matcher, "update_classes", None)
        for update in range(updates):
            real = self._real_batch(None if update_classes is None else update_classes(update))
            out = self.matcher.group_losses(real, self.synthetic_by_class(), self.grouping)
            risk = self.risk(out.losses, out.counts)
            objective = risk.objective if out.base is None else risk.objective + out.base
            optimizer.zero_grad()
            self.manual_backward(objective)
            if not self._finite(objective, batch_idx, update) or not self._accepted(out.base):
                continue  # guard.skip_nonfinite, or the matcher declines it: this update is skipped
            optimizer.step()
            self.matcher.after_update(self.synthetic_by_class().detach(), is_last=update == updates - 1)
        self.log("distill/loss", objective.detach(), prog_bar=True)
        if out.base is not None:
            self.log("distill/base_loss", out.base.detach())
        if hasattr(self.matcher, "learned_lr"):
            self.log("distill/learned_lr", self.matcher.learned_lr)
        matcher_values = self.matcher.logged() if hasattr(self.matcher, "logged") else {}
        if matcher_values:
            self.log_dict(matcher_values)
        self.last_group_stats = GroupStats(out.losses.detach(), out.counts.detach(),  # moved to the CPU when logged
                                           risk.tail_weights.detach() if isinstance(self.risk, CVaR) else None,
                                           out.groups_per_class)
        if len(out.losses):  # tensors only: Lightning reads them at its logging interval
            nonempty, losses = out.counts > 0, out.losses.detach()
            self.log_dict({
                "robust/risk": risk.value.detach(),
                "robust/group_loss_mean": (losses * nonempty).sum() / nonempty.sum().clamp(min=1),
                "robust/group_loss_max": losses.masked_fill(~nonempty, float("-inf")).max(),
                "robust/nonempty_groups": nonempty.sum().float(),
            })
        return objective.detach()


def iteration_seed(run_seed: int, iteration: int) -> int:
    """The RNG seed of one distillation iteration."""
    return run_seed * 1_000_003 + iteration
