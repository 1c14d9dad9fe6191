"""Teacher relabelling at evaluation (eval.labels=teacher, the SRe2L/RDED protocol): the loss against a hand
computation, task=teacher's cache, evaluate.py relabelling any set with it, and DD-Ranking's soft-label scores
that need it."""

import json

import pytest
import torch

from gdrdd.cli import train
from gdrdd.config.checks import validate
from gdrdd.errors import ConfigError, ExpertsNotFoundError
from gdrdd.evaluation.teacher import TeacherTargets
from gdrdd.jobs.evaluate import run as run_evaluation

FAST = ["model.width=8", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu"]


def test_the_relabelling_loss_is_the_tempered_kl_divergence_by_hand():
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    t = 4.0
    p = torch.softmax(teacher(x) / t, 1)
    log_q = torch.log_softmax(student(x) / t, 1)
    expected = t * t * (p * (p.log() - log_q)).sum(1).mean()
    loss = TeacherTargets(teacher, t)(student, x, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(loss, expected) and loss.requires_grad
    assert not any(q.requires_grad for q in teacher.parameters())  # the teacher is frozen


def test_teacher_task_caches_it_and_evaluate_relabels_any_set_with_it(tmp_path, compose, tiny, distilled_file,
                                                                      monkeypatch):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    teacher_cfg = tiny("task=teacher", "teacher.epochs=1", "model.width=8", cache, out=tmp_path / "teacher")
    first = train(teacher_cfg)
    assert first["trained_now"] and 0 <= first["test_accuracy"] <= 100
    assert json.loads((tmp_path / "teacher" / "teacher.json").read_text())["teacher"] == first["teacher"]
    again = train(tiny("task=teacher", "teacher.epochs=1", "model.width=8", cache, out=tmp_path / "teacher2"))
    assert not again["trained_now"] and again["teacher"] == first["teacher"]  # found in the cache, kept

    calls = []
    original = TeacherTargets.__call__
    monkeypatch.setattr(TeacherTargets, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    evaluation = [f"path={distilled_file}", *FAST, cache, "eval.labels=teacher", "teacher.epochs=1"]
    result = run_evaluation(compose(*evaluation, f"paths.output_dir={tmp_path / 'eval'}", config_name="evaluate"))
    assert calls and 0 <= result["scored"]["distilled"]["acc"] <= 100
    with pytest.raises(ExpertsNotFoundError, match="task=teacher"):  # another teacher setting: not trained
        run_evaluation(compose(*evaluation, "teacher.epochs=2", f"paths.output_dir={tmp_path / 'e2'}",
                               config_name="evaluate"))
    with pytest.raises(ConfigError, match=r"eval\.cutmix=0\.5 is not valid; accepted: 0 with eval\.labels=teacher"):
        validate(tiny("eval.labels=teacher", "eval.cutmix=0.5"))

    blob = torch.load(distilled_file, weights_only=True)  # a soft-label set: DD-Ranking's random subset
    torch.save({**blob, "labels": torch.randn(20, 10), "label_kind": "logits"}, tmp_path / "soft.pt")  # via teacher
    ranking = run_evaluation(compose(f"path={tmp_path / 'soft.pt'}", *FAST, cache, "teacher.epochs=1",
                                     "ddranking.enabled=true", "ddranking.real_accuracy=95.0",
                                     f"paths.output_dir={tmp_path / 'rank'}", config_name="evaluate"))["ddranking"]
    assert ranking["random_labels"] == "teacher" and 0 <= ranking["lrs"] <= 1 and 0 <= ranking["ars"] <= 1
