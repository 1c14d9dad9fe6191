"""The typed schemas: every shipped config group fits them, and a wrong type or unknown key is named."""


import pytest

from gdrdd.config import CONFIG_DIR as CONF
from gdrdd.config.checks import validate
from gdrdd.config.schema import check_types
from gdrdd.errors import ConfigError


@pytest.mark.parametrize("group", ["dataset", "model", "method", "cvar", "experiment"])
def test_every_shipped_config_fits_its_schema(group, compose):
    for path in sorted((CONF / group).glob("*.yaml")):
        check_types(compose(f"{group}={path.stem}"))


def test_error_names_the_key_the_value_and_the_accepted_type(compose):
    with pytest.raises(ConfigError) as err:
        check_types(compose("seed=abc"))
    assert str(err.value) == "seed='abc' is not valid; accepted: an integer."
    with pytest.raises(ConfigError) as err:
        check_types(compose("+cvar.alpah=0.8"))
    assert "cvar.alpah is not a known setting" in str(err.value) and "alpha" in str(err.value)


def test_the_gpu_check_script_passes_train_py_only_valid_settings(compose):
    """bench/gpu_check.sh runs only on a CUDA machine; its train.py settings are checked here, where none is."""
    script = (CONF.parent / "bench" / "gpu_check.sh").read_text().replace("\\\n", " ")  # join continued lines
    run = next(line for line in script.splitlines() if line.startswith("RUN=")).split("=", 1)[1].strip('"').split()
    calls = [line.split('"$PY" train.py', 1)[1].split() for line in script.splitlines()
             if '"$PY" train.py' in line and not line.lstrip().startswith("#")]
    assert len(calls) == 4  # --quick: single; full: idc, single, ddp1
    for call in calls:
        overrides = [a for a in call if a != "$RUN" and not a.startswith("hydra.")] + run
        cfg = compose(*overrides)
        check_types(cfg)
        validate(cfg)
