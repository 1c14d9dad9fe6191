"""Tiny runs through Hydra's compose API and the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wandb
from PIL import Image

from gdrdd.distill.timer import peak_rss_mb
from gdrdd.errors import ConfigError
from gdrdd.jobs.distill import run

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_run_writes_the_distilled_set_and_metrics(tmp_path, tiny):
    result = run(tiny("cvar.alpha=0.8", "eval.every=2", "dashboard.group_stats_every=1"))
    blob = torch.load(tmp_path / "distilled.pt", weights_only=True)
    assert blob["images"].shape == (20, 1, 28, 28)
    assert blob["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert blob["config"]["cvar"]["alpha"] == 0.8 and blob["dataset"] == "mnist_mini" and blob["mean"] == [0.1307]
    assert "gdrdd_version" in blob
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert set(metrics["scored"]) == {"distilled", "random"}
    assert 0 <= metrics["scored"]["distilled"]["worst_group_acc"] <= metrics["scored"]["distilled"]["mean_group_acc"]
    assert metrics["iterations_timed"] == 3 and metrics["seconds_per_iteration_median"] > 0
    assert 100 < metrics["peak_rss_mb"] <= peak_rss_mb()  # torch alone takes over 100 MB; the peak only grows
    assert metrics["init"] == {"init": "real", "init_epochs": 0}  # the start, which the sweep report groups by
    with Image.open(tmp_path / "distilled.png") as grid:
        assert grid.size[0] > 28 * 2 and grid.size[1] > 28 * 10
    log = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert "distill/loss" in log[0] and "robust/risk" in log[0] and "eval/acc" in log[0]
    column = lambda name: [row.split(",")[log[0].split(",").index(name)] for row in log[1:]]  # noqa: E731
    assert len([v for v in column("distill/loss") if v]) == 3
    assert len([v for v in column("eval/acc") if v]) == 2  # after step 2 (eval.every) and at the end
    assert (tmp_path / "config.yaml").is_file() and "| test accuracy (%) |" in (tmp_path / "table.md").read_text()
    assert "robust/tail_share/0" in log[0]
    header = (tmp_path / "table.md").read_text().splitlines()[0]
    assert header.startswith("mnist_mini, method=dm, CVaR alpha 0.8")
    assert "3 / 20,000 iterations (below the reference)" in header


def test_a_set_scored_during_distillation_equals_the_shorter_run_of_the_same_seed(tmp_path, tiny):
    """``eval.at``: the scores after step 2 of a 3-step run are those of a 2-step run; metrics.json keeps them."""
    plain = ("cvar=none", "eval.baseline=false", "eval.nets=1")
    long = run(tiny(*plain, "eval.at=[2]", out=tmp_path / "long"))
    short = run(tiny(*plain, "iterations=2", out=tmp_path / "short"))
    assert [point["iteration"] for point in long["during"]] == [2] and short["during"] == []
    assert long["during"][0]["metrics"] == short["scored"]["distilled"]
    assert long["during"][0]["metrics"] != long["scored"]["distilled"]
    lines = (tmp_path / "long" / "eval_during.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [2]


def test_dashboard_files_hold_group_stats_and_tables(tmp_path, tiny):
    result = run(tiny("cvar=paper", "cvar.alpha=0.8", "dashboard.group_stats_every=2", "iterations=4"))
    records = [json.loads(line) for line in (tmp_path / "group_stats.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2, 4]
    for r in records:
        assert len(r["losses"]) == len(r["counts"]) == len(r["tail_weights"]) == 10 * r["groups_per_class"]
        assert sum(r["tail_share_per_class"].values()) == pytest.approx(1.0, abs=1e-5)
        assert sum(w > 0 for w in r["tail_weights"]) < sum(c > 0 for c in r["counts"])  # CVaR alone: the worst 20 %
        assert sum(r["counts"]) == 16 * 10  # every real image of the batch is in one group
    rows = (tmp_path / "group_accuracy.csv").read_text().splitlines()
    assert rows[0] == "group,test_images,distilled,random" and len(rows) == 11
    scored = result["scored"]["distilled"]
    cells = [row.split(",") for row in rows[1:]]
    assert [float(c[2]) for c in cells] == pytest.approx([scored[f"group{g}_acc"] for g in range(10)], abs=0.01)
    assert min(float(c[2]) for c in cells) == pytest.approx(scored["worst_group_acc"], abs=0.01)
    comparison = (tmp_path / "comparison.csv").read_text().splitlines()
    assert comparison[0] == "metric,distilled,distilled_std,random,random_std" and len(comparison) == 8


def test_distillation_changes_the_images_and_same_seed_repeats(tmp_path, tiny):
    run(tiny("cvar=none", "eval.baseline=false", out=tmp_path / "a"))
    run(tiny("cvar=none", "eval.baseline=false", out=tmp_path / "b"))
    a = torch.load(tmp_path / "a" / "distilled.pt", weights_only=True)["images"]
    b = torch.load(tmp_path / "b" / "distilled.pt", weights_only=True)["images"]
    assert torch.equal(a, b)
    run(tiny("cvar=none", "eval.baseline=false", "iterations=0", out=tmp_path / "c"))
    init = torch.load(tmp_path / "c" / "distilled.pt", weights_only=True)["images"]
    assert not torch.allclose(a, init)


def test_random_method_scores_real_images(tmp_path, tiny):
    result = run(tiny(method="random"))
    assert list(result["scored"]) == ["random"] and (tmp_path / "distilled.pt").is_file()


def test_wandb_offline_writes_its_run_files(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run(tiny("logger=wandb", "eval.baseline=false", "cvar.alpha=0.8", "dashboard.group_stats_every=1"))
    # run.finish() returns once the run is closed, but the W&B service process may still hold the tail of the
    # offline log in its write buffer (CI saw a header-only file); tearing the service down flushes it, as the
    # interpreter's exit does for a real run.
    wandb.teardown()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"distill/loss" in records and b"robust/risk" in records and b"eval/acc" in records
    assert b"robust/group_losses" in records and b"histogram" in records and b"robust/tail_share/0" in records
    assert list(runs[0].glob("files/media/images/distill/synthetic_images*.png"))  # the image grid
    for table in ("group_accuracy", "comparison"):  # W&B tables are stored as table.json media files
        assert list(runs[0].glob(f"files/media/table/eval/{table}*.table.json"))
    assert (tmp_path / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize("override,key", [
    ("cvar.alpha=1.0", "cvar.alpha"), ("ipc=0", "ipc"), ("eval.cvar_alpha=high", "eval.cvar_alpha"),
    ("cvar.weighting=max", "cvar.weighting"), ("method.lr_img=-1", "method.lr_img"), ("model.name=vit", "model.name"),
    ("method.init=zeros", "method.init"), ("eval.nets=0", "eval.nets"), ("task=finetune", "task"), ("seed=abc", "seed"),
    ("iterations=-5", "iterations"), ("checkpoint.every=-1", "checkpoint.every"),
    ("guard.skip_nonfinite=maybe", "guard.skip_nonfinite"), ("cvar.scale=-2", "cvar.scale"),
    ("cvar.target=everything", "cvar.target"), ("dataset.dsa_strategy=color_blur", "dataset.dsa_strategy"),
    ("dataset.mean=[0.1,0.2]", "dataset.mean/std"), ("eval.lr=0", "eval.lr"), ("eval.augment=mixup", "eval.augment"),
    ("cvar.alpha=nan_string", "cvar.alpha"), ("+cvar.alpah=0.8", "cvar.alpah"), ("eval.nets=2.5", "eval.nets"),
    ("dataset.mean=[a,b]", "dataset.mean"), ("eval.models=alexnet", "eval.models"), ("experts.lr=fast", "experts.lr"),
    ("+method.lr_image=1", "method.lr_image"), ("dashboard.group_stats_every=-1", "dashboard.group_stats_every"),
    ("eval.at=[0]", "eval.at"), ("eval.at=[3]", "eval.at"), ("eval.at=[1.5]", "eval.at")])
def test_bad_values_are_refused_before_any_work(tmp_path, override, key, tiny):
    """Each bad value stops the run with a ConfigError naming the key, before anything is read or written."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(tiny(override))
    assert not (tmp_path / "distilled.pt").exists()


@pytest.mark.parametrize("override,key", [
    ("method.syn_steps=0", "method.syn_steps"), ("method.batch_syn=0", "method.batch_syn"),
    ("method.lr_lr=-1", "method.lr_lr"), ("cvar.weight=-0.5", "cvar.weight"),
    ("method.checkpoint=sometimes", "method.checkpoint"), ("experts.num=0", "experts.num"),
    ("experts.augment=cutmix", "experts.augment")])
def test_bad_trajectory_matching_values_are_refused(tmp_path, override, key, tiny):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(tiny(override, method="mtt"))


@pytest.mark.integration
def test_command_line_reports_bad_alpha_in_one_paragraph_with_status_2(tmp_path):
    env = {**os.environ, "GDRDD_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "train.py", "cvar.alpha=1.5", f"hydra.run.dir={tmp_path}/run"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "cvar.alpha=1.5" in proc.stderr and "[0, 1)" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_missing_data_folder_stops_with_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "dataset=cifar10", f"paths.data_dir={tmp_path}/empty",
                           f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "data_batch_1" in proc.stderr and "Traceback" not in proc.stderr
    # the quickstart budget is announced first, before the data are read
    assert proc.stdout.startswith("budget: 80 / 20,000 iterations (below the reference), 0.4 % of method=dm's "
                                  "reference, the budget of experiment=quickstart; for the reference set "
                                  "iterations=20000")


@pytest.mark.parametrize("method", ["dc", "dsa"])
def test_gradient_matching_runs_through_hydra(tmp_path, method, tiny):
    result = run(tiny("ipc=1", "iterations=2", "eval.baseline=false", method=method))
    assert result["method"] == method and result["iterations_timed"] == 2
    blob = torch.load(tmp_path / "distilled.pt", weights_only=True)
    assert blob["images"].shape == (10, 1, 28, 28) and blob["config"]["method"]["name"] == method


def test_gradient_matching_ipc_without_schedule_is_refused(tmp_path, tiny):
    with pytest.raises(ConfigError, match="outer_loop"):
        run(tiny("ipc=7", method="dsa"))


@pytest.mark.parametrize("target", ["network", "both"])
def test_robust_network_targets_run_through_hydra(tmp_path, target, tiny):
    result = run(tiny("ipc=1", "iterations=1", "method.outer_loop=2", "method.inner_loop=1", f"cvar.target={target}",
                      "eval.baseline=false", method="dsa"))
    assert result["cvar"]["target"] == target
    blob = torch.load(tmp_path / "distilled.pt", weights_only=True)
    assert torch.isfinite(blob["images"]).all()


def test_network_target_needs_gradient_matching(tmp_path, tiny):
    with pytest.raises(ConfigError, match="cvar.target"):
        run(tiny("cvar.target=network"))


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "svhn", "cifar10", "cifar100", "tinyimagenet",
                                     "imagefolder", "imagenette", "imagenet_a"])
def test_every_downloadable_data_set_names_its_files_when_missing(tmp_path, dataset, tiny):
    from gdrdd.errors import DataNotFoundError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="Expected") as err:
        run(tiny(f"dataset={dataset}", f"paths.data_dir={empty}", out=tmp_path / "out"))
    assert str(empty) in str(err.value) and "download" in str(err.value)
    assert not (tmp_path / "out" / "distilled.pt").exists()


def test_imagenet_subset_presets_carry_their_class_indices(tmp_path, tiny):
    cfg = tiny("dataset=imagewoof")
    assert cfg.dataset.reader == "imagefolder" and cfg.dataset.resolution == 128 and cfg.model.depth == 5
    assert list(cfg.dataset.class_indices) == [193, 182, 258, 162, 155, 167, 159, 273, 207, 229]


@pytest.mark.slow  # ~25 s: three architectures trained and scored
def test_cross_architecture_evaluation_reports_every_metric_per_network(tmp_path, tiny):
    from gdrdd.jobs import build

    result = run(tiny("iterations=1", "eval.models=[alexnet]", "eval.baseline=false"))
    distilled = result["scored"]["distilled"]
    assert "acc" in distilled and "alexnet/acc" in distilled and "alexnet/worst_group_acc_std" in distilled
    table = (tmp_path / "table.md").read_text()
    assert "| test accuracy (%) [alexnet] |" in table and "| CVaR of group test loss [alexnet] |" in table
    # The run's own model is scored once, unprefixed; other names build their own networks.
    cfg = tiny("model.width=128", "eval.models=[convnet,vgg11,resnet18_ap]")
    extra = build.cross_architectures(cfg, build.dataset_spec(cfg))
    assert list(extra) == ["vgg11", "resnet18_ap"] and type(extra["resnet18_ap"]()).__name__ == "ResNet18"
    with pytest.raises(ConfigError, match="eval.models='lenet'"):
        run(tiny("eval.models=[lenet]", out=tmp_path / "bad"))


@pytest.mark.parametrize("method", ["dc", "dsa", "dm"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tinyimagenet"])
def test_base_method_presets_compose_with_reference_settings(tmp_path, method, dataset, compose):
    from gdrdd.config.checks import validate

    for ipc in (1, 10, 50):
        cfg = compose(f"experiment={method}_{dataset}_ipc{ipc}", f"paths.output_dir={tmp_path}")
        validate(cfg)
        assert (cfg.method.name, cfg.dataset.name, cfg.ipc, cfg.eval.epochs) == (method, dataset, ipc, 1000)
        assert cfg.iterations == (20000 if method == "dm" else 1000) and cfg.method.batch_real == 256
        assert cfg.method.init == ("noise" if method == "dc" else "real")
