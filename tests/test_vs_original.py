"""The side-by-side harness (bench/vs_original.py, bench/run_original.py): the settings it gives gdrdd are valid,
the originals' timing leaves evaluations out, their printed accuracy is read, and the runtime patch for
self-overlapping assignment computes what older PyTorch did."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gdrdd.config import CONFIG_DIR as CONF
from gdrdd.config.checks import validate
from gdrdd.config.schema import check_types

BENCH = CONF.parent / "bench"
sys.path.insert(0, str(BENCH))
import run_original  # noqa: E402
import vs_original  # noqa: E402


def harness_args(matcher: str, ipc: int) -> argparse.Namespace:
    return argparse.Namespace(matcher=matcher, ipc=ipc, data_dir=Path("/data"), iterations=200, inner_loop=2,
                              factor=2, n_data=2000, seed=0, eval_epochs=300, original_eval_nets=1)


@pytest.mark.parametrize("matcher", sorted(vs_original.ORIGINALS))
@pytest.mark.parametrize("ipc", [1, 10])
def test_the_harness_gives_train_py_only_valid_settings(matcher, ipc, compose):
    cfg = compose(*vs_original.gdrdd_overrides(harness_args(matcher, ipc)))
    check_types(cfg)
    validate(cfg)
    assert cfg.method.name == matcher and cfg.ipc == ipc and cfg.cvar.name == "none"


def test_the_condensation_scripts_run_the_same_number_of_updates_as_gdrdd():
    args = harness_args("dm", 10)
    given = vs_original.ORIGINALS["dm"].arguments(args)
    assert given[given.index("--Iteration") + 1] == "199"  # it updates Iteration + 1 times
    assert "iterations=200" in vs_original.gdrdd_overrides(args)
    assert vs_original.ORIGINALS["dsa"].result(args, Path("w")) == Path("w/result/res_DSA_CIFAR10_ConvNet_10ipc.pt")


def test_iteration_seconds_leave_out_intervals_with_an_evaluation():
    events = [("network", 0.0), ("network", 1.0), ("network", 3.0),  # two iterations: 1 s, 2 s
              ("evaluation", 3.5), ("end of evaluation", 9.5),         # an evaluation network, built at 3.0
              ("network", 10.0), ("network", 14.0)]                    # the last iteration (4 s), then the end
    assert run_original.iteration_seconds(events) == [1.0, 2.0, 4.0]
    assert run_original.evaluation_seconds(events) == [6.0]


def test_the_accuracy_an_original_prints_is_read(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("iter = 0190\nEvaluate 3 random ConvNet, mean = 0.4512 std = 0.0061\n-----\n")
    assert vs_original.own_evaluation(log) == pytest.approx({"nets": 3, "acc": 45.12, "acc_std": 0.61})
    log.write_text("Evaluate 0 random ConvNet, mean = nan std = nan\n")
    assert vs_original.own_evaluation(log) is None


def test_overlapping_assignment_patch_gives_the_broadcast_copy():
    # In a subprocess: the patch replaces Tensor.__setitem__ for the whole process.
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import run_original\n"
            "x = torch.arange(6.).reshape(3, 2)\n"
            "try:\n    x[:] = x[0]\nexcept RuntimeError:\n    refused = True\nelse:\n    refused = False\n"
            "run_original.patch_overlapping_assignment()\n"
            "x[:] = x[0]; y = torch.zeros(2); y[:] = torch.ones(2)\n"
            "print(refused, x.tolist(), y.tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 1)[1].strip() == "[[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]] [1.0, 1.0]"
