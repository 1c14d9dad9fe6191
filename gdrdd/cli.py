"""What the command-line entry points share: a bad value or missing data ends the run with one paragraph on
stderr, before any long work; a numerical fault ends it with one paragraph too."""

from __future__ import annotations

import sys
from typing import Any, Callable

from omegaconf import DictConfig

from gdrdd.data.errors import DataNotFoundError
from gdrdd.errors import ConfigError
from gdrdd.module import NonFiniteError


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
