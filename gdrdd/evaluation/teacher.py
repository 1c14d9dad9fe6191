"""Teacher relabelling at evaluation, the SRe2L/RDED protocol (``eval.labels=teacher``).

A teacher network is trained once on the real training set (``python train.py task=teacher``, cached by
everything its training reads) and then, for any distilled set, every evaluation network trains on the targets
the teacher gives each augmented batch ``x``, at temperature ``T`` (``eval.temperature``):

    loss = T^2 * KL( softmax(teacher(x) / T) || softmax(student(x) / T) )     (batch mean)

The set's own labels are not used: what is scored is the images, relabelled by the teacher. Cache:
``<paths.cache_dir>/teachers/<dataset>-<key>.pt`` (the teacher's ``state_dict``) beside ``<...>.json`` (what the
key hashes: the real training set, the model, the ``teacher`` group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdrdd.data.spec import DatasetSpec
from gdrdd.errors import ExpertsNotFoundError
from gdrdd.experts.cache import expert_key, training_description
from gdrdd.utils.files import atomic_write, write_text


class TeacherTargets:
    """The relabelling loss, a ``LossFn`` of ``gdrdd.models.fit``: the teacher's softened predictions on the very
    batch the student sees (after augmentation), matched by KL divergence at ``temperature``."""

    def __init__(self, teacher: nn.Module, temperature: float) -> None:
        self.teacher, self.temperature = teacher.eval().requires_grad_(False), temperature

    def __call__(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        with torch.no_grad():
            target = F.softmax(self.teacher(images).float() / t, dim=1)
        student = F.log_softmax(net(images).float() / t, dim=1)
        return F.kl_div(student, target, reduction="batchmean") * t * t


def teacher_description(cfg: DictConfig, spec: DatasetSpec) -> dict[str, Any]:
    """What the teacher depends on: the real training set, the model, the ``teacher`` group (the cache key)."""
    return {**training_description(cfg, spec), "teacher": OmegaConf.to_container(cfg.teacher, resolve=True)}


def teacher_path(cfg: DictConfig, spec: DatasetSpec) -> Path:
    """The cached teacher of ``cfg``'s data set, model and ``teacher`` settings (the data folder's path aside)."""
    root = Path(cfg.paths.cache_dir).expanduser() / "teachers"
    return root / f"{cfg.dataset.name}-{expert_key(teacher_description(cfg, spec))}.pt"


def save_teacher(path: Path, net: nn.Module, description: dict[str, Any]) -> Path:
    write_text(path.with_suffix(".json"), json.dumps(description, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_teacher(path: Path, make_network, device: torch.device, command: str) -> nn.Module:
    """The cached teacher, frozen on ``device``; a missing one stops the run with the ``command`` that makes it."""
    if not path.is_file():
        raise ExpertsNotFoundError(f"no teacher for these settings at {path}. eval.labels=teacher relabels with a "
                                   f"teacher trained beforehand; train it with\n    {command}")
    net = make_network().to(device)
    net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return net.eval().requires_grad_(False)
