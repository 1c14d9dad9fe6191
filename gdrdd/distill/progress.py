"""The distillation's progress bar: ``distill 37/80`` iterations, the loss and the time left (Lightning's tqdm
bar, without its "Epoch 0", which means nothing in a run of one pass over the iteration indices)."""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

from gdrdd.utils.progress import FILE_REDRAW_SECONDS, job_label, on_terminal

FILE_REDRAWS = 20  # redraws of a whole run when the output goes to a file


class DistillProgressBar(TQDMProgressBar):
    BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    @property
    def train_description(self) -> str:
        return job_label() + "distill"

    def init_train_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.train_description, total=convert_inf(self.total_train_batches), unit="it",
                    position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                    file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT,
                    mininterval=0.1 if on_terminal() else FILE_REDRAW_SECONDS)

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        if not on_terminal():  # Lightning redraws every `refresh_rate` iterations, whatever tqdm's interval
            self._refresh_rate = max(1, int(convert_inf(self.total_train_batches) or 1) // FILE_REDRAWS)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """The run's one pass: the bar counts iterations from 0 (or from where a resumed run starts)."""
        self.train_progress_bar.initial = 0

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Only the distillation loss, as ``loss``."""
        loss = super().get_metrics(trainer, pl_module).get("distill/loss")
        return {} if loss is None else {"loss": loss}
