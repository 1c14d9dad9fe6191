"""Progress bars (tqdm) of the long phases outside Lightning's loop: training evaluation networks and experts.

On a terminal a bar redraws in place; when the output goes to a file (SLURM logs, CI) it redraws at most every
30 s, so the file stays readable. In a Hydra multirun every bar starts with its job's number (``job 3 | ...``),
so the bars of jobs that share a terminal or a log can be told apart.
"""

from __future__ import annotations

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from tqdm import tqdm

FILE_REDRAW_SECONDS = 30.0


def job_label() -> str:
    """``'job <n> | '`` inside a Hydra multirun job, else ``''``."""
    if not HydraConfig.initialized():
        return ""
    hydra = HydraConfig.get()
    return f"job {hydra.job.num} | " if hydra.mode == RunMode.MULTIRUN else ""


def on_terminal() -> bool:
    return sys.stdout.isatty()


def bar(desc: str, total: int, unit: str, enabled: bool = True) -> tqdm:
    """A bar on stdout labelled ``desc`` (prefixed with the multirun job), ``total`` steps of ``unit``."""
    return tqdm(total=total, desc=job_label() + desc, unit=unit, disable=not enabled, file=sys.stdout,
                dynamic_ncols=True, mininterval=0.1 if on_terminal() else FILE_REDRAW_SECONDS)
