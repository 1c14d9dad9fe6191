"""Checkpoints of a distillation run, and resuming one.

A checkpoint (Lightning's format) holds the synthetic tensors and any learnable tensor of the matcher (MTT's
step size), every optimiser state, and the loop state (iterations done). No RNG state is needed: each
iteration reseeds from ``(seed, iteration)``. Written atomically to ``<run>/checkpoints/last.ckpt`` every
``checkpoint.every`` iterations and at the end; ``python train.py resume=<run folder>`` continues from it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from gdrdd.errors import ConfigError
from gdrdd.utils.files import atomic_write

LAST = Path("checkpoints") / "last.ckpt"
log = logging.getLogger(__name__)


class IterationCheckpoint(L.Callback):
    def __init__(self, run_dir: str | Path, every: int) -> None:
        self.path, self.every = Path(run_dir) / LAST, every

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.every > 0 and (batch_idx + 1) % self.every == 0:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole state; every rank takes part, rank 0 writes
        if trainer.is_global_zero:
            atomic_write(self.path, lambda target: tmp.replace(target))


def resumed_config(cfg: DictConfig) -> tuple[DictConfig, Path | None]:
    """For ``resume=<run folder>``: that run's saved config (writing into the same folder) and its last
    checkpoint; otherwise ``cfg`` unchanged and no checkpoint."""
    if not cfg.get("resume"):
        return cfg, None
    folder = Path(cfg.resume).expanduser().resolve()
    saved, ckpt = folder / "config.yaml", folder / LAST
    if not (saved.is_file() and ckpt.is_file()):
        raise ConfigError(f"resume={str(folder)!r} is not a resumable run folder: it needs config.yaml and {LAST} "
                          "(written by a run with checkpoint.every >= 0). Give the folder of an interrupted run.")
    try:  # a truncated or foreign file fails here, named, before any work; never unpickles code
        torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"checkpoint {ckpt} is unreadable ({str(err).splitlines()[0]}); the run cannot resume from "
                          "it. Delete it to start that run over in a new folder.") from err
    resumed = OmegaConf.load(saved)
    resumed.paths.output_dir, resumed.resume = str(folder), str(folder)
    resumed.trainer.default_root_dir = str(folder)  # the folder may have moved since
    for logger in (resumed.get("logger") or {}).values():
        if "save_dir" in logger:
            logger.save_dir = str(folder)
    if "csv" in (resumed.get("logger") or {}):  # a log of its own: Lightning's CSVLogger would replace the old one
        resumed.logger.csv.version = next_resumed_log(folder / "csv")
    log.warning("resuming %s with the config saved there; other command-line values are not applied", folder)
    return resumed, ckpt


def next_resumed_log(csv_dir: Path) -> str:
    """The CSV log version of a run's next resumption: ``resumed-N`` with N one above the highest already there, so
    a deleted earlier log never makes two resumptions share (and overwrite) one."""
    taken = [int(m.group(1)) for d in csv_dir.glob("resumed-*") if (m := re.fullmatch(r"resumed-(\d+)", d.name))]
    return f"resumed-{max(taken, default=0) + 1}"


def refuse_finished_run(out: Path, resuming: bool) -> None:
    """A new run never writes over a finished run's outputs (Hydra gives each run a new folder; an explicit
    ``hydra.run.dir`` might not)."""
    if resuming:
        return
    if (out / "distilled.pt").exists():
        raise ConfigError(f"paths.output_dir={str(out)!r} already holds a finished run (distilled.pt); choose a new "
                          "folder, or resume=<folder> to continue an interrupted one")
    if (out / LAST).exists():
        raise ConfigError(f"paths.output_dir={str(out)!r} holds an interrupted run ({LAST}); continue it with "
                          f"resume={out}, or choose a new folder")
