"""The ``task=experts`` job: train the expert trajectories that ``method=mtt`` and ``method=datm`` match.

Resumable: experts already in the cache are kept and training continues with the next index; each expert is
written whole (atomic rename) after its last epoch.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from omegaconf import DictConfig

from gdrdd.data.datamodule import RealDataModule
from gdrdd.experts.cache import run_cache
from gdrdd.experts.trajectory import ExpertSettings, train_expert
from gdrdd.jobs import build, real_data
from gdrdd.models.fit import LossFn
from gdrdd.robust.grouping import NearestSynthetic
from gdrdd.robust.network import GroupRobustLoss
from gdrdd.robust.objective import acts_on_network, network_risk
from gdrdd.utils.files import write_json
from gdrdd.utils.progress import bar, job_label


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train experts ``count .. experts.num - 1`` and return the summary written to ``experts.json``."""
    out, spec, data = real_data.start(cfg)
    cache = run_cache(cfg, spec)
    images, labels = data.training_set()
    loss_fn = expert_loss(cfg, data)
    settings, augment = ExpertSettings.from_config(cfg.experts), build.augmentation(cfg.experts.augment, spec)
    make_network = build.network_factory(cfg, spec)

    first, num = cache.count(), cfg.experts.num
    summary = {"cache": str(cache.folder), "experts_in_cache": first, "trained_now": 0, "epochs": settings.epochs,
               "seconds_per_epoch": [], "final_test_accuracy": [], "description": cache.description}
    write_json(out / "experts.json", summary)
    total = max(num - first, 0) * settings.epochs
    with bar(f"expert {first + 1}/{num}", total, "epoch", cfg.trainer.enable_progress_bar) as progress:
        clock = [time.perf_counter()]

        def tick(epoch: int) -> None:
            summary["seconds_per_epoch"].append(time.perf_counter() - clock[0])
            clock[0] = time.perf_counter()
            progress.update(1)

        for index in range(first, num):
            progress.set_description(f"{job_label()}expert {index + 1}/{num}")
            clock[0] = time.perf_counter()
            trajectory = train_expert(make_network, images, labels, settings,
                                      seed=cfg.experts.seed * 1_000_003 + index, augment=augment, loss_fn=loss_fn,
                                      on_epoch=tick, device=data.device)
            cache.save(index, trajectory)
            summary["final_test_accuracy"].append(_test_accuracy(make_network, trajectory[-1], data))
            summary["experts_in_cache"], summary["trained_now"] = cache.count(), summary["trained_now"] + 1
            write_json(out / "experts.json", summary)  # after every expert, so an interrupted run keeps its record
    seconds = summary["seconds_per_epoch"]
    summary["seconds_per_epoch_mean"] = sum(seconds) / len(seconds) if seconds else None
    write_json(out / "experts.json", summary)
    print(f"\n{summary['experts_in_cache']} experts in {cache.folder} ({summary['trained_now']} trained now"
          + (f", {summary['seconds_per_epoch_mean']:.1f} s per epoch" if seconds else "") + ")")
    return summary


def expert_loss(cfg: DictConfig, data: RealDataModule) -> LossFn | None:
    """Robust experts (``cvar.target=network|both``): the group-robust loss with groups from an initial synthetic
    set (``ipc`` random real images per class, drawn with ``experts.seed``); otherwise ``None`` (cross-entropy)."""
    if not acts_on_network(cfg.cvar):
        return None
    synthetic = data.sample_real(cfg.ipc, torch.Generator().manual_seed(cfg.experts.seed), uniform=True)
    return GroupRobustLoss(synthetic, NearestSynthetic(), network_risk(cfg.cvar))


def _test_accuracy(make_network, params: dict[str, torch.Tensor], data) -> float:
    net = make_network().to(data.device)
    missing, unexpected = net.load_state_dict(params, strict=False)  # experts keep parameters, not buffers
    buffers = {name for name, _ in net.named_buffers()}
    if unexpected or set(missing) - buffers:
        raise RuntimeError(f"expert parameters do not fit the network: missing {missing}, unexpected {unexpected}")
    return real_data.test_accuracy(net, data)
