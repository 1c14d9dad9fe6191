"""The expert cache: one folder per set of settings that determine an expert, one file per expert.

Folder: ``<cache_dir>/experts/<dataset>-<key>/`` where ``key`` hashes everything that determines the
trajectories (``expert_key``); ``key.json`` beside the experts says what it was made from. Expert ``i`` is
``expert_<i>.pt``: ``{"trajectory": [initial params, params after epoch 1, ..., after epoch E]}``, each a ``{name: tensor}``
dict of the network's parameters. Files are written atomically, so a folder only ever holds whole experts
and an interrupted run resumes with the next one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from gdrdd.errors import ConfigError
from gdrdd.outputs import atomic_write, write_text

Trajectory = list[dict[str, torch.Tensor]]


class ExpertsNotFoundError(ConfigError):
    """No expert trajectories for the run's settings; the message gives the command that creates them."""


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
        blob = torch.load(self.path(index), map_location=device, weights_only=True)
        return blob["trajectory"]
