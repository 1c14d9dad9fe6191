"""Helpers shared by the benchmarks: timing with device synchronisation, peak memory, subprocess workers."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from gdrdd.distill.timer import peak_rss_mb


def timed(fn: Callable[[], object], device: str) -> float:
    """Wall-clock seconds of ``fn()``, synchronising CUDA before and after."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process so far: max allocated on CUDA, max resident set size on CPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else peak_rss_mb()


def run_worker(script: str, args: list[str]) -> dict:
    """Run ``script --worker ARGS`` in a fresh process (so peak memory is per configuration); its last line is JSON."""
    proc = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_report(path: str | Path, report: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), **report}, indent=2) + "\n")
    print(f"report: {out}")


def compose_config(overrides: list[str]):
    """The gdrdd config for ``overrides`` (Hydra compose API; no run folder is created)."""
    from hydra import compose, initialize_config_dir

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        return compose("config", overrides=["paths.output_dir=unused", *overrides])


def random_cifar_data(spec, device: str, per_class: int = 500):
    """A RealDataModule of random 3x32x32 images (speed and memory do not depend on pixel values)."""
    from gdrdd.data import RealDataModule

    data = RealDataModule(spec, "unused", None)
    g = torch.Generator().manual_seed(0)
    data.class_images = [torch.randn(per_class, 3, 32, 32, generator=g) for _ in range(spec.num_classes)]
    data.test_images, data.test_labels = torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long)
    return data.to(device)


def mtt_module_with_one_expert(overrides: list[str], device: str):
    """(module, data) for ``method=mtt`` with ``overrides``, over a one-expert cache of a single segment (random
    start parameters and a perturbed target, in a temporary folder): what one distillation iteration costs does
    not depend on the expert's values. The matcher has drawn its segment."""
    from gdrdd.experts.cache import run_cache
    from gdrdd.experts.trajectory import parameters_of
    from gdrdd.jobs import build

    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = compose_config(["method=mtt", "dataset=cifar10", "method.max_start_epoch=1", "method.expert_epochs=1",
                              f"paths.cache_dir={cache_dir}", *overrides])
        spec = build.dataset_spec(cfg)
        torch.manual_seed(0)
        start = parameters_of(build.network_factory(cfg, spec)())
        target = {k: v + 0.01 * torch.randn_like(v) for k, v in start.items()}
        run_cache(cfg, spec).save(0, [start, target])
        data = random_cifar_data(spec, device)
        module = build.distill_module(cfg, data, spec).to(device)
        module.matcher.start_iteration(device)
    return module, data
