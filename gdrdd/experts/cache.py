"""The expert cache: one folder per set of settings that determine an expert, one file per expert.

Folder: ``<cache_dir>/experts/<dataset>-<key>/`` where ``key`` hashes everything that determines the
trajectories (``expert_key``); ``key.json`` beside the experts says what it was made from. Expert ``i`` is
``expert_<i>.pt``: ``{"trajectory": [initial params, params after epoch 1, ..., after epoch E]}``, each a
``{name: tensor}`` dict of the network's parameters. Files are written atomically, so a folder only ever holds
whole experts and an interrupted run resumes with the next one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from gdrdd.data.spec import DatasetSpec
from gdrdd.experts.trajectory import Trajectory
from gdrdd.robust.objective import acts_on_network
from gdrdd.utils.files import atomic_write, write_text
from gdrdd.utils.nested import without_keys

# Dataset keys that do not change the experts' training set: fetching it, and how the distillation's real
# batches are drawn from a shift benchmark (the experts train on the whole thinned set).
NOT_READ = ("download", "shift.balanced_batches")


def expert_key(description: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


class ExpertCache:
    def __init__(self, root: str | Path, dataset: str, description: dict[str, Any]) -> None:
        self.description = description
        self.folder = Path(root).expanduser() / "experts" / f"{dataset}-{expert_key(description)}"

    def path(self, index: int) -> Path:
        return self.folder / f"expert_{index:04d}.pt"

    def count(self) -> int:
        """Number of consecutive complete experts from index 0 (the next one to train)."""
        n = 0
        while self.path(n).is_file():
            n += 1
        return n

    def save(self, index: int, trajectory: Trajectory) -> Path:
        if not (self.folder / "key.json").is_file():
            write_text(self.folder / "key.json", json.dumps(self.description, indent=2, sort_keys=True) + "\n")
        blob = {"trajectory": [{k: v.detach().cpu() for k, v in params.items()} for params in trajectory]}
        return atomic_write(self.path(index), lambda tmp: torch.save(blob, tmp))

    def load(self, index: int, device: torch.device | str = "cpu") -> Trajectory:
        """Expert ``index``'s snapshots; on the CPU memory-mapped, so only the snapshots a caller touches are read
        from disk (MTT reads two of ``epochs + 1`` per iteration)."""
        mmap = torch.device(device).type == "cpu"
        blob = torch.load(self.path(index), map_location=device, weights_only=True, mmap=mmap)
        return blob["trajectory"]


def run_cache(cfg: DictConfig, spec: DatasetSpec) -> ExpertCache:
    """The cache folder of the experts the run config ``cfg`` asks for, keyed by everything their training reads:
    the whole ``dataset`` group (reader, classes, preprocessing, a shift benchmark's thinning, ...; all but
    ``NOT_READ``), the class names read, the ``model`` group, the ``experts`` group but ``num`` (how many to have,
    not what each is), and the robust settings of robust experts (``cvar.target=network|both``: alpha, weighting
    and the IPC of the initial synthetic set that groups the real images). The data folder's path is not part of
    the key."""
    experts = {k: v for k, v in OmegaConf.to_container(cfg.experts, resolve=True).items() if k != "num"}
    description = {
        **training_description(cfg, spec),
        "experts": experts,
        "robust": ({"alpha": cfg.cvar.alpha, "weighting": cfg.cvar.weighting, "ipc": cfg.ipc}
                   if acts_on_network(cfg.cvar) else None),
    }
    return ExpertCache(cfg.paths.cache_dir, cfg.dataset.name, description)


def training_description(cfg: DictConfig, spec: DatasetSpec) -> dict[str, Any]:
    """What a network trained on the real training set depends on besides its own settings: the ``dataset``
    group but ``NOT_READ``, the class names read, and the ``model`` group (the key of cached experts and
    teachers)."""
    dataset = without_keys(OmegaConf.to_container(cfg.dataset, resolve=True), NOT_READ)
    return {"dataset": {**dataset, "classes": list(spec.class_names)},
            "model": OmegaConf.to_container(cfg.model, resolve=True)}


def experts_command() -> str:
    """``python train.py task=experts`` plus this run's command-line overrides (those that choose the experts)."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in overrides if not o.startswith(("task=", "hydra.", "method.", "eval.", "iterations="))]
    return " ".join(["python train.py task=experts", *kept])
