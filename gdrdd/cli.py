"""What the command-line entry points share: a bad value or missing data ends the run with one paragraph on
stderr and exit status 2, before any long work."""

from __future__ import annotations

import sys
from typing import Any, Callable

from omegaconf import DictConfig

from gdrdd.data.errors import DataNotFoundError
from gdrdd.errors import ConfigError


def run_guarded(job: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    try:
        job(cfg)
    except (ConfigError, DataNotFoundError) as err:
        print(f"gdrdd: {err}", file=sys.stderr)
        sys.exit(2)
