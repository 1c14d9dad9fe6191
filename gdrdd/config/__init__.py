"""The composed config: typed schemas (``schema``) and value checks (``checks``), run before any work. The
builder that turns a checked config into a run's objects is a job: ``gdrdd.jobs.build``. ``CONFIG_DIR`` is the
``conf/`` folder of config groups."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
