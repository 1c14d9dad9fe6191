"""On a CUDA device: every matcher's run, the precisions, compiled passes, ZCA and a 1-device DDP run, each a
few steps on the embedded data set. Marked ``gpu``: skipped where no CUDA device is present (``pytest -m gpu``
selects them; ``bench/gpu_check.sh`` runs them first). The CPU-side checks of the same paths are in
``tests/test_device.py``."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdrdd.cli import train as run  # task=distill or task=experts

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
GPU = ["trainer.accelerator=gpu", "eval.baseline=false"]
EXPERTS = ["experts.num=1", "experts.epochs=2", "model.width=16"]
MTT = ["method.syn_steps=3", "method.expert_epochs=1", "method.max_start_epoch=2", "iterations=2"]


def scored(result):
    return result["scored"]["distilled"]["acc"]


@pytest.mark.parametrize("method, extra", [
    ("dm", ["cvar.alpha=0.8"]),
    ("dm", ["cvar=none", "method.compile=true", "eval.compile=true"]),
    ("dsa", ["ipc=1", "method.outer_loop=2", "method.inner_loop=1", "cvar.target=both"]),
    ("dc", ["ipc=1", "cvar=none"]),
    ("idc", ["method.inner_loop=2", "cvar.target=network"]),
])
def test_each_matcher_runs_on_cuda(tmp_path, tiny, method, extra):
    result = run(tiny(*GPU, *extra, method=method))
    assert 0 <= scored(result) <= 100 and result["peak_gpu_memory_mb"] > 0
    blob = torch.load(tmp_path / "distilled.pt", weights_only=True)
    assert torch.isfinite(blob["images"]).all()


@pytest.mark.parametrize("trainer, evaluation", [("bf16-mixed", "bf16-mixed"), ("16-mixed", "16-mixed")])
def test_precisions_on_cuda(tmp_path, tiny, trainer, evaluation):
    result = run(tiny(*GPU, "ipc=1", f"trainer.precision={trainer}", f"eval.precision={evaluation}",
                      "eval.epochs=20", method="dsa"))
    assert 0 <= scored(result) <= 100


def test_float16_idc_with_algorithm_1_and_mtt_unroll_on_cuda(tmp_path, tiny):
    result = run(tiny(*GPU, "trainer.precision=16-mixed", "method.inner_loop=2", "cvar.target=network",
                      method="idc", out=tmp_path / "idc"))
    assert 0 <= scored(result) <= 100
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    run(tiny(*GPU, *EXPERTS, "task=experts", "eval.precision=16-mixed", cache, out=tmp_path / "experts"))
    result = run(tiny(*GPU, *EXPERTS, *MTT, "trainer.precision=16-mixed", "method.checkpoint=true", cache,
                      method="mtt", out=tmp_path / "mtt"))
    assert 0 <= scored(result) <= 100


def test_mtt_with_zca_experts_and_robust_term_on_cuda(tmp_path, tiny):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    run(tiny(*GPU, *EXPERTS, "task=experts", "dataset.zca=true", cache, out=tmp_path / "experts"))
    result = run(tiny(*GPU, *EXPERTS, *MTT, "dataset.zca=true", "cvar.alpha=0.5", cache, method="mtt",
                      out=tmp_path / "mtt"))
    assert 0 <= scored(result) <= 100 and result["peak_gpu_memory_mb"] > 0


def test_a_one_device_ddp_run_over_nccl(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "ipc=2", "iterations=3", "model.width=16",
               "method.batch_real=16", "eval.nets=1", "eval.epochs=2", "eval.baseline=false", "eval.coverage=false",
               "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=1", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "distilled.pt").is_file()
