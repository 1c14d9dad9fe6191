"""The typed schemas: every shipped config group fits them, and a wrong type or unknown key is named."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from gdrdd.config.schema import check_types
from gdrdd.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("group", ["dataset", "model", "method", "cvar", "experiment"])
def test_every_shipped_config_fits_its_schema(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        check_types(_compose(f"{group}={path.stem}"))


def test_error_names_the_key_the_value_and_the_accepted_type():
    with pytest.raises(ConfigError) as err:
        check_types(_compose("seed=abc"))
    assert str(err.value) == "seed='abc' is not valid; accepted: an integer."
    with pytest.raises(ConfigError) as err:
        check_types(_compose("+cvar.alpah=0.8"))
    assert "cvar.alpah is not a known setting" in str(err.value) and "alpha" in str(err.value)
