"""From the command line to the objects of a run: typed schemas (``schema``), value checks (``checks``) and the
builder (``build``). ``CONFIG_DIR`` is the ``conf/`` folder of config groups."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
