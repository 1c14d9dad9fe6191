import json

import pytest
import torch

from gdrdd.errors import ConfigError
from gdrdd.jobs.distill import run
from gdrdd.robust import ByClass, CVaR, NearestSynthetic, group_means
from gdrdd.robust.grouping import KnownGroups, NearestAnySynthetic, assign_labelled
from gdrdd.robust.network import GroupRobustLoss


def test_nearest_same_class_synthetic_image():
    # Two classes, two synthetic images each, in 2-D feature space.
    syn = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 10.0], [5.0, 5.0]]])
    real = torch.tensor([[[1.0, 0.0], [9.0, 1.0], [6.0, 0.0]], [[0.0, 9.0], [4.0, 4.0], [0.0, 0.0]]])
    ids = NearestSynthetic().assign(real, syn)
    assert ids.tolist() == [[0, 1, 1], [0, 1, 1]]
    # The real (0, 0) of class 1 sits on class 0's first synthetic image but must join a class-1 group.
    assert NearestSynthetic().groups_per_class(7) == 7 and ByClass().groups_per_class(7) == 1
    assert torch.equal(ByClass().assign(real, syn), torch.zeros(2, 3, dtype=torch.long))


def test_group_means_and_counts_with_an_empty_group():
    feats = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [4.0], [6.0]]])
    ids = torch.tensor([[0, 0, 2], [1, 1, 1]])
    means, counts = group_means(feats, ids, 3)
    assert counts.tolist() == [[2, 0, 1], [0, 3, 0]]
    assert means[0, 0, 0] == 2.0 and means[0, 2, 0] == 5.0 and means[1, 1, 0] == 4.0
    assert means[0, 1, 0] == 0.0


def test_nearest_any_class_synthetic_image_names_the_confusable_modes():
    syn = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 10.0], [5.0, 5.0]]])
    real = torch.tensor([[[1.0, 0.0], [9.0, 1.0], [0.0, 9.0]], [[0.0, 9.0], [4.0, 4.0], [0.0, 0.0]]])
    grouping = NearestAnySynthetic(num_classes=2)
    # class-major ids: 0, 1 are class 0's images, 2, 3 class 1's
    assert grouping.assign(real, syn).tolist() == [[0, 1, 2], [2, 3, 0]]
    # the real (0, 9) of class 0 sits by class 1's first image and the real (0, 0) of class 1 by class 0's
    # first: each now forms a group of its own instead of joining its class's nearest common mode
    assert NearestSynthetic().assign(real, syn).tolist() == [[0, 1, 0], [0, 1, 1]]
    assert grouping.groups_per_class(3) == 6


def test_a_run_groups_by_the_nearest_synthetic_image_of_any_class(tmp_path, compose):
    cfg = compose("cvar.groups=nearest_any", "ipc=2", "iterations=2", "model.width=16",
                  "eval.nets=1", "eval.epochs=2", "method.batch_real=16", "trainer.enable_progress_bar=false",
                  "eval.coverage=false", "eval.baseline=false", "dashboard.group_stats_every=1",
                  f"paths.output_dir={tmp_path}")
    run(cfg)
    last = json.loads((tmp_path / "group_stats.jsonl").read_text().splitlines()[-1])
    assert last["groups_per_class"] == 10 * 2  # every synthetic image of the 10 classes


@pytest.mark.parametrize("method", ["idc", "mtt"])
def test_grouping_across_classes_needs_a_matcher_of_every_class_per_update(tmp_path, compose, method):
    cfg = compose(f"method={method}", "cvar.groups=nearest_any", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=rf"cvar\.groups='nearest_any' is not valid; accepted: 'nearest' for "
                                          rf"method={method}.*\(dc, dm, dsa\)"):
        run(cfg)
    assert list(tmp_path.iterdir()) == []


def test_assign_labelled_refuses_groupings_that_are_not_per_class():
    features, labels = torch.randn(6, 2), torch.tensor([0, 0, 1, 1, 2, 2])
    synthetic = torch.randn(3, 2, 2)
    ids = assign_labelled(NearestSynthetic(), features, labels, synthetic)
    brute = [int(labels[i]) * 2 + int(((synthetic[labels[i]] - features[i]) ** 2).sum(1).argmin()) for i in range(6)]
    assert ids.tolist() == brute
    for grouping in (NearestAnySynthetic(3), KnownGroups(3)):
        with pytest.raises(ValueError, match=type(grouping).__name__):
            assign_labelled(grouping, features, labels, synthetic)


class OneFeatureBatchNorm(torch.nn.Module):
    """A batch-norm 'network' whose embedding of an image is its normalised first pixel."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(1)
        self.classifier = torch.nn.Linear(1, 1)

    def embed(self, x):
        return self.norm(x.flatten(1)[:, :1])

    def forward(self, x):
        return self.classifier(self.embed(x))


def test_robust_network_loss_groups_real_and_synthetic_images_under_the_same_batch_statistics():
    """Real pixels 0, 1, 2, 10 and synthetic 0, 1 (one class): in one batch the real 1 and 2 sit nearest the
    synthetic 1; normalised separately (the real batch by its own mean 3.25) both would join the synthetic 0."""
    net = OneFeatureBatchNorm().train()
    synthetic = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1, 1)
    real = torch.tensor([0.0, 1.0, 2.0, 10.0]).view(4, 1, 1, 1)
    loss = GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.5))
    running = net.norm.running_mean.clone(), net.norm.running_var.clone()
    assert loss.group_ids(net, real, torch.zeros(4, dtype=torch.long)).tolist() == [0, 1, 1, 1]
    assert torch.equal(net.norm.running_mean, running[0]) and torch.equal(net.norm.running_var, running[1])
