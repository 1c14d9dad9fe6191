"""Helpers for runs over several processes (Lightning DDP). Every helper is a no-op in a single process.

Semantics (docs/scaling.md): every rank draws the same global real batch (the RNG is reseeded per
iteration from the run seed and the iteration index), keeps its slice of it, and the matchers sum their group
statistics over ranks before the risk measure, so the CVaR is taken over the global groups.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    return rank_and_world()[1] > 1


def rank_slice(batch: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """This rank's contiguous share of ``batch`` along ``dim`` (the whole batch in a single process)."""
    rank, world = rank_and_world()
    if world == 1:
        return batch
    return batch.tensor_split(world, dim=dim)[rank]


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over ranks, in place (no gradient flows through)."""
    if is_distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
