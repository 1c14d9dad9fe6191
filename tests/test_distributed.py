"""DDP semantics: a 2-process CPU run (gloo) computes what a 1-process run with the same global batch does."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["ipc=2", "iterations=3", "model.width=16", "method.batch_real=16", "eval.nets=1", "eval.epochs=1",
        "eval.baseline=false", "eval.coverage=false", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
pytestmark = pytest.mark.integration
CASES = {"dm": ["method=dm", "cvar.alpha=0.8"],
         "dsa": ["method=dsa", "method.outer_loop=2", "method.inner_loop=2", "cvar.alpha=0.8", "cvar.target=both"]}


def distil(folder: Path, *overrides: str) -> torch.Tensor:
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY, *overrides, f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, timeout=900, cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(folder / "distilled.pt", weights_only=True)["images"]


@pytest.mark.parametrize("case", ["dm", pytest.param("dsa", marks=pytest.mark.slow)])
def test_two_processes_match_one_process(tmp_path, case):
    single = distil(tmp_path / "one", *CASES[case])
    double = distil(tmp_path / "two", *CASES[case], "trainer=ddp", "trainer.devices=2")
    assert (single - double).abs().max() < 1e-5
    assert not (tmp_path / "two" / "train_ddp_process_1").exists()


def test_mtt_ranks_draw_their_own_segments(tmp_path, monkeypatch):
    from gdrdd.experts import ExpertCache
    from gdrdd.experts.trajectory import parameters_of
    from gdrdd.matchers import mtt
    from gdrdd.models import ConvNet

    cache = ExpertCache(tmp_path, "toy", {})
    net = ConvNet(3, 3, 16, width=8, depth=2)
    cache.save(0, [{k: v + e for k, v in parameters_of(net).items()} for e in range(6)])
    matcher = mtt.TrajectoryMatcher(lambda: ConvNet(3, 3, 16, width=8, depth=2), cache, syn_steps=1, expert_epochs=1,
                                    max_start_epoch=5, lr_student=0.01, lr_lr=1e-5)
    starts = []
    for rank in range(4):
        monkeypatch.setattr(mtt, "rank_and_world", lambda rank=rank: (rank, 4))
        torch.manual_seed(7)  # the same iteration seed on every rank
        matcher.start_iteration("cpu")
        starts.append(round(float((matcher.start["net.classifier.bias"] - net.classifier.bias)[0])))
    assert len(set(starts)) > 1 and not matcher.splits_real
