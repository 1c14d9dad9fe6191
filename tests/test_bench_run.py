"""bench/run.py's ratios: each configuration's time over plain's in the same precision, and over the same
configuration in the first precision measured."""

import sys

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
