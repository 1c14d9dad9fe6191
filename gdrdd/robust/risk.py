"""Risk measures over group losses.

Convention (alpha in [0, 1)): for group losses ``L_g`` and weights ``w_g`` summing to one,

    CVaR_alpha = min_eta  eta + 1 / (1 - alpha) * sum_g w_g * max(L_g - eta, 0),

the weighted mean of the worst ``1 - alpha`` share of the mass, with a fractional weight on the boundary
group. alpha = 0 is the weighted mean (non-robust); alpha -> 1 approaches the worst group; alpha = 0.8
averages the worst 20 %. Weights are ``mass`` (each group's share of the real images) or ``uniform`` (every
non-empty group alike); empty groups have weight 0. Gradients flow through the selected losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from gdrdd.utils.checks import integer, is_number, level, one_of, require

WEIGHTINGS = ("mass", "uniform")


def cvar_tail_weights(losses: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """Weights ``(G,)`` on each group in the CVaR at level ``alpha``; they sum to one.

    Sorts the losses in descending order and spends the tail mass ``1 - alpha`` from the worst group down;
    the boundary group gets the remaining fraction. The result is a constant with respect to the losses
    (it only depends on their order), so ``(tail_weights * losses).sum()`` differentiates exactly.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"CVaR alpha must lie in [0, 1); got {alpha}")
    tail = 1.0 - alpha
    order = torch.argsort(losses.detach(), descending=True, stable=True)
    w_sorted = weights[order] / weights.sum()
    mass_before = torch.cumsum(w_sorted, 0) - w_sorted
    taken = torch.clamp(torch.minimum(w_sorted, tail - mass_before), min=0.0)
    out = torch.zeros_like(w_sorted)
    out[order] = taken / tail
    return out


def cvar(losses: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """CVaR of ``losses`` ``(G,)`` under ``weights`` ``(G,)`` (need not be normalised) at level ``alpha``."""
    return (cvar_tail_weights(losses, weights.to(losses.dtype), alpha) * losses).sum()


def group_weights(counts: torch.Tensor, weighting: str) -> torch.Tensor:
    """Normalised group weights from real-image counts ``(G,)``; empty groups get 0."""
    counts = counts.to(torch.float64 if counts.dtype == torch.float64 else torch.float32)
    if weighting == "mass":
        w = counts
    elif weighting == "uniform":
        w = (counts > 0).to(counts.dtype)
    else:
        raise ValueError(f"unknown CVaR weighting {weighting!r}; accepted: {', '.join(WEIGHTINGS)}")
    return w / w.sum().clamp(min=1e-12)


@dataclass
class RiskOutput:
    """``objective``: the scalar to minimise; ``value``: the risk itself; ``tail_weights`` ``(G,)``."""

    objective: torch.Tensor
    value: torch.Tensor
    tail_weights: torch.Tensor


class RiskMeasure(Protocol):
    def start_iteration(self, iteration: int) -> None: ...

    def __call__(self, losses: torch.Tensor, counts: torch.Tensor) -> RiskOutput: ...


class SumOverGroups:
    """The base methods' objective: the plain sum of the (per-class) losses. Used by ``cvar=none``."""

    def start_iteration(self, iteration: int) -> None:
        """Nothing depends on the iteration."""

    def __call__(self, losses: torch.Tensor, counts: torch.Tensor) -> RiskOutput:
        total = losses.sum()
        return RiskOutput(total, total, (counts > 0).to(losses.dtype))


class CVaR:
    """CVaR at level ``alpha`` over groups, optionally mixed with the mean.

    ``objective = scale * ((1 - mix) * mean + mix * CVaR)`` (``mix = 1``: CVaR alone), where the mean and the
    CVaR use the same group weights. The base matchers sum their loss over C classes; with ``scale = C`` and
    mass weights over class-balanced batches, alpha = 0 (or mix = 0) gives exactly the base method's gradient,
    so the reference learning rates keep their meaning.

    ``min_count``: groups with fewer real images get weight 0 (tiny groups have noisy losses that can fill
    the tail). ``warmup``: alpha rises linearly from 0 to ``alpha`` over the first ``warmup`` iterations
    (``start_iteration`` sets the iteration).
    """

    def __init__(self, alpha: float, weighting: str = "mass", scale: float = 1.0, mix: float = 1.0,
                 min_count: int = 0, warmup: int = 0) -> None:
        # The run config's cvar values are checked by constructing this measure (gdrdd.config.checks).
        level("cvar.alpha", alpha, " (0: the mean, non-robust; 0.8: the worst 20 %; near 1: the worst group)")
        one_of("cvar.weighting", weighting, WEIGHTINGS)
        require(is_number(mix) and 0 <= mix <= 1, "cvar.mix", mix, "a number in [0, 1] (0: the mean, 1: CVaR alone)")
        integer("cvar.min_count", min_count, minimum=0)
        integer("cvar.warmup", warmup, minimum=0)
        self.alpha, self.weighting, self.scale = alpha, weighting, scale
        self.mix, self.min_count, self.warmup = mix, min_count, warmup
        self.current_alpha = alpha if warmup == 0 else 0.0

    def start_iteration(self, iteration: int) -> None:
        self.current_alpha = self.alpha * min(1.0, iteration / self.warmup) if self.warmup > 0 else self.alpha

    def __call__(self, losses: torch.Tensor, counts: torch.Tensor) -> RiskOutput:
        """``tail_weights`` are the effective group weights of the (mixed) objective; they sum to one."""
        eligible = torch.where(counts >= self.min_count, counts, torch.zeros_like(counts))
        eligible = torch.where((eligible > 0).any(), eligible, counts)  # none large enough: every group (no sync)
        weights = group_weights(eligible, self.weighting).to(losses.dtype)
        tail = cvar_tail_weights(losses, weights, self.current_alpha)
        effective = self.mix * tail + (1.0 - self.mix) * weights
        value = (effective * losses).sum()
        return RiskOutput(self.scale * value, value, effective)
