"""Evaluation of the synthetic set during and at the end of distillation."""

from __future__ import annotations

import lightning as L

from gdrdd.evaluation.evaluator import Evaluator


class EvaluationCallback(L.Callback):
    """Evaluates the module's synthetic set every ``every`` iterations (if > 0) and once at the end of training
    (on rank 0 only in a distributed run).

    Metrics go to every logger under ``eval/``; the final ones are kept in ``final_metrics``.
    """

    def __init__(self, evaluator: Evaluator, every: int = 0) -> None:
        self.evaluator, self.every = evaluator, every
        self.final_metrics: dict[str, float] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        done = batch_idx + 1  # iterations completed
        if self.every > 0 and done % self.every == 0 and done < trainer.num_training_batches:
            self._run(trainer, pl_module, f"distilled at iteration {done}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final_metrics = self._run(trainer, pl_module, "distilled")

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> dict[str, float] | None:
        if not trainer.is_global_zero:  # in a distributed run, rank 0 evaluates
            return None
        metrics = self.evaluator.evaluate(*pl_module.training_set(), lr=pl_module.evaluation_lr(), name=name)
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
        return metrics
