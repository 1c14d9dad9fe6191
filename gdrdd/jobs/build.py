"""Turns the composed, checked Hydra config into the objects of a run: the data, networks, augmentation, the
matcher (through its registry entry), the LightningModule and the evaluator."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdrdd.augment.dsa import DSA, Augmentation
from gdrdd.augment.stacked import StackedAugment, without
from gdrdd.config import CONFIG_DIR
from gdrdd.config.checks import on_cuda
from gdrdd.config.schema import method_config
from gdrdd.data.datamodule import RealDataModule
from gdrdd.data.download import download_dataset
from gdrdd.data.rarity import Rarity
from gdrdd.data.readers import CLASS_NAME_READERS
from gdrdd.data.spec import DatasetSpec
from gdrdd.data.subpopulation import Shift
from gdrdd.distill.coreset import select_per_class
from gdrdd.distill.kmeans_batch import default_centres
from gdrdd.distill.module import DistillModule
from gdrdd.distill.parameterization import Parameterization, mosaic
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.evaluation.teacher import TeacherTargets, load_teacher, teacher_path
from gdrdd.matchers.base import Matcher
from gdrdd.matchers.registry import MatcherInputs, method
from gdrdd.models import build_model
from gdrdd.models.fit import TrainSettings
from gdrdd.robust.encoders import EvaluationFeatures, train_real_data_encoder
from gdrdd.robust.objective import acts_on_matching, matching_objective

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


def augmentation(kind: str, spec: DatasetSpec) -> Augmentation | None:
    """Per-sample (or siamese) augmentation by name: ``dsa`` (the data set's DSA strategy), ``idc`` (IDC's stack
    of the same strategy without cutout), ``none``."""
    if kind == "dsa":
        return DSA(spec.dsa_strategy)
    if kind == "idc":
        return StackedAugment(without(spec.dsa_strategy, "cutout"))
    return None


def datamodule(cfg: DictConfig, spec: DatasetSpec) -> RealDataModule:
    shift = cfg.dataset.get("shift")
    return RealDataModule(spec, cfg.paths.data_dir, cfg.paths.cache_dir, iterations=cfg.get("iterations", 1),
                          zca=cfg.dataset.zca, shift=None if shift is None else Shift.from_config(shift),
                          rarity=rarity_sampling(cfg))


def rarity_sampling(cfg: DictConfig) -> Rarity | None:
    """``cvar.sampling=rarity`` (robust runs): the real batches' label-free rarity weights; else None (also for
    configs without a ``cvar`` group, such as ``evaluate.py``'s)."""
    c = cfg.get("cvar")
    robust = c is not None and c.name != "none"
    return Rarity.from_config(c.rarity) if robust and c.get("sampling") == "rarity" else None


def device(cfg: DictConfig) -> torch.device:
    """The device of jobs that run outside a Lightning Trainer (expert training, evaluation): CUDA where
    ``on_cuda`` (one is present and ``trainer.accelerator`` allows it), else the CPU."""
    return torch.device("cuda" if on_cuda(cfg) else "cpu")


def group_encoder(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> nn.Module | None:
    """``cvar.features=encoder``: the ``real_data_encoder`` trained ``cvar.encoder_epochs`` epochs; else None."""
    if not acts_on_matching(cfg.cvar) or cfg.cvar.get("features", "step") != "encoder":
        return None
    return real_data_encoder(cfg, data, spec, cfg.cvar.encoder_epochs)


def real_data_encoder(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec, epochs: int) -> nn.Module:
    """The run's network architecture trained ``epochs`` epochs on the whole real training set (evaluation
    protocol SGD settings, DSA, seeded by the run seed), then frozen."""
    images, labels = data.training_set()
    settings = replace(evaluation_settings(cfg), epochs=epochs)
    return train_real_data_encoder(network_factory(cfg, spec), images, labels, settings, augmentation("dsa", spec),
                                   cfg.seed, device=data.device)


def evaluation_features(cfg: DictConfig, spec: DatasetSpec) -> EvaluationFeatures | None:
    """``cvar.features=evaluation``: the callback that keeps an evaluation network of the synthetic set (re-trained
    every ``cvar.refresh`` iterations) as the matcher's grouping network; else None."""
    if not acts_on_matching(cfg.cvar) or cfg.cvar.get("features", "step") != "evaluation":
        return None
    return EvaluationFeatures(network_factory(cfg, spec), evaluation_settings(cfg),
                              augmentation(cfg.eval.augment, spec), seed=cfg.seed, refresh=cfg.cvar.refresh)


def evaluation_settings(cfg: DictConfig) -> TrainSettings:
    """The evaluation protocol's SGD settings (``eval.*``)."""
    e = cfg.eval
    return TrainSettings(epochs=e.epochs, lr=e.lr, momentum=e.momentum, weight_decay=e.weight_decay,
                         batch_size=e.batch_size, milestones=tuple(e.milestones), gamma=e.gamma, cutmix=e.cutmix,
                         cutmix_beta=e.cutmix_beta, channels_last=e.channels_last, compile=e.compile)


def initial_images(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec, parameterization: Parameterization,
                   distiller: Matcher | None = None) -> torch.Tensor:
    """The stored tensors ``(C*ipc, ch, H, W)`` at the start: real images per class (``init=real`` random ones,
    ``init=first`` the first ones in the data set's order, as IDC's code does, ``init=kcenter``/``herding`` a
    coreset in a fixed network's features, ``gdrdd.distill.coreset``, ``init=correct`` ones the matcher's experts
    classify correctly, ``gdrdd.matchers.datm``; with multi-formation each stored image is a mosaic of ``f x f`` of
    them), or Gaussian noise in network-input space; in pixel space for pixel storage."""
    f = parameterization.factor
    init = cfg.method.init
    if init == "noise":
        shape = (spec.num_classes * cfg.ipc, spec.channels, spec.resolution, spec.resolution)
        inputs = torch.randn(shape, device=data.device)
    else:
        n = cfg.ipc * f ** 2
        if init == "first":
            real = data.first_images(n)
        elif init == "real":
            real = data.sample_real(n, uniform=True)
        elif init == "correct":
            real = distiller.correctly_classified(data.class_images, n)
        else:
            real = select_per_class(data.class_images, coreset_network(cfg, data, spec), n, init)
        inputs = torch.cat([mosaic(images, f) for images in real])
    return data.preprocess.inverse(inputs) if parameterization.pixels else inputs


def coreset_network(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> nn.Module:
    """The fixed network of ``init=kcenter``/``herding``: the run's architecture initialised with the run seed,
    as it is (``method.init_epochs=0``) or trained that many epochs on the whole real training set (evaluation
    protocol SGD settings, DSA); frozen, in eval mode. The global RNG is left as it was."""
    epochs = cfg.method.init_epochs
    if epochs == 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = network_factory(cfg, spec)().to(data.device)
        return net.eval().requires_grad_(False)
    return real_data_encoder(cfg, data, spec, epochs)


def matcher(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Matcher:
    """The matcher of ``method.name``, made by its registered builder (``gdrdd.matchers.registry``)."""
    entry = method(cfg.method.name)
    grouping = entry.groups_real
    inputs = MatcherInputs(method=method_config(cfg.method), cfg=cfg, spec=spec, data=data,
                           make_network=network_factory(cfg, spec), augment=augmentation(cfg.method.augment, spec),
                           group_encoder=group_encoder(cfg, data, spec) if grouping else None,
                           shrink=float(cfg.cvar.get("shrink", 0.0)) if grouping else 0.0)
    return entry.build(inputs)


def parameterization(cfg: DictConfig, data: RealDataModule) -> Parameterization:
    """``method.factor`` (multi-formation) and the storage space of the method (pixels for IDC)."""
    m = method_config(cfg.method)
    return Parameterization(data.preprocess, factor=m.factor, pixels=method(m.name).stores_pixels)


def distill_module(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> DistillModule:
    m = method_config(cfg.method)
    entry = method(m.name)
    grouping, risk = matching_objective(cfg, spec.num_classes, risk_is_term=entry.risk_is_term,
                                        classes_per_update=spec.num_classes if entry.updates_all_classes else 1)
    synthetic = parameterization(cfg, data)
    # A start of real images is drawn before the matcher is built; DATM's (init=correct) asks the matcher's experts.
    images = None if m.init == "correct" else initial_images(cfg, data, spec, synthetic)
    distiller = matcher(cfg, data, spec)
    if images is None:
        images = initial_images(cfg, data, spec, synthetic, distiller)
    labels = data.synthetic_labels(cfg.ipc)
    if hasattr(distiller, "initialise_labels"):  # learned labels (DATM) start from the experts' logits
        distiller.initialise_labels(synthetic.inputs(images), labels)
    return DistillModule(images, labels, distiller, grouping, risk, lr_img=m.lr_img, momentum=m.momentum,
                         batch_real=m.batch_real, seed=cfg.seed, skip_nonfinite=cfg.guard.skip_nonfinite,
                         parameterization=synthetic,
                         kmeans_centres=(default_centres(m.batch_real, m.kmeans_centres) if m.real_batch == "kmeans"
                                         else None))


def evaluator(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> Evaluator:
    """The evaluation protocol ``eval.*``; with ``eval.labels=teacher`` its networks train on the cached teacher's
    targets (``gdrdd.evaluation.teacher``)."""
    e = cfg.eval
    return Evaluator(spec, data.test_images, data.test_labels, network_factory(cfg, spec), evaluation_settings(cfg),
                     nets=e.nets, augment=augmentation(e.augment, spec), num_groups=e.num_groups,
                     cvar_alpha=e.cvar_alpha, seed=cfg.seed, preprocess=data.preprocess,
                     architectures=cross_architectures(cfg, spec), precision=e.precision,
                     test_subgroups=data.test_subgroups, subgroup_keep=None if data.shift is None else data.shift.keep,
                     progress=cfg.trainer.enable_progress_bar, loss_fn=teacher_targets(cfg, data, spec))


def teacher_targets(cfg: DictConfig, data: RealDataModule, spec: DatasetSpec) -> TeacherTargets | None:
    """``eval.labels=teacher``: the relabelling loss of the cached teacher; else None (the set's own labels)."""
    if cfg.eval.get("labels", "own") != "teacher":
        return None
    teacher = load_teacher(teacher_path(cfg, spec), network_factory(cfg, spec), data.device, teacher_command())
    return TeacherTargets(teacher, float(cfg.eval.temperature))


def teacher_command() -> str:
    """``python train.py task=teacher`` with this run's data set, model, teacher and path overrides."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in overrides if o.lstrip("+~").startswith(("dataset", "model", "teacher", "paths."))]
    return " ".join(["python train.py task=teacher", *kept])


def cross_architectures(cfg: DictConfig, spec: DatasetSpec) -> dict[str, Callable[[], nn.Module]]:
    """Factories of the ``eval.models`` networks (names of ``conf/model/*.yaml``), except one identical to the
    run's own model, which is always scored."""
    own = OmegaConf.to_container(cfg.model, resolve=True)
    factories = {}
    for name in cfg.eval.get("models") or []:
        model = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
        merged = OmegaConf.merge({"dataset": cfg.dataset}, {"model": model})
        model_cfg = OmegaConf.to_container(merged.model, resolve=True)
        if model_cfg != own:
            factories[name] = lambda m=model_cfg: build_model(m, spec.channels, spec.num_classes, spec.resolution)
    return factories
