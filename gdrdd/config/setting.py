"""A run's *setting*: every value of its resolved config that can change its result.

Two runs with the same setting and seed make the same distilled set and scores; runs with the same setting and
different seeds are repeats of one experiment. The setting is the resolved config minus ``NOT_SETTINGS``: the
seed, where files go, what is logged and shown, how often checkpoints are written, and the extra scores a run
may add beside its final one (``eval.at``/``eval.every``: intermediate scores; ``eval.baseline``: the random
subset's; ``eval.coverage``: a plot). ``metrics.json`` records it (``setting``) and the sweep report keys its
rows on it, so runs that differ in any other value (the model, ``method.lr_img``, ``method.factor``, the
``eval`` protocol, ...) are never averaged together.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gdrdd.matchers.registry import methods
from gdrdd.utils.nested import without_keys

NOT_SETTINGS = ("seed", "resume", "task_name", "paths", "hydra", "logger", "checkpoint", "dashboard",
                "trainer.enable_progress_bar", "trainer.default_root_dir", "trainer.log_every_n_steps",
                "eval.at", "eval.every", "eval.baseline", "eval.coverage", "dataset.download",
                # where and how fast it runs, not what it computes (DDP is equivalent to one process, tested;
                # compiled and channels-last passes equal the eager ones up to summation order)
                "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
                "trainer.deterministic", "method.channels_last", "method.compile", "method.embed_batch",
                "method.checkpoint", "eval.channels_last", "eval.compile")


def run_setting(config: dict[str, Any], class_names: list[str] | None = None) -> dict[str, Any]:
    """The resolved ``config`` (a plain nested dict) without the ``NOT_SETTINGS`` keys, and without the
    ``experts`` group unless the method matches experts (MTT, DATM); ``class_names``: the classes read from the data
    folder when the config leaves them open (``dataset.class_names: null``), so two class-folder trees differ."""
    setting = without_keys(config, NOT_SETTINGS)
    entry = methods().get(setting.get("method", {}).get("name"))
    if entry is None or not entry.matches_experts:
        setting.pop("experts", None)
    if class_names is not None and setting.get("dataset", {}).get("class_names") is None:
        setting.setdefault("dataset", {})["class_names"] = list(class_names)
    return setting


def canonical(value: Any) -> Any:
    """A setting value as compared: an integral float as its integer (``alpha=0`` and ``0.0`` are one value)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return tuple(canonical(v) for v in value)
    return value


def setting_id(flat: dict[str, Any]) -> str:
    """A short stable hash of a flattened setting whose values are ``canonical``."""
    return hashlib.sha1(json.dumps(sorted(flat.items()), default=str).encode()).hexdigest()[:10]
