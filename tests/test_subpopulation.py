"""The subpopulation-shift benchmark: subgroups, thinning, and the metrics per rarity level."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from gdrdd.data.subpopulation import Shift, make_shift
from gdrdd.errors import ConfigError
from gdrdd.evaluation.evaluator import subgroup_metrics
from gdrdd.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"


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
    assert out == pytest.approx({"acc_kept100": 100.0, "acc_kept25": 50.0, "worst_cell_acc": 50.0})


def test_bad_keep_fraction_is_refused(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=mnist_mini_shift", "dataset.shift.keep=[1.0,0]",
                                           f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"dataset\.shift\.keep=\[1\.0, 0"):
        run(cfg)


def test_shift_run_reports_rarity_metrics(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=mnist_mini_shift", "ipc=2", "iterations=2", "model.width=16",
                                           "eval.nets=1", "eval.epochs=2", "method.batch_real=16",
                                           "trainer.enable_progress_bar=false", "eval.coverage=false",
                                           f"paths.output_dir={tmp_path}"])
    scored = run(cfg)["scored"]["distilled"]
    assert {"acc_kept100", "acc_kept25", "acc_kept5", "worst_cell_acc"} <= set(scored)
    assert scored["worst_cell_acc"] <= min(scored["acc_kept100"], scored["acc_kept25"], scored["acc_kept5"])
    assert "subgroups kept at 5 %" in (tmp_path / "table.md").read_text()
