"""What a run shows beyond scalars: group-loss histograms, the CVaR tail's share per class, and tables of the
evaluation. Everything goes to the run folder as well as to the loggers (W&B gets histograms and tables).

Group statistics come from the module's last update (``DistillModule.last_group_stats``), class-major:
group ``g`` of class ``c`` is entry ``c * groups_per_class + g``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from gdrdd.evaluation.report import metric_label, shown_metrics
from gdrdd.outputs import write_text


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

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        stats: GroupStats | None = getattr(pl_module, "last_group_stats", None)
        done = batch_idx + 1
        if stats is None or stats.losses.numel() == 0 or self.every <= 0 or done % self.every or not trainer.is_global_zero:
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


def group_accuracy_rows(scored: dict[str, dict[str, float]], group_sizes: list[int]) -> tuple[list[str], list[list]]:
    """Columns and rows of the per-group test accuracy table: group, test images in it, then the mean accuracy
    of each scored set (``group<g>_acc`` metrics)."""
    columns = ["group", "test_images", *scored]
    rows = [[g, size, *(round(scored[name].get(f"group{g}_acc", float("nan")), 2) for name in scored)]
            for g, size in enumerate(group_sizes)]
    return columns, rows


def cell_accuracy_rows(scored: dict[str, dict[str, float]],
                       cells: list[tuple[int, int, float, int]]) -> tuple[list[str], list[list]]:
    """Columns and rows of the class x subgroup test accuracy table of a subpopulation-shift data set: class,
    subgroup, its kept training fraction, test images in the cell, then each scored set's ``cell<c>_<s>_acc``."""
    columns = ["class", "subgroup", "kept", "test_images", *scored]
    rows = [[c, s, kept, size, *(round(scored[name].get(f"cell{c}_{s}_acc", float("nan")), 2) for name in scored)]
            for c, s, kept, size in cells]
    return columns, rows


def comparison_rows(scored: dict[str, dict[str, float]]) -> tuple[list[str], list[list]]:
    """Columns and rows of the evaluation table (one row per metric, mean and std of each scored set)."""
    columns = ["metric", *(f"{n}{s}" for n in scored for s in ("", "_std"))]
    first = next(iter(scored.values()))
    rows = [[metric_label(k), *(round(scored[n][key], 4) for n in scored for key in (k, f"{k}_std"))]
            for k in shown_metrics(first)]
    return columns, rows


def write_tables(out: str | Path, loggers: list, scored: dict[str, dict[str, float]], group_sizes: list[int],
                 cells: list[tuple[int, int, float, int]] | None = None) -> None:
    """``group_accuracy.csv``, ``comparison.csv`` and, given a subpopulation-shift data set's ``cells``
    (``Evaluator.cells``), ``cell_accuracy.csv`` in the run folder; the same tables to W&B (``eval/<name>``)."""
    tables = {"group_accuracy": group_accuracy_rows(scored, group_sizes), "comparison": comparison_rows(scored)}
    if cells is not None:
        tables["cell_accuracy"] = cell_accuracy_rows(scored, cells)
    for name, (columns, rows) in tables.items():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([columns, *rows])
        write_text(Path(out) / f"{name}.csv", buffer.getvalue())
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=f"eval/{name}", columns=columns, data=rows)
