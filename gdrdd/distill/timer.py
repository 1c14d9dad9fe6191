"""Wall-clock seconds per distillation iteration (one Lightning training step), evaluation excluded."""

from __future__ import annotations

import statistics
import time

import lightning as L


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Registered before the evaluation callback, so a mid-run evaluation is not counted.
        self.seconds.append(time.perf_counter() - self._start)

    def summary(self) -> dict[str, float]:
        if not self.seconds:
            return {}
        return {"seconds_per_iteration_median": statistics.median(self.seconds),
                "seconds_per_iteration_mean": statistics.fmean(self.seconds), "iterations_timed": len(self.seconds)}
