"""Wall-clock seconds per distillation iteration (one Lightning training step), evaluation excluded. On a CUDA
device each step is timed to its end (the device synchronised) and the peak allocated GPU memory is reported.
The process's peak resident memory up to the last step (MB) is reported too: it separates the distillation's
memory from the end-of-run evaluation's (a mid-run evaluation, ``eval.every`` or ``eval.at``, is included)."""

from __future__ import annotations

import resource
import statistics
import sys
import time

import lightning as L
import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (``ru_maxrss`` is in kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.peak_gpu_mb: float | None = None
        self.peak_rss_mb = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        synchronize(pl_module.device)
        if pl_module.device.type == "cuda":  # the peak of the steps alone: not the set-up, not a mid-run evaluation
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Registered before the evaluation callback, so a mid-run evaluation is not counted.
        synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self._start)
        self.peak_rss_mb = peak_rss_mb()
        if pl_module.device.type == "cuda":
            step_peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            self.peak_gpu_mb = max(self.peak_gpu_mb or 0.0, step_peak)

    def summary(self) -> dict[str, float]:
        if not self.seconds:
            return {}
        gpu = {} if self.peak_gpu_mb is None else {"peak_gpu_memory_mb": self.peak_gpu_mb}
        return {"seconds_per_iteration_median": statistics.median(self.seconds),
                "seconds_per_iteration_mean": statistics.fmean(self.seconds), "iterations_timed": len(self.seconds),
                "peak_rss_mb": self.peak_rss_mb, **gpu}
