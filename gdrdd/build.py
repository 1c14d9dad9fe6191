"""Turns the composed Hydra config into the objects of a run."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.config_checks import MODEL_CONFIG_DIR
from gdrdd.data.datamodule import RealDataModule
from gdrdd.data.rarity import Rarity
from gdrdd.data.subpopulation import Shift
from gdrdd.data.download import download_dataset
from gdrdd.data.registry import CLASS_NAME_READERS
from gdrdd.data.spec import DatasetSpec
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.matchers.base import Matcher
from gdrdd.matchers.dm import DistributionMatcher
from gdrdd.experts.cache import ExpertCache, ExpertsNotFoundError
from gdrdd.experts.training import ExpertSettings
from gdrdd.matchers.gradient import GradientMatcher, RobustNetworkTraining, loops_for_ipc
from gdrdd.matchers.mtt import TrajectoryMatcher
from gdrdd.models import build_model
from gdrdd.module import DistillModule
from gdrdd.robust.evaluation_features import EvaluationFeatures
from gdrdd.robust.grouping import ByClass, Grouping, KnownGroups, NearestSynthetic
from gdrdd.robust.risk import CVaR, RiskMeasure, SumOverGroups
from gdrdd.training import GroupRobustLoss, LossFn, TrainSettings, train_network

log = logging.getLogger(__name__)


def fetch_data(cfg: DictConfig) -> None:
    """With ``dataset.download=true``, download (and verify) the data set into ``paths.data_dir`` first."""
    if cfg.dataset.get("download"):
        download_dataset(cfg.dataset.reader, cfg.paths.data_dir)


def dataset_spec(cfg: DictConfig) -> DatasetSpec:
    """The data set's facts; ``class_names: null`` reads the class list from the data folder (TinyImageNet,
    class-folder trees, narrowed to ``dataset.class_indices`` if set)."""
    d = cfg.dataset
    if d.class_names is None:
        indices = list(d.class_indices) if d.get("class_indices") is not None else None
        names = CLASS_NAME_READERS[d.reader](Path(cfg.paths.data_dir).expanduser(), indices)
    else:
        names = d.class_names
    return DatasetSpec(name=d.name, reader=d.reader, channels=d.channels, resolution=d.resolution,
                       class_names=tuple(str(c) for c in names), mean=tuple(d.mean), std=tuple(d.std),
                       dsa_strategy=d.dsa_strategy)


def network_factory(cfg: DictConfig, spec: DatasetSpec) -> Callable[[], nn.Module]:
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return lambda: build_model(model_cfg, spec.channels, spec.num_classes, spec.resolution)


def augmentation(kind: str, spec: DatasetSpec) -> DSA | None:
    return DSA(spec.dsa_strategy) if kind == "dsa" else None


def datamodule(cfg: DictConfig, spec: DatasetSpec) -> RealDataModule:
    shift = cfg.dataset.get("shift")
    return RealDataModule(spec, cfg.paths.data_dir, cfg.paths.cache_dir, iterations=cfg.get("iterations", 1),
                          zca=cfg.dataset.zca, shift=None if shift is None else Shift.from_config(shift),
                          rarity=rarity_sampling(cfg))


def rarity_sampling(cfg: DictConfig) -> Rarity | None:
    """``cvar.sampling=rarity`` (robust runs): the real batches' label-free rarity weights; else None (also for
    configs without a ``cvar`` group, such as ``evaluate.py``'s)."""
    c = cfg.get("cvar")
    return Rarity.from_config(c.rarity) if c is not None and c.name != "none" and c.get("sampling") == "rarity" else None


def device(cfg: DictConfig) -> torch.device:
    """The device of jobs that run outside a Lightning Trainer (expert training): CUDA unless
    ``trainer.accelerator=cpu`` or none is present."""
    return torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")


def robust_matching(cfg: DictConfig) -> bool:
    """CVaR acts on the matcher's group losses (``cvar.target`` matching or both)."""
    return cfg.cvar.name != "none" and cfg.cvar.target != "network"


def robust_network_training(cfg: DictConfig) -> bool:
    """CVaR acts on the inner network's training (``cvar.target`` network or both)."""
    return cfg.cvar.name != "none" and cfg.cvar.target != "matching"


def robust_objective(cfg: DictConfig, num_classes: int) -> tuple[Grouping, RiskMeasure]:
    """The synthetic set's objective: CVaR over groups when ``robust_matching`` (nearest-synthetic groups, or the
    shift benchmark's known subgroups with ``cvar.groups=known``), else one group per class and the plain sum
    (the base method)."""
    if not robust_matching(cfg):
        return ByClass(), SumOverGroups()
    c = cfg.cvar
    if cfg.method.name == "mtt":  # the risk term is added to the trajectory loss with weight cvar.weight
        scale = float(c.weight)
    else:
        scale = float(num_classes) if c.scale == "classes" else float(c.scale)
    grouping = KnownGroups(len(cfg.dataset.shift.keep)) if c.get("groups") == "known" else NearestSynthetic()
    return grouping, CVaR(float(c.alpha), c.weighting, scale, mix=float(c.get("mix", 1.0)),
                                    min_count=c.get("min_count", 0), warmup=c.get("warmup", 0))


def group_encoder(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> nn.Module | None:
    """``cvar.features=encoder``: the run's network architecture trained ``cvar.encoder_epochs`` epochs on the whole
    real training set (evaluation protocol SGD settings, DSA, seeded by the run seed), then frozen; else None."""
    if not robust_matching(cfg) or cfg.cvar.get("features", "step") != "encoder":
        return None
    settings = replace(evaluation_settings(cfg), epochs=cfg.cvar.encoder_epochs)
    images, labels = data.training_set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = network_factory(cfg, spec)().to(images.device)
        log.info("training the grouping encoder: %d epochs on %d real images", settings.epochs, len(images))
        train_network(net, images, labels, settings, augmentation("dsa", spec), torch.Generator().manual_seed(cfg.seed))
    return net.eval().requires_grad_(False)


def evaluation_features(cfg: DictConfig, spec: DatasetSpec) -> EvaluationFeatures | None:
    """``cvar.features=evaluation``: the callback that keeps an evaluation network of the synthetic set (re-trained
    every ``cvar.refresh`` iterations) as the matcher's grouping network; else None."""
    if not robust_matching(cfg) or cfg.cvar.get("features", "step") != "evaluation":
        return None
    return EvaluationFeatures(network_factory(cfg, spec), evaluation_settings(cfg), augmentation(cfg.eval.augment, spec),
                              seed=cfg.seed, refresh=cfg.cvar.refresh)


def evaluation_settings(cfg: DictConfig) -> TrainSettings:
    """The evaluation protocol's SGD settings (``eval.*``)."""
    e = cfg.eval
    return TrainSettings(epochs=e.epochs, lr=e.lr, momentum=e.momentum, weight_decay=e.weight_decay,
                         batch_size=e.batch_size)


def robust_network(cfg: DictConfig, data: RealDataModule) -> RobustNetworkTraining | None:
    """``cvar.target=network|both``: the inner network's robust training on real data (CVaR, unscaled)."""
    if not robust_network_training(cfg):
        return None
    risk = CVaR(float(cfg.cvar.alpha), cfg.cvar.weighting)
    # The whole real batch on every rank: each rank trains an identical copy of the network.
    return RobustNetworkTraining(data.sample_real, NearestSynthetic(), risk, batch_size=cfg.method.batch_train)


def initial_images(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> torch.Tensor:
    """``(C*ipc, ch, H, W)`` normalised: random real images per class, or Gaussian noise."""
    if cfg.method.init == "real":
        return data.random_subset(cfg.ipc)[0]
    shape = (spec.num_classes * cfg.ipc, spec.channels, spec.resolution, spec.resolution)
    return torch.randn(shape, device=data.device)


def expert_settings(cfg: DictConfig) -> ExpertSettings:
    e = cfg.experts
    return ExpertSettings(epochs=e.epochs, lr=e.lr, momentum=e.momentum, weight_decay=e.weight_decay,
                          batch_size=e.batch_size)


def expert_cache(cfg: DictConfig, spec: DatasetSpec) -> ExpertCache:
    """The cache folder of the experts ``cfg`` asks for, keyed by everything that determines them: the data set
    and its preprocessing, the network, augmentation, optimiser, epochs, seed, and the robust settings of
    robust experts (``cvar.target=network|both``). The data folder's path is not part of the key."""
    d = cfg.dataset
    description = {
        "dataset": {"name": d.name, "classes": list(spec.class_names), "resolution": d.resolution,
                    "channels": d.channels, "mean": list(d.mean), "std": list(d.std),
                    "zca": "on [0, 1] pixels" if d.zca else False},
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "augment": cfg.experts.augment, "dsa_strategy": d.dsa_strategy,
        "training": vars(expert_settings(cfg)), "seed": cfg.experts.seed,
        "robust": ({"alpha": cfg.cvar.alpha, "weighting": cfg.cvar.weighting, "ipc": cfg.ipc}
                   if robust_network_training(cfg) else None),
    }
    return ExpertCache(cfg.paths.cache_dir, d.name, description)


def expert_loss(cfg: DictConfig, data: RealDataModule) -> LossFn | None:
    """Robust experts: the group-robust loss with groups from an initial synthetic set (``ipc`` random real
    images per class, drawn with ``experts.seed``); otherwise ``None`` (cross-entropy)."""
    if not robust_network_training(cfg):
        return None
    synthetic = data.sample_real(cfg.ipc, torch.Generator().manual_seed(cfg.experts.seed), uniform=True)
    return GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(float(cfg.cvar.alpha), cfg.cvar.weighting))


def trajectory_matcher(cfg: DictConfig, spec: DatasetSpec) -> TrajectoryMatcher:
    """MTT from the expert cache; a missing cache stops the run with the command that creates it."""
    m, cache = cfg.method, expert_cache(cfg, spec)
    if cache.count() == 0:
        raise ExpertsNotFoundError(
            f"no expert trajectories for these settings in {cache.folder}. method=mtt matches experts trained "
            f"beforehand; create them with\n    {experts_command()}\n(the same overrides plus task=experts; "
            f"experts.num and experts.epochs set how many and how long: reference 100 x 50).")
    if cache.count() < cfg.experts.num:
        log.warning("using the %d experts in %s (experts.num=%d)", cache.count(), cache.folder, cfg.experts.num)
    return TrajectoryMatcher(network_factory(cfg, spec), cache, syn_steps=m.syn_steps, expert_epochs=m.expert_epochs,
                             max_start_epoch=m.max_start_epoch, lr_student=m.lr_student, lr_lr=m.lr_lr,
                             batch_syn=m.batch_syn, augment=augmentation(m.augment, spec), checkpoint=m.checkpoint,
                             risk_term=robust_matching(cfg))


def experts_command() -> str:
    """``python train.py task=experts`` plus this run's command-line overrides (those that choose the experts)."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in overrides if not o.startswith(("task=", "hydra.", "method.", "eval.", "iterations="))]
    return " ".join(["python train.py task=experts", *kept])


def matcher(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Matcher:
    """``dm``: distribution matching; ``dc`` / ``dsa``: gradient matching with the reference loop schedule;
    ``mtt``: trajectory matching."""
    m = cfg.method
    if m.name == "mtt":
        return trajectory_matcher(cfg, spec)
    make_network, augment = network_factory(cfg, spec), augmentation(m.augment, spec)
    encoder, shrink = group_encoder(cfg, data, spec), float(cfg.cvar.get("shrink", 0.0))
    if m.name == "dm":
        return DistributionMatcher(make_network, augment, group_encoder=encoder, shrink=shrink,
                                   embed_batch=m.get("embed_batch"), channels_last=m.get("channels_last", False))
    outer, inner = loops_for_ipc(cfg.ipc, m.outer_loop, m.inner_loop)
    if outer == 1 and robust_network_training(cfg):
        log.warning("cvar.target=%s has no effect with outer_loop=1 (the reference schedule at IPC 1): the network "
                    "is never trained between matching steps; set method.outer_loop > 1", cfg.cvar.target)
    return GradientMatcher(make_network, augment, metric=m.metric, outer_loop=outer, inner_loop=inner,
                           lr_net=m.lr_net, batch_train=m.batch_train, robust_network=robust_network(cfg, data),
                           group_encoder=encoder, shrink=shrink)


def distill_module(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> DistillModule:
    grouping, risk = robust_objective(cfg, spec.num_classes)
    return DistillModule(initial_images(cfg, data, spec), data.synthetic_labels(cfg.ipc), matcher(cfg, data, spec),
                         grouping, risk,
                         lr_img=cfg.method.lr_img, momentum=cfg.method.momentum, batch_real=cfg.method.batch_real,
                         seed=cfg.seed, skip_nonfinite=cfg.guard.skip_nonfinite)


def evaluator(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Evaluator:
    e = cfg.eval
    return Evaluator(spec, data.test_images, data.test_labels, network_factory(cfg, spec), evaluation_settings(cfg),
                     nets=e.nets, augment=augmentation(e.augment, spec), num_groups=e.num_groups, cvar_alpha=e.cvar_alpha,
                     seed=cfg.seed, preprocess=data.preprocess, architectures=cross_architectures(cfg, spec),
                     precision=e.precision, test_subgroups=data.test_subgroups,
                     subgroup_keep=None if data.shift is None else data.shift.keep)


def cross_architectures(cfg: DictConfig, spec: DatasetSpec) -> dict[str, Callable[[], nn.Module]]:
    """Factories of the ``eval.models`` networks (names of ``conf/model/*.yaml``), except one identical to the
    run's own model, which is always scored."""
    own = OmegaConf.to_container(cfg.model, resolve=True)
    factories = {}
    for name in cfg.eval.get("models") or []:
        merged = OmegaConf.merge({"dataset": cfg.dataset}, {"model": OmegaConf.load(MODEL_CONFIG_DIR / f"{name}.yaml")})
        model_cfg = OmegaConf.to_container(merged.model, resolve=True)
        if model_cfg != own:
            factories[name] = lambda m=model_cfg: build_model(m, spec.channels, spec.num_classes, spec.resolution)
    return factories
