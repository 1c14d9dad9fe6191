"""bench/paper_table.py: its commands (GPU runs bounded by max_time), its table of scores and paired differences,
and (slow) the whole script on the embedded data, for each of its tables."""

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


def test_the_standard_table_runs_the_reference_pairs_on_standard_cifar10_with_the_papers_columns(tmp_path):
    reference, standard = (paper_table.TABLES[name] for name in ("reference", "standard"))
    assert (standard.runs, standard.pairs) == (reference.runs, reference.pairs)
    cmds = paper_table.commands(standard, tmp_path, "/data", 6.5, smoke=False)
    assert all("dataset=cifar10" in cmd and "dataset=cifar10_shift" not in cmd for cmd in cmds.values())
    assert [k for k, _ in standard.columns] == ["acc", "worst_group_acc", "acc_noise", "acc_blur", "acc_invert"]
    smoke = paper_table.commands(standard, tmp_path, None, 0.5, smoke=True)
    assert all("dataset=mnist_mini" in cmd and "dataset=cifar10" not in cmd for cmd in smoke.values())


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


@pytest.mark.parametrize("name", ["reference", "standard"])
def test_table_reports_iterations_reached_and_paired_differences(tmp_path, name):
    spec = paper_table.TABLES[name]
    scores = {k: 40.0 - 5 * i for i, (k, _) in enumerate(spec.columns)}
    for run, shift in (("dm_plain", 0.0), ("dm_default", 1.5)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.json").write_text(json.dumps({
            "iterations": 20000, "iterations_timed": 12000,
            "scored": {"distilled": {k: v + shift for k, v in scores.items()}}}))
    statuses = {"dm_plain": 0, "dm_default": 0, "idc_plain": 1, "idc_release": 0}
    text, report = paper_table.table(spec, tmp_path, statuses)
    lines = text.splitlines()
    assert lines[0] == "| run | iterations | " + " | ".join(label for _, label in spec.columns) + " |"
    assert "| dm_plain | 12000 / 20000 | 40.00 | 35.00 | 30.00 | 25.00 | 20.00 |" in lines
    assert "| dm_default − dm_plain | | +1.50 | +1.50 | +1.50 | +1.50 | +1.50 |" in lines
    assert "| idc_plain | - | failed: see idc_plain.log |  |  |  |  |" in lines and "idc_release −" not in text
    assert set(report["runs"]) == {"dm_plain", "dm_default"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", "standard", "reduced"])
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
    assert "Paired differences from `cvar=none`" in paired
    assert (tmp_path / "report" / "cell_shift.csv").is_file() == (spec.smoke_data.endswith("_shift"))
