"""Sweep definitions compose, and a multirun writes one complete run folder (and W&B run) per job."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_alpha_seed_sweep_composes_into_a_multirun(compose):
    cfg = compose(f"hydra.searchpath=[file://{ROOT / 'sweeps'}]", "+sweep=alpha_seed", hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params == {"cvar.alpha": "0,0.5,0.8,0.9", "seed": "0,1,2"}
    assert cfg.hydra.sweep.dir.startswith("outputs/distill/multiruns/")


def test_every_sweep_file_composes(compose):
    for name, keys in (("alpha_ipc_seed", {"cvar.alpha", "ipc", "seed"}),
                       ("method_dataset", {"method", "dataset", "cvar"})):
        cfg = compose(f"hydra.searchpath=[file://{ROOT / 'sweeps'}]", f"+sweep={name}", hydra_config=True)
        assert set(cfg.hydra.sweeper.params) == keys


def test_slurm_launcher_config_composes(compose):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4",
                  "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4", hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu" and launcher.gpus_per_node == 4
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4 and cfg.trainer.use_distributed_sampler is False


def test_wandb_sweep_passes_hydra_overrides(compose):
    import yaml

    sweep = yaml.safe_load((ROOT / "sweeps" / "wandb_alpha_seed.yaml").read_text())
    assert sweep["program"] == "train.py" and "${args_no_hyphens}" in sweep["command"]
    overrides = [f"{key}={spec['values'][-1]}" for key, spec in sweep["parameters"].items()]
    cfg = compose(*overrides)
    assert cfg.cvar.alpha == 0.9 and cfg.seed == 2


@pytest.mark.integration
def test_multirun_writes_one_complete_folder_and_one_wandb_run_per_job(tmp_path):
    import os
    import subprocess
    import sys

    tiny = ["ipc=1", "iterations=2", "model.width=8", "method.batch_real=8", "eval.nets=1", "eval.epochs=1",
            "eval.baseline=false", "eval.coverage=false", "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu"]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "cvar.alpha=0,0.8", *tiny, "logger=wandb",
                           f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, alpha in (("0", 0.0), ("1", 0.8)):
        folder = tmp_path / job
        assert {"distilled.pt", "metrics.json", "table.md", "config.yaml"} <= {p.name for p in folder.iterdir()}
        import yaml

        assert yaml.safe_load((folder / "config.yaml").read_text())["cvar"]["alpha"] == alpha
        runs = list((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    ids = {next((tmp_path / j / "wandb").glob("offline-run-*")).name.split("-")[-1] for j in ("0", "1")}
    assert len(ids) == 2  # separate W&B runs


def test_ablation_sweep_and_every_variant_compose_and_validate(compose):
    from gdrdd.config.checks import validate

    sweep = compose(f"hydra.searchpath=[file://{ROOT / 'sweeps'}]", "+sweep=ablation_shift", hydra_config=True)
    assert sweep.dataset.name == "cifar10_shift" and sweep.ipc == 10
    variants = sweep.hydra.sweeper.params["+ablation"].split(",")
    assert sorted(variants) == sorted(p.stem for p in (ROOT / "sweeps" / "ablation").glob("*.yaml"))
    for variant in variants:
        for method in ("dm", "dsa"):
            cfg = compose(f"hydra.searchpath=[file://{ROOT / 'sweeps'}]", "dataset=cifar10_shift", f"method={method}",
                          f"+ablation={variant}", "ipc=10")
            validate(cfg)
            assert (cfg.cvar.name == "none") == (variant == "plain")
