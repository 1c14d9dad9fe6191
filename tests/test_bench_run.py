"""bench/run.py's ratios: each configuration's time over plain's in the same precision, and over the same
configuration in the first precision measured; bench/gpu_check.sh's summary and its refusal without CUDA."""

import json
import sys
from pathlib import Path

import pytest

from gdrdd.config import CONFIG_DIR as CONF

sys.path.insert(0, str(CONF.parent / "bench"))
import run as bench_run  # noqa: E402


def row(objective, precision, iteration_s, eval_s):
    return {"method": "dsa", "ipc": 10, "objective": objective, "precision": precision, "iteration_s": iteration_s,
            "eval_train_s_per_epoch": eval_s}


def test_ratios_pair_each_row_with_plain_in_its_precision_and_with_its_first_precision():
    rows = []
    for r in (row("none", "32-true", 100.0, 0.2), row("none", "bf16-mixed", 70.0, 0.1),
              row("matching", "32-true", 120.0, 0.2), row("matching", "bf16-mixed", 90.0, 0.15)):
        bench_run.add_ratios(r, rows, "32-true")
        rows.append(r)
    assert [r["ratio_to_none"] for r in rows] == pytest.approx([1.0, 1.0, 1.2, 90 / 70])
    assert [r["ratio_to_base_precision"] for r in rows] == pytest.approx([1.0, 0.7, 1.0, 0.75])
    assert [r["eval_ratio_to_base_precision"] for r in rows] == pytest.approx([1.0, 0.5, 1.0, 0.75])


def test_gpu_check_summary_tables_every_part_and_measurement(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_summary", Path(__file__).resolve().parents[1] / "bench" /
                                                  "gpu_summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    (tmp_path / "steps.tsv").write_text("gpu_tests\t40\t0\nmatchers\t100\t1\n")
    (tmp_path / "matchers.json").write_text(json.dumps({"rows": [{"method": "dm", "ipc": 10, "objective": "none",
                                                                   "iteration_s": 0.05, "peak_mb": 900.0}]}))
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "metrics.json").write_text(json.dumps({
        "method": "dm", "iterations": 50, "seconds_per_iteration_median": 0.02, "peak_gpu_memory_mb": 300.0,
        "scored": {"distilled": {"acc": 90.1}}}))
    assert summary.main(tmp_path) == 1  # a part failed
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [p["status"] for p in written["parts"]] == [0, 1] and len(written["measurements"]) == 2
    table = capsys.readouterr().out
    assert "| matchers | 100 | FAILED (exit 1) |" in table and "| 0.020 | 300 | 90.10 |" in table


def test_gpu_check_stops_at_once_without_a_cuda_device(tmp_path):
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), "--quick", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
