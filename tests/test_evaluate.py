"""evaluate.py: scoring gdrdd's distilled.pt and other tools' files under one protocol."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdrdd.errors import ConfigError, DistilledFileError
from gdrdd.evaluation.saved_sets import load_distilled
from gdrdd.jobs.evaluate import run as run_evaluation

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model.width=8", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu"]


@pytest.fixture
def evaluate_config(tmp_path, compose):
    """``evaluate_config(path, *overrides)``: evaluate.py's config scoring ``path`` briefly, into tmp_path/eval."""
    def make(path, *overrides):
        return compose(f"path={path}", f"paths.output_dir={tmp_path / 'eval'}", *FAST, *overrides,
                       config_name="evaluate")

    return make


def mnist_like(n_per_class=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10 * n_per_class, 1, 28, 28, generator=g), torch.arange(10).repeat_interleave(n_per_class)


def test_loads_every_format(tmp_path):
    images, labels = mnist_like()
    torch.save({"images": images, "labels": labels, "learned_lr": 0.02, "config": {"dataset": {"name": "x"}}},
               tmp_path / "distilled.pt")
    torch.save((images, labels, torch.tensor(0.03)), tmp_path / "pair.pt")
    import numpy as np

    result_file = {"data": [[images, labels], [images[:10], labels[:10]]],
                   "accs_all_exps": {"ConvNet": [np.float64(0.5)]}}
    torch.save(result_file, tmp_path / "res_DC.pt")
    folder = tmp_path / "mtt"
    folder.mkdir()
    torch.save(images, folder / "images_best.pt")
    torch.save(labels, folder / "labels_best.pt")
    own = load_distilled(tmp_path / "distilled.pt")
    assert own.format == "gdrdd" and own.lr == 0.02 and own.config["dataset"]["name"] == "x"
    pair = load_distilled(tmp_path / "pair.pt")
    assert pair.format == "pair" and pair.lr == pytest.approx(0.03) and torch.equal(pair.images, images)
    dc = load_distilled(tmp_path / "res_DC.pt", exp=1)
    assert dc.format == "dc" and dc.images.shape[0] == 10
    assert load_distilled(folder).lr is None
    with pytest.raises(DistilledFileError, match="out of range"):
        load_distilled(tmp_path / "res_DC.pt", exp=5)
    torch.save((images, labels[:3]), tmp_path / "bad.pt")
    with pytest.raises(DistilledFileError, match="labels must be"):
        load_distilled(tmp_path / "bad.pt")


def test_scores_a_pair_file_with_its_learned_lr_and_checks_shapes(tmp_path, evaluate_config):
    images, labels = mnist_like()
    torch.save((images, labels, torch.tensor(0.05)), tmp_path / "pair.pt")
    result = run_evaluation(evaluate_config(tmp_path / "pair.pt"))
    assert result["format"] == "pair" and result["lr"] == pytest.approx(0.05) and result["images"] == 20
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["scored"]["distilled"]["acc"] <= 100
    assert "| test accuracy (%) |" in (tmp_path / "eval" / "table.md").read_text()
    torch.save((torch.randn(20, 3, 32, 32), labels), tmp_path / "cifar_sized.pt")
    with pytest.raises(ConfigError, match="choose the data set"):
        run_evaluation(evaluate_config(tmp_path / "cifar_sized.pt"))


@pytest.mark.integration
def test_scores_a_gdrdd_run_from_the_command_line(tmp_path, distilled_file):
    cmd = [sys.executable, str(ROOT / "evaluate.py"), f"path={distilled_file}", f"hydra.run.dir={tmp_path / 'eval'}",
           *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "(gdrdd, hard labels, mnist_mini, 20 images)" in proc.stdout and "| test accuracy (%) |" in proc.stdout
    assert "eval distilled 1/1" in proc.stdout  # the evaluation's progress bar
    assert "Tip" not in proc.stdout + proc.stderr and "INFO" not in proc.stdout  # one plain line per message
    assert (tmp_path / "eval" / "evaluate.log").is_file()
    missing = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"path={tmp_path / 'nothing.pt'}",
                              f"hydra.run.dir={tmp_path / 'eval2'}"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_scores_a_shift_benchmark_run_with_its_subgroup_metrics(tmp_path, tiny, evaluate_config):
    from gdrdd.jobs.distill import run

    run(tiny("dataset=mnist_mini_shift", "iterations=1", "eval.baseline=false", "model.width=8", "eval.nets=1",
             "eval.epochs=1", out=tmp_path / "run"))
    result = run_evaluation(evaluate_config(tmp_path / "run" / "distilled.pt"))
    scored = result["scored"]["distilled"]
    assert result["dataset"] == "mnist_mini_shift"
    cells = [scored[f"cell{c}_{s}_acc"] for c in range(10) for s in range(3)]
    assert scored["worst_cell_acc"] == pytest.approx(min(a for a in cells if a == a))


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_crafted_pickle_is_refused_without_running_code(tmp_path, capsys):
    torch.save({"images": torch.zeros(1, 1, 28, 28), "labels": torch.zeros(1), "x": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(DistilledFileError, match="not a readable distilled set"):
        load_distilled(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out
    (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:100])
    with pytest.raises(DistilledFileError, match="cut.pt"):
        load_distilled(tmp_path / "cut.pt")
