"""Shared set-up of the tests: configs composed as the entry points compose them, and small networks.

Fixtures:
- ``compose(*overrides, config_name="config", hydra_config=False)``: the config ``train.py`` composes from these
  command-line overrides (``config_name="evaluate"``: ``evaluate.py``'s);
- ``tiny(*overrides, method="dm", out=tmp_path)``: the config of a run of a few seconds on the embedded data set
  (IPC 2, 3 iterations, narrow networks, one evaluation network x 2 epochs, CPU, no coverage plot), writing to
  ``out``;
- ``distilled_file``: the ``distilled.pt`` of one tiny robust DM run, made once per test session;
- ``tiny_net_factory``: a small ConvNet factory for 3 x 16 x 16 inputs.

Markers: ``slow`` (left out of the default run; ``pytest -m slow``), ``integration`` (runs ``train.py`` or
``evaluate.py`` as a subprocess, or several processes; in the default run; ``pytest -m "not integration"`` skips
them) and ``gpu`` (needs a CUDA device: skipped without one; ``pytest -m gpu`` runs them).
"""

import os
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from gdrdd.config import CONFIG_DIR

# One thread per pytest-xdist worker (two workers on two cores would otherwise contend), two in a serial run.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["ipc=2", "iterations=3", "model.width=16", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "eval.coverage=false"]


def compose_config(*overrides: str, config_name: str = "config", hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=hydra_config)


@pytest.fixture
def compose():
    return compose_config


@pytest.fixture
def tiny(tmp_path):
    def tiny_config(*overrides: str, method: str = "dm", out: Path | None = None):
        distill = ["method.batch_real=16"] if method != "random" else []
        return compose_config(*TINY, f"method={method}", *distill, f"paths.output_dir={out or tmp_path}", *overrides)

    return tiny_config


@pytest.fixture(scope="session")
def distilled_file(tmp_path_factory):
    from gdrdd.jobs.distill import run

    out = tmp_path_factory.mktemp("tiny_run")
    run(compose_config(*TINY, "method.batch_real=16", "eval.baseline=false", "eval.coverage=false",
                       f"paths.output_dir={out}"))
    return out / "distilled.pt"


@pytest.fixture
def tiny_net_factory():
    """A small instance-norm ConvNet factory for 3 x 16 x 16 inputs (fast on a CPU)."""
    from gdrdd.models import ConvNet

    return lambda: ConvNet(channels=3, num_classes=3, resolution=16, width=8, depth=2)


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests are skipped where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
