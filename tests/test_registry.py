"""The method registry: every shipped method is registered with its schema, a key a method does not read is refused
by name, and a new method is one registration (schema + builder) that runs end to end."""

from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from gdrdd.config import CONFIG_DIR
from gdrdd.config.checks import validate
from gdrdd.errors import ConfigError
from gdrdd.jobs import build
from gdrdd.jobs.distill import run
from gdrdd.matchers import registry
from gdrdd.matchers.base import GroupLosses
from gdrdd.matchers.registry import DistillConfig, Method, methods
from gdrdd.robust.grouping import Grouping, group_means
from gdrdd.utils.checks import positive


def test_every_method_file_names_a_registered_method_whose_schema_takes_it():
    shipped = {path.stem: OmegaConf.load(path) for path in (CONFIG_DIR / "method").glob("*.yaml")}
    assert set(shipped) == set(methods())
    for name, node in shipped.items():
        assert node.name == name
        entry = methods()[name]
        registry_keys = set(vars(entry.schema()))
        assert set(node) <= registry_keys, name


def test_what_each_method_supports():
    supports = {name: (m.groups_real, m.trains_network, m.build is not None) for name, m in methods().items()}
    assert supports == {"dc": (True, True, True), "dsa": (True, True, True), "dm": (True, False, True),
                        "idc": (True, True, True), "mtt": (False, True, True), "datm": (False, True, True),
                        "random": (False, False, False)}


def test_a_key_the_method_does_not_read_is_refused_by_name(tiny):
    with pytest.raises(ConfigError, match=r"method\.outer_loop is not a known setting; method=dm accepts: .*lr_img"):
        validate(tiny("+method.outer_loop=5"))
    with pytest.raises(ConfigError, match=r"method\.syn_steps.*method=dm"):  # an MTT preset with another method
        validate(tiny("experiment=mtt_cifar10_ipc10", "method=dm"))
    with pytest.raises(ConfigError, match=r"method='idk' is not valid; accepted: datm, dc, dm, dsa, idc, mtt, random"):
        validate(tiny("method.name=idk"))


@dataclass
class PixelMeanConfig(DistillConfig):
    """A toy method: match each group's mean real pixels to its class's mean synthetic pixels."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("method.strength", self.strength)


class PixelMeanMatcher:
    updates_per_iteration = 1

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def start_iteration(self, device) -> None:
        """No network."""

    def after_update(self, synthetic: torch.Tensor, is_last: bool) -> None:
        """Nothing to train."""

    def group_losses(self, real: torch.Tensor, synthetic: torch.Tensor, grouping: Grouping) -> GroupLosses:
        k = grouping.groups_per_class(synthetic.shape[1])
        real_pixels, synthetic_pixels = real.flatten(2), synthetic.flatten(2)
        means, counts = group_means(real_pixels, grouping.assign(real_pixels, synthetic_pixels.detach()), k)
        losses = self.strength * ((means - synthetic_pixels.mean(1, keepdim=True)) ** 2).sum(-1)
        return GroupLosses(torch.where(counts > 0, losses, 0.0).flatten(), counts.flatten(), k)


@pytest.fixture
def pixel_mean_method(monkeypatch):
    """``method=pixel_mean`` registered for one test (as a module of gdrdd/matchers would register it)."""
    method = Method("pixel_mean", PixelMeanConfig, lambda inputs: PixelMeanMatcher(inputs.method.strength))
    monkeypatch.setitem(registry._METHODS, method.name, method)
    return method


def with_method(cfg, **keys):
    with open_dict(cfg):
        cfg.method = OmegaConf.create({"name": "pixel_mean", "lr_img": 0.5, "momentum": 0.5, "batch_real": 16,
                                       "init": "real", "augment": "none", **keys})
    return cfg


def test_a_new_method_is_one_registration_and_runs_end_to_end(tiny, pixel_mean_method, tmp_path):
    cfg = with_method(tiny("eval.baseline=false", "eval.coverage=false"), strength=2.0)
    validate(cfg)
    data = build.datamodule(cfg, build.dataset_spec(cfg))
    data.setup()
    assert isinstance(build.matcher(cfg, data, build.dataset_spec(cfg)), PixelMeanMatcher)
    result = run(cfg)
    assert result["method"] == "pixel_mean" and result["iterations_timed"] == 3
    initial = run(with_method(tiny("eval.baseline=false", "eval.coverage=false", "iterations=0",
                                   out=tmp_path / "init")))
    assert initial["scored"]["distilled"]["acc"] >= 0
    moved = torch.load(tmp_path / "distilled.pt", weights_only=True)["images"]
    start = torch.load(tmp_path / "init" / "distilled.pt", weights_only=True)["images"]
    assert not torch.allclose(moved, start)  # the builder's matcher drove the synthetic updates


def test_a_new_method_gets_the_range_checks_and_the_support_checks(tiny, pixel_mean_method):
    with pytest.raises(ConfigError, match=r"method\.strength=-1\.0 is not valid; accepted: a number > 0"):
        validate(with_method(tiny(), strength=-1.0))
    with pytest.raises(ConfigError, match=r"cvar\.target='network'.*method=pixel_mean"):
        validate(with_method(tiny("cvar.target=network")))
    with pytest.raises(ConfigError, match=r"cvar\.features='encoder'.*method=pixel_mean"):
        validate(with_method(tiny("cvar.features=encoder")))
