"""bench/paper_table.py: its commands (GPU runs bounded by max_time), its table of scores and paired differences,
its checks before a device run, the few files it returns, and (slow) the whole script on the embedded data, for
each of its tables."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from gdrdd.config import CONFIG_DIR as CONF

sys.path.insert(0, str(CONF.parent / "bench"))
import paper_table  # noqa: E402


def composed(cmd: list[str], compose):
    """The config a table's ``train.py`` command composes to, without its run folder and device settings."""
    return compose(*(o for o in cmd[2:] if not o.startswith(("hydra.", "+trainer.max_time", "trainer=gpu"))))


def test_commands_bound_each_run_and_pair_plain_with_robust(tmp_path):
    cmds = paper_table.commands(paper_table.TABLES["reference"], tmp_path, "/data", 6.5, smoke=False)
    assert set(cmds) == {"dm_plain", "dm_default", "idc_plain", "idc_release"}
    for cmd in cmds.values():
        assert "+trainer.max_time=00:00:06:30" in cmd and "paths.data_dir=/data" in cmd and "trainer=gpu" in cmd
    assert "iterations=20000" in cmds["dm_default"] and "cvar=default" in cmds["dm_default"]
    assert "cvar=release" in cmds["idc_release"] and "eval=idc" in cmds["idc_release"]
    assert all("seed=0" in cmd and "trainer.precision=bf16-mixed" in cmd for cmd in cmds.values())


def test_the_reference_runs_use_the_methods_own_batches_not_the_quickstarts(tmp_path, compose):
    cmds = paper_table.commands(paper_table.TABLES["reference"], tmp_path, "/data", 6.5, smoke=False)
    runs = {name: composed(cmd, compose) for name, cmd in cmds.items()}
    assert runs["dm_default"].method.batch_real == 256 and runs["dm_plain"].iterations == 20000
    assert runs["dm_plain"].method.embed_batch is None  # one embedding pass for all classes on the device
    assert runs["idc_release"].method.batch_real == 64 and runs["idc_release"].method.inner_loop == 100
    assert all((cfg.eval.nets, cfg.eval.epochs) == (3, 300) for cfg in runs.values())


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
    cfg = composed(cmd, compose)  # what the run composes to: the reduced protocol, to its reference budget
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
    metrics = json.loads((tmp_path / "dm_default" / "metrics.json").read_text())
    (tmp_path / "dm_default" / "metrics.json").write_text(json.dumps({**metrics, "iterations_timed": 11500}))
    text, _ = paper_table.table(spec, tmp_path, statuses)  # a pair cut at different iterations says so
    assert "| dm_default − dm_plain | unequal budgets: 11500 vs 12000 | +1.50 |" in text


def test_the_returned_archive_holds_each_runs_records_and_log_but_no_images(tmp_path):
    runs = tmp_path / "runs"
    (runs / "dm_plain").mkdir(parents=True)
    for name in ("metrics.json", "run.json", "eval_during.jsonl", "distilled.pt", "distilled.png"):
        (runs / "dm_plain" / name).write_text(name)
    (runs / "dm_plain.log").write_text("log of dm_plain")
    (runs / "dm_default.log").write_text("Traceback: failed before its folder")
    paper_table.pack_runs(runs, ["dm_plain", "dm_default"], tmp_path / "runs.tar.gz")
    with tarfile.open(tmp_path / "runs.tar.gz") as tar:
        names = set(tar.getnames())
        assert tar.extractfile("dm_default/dm_default.log").read() == b"Traceback: failed before its folder"
    assert names == {"dm_plain/metrics.json", "dm_plain/run.json", "dm_plain/eval_during.jsonl",
                     "dm_plain/dm_plain.log", "dm_default/dm_default.log"}


def test_a_device_table_stops_at_once_without_a_gpu_or_without_cifar10(tmp_path, monkeypatch, compose):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device" in paper_table.check_device_and_data(str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert f"--data-dir: CIFAR-10 was not found under {tmp_path}" in paper_table.check_device_and_data(str(tmp_path))
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()  # folders without the class folders the reader needs
    assert "CIFAR-10 was not found" in paper_table.check_device_and_data(str(tmp_path))
    for split in ("train", "test"):
        for name in compose("dataset=cifar10").dataset.class_names:
            (tmp_path / split / name).mkdir()
    assert paper_table.check_device_and_data(str(tmp_path)) is None


@pytest.mark.parametrize("earlier", ["runs/dm_plain/metrics.json", "runs/dm_default.log", "out/paper_table.md"])
def test_earlier_runs_or_tables_are_refused_before_anything_starts(tmp_path, earlier):
    (tmp_path / earlier).parent.mkdir(parents=True)
    (tmp_path / earlier).write_text("{}")
    done = subprocess.run([sys.executable, "bench/paper_table.py", "--smoke", "--out", str(tmp_path / "out"),
                           "--runs", str(tmp_path / "runs")], cwd=CONF.parent, capture_output=True, text=True)
    assert done.returncode == 2 and "(nothing was started or overwritten)" in done.stderr
    assert "already holds " + ("paper_table.md" if earlier.startswith("out") else "the runs dm_") in done.stderr
    assert (tmp_path / earlier).read_text() == "{}"
    made = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert made == {earlier}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", "standard", "reduced"])
def test_the_script_runs_on_the_embedded_data(tmp_path, name):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "bench/paper_table.py", "--smoke", "--table", name, "--out", str(out)],
                          cwd=CONF.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    spec = paper_table.TABLES[name]
    report = json.loads((out / "paper_table.json").read_text())
    assert set(report["runs"]) == set(spec.runs)
    robust, plain = spec.pairs[-1]
    assert f"{robust} − {plain}" in (out / "paper_table.md").read_text()
    paired = (out / "report.md").read_text()
    assert "Paired differences from `cvar=none`" in paired
    runs = tmp_path / "out_runs"  # the default: beside OUT
    assert (runs / "report" / "cell_shift.csv").is_file() == (spec.smoke_data.endswith("_shift"))
    returned = {p.name for p in out.rglob("*")}  # OUT holds the few files that a job copying files back needs
    assert {"paper_table.md", "paper_table.json", "report.md", "runs.tar.gz"} <= returned <= set(paper_table.OUTPUTS)
    with tarfile.open(out / "runs.tar.gz") as tar:
        assert {f"{name}/metrics.json" for name in spec.runs} <= set(tar.getnames())


def test_the_device_script_checks_its_python_and_stops_without_a_gpu_before_any_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine the script would start the table")
    env = {**os.environ, "PYTHON": sys.executable, "PAPER_TABLE_RUNS": str(tmp_path / "runs")}
    done = subprocess.run(["bash", "bench/paper_table.sh", str(tmp_path / "out"), str(tmp_path)], cwd=CONF.parent,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no CUDA device is visible to PyTorch" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_the_device_environment_names_the_packages_its_python_cannot_import(tmp_path):
    bare = tmp_path / "bare-python"  # the same interpreter without site-packages: no torch, hydra, kornia ...
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    script = CONF.parent / "bench" / "device_env.sh"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(["bash", "-c", f"source '{script}' && echo reached"], cwd=tmp_path, capture_output=True,
                          text=True, env={**env, "PYTHON": str(bare)})
    assert done.returncode == 2 and "reached" not in done.stdout
    for name in ("torch", "lightning", "hydra", "omegaconf", "kornia"):
        assert f"{name} (ModuleNotFoundError" in done.stderr
    assert "bench/device_wheels.sh" in done.stderr
    done = subprocess.run(["bash", "-c", f"cd '{CONF.parent}' && source bench/device_env.sh && echo reached $PY"],
                          capture_output=True, text=True, env={**env, "PYTHON": sys.executable})
    assert done.returncode == 0 and done.stdout.strip() == f"reached {sys.executable}", done.stderr[-2000:]
