"""Metrics of one trained network on a labelled test set, and their summary over networks."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from gdrdd.robust.risk import cvar


def accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Overall (micro) accuracy in percent."""
    return 100.0 * float(multiclass_accuracy(preds, labels, num_classes, average="micro"))


def group_accuracies(preds: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Accuracy in percent of each group ``(num_groups,)``; NaN for a group with no test image."""
    correct = (preds == labels).double()
    hits = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, groups.cpu(), correct.cpu())
    sizes = torch.bincount(groups.cpu(), minlength=num_groups).double()
    return torch.where(sizes > 0, 100.0 * hits / sizes.clamp(min=1), torch.full_like(sizes, float("nan")))


def group_loss_cvar(per_sample_loss: torch.Tensor, groups: torch.Tensor, num_groups: int, alpha: float) -> float:
    """CVaR at ``alpha`` (mass weights) of the groups' mean test losses."""
    loss, groups = per_sample_loss.double().cpu(), groups.cpu()
    sums = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, groups, loss)
    sizes = torch.bincount(groups, minlength=num_groups).double()
    return float(cvar(sums / sizes.clamp(min=1), sizes, alpha))


def summarise(per_net: list[dict[str, float]]) -> dict[str, float]:
    """``{name: value}`` per network -> ``{name: mean, name_std: std}`` over networks (std 0 for one)."""
    out: dict[str, float] = {}
    for key in per_net[0]:
        values = torch.tensor([m[key] for m in per_net], dtype=torch.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(unbiased=True)) if len(values) > 1 else 0.0
    return out
