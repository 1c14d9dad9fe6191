"""Coreset starts (method.init=kcenter / herding): the selections as defined, and the synthetic set's start is
that selection of each class's real images in the fixed network's features."""

import pytest
import torch

from gdrdd.config.schema import method_config
from gdrdd.distill.coreset import herding, k_center, select_per_class
from gdrdd.errors import ConfigError
from gdrdd.jobs import build


def three_modes() -> torch.Tensor:
    """60 points in 2-D: a common mode of 50 near (0, 0), an uncommon one of 9 near (10, 0), one point at (0, 10)."""
    g = torch.Generator().manual_seed(0)
    common = torch.randn(50, 2, generator=g) * 0.5
    uncommon = torch.randn(9, 2, generator=g) * 0.5 + torch.tensor([10.0, 0.0])
    return torch.cat([common, uncommon, torch.tensor([[0.0, 10.0]])])


def test_k_center_starts_nearest_the_mean_and_gives_every_mode_a_pick():
    points = three_modes()
    picks = k_center(points, 3)
    assert int(picks[0]) == int(((points - points.mean(0)) ** 2).sum(1).argmin())
    modes = {0 if i < 50 else 1 if i < 59 else 2 for i in picks.tolist()}
    assert modes == {0, 1, 2}  # the single rare point included


def test_k_center_picks_each_image_once_even_among_duplicates():
    assert k_center(torch.ones(5, 3), 4).tolist() == [0, 1, 2, 3]


def test_herding_follows_the_running_mean():
    # mean 3.25: pick 2 (nearest it), then 1 ((2 + 1) / 2 = 1.5 is nearest), then 10 ((3 + 10) / 3 = 4.33)
    assert herding(torch.tensor([[0.0], [1.0], [2.0], [10.0]]), 3).tolist() == [2, 1, 3]
    points = three_modes()
    mean = points.mean(0)
    herded, spread = points[herding(points, 3)].mean(0), points[k_center(points, 3)].mean(0)
    assert ((herded - mean) ** 2).sum() < ((spread - mean) ** 2).sum()


def cfg_overrides(rule: str) -> list[str]:
    """A DM run on the embedded data set, IPC 2, narrow networks."""
    return ["ipc=2", "model.width=16", f"method.init={rule}", "trainer.accelerator=cpu"]


def embedded_data(cfg):
    """The data set's spec and its set-up data module."""
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    return spec, data


@pytest.mark.parametrize("rule", ["kcenter", "herding"])
def test_the_start_is_the_coreset_of_each_class_in_the_fixed_network(rule, compose):
    cfg = compose(*cfg_overrides(rule))
    spec, data = embedded_data(cfg)
    rng = torch.random.get_rng_state()
    net = build.coreset_network(cfg, data, spec)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the run's random draws are not shifted
    start = build.initial_images(cfg, data, spec, build.parameterization(cfg, data))
    chosen = select_per_class(data.class_images, net, 2, rule)
    assert start.shape == (spec.num_classes * 2, *data.class_images[0].shape[1:])
    assert torch.equal(start, chosen.flatten(0, 1))
    for c, images in enumerate(chosen):  # real images of their own class, two different ones
        for image in images:
            assert (data.class_images[c] == image).flatten(1).all(1).any()
        assert not torch.equal(images[0], images[1])
    other = build.coreset_network(compose(*cfg_overrides(rule), "seed=1"), data, spec)
    assert not torch.equal(next(net.parameters()), next(other.parameters()))  # the run seed initialises it


def test_a_trained_coreset_network_is_trained_on_the_real_data_and_frozen(compose):
    cfg = compose(*cfg_overrides("kcenter"), "method.init_epochs=1", "eval.batch_size=256")
    spec, data = embedded_data(cfg)
    trained = build.coreset_network(cfg, data, spec)
    untrained = build.coreset_network(compose(*cfg_overrides("kcenter")), data, spec)
    assert not any(p.requires_grad for p in trained.parameters()) and not trained.training
    assert not torch.equal(next(trained.parameters()), next(untrained.parameters()))


def test_an_unknown_init_or_negative_epochs_is_refused_by_name(compose):
    with pytest.raises(ConfigError, match="method.init='kcentre'.*kcenter"):
        method_config(compose("method.init=kcentre").method)
    with pytest.raises(ConfigError, match="method.init_epochs=-1"):
        method_config(compose("method.init_epochs=-1").method)
