"""The robust objective's groups during distillation: group losses, real-image counts and the CVaR tail's share
per class, to ``group_stats.jsonl`` in the run folder and to the loggers (W&B also gets a histogram).

Group statistics come from the module's last update (``DistillModule.last_group_stats``), class-major:
group ``g`` of class ``c`` is entry ``c * groups_per_class + g``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger


@dataclass
class GroupStats:
    """One update's group losses ``(G,)``, real-image counts ``(G,)`` and CVaR tail weights ``(G,)`` (summing
    to one; ``None`` without a CVaR), with ``G = C * groups_per_class``."""

    losses: torch.Tensor
    counts: torch.Tensor
    tail_weights: torch.Tensor | None
    groups_per_class: int

    def tail_share_per_class(self) -> torch.Tensor | None:
        """``(C,)``: the share of the CVaR tail's weight on each class's groups (sums to one)."""
        if self.tail_weights is None or self.groups_per_class == 0:
            return None
        return self.tail_weights.view(-1, self.groups_per_class).sum(dim=1)


class GroupStatsLogger(L.Callback):
    """Every ``every`` iterations (rank 0): appends the group losses, counts, tail weights and per-class tail
    share to ``<out>/group_stats.jsonl``; logs ``robust/tail_share/<class>`` scalars to every logger and a
    ``robust/group_losses`` histogram to W&B."""

    def __init__(self, out: str | Path, class_names: list[str], every: int = 10) -> None:
        self.path, self.class_names, self.every = Path(out) / "group_stats.jsonl", list(class_names), every

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        stats: GroupStats | None = getattr(pl_module, "last_group_stats", None)
        done = batch_idx + 1
        due = self.every > 0 and done % self.every == 0
        if stats is None or stats.losses.numel() == 0 or not due or not trainer.is_global_zero:
            return
        stats = GroupStats(stats.losses.cpu(), stats.counts.cpu(),
                           None if stats.tail_weights is None else stats.tail_weights.cpu(), stats.groups_per_class)
        nonempty = stats.counts > 0
        share = stats.tail_share_per_class()
        record = {"iteration": done, "groups_per_class": stats.groups_per_class, "losses": stats.losses.tolist(),
                  "counts": stats.counts.tolist(),
                  "tail_weights": None if stats.tail_weights is None else stats.tail_weights.tolist(),
                  "tail_share_per_class": None if share is None else dict(zip(self.class_names, share.tolist()))}
        with open(self.path, "a") as f:  # append-only: a resumed run continues the same file
            f.write(json.dumps(record) + "\n")
        scalars = {} if share is None else {f"robust/tail_share/{n}": float(s) for n, s in zip(self.class_names, share)}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_metrics({**scalars, "robust/group_losses": wandb.Histogram(stats.losses[nonempty].numpy())},
                                   step=trainer.global_step)
            elif scalars:
                logger.log_metrics(scalars, step=trainer.global_step)


