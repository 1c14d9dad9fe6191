"""Options that a method with its ``cvar.target`` does not read are refused before any work, by name, in one place
(``gdrdd.config.checks.refuse_ignored_options``, from the registry's ``Method.cvar_options``)."""

import pytest

from gdrdd.config.checks import validate
from gdrdd.errors import ConfigError
from gdrdd.matchers.registry import method

DSA_NETWORK = ("method=dsa", "method.outer_loop=2", "method.inner_loop=1", "cvar.target=network")


@pytest.mark.parametrize("override", ["cvar.features=encoder", "cvar.shrink=16", "cvar.groups=nearest_any",
                                      "cvar.mix=1.0", "cvar.min_count=4", "cvar.warmup=10", "cvar.scale=2.0"])
def test_the_network_target_refuses_the_matching_objectives_options(tiny, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}=.* has no effect with method=dsa and cvar.target=network.*"
                                          r"read with cvar\.target=matching or both"):
        validate(tiny(*DSA_NETWORK, override))
    validate(tiny(*DSA_NETWORK[:3], "cvar.target=both", override))  # both reads them


@pytest.mark.parametrize("overrides, message", [
    (("method=dm", "cvar.weight=0.5"), r"cvar\.weight=0\.5 has no effect with method=dm .*no cvar\.target of "
                                       r"method=dm"),
    (("method=mtt", "cvar.scale=2.0"), r"cvar\.scale=2\.0 has no effect with method=mtt"),
    (("method=mtt", "cvar.target=network", "cvar.sampling=rarity"), r"cvar\.sampling='rarity' has no effect"),
    (("cvar.encoder_epochs=5",), r"cvar\.encoder_epochs=5 is not valid; accepted: its default \(3\) unless "
                                 r"cvar\.features=encoder"),
    (("cvar.refresh=5", "cvar.features=encoder"), r"cvar\.refresh=5 .*unless cvar\.features=evaluation"),
    (("cvar.rarity.power=2",), r"cvar\.rarity=\{.*'power': 2.*unless cvar\.sampling=rarity"),
    (("cvar=none", "+cvar.alpha=0.5"), r"cvar\.alpha=0\.5 has no effect with cvar=none"),
    (("method=dsa", "ipc=1", "cvar.target=network"), r"cvar\.target='network' is not valid; accepted: 'matching' "
                                                     r"with method\.outer_loop=1"),
])
def test_options_nothing_reads_are_refused_with_one_paragraph(tiny, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(tiny(*overrides))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [
    ("cvar=paper",), ("cvar=default", "cvar.target=network", "method=dsa", "method.outer_loop=2",
                      "method.inner_loop=1"),
    ("cvar.features=encoder", "cvar.encoder_epochs=5"), ("cvar.sampling=rarity", "cvar.rarity.power=2"),
    ("method=mtt", "cvar.weight=0.5", "cvar.mix=1.0"), (*DSA_NETWORK, "cvar.sampling=rarity"),
    ("method=idc", "cvar.target=network", "cvar.alpha=0.5"), ("cvar=none", "method.init=herding"),
    ("task=experts", "method=mtt", "cvar.weight=0.5", "cvar.target=network"),  # the experts job takes run overrides
])
def test_options_that_are_read_are_accepted(tiny, overrides):
    validate(tiny(*overrides))


def test_registry_entries_say_which_cvar_options_each_target_reads():
    common = {"name", "alpha", "weighting", "target"}
    matching = {"mix", "min_count", "warmup", "groups", "sampling", "rarity"}
    grouping = {"features", "encoder_epochs", "refresh", "shrink"}
    assert method("dm").cvar_options("matching") == common | matching | grouping | {"scale"}
    assert method("dsa").cvar_options("network") == common | {"sampling", "rarity"}
    assert method("dsa").cvar_options("both") == common | matching | grouping | {"scale"}
    assert method("mtt").cvar_options("matching") == common | matching | {"weight"}
    assert method("mtt").cvar_options("network") == common  # robust experts: no real batch in distillation


def test_a_method_that_distils_nothing_reads_no_cvar_option(tiny):
    assert method("random").cvar_options("matching") == {"name"}
    with pytest.raises(ConfigError, match=r"cvar\.mix=0\.9 has no effect with method=random"):
        validate(tiny("cvar.mix=0.9", method="random"))
    validate(tiny(method="random"))  # the default objective's values are not options set
