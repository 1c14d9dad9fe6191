"""The jobs of the command-line entry points, and what they share: a bad value or missing data ends the run with
one paragraph on stderr, before any long work; a numerical fault ends it with one paragraph too."""

from __future__ import annotations

import sys
from typing import Any, Callable

from omegaconf import DictConfig

from gdrdd.errors import ConfigError, DataNotFoundError, NonFiniteError
from gdrdd.utils.checks import one_of
from gdrdd.utils.console import quiet


def train(cfg: DictConfig) -> dict[str, Any]:
    """The job of ``train.py``: ``task=distill`` (``gdrdd.jobs.distill``), ``task=experts`` (MTT's expert
    trajectories, ``gdrdd.jobs.experts``) or ``task=teacher`` (the teacher of ``eval.labels=teacher``,
    ``gdrdd.jobs.teacher``). Returns what the job wrote as its summary."""
    from gdrdd.jobs import distill, experts, teacher

    quiet()
    jobs = {"distill": distill.run, "experts": experts.run, "teacher": teacher.run}
    one_of("task", cfg.task, jobs)
    return jobs[cfg.task](cfg)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The job of ``evaluate.py``: score a saved distilled set (``gdrdd.jobs.evaluate``)."""
    from gdrdd.jobs import evaluate as evaluation

    quiet()
    return evaluation.run(cfg)


def run_guarded(job: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Exit status 2: bad config or missing data (nothing was computed); 3: the loss became non-finite (the
    last good checkpoint and synthetic set are kept)."""
    try:
        job(cfg)
    except (ConfigError, DataNotFoundError) as err:
        print(f"gdrdd: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as err:
        print(f"gdrdd: {err}", file=sys.stderr)
        sys.exit(3)
