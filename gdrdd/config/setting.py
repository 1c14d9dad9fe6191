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

from gdrdd.utils.nested import without_keys

NOT_SETTINGS = ("seed", "resume", "task_name", "paths", "hydra", "logger", "checkpoint", "dashboard",
                "trainer.enable_progress_bar", "trainer.default_root_dir", "trainer.log_every_n_steps",
                "eval.at", "eval.every", "eval.baseline", "eval.coverage", "dataset.download")


def run_setting(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``config`` (a plain nested dict) without the ``NOT_SETTINGS`` keys (a copy)."""
    return without_keys(config, NOT_SETTINGS)


def setting_id(flat: dict[str, Any]) -> str:
    """A short stable hash of a flattened setting."""
    return hashlib.sha1(json.dumps(sorted(flat.items()), default=str).encode()).hexdigest()[:10]
