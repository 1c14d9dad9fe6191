"""Runs that survive: kill -9 and resume gives the uninterrupted result; finished runs are not overwritten;
non-finite losses stop the run (or are skipped) and keep the last good set."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gdrdd.distill.checkpoints import next_resumed_log
from gdrdd.errors import ConfigError, NonFiniteError
from gdrdd.jobs.distill import run

ROOT = Path(__file__).resolve().parents[1]
RUN = ["ipc=2", "iterations=40", "model.width=32", "method.batch_real=64", "eval.nets=1", "eval.epochs=1",
       "eval.baseline=false", "checkpoint.every=1", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def train(folder, *extra):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *RUN, f"hydra.run.dir={folder}", *extra],
                            cwd=folder.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def iterations_done(ckpt: Path) -> int:
    """Iterations a checkpoint has recorded (0 if there is none yet)."""
    if not ckpt.exists():
        return 0
    state = torch.load(ckpt, weights_only=True)
    return state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]


@pytest.mark.integration
@pytest.mark.slow  # ~1 min: three subprocess runs
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    reference = train(tmp_path / "whole")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    victim = train(tmp_path / "killed")
    ckpt = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while iterations_done(ckpt) < 3 and time.time() < deadline:
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "distilled.pt").exists()  # killed mid-run
    assert 3 <= iterations_done(ckpt) < 40
    leftovers = [p for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name != "last.ckpt"]
    assert not leftovers  # no partial file left
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), f"resume={tmp_path / 'killed'}",
                              f"hydra.run.dir={tmp_path / 'resume_log'}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "distilled.pt", weights_only=True)["images"]
    b = torch.load(tmp_path / "killed" / "distilled.pt", weights_only=True)["images"]
    assert torch.equal(a, b)


def test_resume_needs_a_run_folder_and_finished_runs_are_not_overwritten(tmp_path, tiny):
    with pytest.raises(ConfigError, match="not a resumable run folder"):
        run(tiny(f"resume={tmp_path}", out=tmp_path / "x"))
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text("seed: 0\n")
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="last.ckpt is unreadable"):
        run(tiny(f"resume={broken}", out=tmp_path / "y"))
    run(tiny("iterations=1", "eval.baseline=false", out=tmp_path / "done"))
    before = (tmp_path / "done" / "distilled.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run(tiny("iterations=1", out=tmp_path / "done"))
    assert (tmp_path / "done" / "distilled.pt").read_bytes() == before
    (tmp_path / "done" / "distilled.pt").rename(tmp_path / "done" / "kept.pt")  # now it looks interrupted
    with pytest.raises(ConfigError, match="holds an interrupted run"):
        run(tiny("iterations=1", out=tmp_path / "done"))


def test_each_resumption_logs_to_a_new_csv_folder_even_after_one_was_deleted(tmp_path):
    assert next_resumed_log(tmp_path) == "resumed-1"
    for name in ("resumed-1", "resumed-3", "resumed-x", "version_0"):
        (tmp_path / name).mkdir()
    assert next_resumed_log(tmp_path) == "resumed-4"  # not resumed-3 (a count would give 3 and write over it)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_set(tmp_path, tiny):
    cfg = tiny("method.lr_img=1e38", "iterations=6", "eval.baseline=false", "cvar=none", out=tmp_path / "nan")
    with pytest.raises(NonFiniteError, match="not finite at iteration") as err:
        run(cfg)
    kept = torch.load(tmp_path / "nan" / "distilled.pt", weights_only=True)["images"]
    assert torch.isfinite(kept).all()
    assert f"iteration {int(str(err.value).split('iteration ')[1].split()[0])}" in str(err.value)
    result = run(tiny("method.lr_img=1e38", "iterations=6", "eval.baseline=false", "cvar=none",
                      "guard.skip_nonfinite=true", out=tmp_path / "skip"))
    images = torch.load(tmp_path / "skip" / "distilled.pt", weights_only=True)["images"]
    assert torch.isfinite(images).all() and math.isfinite(result["scored"]["distilled"]["acc"])
    log = (tmp_path / "skip" / "csv" / "metrics.csv").read_text()
    assert "guard/skipped_updates" in log.splitlines()[0]


@pytest.mark.integration
def test_cli_exit_status_three_for_a_non_finite_loss(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *RUN[:6], "iterations=6", "method.lr_img=1e38",
                           "cvar=none", f"hydra.run.dir={tmp_path / 'r'}"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 3 and "not finite at iteration" in proc.stderr


def test_a_run_resumed_at_a_due_step_scores_it_once(tmp_path):
    """Interrupted during the evaluation after step 4 (its checkpoint already written), a resumed run scores step
    4 when training restarts; one that finished that evaluation does not score it again."""
    from types import SimpleNamespace

    from gdrdd.evaluation.callback import EvaluationCallback

    calls = []
    evaluator = SimpleNamespace(evaluate=lambda *set_, lr, name: calls.append(name) or {"acc": 50.0})
    module = SimpleNamespace(training_set=lambda: (torch.zeros(2, 1), torch.zeros(2)), evaluation_lr=lambda: None)

    def restarted_at(done):
        progress = SimpleNamespace(current=SimpleNamespace(processed=done))
        return SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
                               num_training_batches=10, is_global_zero=True, loggers=[], global_step=done)

    callback = EvaluationCallback(evaluator, at=[4, 8], run_dir=tmp_path)
    callback.on_train_start(restarted_at(4), module)
    assert calls == ["distilled at iteration 4"] and callback.during() == {4: {"acc": 50.0}}
    EvaluationCallback(evaluator, at=[4, 8], run_dir=tmp_path).on_train_start(restarted_at(4), module)
    EvaluationCallback(evaluator, at=[4, 8], run_dir=tmp_path).on_train_start(restarted_at(5), module)  # not due
    EvaluationCallback(evaluator, at=[4, 8], run_dir=tmp_path).on_train_start(restarted_at(0), module)  # fresh run
    assert len(calls) == 1
    callback.on_train_batch_end(restarted_at(8), module, None, None, batch_idx=7)
    assert list(callback.during()) == [4, 8]


@pytest.mark.integration
@pytest.mark.slow  # ~1 min: three 2-process runs
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path):
    """DDP over gloo: the whole process group of a 2-process run is killed after a few iterations; resumed from
    its last checkpoint (with the saved config, so again 2 processes) it ends with the set an uninterrupted
    2-process run makes."""
    ddp = ["iterations=10", "model.width=16", "method.batch_real=16", "trainer=ddp", "trainer.devices=2"]

    def start(name):
        command = [sys.executable, str(ROOT / "train.py"), *RUN, *ddp, f"hydra.run.dir={tmp_path / name}"]
        return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group: the rank-1 child goes with it

    whole = start("whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-3000:]
    victim = start("killed")
    ckpt = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while iterations_done(ckpt) < 3 and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "distilled.pt").exists() and 3 <= iterations_done(ckpt) < 10
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), f"resume={tmp_path / 'killed'}",
                              f"hydra.run.dir={tmp_path / 'resume_log'}"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "whole" / "distilled.pt", weights_only=True)["images"]
    b = torch.load(tmp_path / "killed" / "distilled.pt", weights_only=True)["images"]
    assert torch.equal(a, b)
