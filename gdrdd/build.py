"""Turns the composed Hydra config into the objects of a run."""

from __future__ import annotations

import logging
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.data.datamodule import RealDataModule
from gdrdd.data.spec import DatasetSpec
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.matchers.base import Matcher
from gdrdd.matchers.dm import DistributionMatcher
from gdrdd.matchers.gradient import GradientMatcher, RobustNetworkTraining, loops_for_ipc
from gdrdd.models import build_model
from gdrdd.module import DistillModule
from gdrdd.robust.grouping import ByClass, Grouping, NearestSynthetic
from gdrdd.robust.risk import CVaR, RiskMeasure, SumOverGroups
from gdrdd.training import TrainSettings

log = logging.getLogger(__name__)


def dataset_spec(cfg: DictConfig) -> DatasetSpec:
    d = cfg.dataset
    return DatasetSpec(name=d.name, reader=d.reader, channels=d.channels, resolution=d.resolution,
                       class_names=tuple(str(c) for c in d.class_names), mean=tuple(d.mean), std=tuple(d.std),
                       dsa_strategy=d.dsa_strategy)


def network_factory(cfg: DictConfig, spec: DatasetSpec) -> Callable[[], nn.Module]:
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return lambda: build_model(model_cfg, spec.channels, spec.num_classes, spec.resolution)


def augmentation(kind: str, spec: DatasetSpec) -> DSA | None:
    return DSA(spec.dsa_strategy) if kind == "dsa" else None


def datamodule(cfg: DictConfig, spec: DatasetSpec) -> RealDataModule:
    return RealDataModule(spec, cfg.paths.data_dir, cfg.paths.cache_dir, iterations=cfg.iterations)


def robust_matching(cfg: DictConfig) -> bool:
    """CVaR acts on the matcher's group losses (``cvar.target`` matching or both)."""
    return cfg.cvar.name != "none" and cfg.cvar.target != "network"


def robust_network_training(cfg: DictConfig) -> bool:
    """CVaR acts on the inner network's training (``cvar.target`` network or both)."""
    return cfg.cvar.name != "none" and cfg.cvar.target != "matching"


def robust_objective(cfg: DictConfig, num_classes: int) -> tuple[Grouping, RiskMeasure]:
    """The synthetic set's objective: nearest-synthetic groups and CVaR when ``robust_matching``, else one group
    per class and the plain sum (the base method)."""
    if not robust_matching(cfg):
        return ByClass(), SumOverGroups()
    scale = float(num_classes) if cfg.cvar.scale == "classes" else float(cfg.cvar.scale)
    return NearestSynthetic(), CVaR(float(cfg.cvar.alpha), cfg.cvar.weighting, scale)


def robust_network(cfg: DictConfig, data: RealDataModule) -> RobustNetworkTraining | None:
    """``cvar.target=network|both``: the inner network's robust training on real data (CVaR, unscaled)."""
    if not robust_network_training(cfg):
        return None
    risk = CVaR(float(cfg.cvar.alpha), cfg.cvar.weighting)
    return RobustNetworkTraining(data.sample_real, NearestSynthetic(), risk, batch_size=cfg.method.batch_train)


def initial_images(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> torch.Tensor:
    """``(C*ipc, ch, H, W)`` normalised: random real images per class, or Gaussian noise."""
    if cfg.method.init == "real":
        return data.random_subset(cfg.ipc)[0]
    shape = (spec.num_classes * cfg.ipc, spec.channels, spec.resolution, spec.resolution)
    return torch.randn(shape, device=data.device)


def matcher(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Matcher:
    """``dm``: distribution matching; ``dc`` / ``dsa``: gradient matching with the reference loop schedule."""
    m = cfg.method
    make_network, augment = network_factory(cfg, spec), augmentation(m.augment, spec)
    if m.name == "dm":
        return DistributionMatcher(make_network, augment)
    outer, inner = loops_for_ipc(cfg.ipc, m.outer_loop, m.inner_loop)
    if outer == 1 and robust_network_training(cfg):
        log.warning("cvar.target=%s has no effect with outer_loop=1 (the reference schedule at IPC 1): the network "
                    "is never trained between matching steps; set method.outer_loop > 1", cfg.cvar.target)
    return GradientMatcher(make_network, augment, metric=m.metric, outer_loop=outer, inner_loop=inner,
                           lr_net=m.lr_net, batch_train=m.batch_train, robust_network=robust_network(cfg, data))


def distill_module(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> DistillModule:
    grouping, risk = robust_objective(cfg, spec.num_classes)
    return DistillModule(initial_images(cfg, data, spec), data.synthetic_labels(cfg.ipc), matcher(cfg, data, spec),
                         grouping, risk,
                         lr_img=cfg.method.lr_img, momentum=cfg.method.momentum, batch_real=cfg.method.batch_real,
                         seed=cfg.seed)


def evaluator(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Evaluator:
    e = cfg.eval
    settings = TrainSettings(epochs=e.epochs, lr=e.lr, momentum=e.momentum, weight_decay=e.weight_decay,
                             batch_size=e.batch_size)
    return Evaluator(spec, data.test_images, data.test_labels, network_factory(cfg, spec), settings, nets=e.nets,
                     augment=augmentation(e.augment, spec), num_groups=e.num_groups, cvar_alpha=e.cvar_alpha,
                     seed=cfg.seed)
