import math

import pytest
import torch

from gdrdd.data.spec import DatasetSpec
from gdrdd.evaluation.corruptions import corruptions, gaussian_blur
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.evaluation.metrics import accuracy, group_accuracies, group_loss_cvar, summarise
from gdrdd.evaluation.pixel_groups import pixel_kmeans_groups
from gdrdd.evaluation.tables import comparison_table


def test_group_accuracies_on_a_hand_made_case():
    labels = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0])
    preds = torch.tensor([0, 0, 1, 0, 0, 0, 1, 1])  # wrong at 3, 4, 7
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])  # group accuracies 100, 1/3, 2/3
    acc = group_accuracies(preds, labels, groups, 4)
    assert acc[:3].tolist() == pytest.approx([100.0, 100 / 3, 200 / 3])
    assert math.isnan(acc[3])  # empty group
    assert float(acc.nan_to_num(float("inf")).min()) == pytest.approx(100 / 3)  # worst group
    assert accuracy(preds, labels, 2) == pytest.approx(62.5)


def test_group_loss_cvar_takes_the_worst_groups():
    loss = torch.tensor([1.0, 1.0, 5.0, 3.0])
    groups = torch.tensor([0, 0, 1, 2])  # group means 1, 5, 3 with masses 1/2, 1/4, 1/4
    assert group_loss_cvar(loss, groups, 3, 0.75) == pytest.approx(5.0)
    assert group_loss_cvar(loss, groups, 3, 0.5) == pytest.approx(4.0)
    assert group_loss_cvar(loss, groups, 3, 0.0) == pytest.approx(2.5)


def test_summarise_mean_and_std():
    out = summarise([{"acc": 50.0}, {"acc": 60.0}])
    assert out["acc"] == 55.0 and out["acc_std"] == pytest.approx(7.0710678)
    assert summarise([{"acc": 50.0}])["acc_std"] == 0.0


def test_kmeans_groups_find_separated_clusters_and_are_deterministic():
    g = torch.Generator().manual_seed(0)
    dark = torch.rand(20, 1, 4, 4, generator=g) * 0.1
    bright = 0.9 + torch.rand(30, 1, 4, 4, generator=g) * 0.1
    ids = pixel_kmeans_groups(torch.cat([dark, bright]), k=2)
    assert len(set(ids[:20].tolist())) == 1 and len(set(ids[20:].tolist())) == 1 and ids[0] != ids[-1]
    assert torch.equal(ids, pixel_kmeans_groups(torch.cat([dark, bright]), k=2))


def test_kmeans_groups_are_computed_once_per_distinct_pixels(monkeypatch):
    from gdrdd.evaluation import pixel_groups

    fits = []
    real_kmeans = pixel_groups.KMeans
    monkeypatch.setattr(pixel_groups, "KMeans", lambda **kw: fits.append(kw) or real_kmeans(**kw))
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    first = pixel_kmeans_groups(x, k=3)
    first[:] = -1  # the caller's copy: the memo keeps its own
    again = pixel_kmeans_groups(x.clone(), k=3)
    assert len(fits) == 1 and again.min() >= 0
    changed = x.clone()
    changed[0, 0, 0, 0] += 0.5
    pixel_kmeans_groups(changed, k=3)
    pixel_kmeans_groups(x, k=4)
    pixel_kmeans_groups(x, k=3, seed=1)
    assert len(fits) == 4  # another pixel, k or seed: clustered anew


def test_corruptions():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = {name: corrupt(x) for name, corrupt in corruptions(seed=1).items()}
    assert torch.equal(out["invert"], 1 - x)
    assert 0 <= out["noise"].min() and out["noise"].max() <= 1
    assert (out["noise"] - x).std() == pytest.approx(0.005 ** 0.5, rel=0.2)
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 16, 16), 0.3)), torch.full((1, 1, 16, 16), 0.3))
    assert out["blur"].std() < x.std()
    assert torch.equal(corruptions(seed=1)["noise"](x), out["noise"])  # fixed by the seed, whatever ran before
    assert not torch.equal(corruptions(seed=2)["noise"](x), out["noise"])
    assert torch.allclose(gaussian_blur(x, chunk=1), out["blur"], atol=1e-6)  # in parts: each image alone


def test_evaluator_scores_a_perfectly_separable_set(tiny_net_factory):
    spec = DatasetSpec("toy", "none", 3, 16, ("a", "b", "c"), (0.5,) * 3, (0.5,) * 3, "flip")
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1, 1)
    test = (centres + 0.05 * torch.randn(3, 20, 3, 16, 16, generator=g)).flatten(0, 1)
    labels = torch.arange(3).repeat_interleave(20)
    from gdrdd.models.fit import TrainSettings

    ev = Evaluator(spec, test, labels, tiny_net_factory, TrainSettings(epochs=40, lr=0.05), nets=2, num_groups=3)
    assert not {"groups", "test_sets"} & set(vars(ev))  # made at first use: a distillation does not hold them
    train = (centres + 0.05 * torch.randn(3, 4, 3, 16, 16, generator=g)).flatten(0, 1)
    metrics = ev.evaluate(train, torch.arange(3).repeat_interleave(4))
    assert {"groups", "test_sets"} <= set(vars(ev))
    assert metrics["acc"] == pytest.approx(100.0) and metrics["worst_group_acc"] == pytest.approx(100.0)
    assert set(metrics) >= {"acc_std", "acc_noise", "acc_blur", "acc_invert", "test_cvar", "mean_group_acc"}
    table = comparison_table({"distilled": metrics, "random": metrics})
    assert "| test accuracy (%) | 100.00 ± 0.00 | 100.00 ± 0.00 |" in table
