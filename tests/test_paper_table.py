"""bench/paper_table.py: its commands (GPU runs bounded by max_time), its table of scores and paired differences,
and (slow) the whole script on the embedded data, for both of its tables."""

import json
import subprocess
import sys

import pytest

from gdrdd.config import CONFIG_DIR as CONF

sys.path.insert(0, str(CONF.parent / "bench"))
import paper_table  # noqa: E402


def test_commands_bound_each_run_and_pair_plain_with_robust(tmp_path):
    cmds = paper_table.commands(paper_table.TABLES["reference"], tmp_path, "/data", 6.5, smoke=False)
    assert set(cmds) == {"dm_plain", "dm_default", "idc_plain", "idc_release"}
    for cmd in cmds.values():
        assert "+trainer.max_time=00:00:06:30" in cmd and "paths.data_dir=/data" in cmd and "trainer=gpu" in cmd
    assert "iterations=20000" in cmds["dm_default"] and "cvar=default" in cmds["dm_default"]
    assert "cvar=release" in cmds["idc_release"] and "eval=idc" in cmds["idc_release"]
    assert all("seed=0" in cmd and "trainer.precision=bf16-mixed" in cmd for cmd in cmds.values())


def test_the_reduced_table_pairs_plain_and_default_dm_per_seed_at_width_32_in_float32(tmp_path, compose):
    spec = paper_table.TABLES["reduced"]
    cmds = paper_table.commands(spec, tmp_path, "/data", 6.5, smoke=False)
    assert len(cmds) == 6 and spec.pairs == [(f"dm_default_s{s}", f"dm_plain_s{s}") for s in (0, 1, 2)]
    for robust, plain in spec.pairs:
        differ = set(cmds[robust]) ^ set(cmds[plain])
        assert differ == {"cvar=default", "cvar=none", f"hydra.run.dir={tmp_path / robust}",
                          f"hydra.run.dir={tmp_path / plain}"}
    cmd = cmds["dm_default_s2"]
    assert "experiment=reduced_dm" in cmd and "seed=2" in cmd and not any("precision" in o for o in cmd)
    overrides = [o for o in cmd[2:] if not o.startswith(("hydra.", "+trainer.max_time", "trainer=gpu"))]
    cfg = compose(*overrides)  # what the run composes to: the reduced protocol, to its reference budget
    assert (cfg.model.width, cfg.iterations, cfg.seed, cfg.method.compile) == (32, 20000, 2, False)
    assert list(cfg.eval.at) == [1000, 2000, 5000, 10000]


def test_table_reports_iterations_reached_and_paired_differences(tmp_path):
    scores = {"acc": 40.0, "acc_kept100": 50.0, "acc_kept25": 30.0, "acc_kept5": 20.0, "worst_cell_acc": 5.0}
    for name, shift in (("dm_plain", 0.0), ("dm_default", 1.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "iterations": 20000, "iterations_timed": 12000,
            "scored": {"distilled": {k: v + shift for k, v in scores.items()}}}))
    statuses = {"dm_plain": 0, "dm_default": 0, "idc_plain": 1, "idc_release": 0}
    text, report = paper_table.table(paper_table.TABLES["reference"], tmp_path, statuses)
    assert "| dm_plain | 12000 / 20000 | 40.00 |" in text
    assert "| dm_default − dm_plain | | +1.50 | +1.50 | +1.50 | +1.50 | +1.50 |" in text
    assert "failed: see idc_plain.log" in text and "idc_release −" not in text
    assert set(report["runs"]) == {"dm_plain", "dm_default"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", "reduced"])
def test_the_script_runs_on_the_embedded_data(tmp_path, name):
    done = subprocess.run([sys.executable, "bench/paper_table.py", "--smoke", "--table", name, "--out", str(tmp_path)],
                          cwd=CONF.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    spec = paper_table.TABLES[name]
    report = json.loads((tmp_path / "paper_table.json").read_text())
    assert set(report["runs"]) == set(spec.runs)
    robust, plain = spec.pairs[-1]
    assert f"{robust} − {plain}" in (tmp_path / "paper_table.md").read_text()
    paired = (tmp_path / "report" / "report.md").read_text()
    assert "Paired differences from `cvar=none`" in paired and (tmp_path / "report" / "cell_shift.csv").is_file()
