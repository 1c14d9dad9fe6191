"""Checks run on the composed config before any data is read or any step is taken.

Types and keys come first (``gdrdd.config.schema``; the ``method`` section's ranges too, by its method's
schema); then the ranges and names of the other sections, and the combinations that a method does not support,
read off its registry entry (``gdrdd.matchers.registry``). The first invalid value raises one ``ConfigError``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from gdrdd.augment.dsa import EVAL_AUGMENTATIONS, FAMILIES
from gdrdd.config import CONFIG_DIR
from gdrdd.config.schema import check_types
from gdrdd.data.rarity import Rarity
from gdrdd.data.readers import READERS
from gdrdd.data.subpopulation import Shift
from gdrdd.distill.parameterization import MIN_TILE, tile_size
from gdrdd.errors import ConfigError
from gdrdd.experts.trajectory import check_expert_settings
from gdrdd.matchers.registry import Method, method, methods
from gdrdd.models import MODELS
from gdrdd.robust.objective import TARGETS
from gdrdd.robust.risk import WEIGHTINGS
from gdrdd.utils.checks import integer, is_number, level, one_of, positive, require
from gdrdd.utils.runtime import PRECISIONS

TASKS = ("distill", "experts")
CVARS = ("cvar", "none")
GROUP_FEATURES = ("step", "encoder", "evaluation")
SAMPLINGS = ("uniform", "rarity")
GROUPS = ("nearest", "nearest_any", "known")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid value: types and keys by the schemas, then ranges and names."""
    check_types(cfg)
    one_of("task", cfg.task, TASKS)
    integer("ipc", cfg.ipc)
    integer("checkpoint.every", cfg.checkpoint.every, minimum=0)
    integer("dashboard.group_stats_every", cfg.dashboard.group_stats_every, minimum=0)
    integer("iterations", cfg.iterations, minimum=0)
    steps = cfg.eval.get("at") or []
    require(all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < cfg.iterations for n in steps), "eval.at",
            list(steps), f"distillation steps from 1 to iterations - 1 ({cfg.iterations - 1}), e.g. [100, 400]; the "
            "end of the run is always evaluated")
    entry = method(cfg.method.name)
    check_dataset(cfg)
    one_of("cvar", cfg.cvar.name, CVARS)
    if cfg.cvar.name == "cvar":
        _check_cvar(cfg, entry)
    if cfg.task == "experts":
        check_expert_settings(cfg)
    if cfg.task == "distill" and entry.check is not None:
        entry.check(cfg)
    if "factor" in cfg.method:
        check_factor("method.factor", cfg.method.factor, cfg.dataset)
    check_evaluation(cfg)


def check_factor(key: str, factor: object, dataset: DictConfig) -> None:
    """Multi-formation: an integer >= 1 whose tiles keep at least ``MIN_TILE`` pixels, and per-channel
    normalisation (not ZCA)."""
    integer(key, factor)
    if factor == 1:
        return
    size = dataset.resolution
    largest = max(f for f in range(1, size + 1) if tile_size(size, f) >= MIN_TILE)
    require(factor <= largest, key, factor, f"an integer from 1 to {largest}: larger factors leave tiles under "
            f"{MIN_TILE} pixels of the {size}-pixel images")
    require(not dataset.zca, "dataset.zca", True, f"false with {key} > 1: ZCA whitening mixes pixels across the "
            "tiles, so multi-formation needs per-channel normalisation")


def _check_cvar(cfg: DictConfig, entry: Method) -> None:
    c = cfg.cvar
    level("cvar.alpha", c.alpha, " (0: the mean, non-robust; 0.8: the worst 20 %; near 1: the worst group)")
    one_of("cvar.weighting", c.weighting, WEIGHTINGS)
    one_of("cvar.target", c.target, TARGETS)
    robust_network = ", ".join(name for name, m in methods().items() if m.trains_network)
    require(c.target == "matching" or entry.trains_network or cfg.task == "experts", "cvar.target", c.target,
            f"'matching' for method={entry.name} ('network' and 'both' need a trained network: {robust_network})")
    require(is_number(c.weight) and c.weight >= 0, "cvar.weight", c.weight, "a number >= 0")
    require(c.scale == "classes" or (is_number(c.scale) and c.scale > 0), "cvar.scale", c.scale,
            "'classes' or a number > 0")
    _check_design_choices(cfg, entry)


def _check_design_choices(cfg: DictConfig, entry: Method) -> None:
    """The robust objective's options (mix, min_count, shrink, warmup, features, sampling, groups)."""
    c = cfg.cvar
    require(is_number(c.mix) and 0 <= c.mix <= 1, "cvar.mix", c.mix, "a number in [0, 1] (0: the mean, 1: CVaR alone)")
    integer("cvar.min_count", c.min_count, minimum=0)
    integer("cvar.warmup", c.warmup, minimum=0)
    require(is_number(c.shrink) and c.shrink >= 0, "cvar.shrink", c.shrink, "a number >= 0 (images of prior)")
    one_of("cvar.features", c.features, GROUP_FEATURES)
    integer("cvar.encoder_epochs", c.encoder_epochs)
    integer("cvar.refresh", c.refresh)
    _check_sampling(cfg)
    _check_groups(cfg, entry)
    grouping = ", ".join(name for name, m in methods().items() if m.groups_real)
    if c.features != "step":
        require(entry.groups_real, "cvar.features", c.features, f"the default (step) for method={entry.name}: only "
                f"{grouping} form groups of real images in network features")
    if c.shrink > 0:
        require(entry.groups_real, "cvar.shrink", c.shrink, f"the default (0) for method={entry.name}: only "
                f"{grouping} form groups of real images in network features")


def _check_groups(cfg: DictConfig, entry: Method) -> None:
    """``cvar.groups=known`` needs subgroup labels (a shift benchmark) and a matcher that groups its real batch;
    ``nearest_any`` a matcher that groups every class's real batch in one update."""
    c = cfg.cvar
    one_of("cvar.groups", c.groups, GROUPS)
    if c.groups == "nearest_any":
        across = ", ".join(name for name, m in methods().items() if m.groups_real and m.updates_all_classes)
        require(entry.groups_real and entry.updates_all_classes, "cvar.groups", c.groups,
                f"'nearest' for method={entry.name}: grouping by the nearest synthetic image of any class needs a "
                f"method that matches every class in each update ({across})")
    if c.groups != "known":
        return
    require(cfg.dataset.get("shift") is not None, "cvar.groups", c.groups, "'nearest' unless the data set has known "
            "subgroups (a dataset.shift benchmark such as dataset=cifar10_shift)")
    grouping = ", ".join(name for name, m in methods().items() if m.groups_real)
    require(entry.groups_real, "cvar.groups", c.groups, f"'nearest' for method={entry.name} (known groups: {grouping})")
    require(c.target == "matching", "cvar.target", c.target, "'matching' with cvar.groups=known")
    require(c.features == "step", "cvar.features", c.features, "'step' with cvar.groups=known (no features are used)")


def _check_sampling(cfg: DictConfig) -> None:
    """``cvar.sampling`` and its ``cvar.rarity`` settings; the oracle control cannot be combined with it."""
    c = cfg.cvar
    one_of("cvar.sampling", c.sampling, SAMPLINGS)
    if c.sampling != "rarity":
        return
    try:
        Rarity.from_config(c.rarity)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    shift = cfg.dataset.get("shift")
    require(shift is None or not shift.get("balanced_batches", False), "dataset.shift.balanced_batches", True,
            "false with cvar.sampling=rarity (both set the real batches' sampling weights)")


def check_dataset(cfg: DictConfig) -> None:
    """The data set and the model of ``cfg``."""
    one_of("dataset.reader", cfg.dataset.reader, sorted(READERS))
    one_of("model.name", cfg.model.name, sorted(MODELS))
    require(len(cfg.dataset.mean) == len(cfg.dataset.std) == cfg.dataset.channels, "dataset.mean/std",
            f"{list(cfg.dataset.mean)}/{list(cfg.dataset.std)}", f"one value per channel ({cfg.dataset.channels})")
    if cfg.dataset.get("shift") is not None:
        try:
            Shift.from_config(cfg.dataset.shift)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    strategy_families = str(cfg.dataset.dsa_strategy).split("_")
    require(all(f in FAMILIES for f in strategy_families), "dataset.dsa_strategy", cfg.dataset.dsa_strategy,
            f"families joined by '_' from {', '.join(FAMILIES)}")


def check_evaluation(cfg: DictConfig) -> None:
    """The ``eval`` group: the protocol and the cross-architecture model names."""
    e = cfg.eval
    for key in ("nets", "epochs", "batch_size", "num_groups"):
        integer(f"eval.{key}", e[key])
    integer("eval.every", e.every, minimum=0)
    positive("eval.lr", e.lr)
    require(all(is_number(m) and 0 < m < 1 for m in e.milestones), "eval.milestones", list(e.milestones),
            "fractions of the epochs in (0, 1), e.g. [0.5]")
    positive("eval.gamma", e.gamma)
    require(is_number(e.cutmix) and 0 <= e.cutmix <= 1, "eval.cutmix", e.cutmix, "a probability in [0, 1]")
    positive("eval.cutmix_beta", e.cutmix_beta)
    one_of("eval.augment", e.augment, EVAL_AUGMENTATIONS)
    level("eval.cvar_alpha", e.cvar_alpha)
    one_of("eval.precision", e.precision, PRECISIONS)
    known = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    for name in e.get("models") or []:
        require(name in known, "eval.models", name, f"names of conf/model/*.yaml: {', '.join(known)}")
