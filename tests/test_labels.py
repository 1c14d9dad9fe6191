"""Soft labels as a first-class part of a distilled set: hard indices, probabilities or logits (DATM), recorded by
gdrdd's files, inferred for others, and turned into the targets networks train on (softmax of logits) by every
reader: gdrdd.load, gdrdd.export, evaluate.py (a DATM run folder included)."""

import pytest
import torch

import gdrdd
from gdrdd.errors import DistilledFileError
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.evaluation.labels import as_probabilities, resolve_kind, training_targets
from gdrdd.evaluation.saved_sets import load_distilled
from gdrdd.jobs.evaluate import run as run_evaluation

FAST = ["model.width=8", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu"]


def test_label_kinds_are_inferred_or_declared_and_checked_against_the_shape():
    probabilities = torch.softmax(torch.randn(6, 3), 1)
    logits = torch.randn(6, 3) * 3
    assert resolve_kind(torch.arange(6) % 3) == "hard"
    assert resolve_kind(probabilities) == "probabilities" and resolve_kind(logits) == "logits"
    assert resolve_kind(probabilities, "logits") == "logits"  # a declaration wins
    with pytest.raises(DistilledFileError, match=r"labels=logits needs \(N, C\) labels"):
        resolve_kind(torch.arange(6), "logits")
    with pytest.raises(DistilledFileError, match="labels=hard needs"):
        resolve_kind(logits, "hard")
    with pytest.raises(DistilledFileError, match="accepted: auto, hard, probabilities, logits"):
        resolve_kind(logits, "scores")
    assert torch.allclose(training_targets(logits, "logits"), torch.softmax(logits, 1))
    assert training_targets(probabilities, "probabilities") is probabilities
    assert torch.equal(as_probabilities(torch.tensor([2, 0]), "hard", 3), torch.tensor([[0., 0, 1], [1, 0, 0]]))


def targets_seen(monkeypatch):
    seen = []
    original = Evaluator.evaluate

    def recording(self, images, labels, lr=None, name="distilled"):
        seen.append((labels.clone(), lr))
        return original(self, images, labels, lr, name)

    monkeypatch.setattr(Evaluator, "evaluate", recording)
    return seen


def test_a_datm_run_folder_is_scored_on_softmax_of_its_logits_with_its_learned_lr(tmp_path, compose, monkeypatch):
    """DATM saves images_<it>.pt, labels_<it>.pt (logits) and lr_<it>.pt; the last iteration is scored unless
    iteration= picks another."""
    torch.manual_seed(0)
    folder = tmp_path / "datm"
    folder.mkdir()
    logits = {it: torch.randn(20, 10) * 4 for it in (100, 200)}
    for it in (100, 200):
        torch.save(torch.randn(20, 1, 28, 28), folder / f"images_{it}.pt")
        torch.save(logits[it], folder / f"labels_{it}.pt")
        torch.save(torch.tensor(0.01 * it / 100), folder / f"lr_{it}.pt")
    seen = targets_seen(monkeypatch)
    cfg = compose(f"path={folder}", f"paths.output_dir={tmp_path / 'eval'}", *FAST, "eval=datm", "eval.epochs=2",
                  config_name="evaluate")
    result = run_evaluation(cfg)
    assert result["labels"] == "logits" and result["lr"] == pytest.approx(0.02)
    targets, lr = seen[0]
    assert torch.allclose(targets, torch.softmax(logits[200], 1)) and lr == pytest.approx(0.02)
    assert cfg.eval.batch_size == 128 and cfg.eval.momentum == 0.9 and list(cfg.eval.milestones) == [0.5]
    assert load_distilled(folder, iteration=100).lr == pytest.approx(0.01)
    with pytest.raises(DistilledFileError, match="iteration=300 is not saved .*accepted: 100, 200"):
        load_distilled(folder, iteration=300)


def test_logits_round_trip_through_save_load_export_and_evaluate(tmp_path, distilled_file, compose, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from gdrdd.distill.outputs import save_distilled
    from gdrdd.jobs.build import dataset_spec

    blob = torch.load(distilled_file, weights_only=True)
    logits = torch.randn(20, 10) * 3
    cfg = compose(f"path={distilled_file}", config_name="evaluate")
    cfg.dataset = blob["config"]["dataset"]
    path = save_distilled(tmp_path / "logits.pt", blob["images"], logits, dataset_spec(cfg), blob["config"],
                          label_kind="logits")
    loaded = gdrdd.load(path)
    assert loaded.label_kind == "logits" and torch.equal(loaded.labels, logits)
    soft = gdrdd.load(path, soft=True)
    assert soft.label_kind == "probabilities" and torch.allclose(soft.labels, torch.softmax(logits, 1))
    assert load_distilled(path, labels="probabilities").label_kind == "probabilities"  # the command line wins
    folder = gdrdd.export(path, tmp_path / "hf", format="hf")
    table = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))["train"]
    assert torch.allclose(torch.tensor(table["soft_label"]), torch.softmax(logits, 1), atol=1e-6)
    assert table["label"] == logits.argmax(1).tolist()
    assert load_distilled(folder).label_kind == "probabilities"
    seen = targets_seen(monkeypatch)
    result = run_evaluation(compose(f"path={path}", f"paths.output_dir={tmp_path / 'eval'}", *FAST,
                                    config_name="evaluate"))
    assert result["labels"] == "logits" and torch.allclose(seen[0][0], torch.softmax(logits, 1))
    with pytest.raises(ValueError, match="label_kind='hard' does not fit"):
        save_distilled(tmp_path / "bad.pt", blob["images"], logits, dataset_spec(cfg), blob["config"])
