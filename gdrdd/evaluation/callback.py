"""Evaluation of the synthetic set during and at the end of distillation."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from gdrdd.evaluation.evaluator import Evaluator

DURING = "eval_during.jsonl"  # in the run folder: one {"iteration", "metrics"} line per intermediate evaluation


class EvaluationCallback(L.Callback):
    """Evaluates the module's synthetic set after the distillation steps listed in ``at``, every ``every`` steps
    (if > 0), and once at the end of training (on rank 0 only in a distributed run).

    Metrics go to every logger under ``eval/``; the final ones are kept in ``final_metrics``. Intermediate ones
    are also appended to ``<run_dir>/eval_during.jsonl`` when ``run_dir`` is given, so a resumed run keeps the
    scores it took before the interruption (``during`` reads them back; a step evaluated twice keeps its last
    line). A run resumed from the checkpoint written at a due step, before that step's evaluation finished,
    evaluates it when training restarts.
    """

    def __init__(self, evaluator: Evaluator, every: int = 0, at: list[int] | tuple[int, ...] = (),
                 run_dir: str | Path | None = None) -> None:
        self.evaluator, self.every, self.at = evaluator, every, frozenset(at)
        self.record = Path(run_dir) / DURING if run_dir is not None else None
        self.final_metrics: dict[str, float] | None = None

    def due(self, done: int, total: int) -> bool:
        """Whether the set after ``done`` of ``total`` steps is scored before the end."""
        return 0 < done < total and (done in self.at or (self.every > 0 and done % self.every == 0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # > 0 only when resumed
        if self.due(done, trainer.num_training_batches) and done not in self.during():
            self._intermediate(trainer, pl_module, done)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        done = batch_idx + 1  # iterations completed
        if self.due(done, trainer.num_training_batches):
            self._intermediate(trainer, pl_module, done)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final_metrics = self._run(trainer, pl_module, "distilled")

    def during(self) -> dict[int, dict[str, float]]:
        """The intermediate scores recorded so far: ``{iteration: metrics}``, in iteration order."""
        return read_during(self.record) if self.record is not None else {}

    def _intermediate(self, trainer: L.Trainer, pl_module: L.LightningModule, done: int) -> None:
        metrics = self._run(trainer, pl_module, f"distilled at iteration {done}")
        if metrics is not None and self.record is not None:
            with open(self.record, "a") as f:
                f.write(json.dumps({"iteration": done, "metrics": metrics}) + "\n")

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> dict[str, float] | None:
        if not trainer.is_global_zero:  # in a distributed run, rank 0 evaluates
            return None
        metrics = self.evaluator.evaluate(*pl_module.training_set(), lr=pl_module.evaluation_lr(), name=name)
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
        return metrics


def read_during(path: str | Path) -> dict[int, dict[str, float]]:
    """The intermediate scores in a run's ``eval_during.jsonl``: ``{iteration: metrics}`` in iteration order, a step
    evaluated twice with its last line; ``{}`` if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return dict(sorted({line["iteration"]: line["metrics"] for line in lines}.items()))
