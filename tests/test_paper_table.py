"""bench/paper_table.py: its commands (GPU runs bounded by max_time), its table of scores and paired differences,
and (slow) the whole script on the embedded data."""

import json
import subprocess
import sys

import pytest

from gdrdd.config import CONFIG_DIR as CONF

sys.path.insert(0, str(CONF.parent / "bench"))
import paper_table  # noqa: E402


def test_commands_bound_each_run_and_pair_plain_with_robust(tmp_path):
    cmds = paper_table.commands(tmp_path, "/data", 6.5, smoke=False)
    assert set(cmds) == {"dm_plain", "dm_default", "idc_plain", "idc_release"}
    for cmd in cmds.values():
        assert "+trainer.max_time=00:00:06:30" in cmd and "paths.data_dir=/data" in cmd and "trainer=gpu" in cmd
    assert "iterations=20000" in cmds["dm_default"] and "cvar=default" in cmds["dm_default"]
    assert "cvar=release" in cmds["idc_release"] and "eval=idc" in cmds["idc_release"]


def test_table_reports_iterations_reached_and_paired_differences(tmp_path):
    scores = {"acc": 40.0, "acc_kept100": 50.0, "acc_kept25": 30.0, "acc_kept5": 20.0, "worst_cell_acc": 5.0}
    for name, shift in (("dm_plain", 0.0), ("dm_default", 1.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "iterations": 20000, "iterations_timed": 12000,
            "scored": {"distilled": {k: v + shift for k, v in scores.items()}}}))
    text, report = paper_table.table(tmp_path, {"dm_plain": 0, "dm_default": 0, "idc_plain": 1, "idc_release": 0})
    assert "| dm_plain | 12000 / 20000 | 40.00 |" in text
    assert "| dm_default − dm_plain | | +1.50 | +1.50 | +1.50 | +1.50 | +1.50 |" in text
    assert "failed: see idc_plain.log" in text and "idc_release −" not in text
    assert set(report["runs"]) == {"dm_plain", "dm_default"}


@pytest.mark.slow
def test_the_script_runs_on_the_embedded_data(tmp_path):
    done = subprocess.run([sys.executable, "bench/paper_table.py", "--smoke", "--out", str(tmp_path)],
                          cwd=CONF.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "paper_table.json").read_text())
    assert set(report["runs"]) == {"dm_plain", "dm_default", "idc_plain", "idc_release"}
    assert "idc_release − idc_plain" in (tmp_path / "paper_table.md").read_text()
