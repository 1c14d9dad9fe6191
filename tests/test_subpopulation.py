"""The subpopulation-shift benchmark: subgroups, thinning, the oracle control, and the metrics per rarity level."""

import json

import pytest
import torch

from gdrdd.data.datamodule import draw
from gdrdd.data.subpopulation import Shift, balanced_weights, make_shift
from gdrdd.errors import ConfigError
from gdrdd.evaluation.evaluator import subgroup_metrics
from gdrdd.jobs import build
from gdrdd.jobs.distill import run


def three_modes(per_mode: tuple[int, ...], classes: int = 2, seed: int = 0):
    """Images (uint8, 1x8x8) whose subgroup is their brightness (dark, mid, bright; in that size order), with
    the true mode of each image."""
    g = torch.Generator().manual_seed(seed)
    images, labels, modes = [], [], []
    for c in range(classes):
        for mode, (n, level) in enumerate(zip(per_mode, (40, 128, 215))):
            images.append((level + 8 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 255).to(torch.uint8))
            labels += [c] * n
            modes += [mode] * n
    return torch.cat(images), torch.tensor(labels), torch.tensor(modes)


def test_subgroups_are_the_visual_modes_ordered_by_size_and_thinned():
    train, train_labels, train_modes = three_modes((60, 40, 20))
    test, test_labels, test_modes = three_modes((10, 10, 10), seed=1)
    split = make_shift(train, train_labels, test, test_labels, Shift(keep=(1.0, 0.25, 0.1), seed=3))
    assert torch.equal(split.train_subgroups, train_modes)  # subgroup 0 = the largest mode
    assert torch.equal(split.test_subgroups, test_modes)  # nearest centre of the image's own class
    kept = split.train_subgroups[split.train_keep]
    for c in range(2):
        in_class = train_labels[split.train_keep] == c
        assert torch.bincount(kept[in_class], minlength=3).tolist() == [60, 10, 2]
    again = make_shift(train, train_labels, test, test_labels, Shift(keep=(1.0, 0.25, 0.1), seed=3))
    assert torch.equal(again.train_keep, split.train_keep)


def test_subgroup_metrics_by_rarity_and_worst_cell():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    subgroups = torch.tensor([0, 1, 1, 0, 1, 1])
    preds = torch.tensor([0, 0, 1, 1, 1, 0])  # cells: (0,0) 1/1, (0,1) 1/2, (1,0) 1/1, (1,1) 1/2
    out = subgroup_metrics(preds, labels, subgroups, (1.0, 0.25), num_classes=2)
    assert out == pytest.approx({"acc_kept100": 100.0, "acc_kept25": 50.0, "worst_cell_acc": 50.0,
                                 "cell0_0_acc": 100.0, "cell0_1_acc": 50.0, "cell1_0_acc": 100.0, "cell1_1_acc": 50.0})


def test_bad_keep_fraction_is_refused(tmp_path, compose):
    cfg = compose("dataset=mnist_mini_shift", "dataset.shift.keep=[1.0,0]", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"dataset\.shift\.keep=\[1\.0, 0"):
        run(cfg)


def test_shift_run_reports_rarity_metrics(tmp_path, tiny):
    cfg = tiny("dataset=mnist_mini_shift", "iterations=2", "eval.coverage=false", "dataset.shift.balanced_batches=true")
    scored = run(cfg)["scored"]["distilled"]
    assert json.loads((tmp_path / "metrics.json").read_text())["shift"]["balanced_batches"] is True
    assert {"acc_kept100", "acc_kept25", "acc_kept5", "worst_cell_acc"} <= set(scored)
    assert scored["worst_cell_acc"] <= min(scored["acc_kept100"], scored["acc_kept25"], scored["acc_kept5"])
    assert "subgroups kept at 5 %" in (tmp_path / "table.md").read_text()
    header, *rows = [line.split(",") for line in (tmp_path / "cell_accuracy.csv").read_text().splitlines()]
    assert header == ["class", "subgroup", "kept", "test_images", "distilled", "random"]
    assert [(int(r[0]), int(r[1]), float(r[2])) for r in rows] == [(c, s, k) for c in range(10)
                                                                    for s, k in enumerate((1.0, 0.25, 0.05))]
    cells = [float(r[4]) for r in rows if int(r[3]) > 0]
    assert min(cells) == pytest.approx(scored["worst_cell_acc"], abs=0.01)


def test_balanced_weights_give_every_subgroup_the_same_total():
    weights = balanced_weights(torch.tensor([0, 0, 0, 0, 1, 2, 2]))
    totals = torch.zeros(3, dtype=weights.dtype).index_add_(0, torch.tensor([0, 0, 0, 0, 1, 2, 2]), weights)
    assert torch.allclose(totals, torch.ones(3, dtype=weights.dtype))


def test_weighted_draw_is_without_replacement_and_favours_the_rare_subgroup(compose):
    weights = balanced_weights(torch.tensor([0] * 8 + [1]))  # one rare image among nine
    torch.manual_seed(0)
    picks = [draw(9, 3, weights, None) for _ in range(400)]
    assert all(len(set(p.tolist())) == 3 for p in picks)
    rare_share = sum(8 in p.tolist() for p in picks) / len(picks)
    assert rare_share > 0.6  # a uniform draw of 3 of 9 holds it a third of the time
    assert torch.equal(draw(9, 9, None, torch.Generator().manual_seed(1)).sort().values, torch.arange(9))


@pytest.fixture
def shift_data(compose):
    """``shift_data(balanced)``: the embedded shift benchmark's DataModule, set up."""
    def make(balanced: bool):
        cfg = compose("dataset=mnist_mini_shift", f"dataset.shift.balanced_batches={balanced}")
        data = build.datamodule(cfg, build.dataset_spec(cfg))
        data.setup()
        return data

    return make


@pytest.mark.slow  # ~20 s: two shift runs
def test_balanced_batches_change_only_the_distillation_batches(shift_data):
    plain, balanced = shift_data(False), shift_data(True)
    assert plain.batch_weights is None and len(balanced.batch_weights) == 10
    for weights, images in zip(balanced.batch_weights, balanced.class_images):
        assert len(weights) == len(images) and abs(float(weights.sum()) - 3) < 1e-9  # three subgroups, each 1
    generator = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(plain.random_subset(4, generator())[0], balanced.random_subset(4, generator())[0])
    assert not torch.equal(plain.sample_real(16, generator()), balanced.sample_real(16, generator()))
