"""Label-free rarity sampling (``cvar.sampling=rarity``): k-NN distances, the weights, and the real batches."""

import sys

import pytest
import torch

from gdrdd.config import CONFIG_DIR
from gdrdd.data.rarity import Rarity, kth_neighbour_distance, rarity_weights
from gdrdd.errors import ConfigError
from gdrdd.jobs import build
from gdrdd.jobs.distill import run
from gdrdd.report.run import option_word


def test_kth_neighbour_distance_matches_brute_force_in_any_block_size():
    features = torch.randn(37, 5, generator=torch.Generator().manual_seed(0))
    brute = torch.cdist(features, features).sort(dim=1).values[:, 3]  # column 0 is the row itself
    assert torch.allclose(kth_neighbour_distance(features, 3, chunk=8), brute)
    assert torch.allclose(kth_neighbour_distance(features, 100), torch.cdist(features, features).max(dim=1).values)
    assert torch.equal(kth_neighbour_distance(features[:1], 3), torch.ones(1))


def test_isolated_images_weigh_more_and_power_zero_is_uniform():
    g = torch.Generator().manual_seed(1)
    common = 0.05 * torch.randn(60, 1, 8, 8, generator=g)  # a dense mode near 0
    rare = 3.0 + 0.05 * torch.randn(3, 1, 8, 8, generator=g)  # three images far away, close to each other
    images = torch.cat([common, common[:1], rare])  # with a duplicate: its distance is floored, weight > 0
    weights = rarity_weights(images, Rarity(resolution=4, neighbours=3, power=4))
    assert weights.dtype == torch.float64 and bool((weights > 0).all())
    assert float(weights[-3:].min()) > 100 * float(weights[:61].max())
    assert torch.equal(rarity_weights(images, Rarity(power=0)), torch.ones(len(images), dtype=torch.float64))


def test_bad_rarity_settings_are_named(compose, compose_shift):
    with pytest.raises(ValueError, match=r"power >= 0"):
        Rarity(power=-1)


@pytest.fixture
def compose_shift(compose):
    """``compose_shift(*overrides)``: the config of the embedded shift benchmark with these overrides."""
    return lambda *overrides: compose("dataset=mnist_mini_shift", *overrides)


@pytest.mark.slow  # ~20 s: many sampled batches; the weights are checked alone
def test_rarity_batches_draw_the_thinned_subgroups_more_often_without_their_labels(compose_shift):
    cfg = compose_shift("cvar.sampling=rarity")
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    thinned_mass, thinned_share = [], []
    for c, weights in enumerate(data.batch_weights):
        thinned = data.class_subgroups[c] > 0
        assert len(weights) == len(thinned) == len(data.class_images[c])
        thinned_mass.append(float(weights[thinned].sum() / weights.sum()))
        thinned_share.append(float(thinned.double().mean()))
    assert sum(thinned_mass) > 1.5 * sum(thinned_share)
    generator = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    uniform = build.datamodule(compose_shift(), spec)
    uniform.setup()
    assert uniform.batch_weights is None
    assert torch.equal(uniform.random_subset(4, generator())[0], data.random_subset(4, generator())[0])
    assert not torch.equal(uniform.sample_real(16, generator()), data.sample_real(16, generator()))


def test_plain_runs_ignore_rarity_and_the_oracle_cannot_be_combined(tmp_path, compose_shift):
    assert build.rarity_sampling(compose_shift("cvar=none")) is None
    assert build.rarity_sampling(compose_shift("cvar.sampling=rarity")) == Rarity()
    cfg = compose_shift("cvar.sampling=rarity", "dataset.shift.balanced_batches=true", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"dataset\.shift\.balanced_batches=True is not valid; accepted: false"):
        run(cfg)
    for bad, message in (("cvar.sampling=rare", r"cvar\.sampling='rare' is not valid; accepted: uniform, rarity"),
                         ("cvar.rarity.neighbours=0", r"neighbours >= 1")):
        with pytest.raises(ConfigError, match=message):
            run(compose_shift("cvar.sampling=rarity", bad, f"paths.output_dir={tmp_path}"))
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_report_names_the_sampling_and_a_power_away_from_its_default():
    robust = {"cvar.name": "cvar"}
    assert option_word("cvar.sampling", "rarity", robust) == "sampling=rarity"
    assert option_word("cvar.rarity.power", 4.0, robust) == "rarity.power=4"
    assert option_word("cvar.rarity.power", 8.0, robust) == "" and option_word("cvar.sampling", "uniform", robust) == ""


def test_cluster_balanced_weights_give_each_cluster_an_equal_share():
    sys.path.insert(0, str(CONFIG_DIR.parent / "bench"))
    from rarity_mass import cluster_balanced_weights

    generator = torch.Generator().manual_seed(0)
    common = torch.randn(90, 4, generator=generator)
    rare = torch.randn(10, 4, generator=generator) + 50.0  # a far, small mode
    weights = cluster_balanced_weights(torch.cat([common, rare]), 2)
    assert weights.shape == (100,) and bool((weights > 0).all())
    share = weights / weights.sum()
    assert abs(float(share[90:].sum()) - 0.5) < 1e-9  # the small mode gets half, not a tenth
    assert torch.allclose(share[90:], share[90:].mean().expand(10))


def test_kmeans_batch_weights_count_the_images_each_draw_keeps_and_follow_the_modes_sizes():
    sys.path.insert(0, str(CONFIG_DIR.parent / "bench"))
    from rarity_mass import kmeans_batch_weights

    generator = torch.Generator().manual_seed(0)
    common = torch.randn(180, 4, generator=generator)
    rare = torch.randn(20, 4, generator=generator) + 50.0  # a far, small mode: a tenth of the images
    torch.manual_seed(0)
    weights = kmeans_batch_weights(torch.cat([common, rare]), draws=5, batch=100, centres=20)
    assert weights.shape == (200,) and weights.sum() == 5 * 20 and bool((weights == weights.round()).all())
    # centres start at random batch images, so they spread as the images do: the far mode keeps about its size
    # share (a tenth), far from the half that balancing two clusters gives it
    assert 0.0 < float(weights[180:].sum() / weights.sum()) < 0.2


def test_error_set_weights_up_weight_what_the_network_gets_wrong():
    sys.path.insert(0, str(CONFIG_DIR.parent / "bench"))
    from rarity_mass import error_set_weights, misclassified

    class Fixed(torch.nn.Module):  # predicts class 1 for images with a positive mean, class 0 otherwise
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            positive = (x.flatten(1).mean(1) > 0).float()
            return torch.stack([1 - positive, positive], 1)

    images = torch.cat([torch.ones(3, 1, 2, 2), -torch.ones(2, 1, 2, 2)])
    wrong = misclassified(Fixed(), images, label=1)
    assert wrong.tolist() == [False, False, False, True, True]
    assert error_set_weights(wrong, 20.0).tolist() == [1.0, 1.0, 1.0, 20.0, 20.0]
    assert error_set_weights(wrong, 1.0).tolist() == [1.0] * 5  # up-weight 1: uniform sampling


def test_start_picks_mark_the_images_the_coreset_start_picks():
    sys.path.insert(0, str(CONFIG_DIR.parent / "bench"))
    from rarity_mass import start_picks

    from gdrdd.distill.coreset import features_of, select_per_class

    class Flatten(torch.nn.Module):  # a fixed network whose embedding is the image itself
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    generator = torch.Generator().manual_seed(0)
    class_images = [torch.randn(12, 1, 2, 2, generator=generator), torch.randn(9, 1, 2, 2, generator=generator)]
    for rule in ("herding", "kcenter"):
        picks = start_picks([features_of(Flatten(), x) for x in class_images], rule, ipc=3)
        chosen = select_per_class(class_images, Flatten(), 3, rule)
        for marked, images, start in zip(picks, class_images, chosen):
            assert marked.shape == (len(images),) and int(marked.sum()) == 3
            assert sorted(images[marked.bool()].flatten(1).tolist()) == sorted(start.flatten(1).tolist())
