"""DD-Ranking's scores (HLR, IOR, LRS, ARS) against the formulas on hand-computed cases, and through evaluate.py."""

import math

import pytest
import torch

from gdrdd.errors import ConfigError
from gdrdd.evaluation.ddranking import Accuracies, normalised, scores
from gdrdd.jobs.evaluate import run as run_evaluation

FAST = ["model.width=8", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu"]


def test_scores_match_the_formulas_by_hand():
    acc = Accuracies(real_hard=90, syn_hard=60, syn=70, random=50, syn_no_aug=65, random_no_aug=40)
    got = scores(acc)
    assert got["hlr"] == pytest.approx(0.30) and got["ior"] == pytest.approx(0.20)
    # a = 0.5 * 0.20 - 0.5 * 0.30 = -0.05; b = 0.5 * 0.20 + 0.5 * 0.25 = 0.225
    e = math.e
    assert got["lrs"] == pytest.approx((e ** -0.05 - 1 / e) / (e - 1 / e))
    assert got["ars"] == pytest.approx((e ** 0.225 - 1 / e) / (e - 1 / e))
    assert got["lrs"] == pytest.approx(0.24819, abs=1e-5) and got["ars"] == pytest.approx(0.37629, abs=1e-5)
    # the package's units: the same normalisation of -5 and 22.5 points, far outside [0, 1]
    assert got["lrs_percent_points"] == pytest.approx((e ** -5 - 1 / e) / (e - 1 / e)) and got["lrs_percent_points"] < 0
    assert got["ars_percent_points"] > 1e8
    weighted = scores(acc, weight=1.0, gamma=0.0)  # LRS from IOR alone, ARS from the no-augmentation gap alone
    assert weighted["lrs"] == pytest.approx(normalised(0.20)) and weighted["ars"] == pytest.approx(normalised(0.25))


def test_the_normalisation_maps_the_range_of_fractions_onto_zero_one():
    assert normalised(-1) == pytest.approx(0) and normalised(1) == pytest.approx(1)
    values = [normalised(x / 10) for x in range(-10, 11)]
    assert values == sorted(values) and all(0 <= v <= 1 + 1e-12 for v in values)


def test_evaluate_reports_the_scores_of_a_hard_label_set(distilled_file, tmp_path, compose):
    cfg = compose(f"path={distilled_file}", f"paths.output_dir={tmp_path / 'eval'}", *FAST, "ddranking.enabled=true",
                  config_name="evaluate")
    ranking = run_evaluation(cfg)["ddranking"]
    acc = ranking["accuracy"]
    assert set(acc) == {"syn", "syn_hard", "real_hard", "random", "syn_no_aug", "random_no_aug"}
    assert acc["syn"] == acc["syn_hard"]  # hard labels: the set's own protocol is the hard-label one
    assert ranking["lrs"] == pytest.approx(scores(Accuracies(**acc))["lrs"]) and 0 <= ranking["ars"] <= 1
    assert "| LRS |" in (tmp_path / "eval" / "table.md").read_text()


def test_a_soft_label_set_gets_its_hlr_and_the_reason_for_the_rest(distilled_file, tmp_path, compose):
    blob = torch.load(distilled_file, weights_only=True)
    torch.save({**blob, "labels": torch.randn(20, 10), "label_kind": "logits"}, tmp_path / "soft.pt")
    cfg = compose(f"path={tmp_path / 'soft.pt'}", f"paths.output_dir={tmp_path / 'eval'}", *FAST,
                  "ddranking.enabled=true", "ddranking.real_accuracy=95.0", config_name="evaluate")
    ranking = run_evaluation(cfg)["ddranking"]
    assert ranking["accuracy"]["real_hard"] == 95.0 and "teacher" in ranking["missing"] and "lrs" not in ranking
    assert ranking["hlr"] == pytest.approx((95.0 - ranking["accuracy"]["syn_hard"]) / 100)
    with pytest.raises(ConfigError, match=r"ddranking\.weight=2 is not valid; accepted: a number in \[0, 1\]"):
        run_evaluation(compose(f"path={distilled_file}", f"paths.output_dir={tmp_path / 'bad'}", *FAST,
                               "ddranking.weight=2", config_name="evaluate"))
