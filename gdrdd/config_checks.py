"""Checks run on the composed config before any data is read or any step is taken."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from gdrdd.augment.dsa import FAMILIES
from gdrdd.data.rarity import Rarity
from gdrdd.data.registry import READERS
from gdrdd.data.subpopulation import Shift
from gdrdd.errors import ConfigError
from gdrdd.matchers.gradient import DISTANCES, LOOPS_BY_IPC
from gdrdd.models import MODELS
from gdrdd.robust.risk import WEIGHTINGS
from gdrdd.runtime import PRECISIONS
from gdrdd.schema import check_types

GRADIENT_METHODS = ("dc", "dsa")
GROUPING_METHODS = ("dm", *GRADIENT_METHODS)  # matchers that group their real batch (features, known subgroups)
METHODS = ("dm", *GRADIENT_METHODS, "mtt", "random")
ROBUST_NETWORK_METHODS = (*GRADIENT_METHODS, "mtt")  # cvar.target=network|both: inner network or experts
TASKS = ("distill", "experts")
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
CVARS = ("cvar", "none")
INITS = ("real", "noise")
TARGETS = ("matching", "network", "both")
AUGMENTS = ("dsa", "none")
GROUP_FEATURES = ("step", "encoder", "evaluation")
SAMPLINGS = ("uniform", "rarity")
GROUPS = ("nearest", "known")


def _require(ok: bool, key: str, value: object, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid; accepted: {accepted}.")


def _positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    value = cfg_select(cfg, key)
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, key, value,
             f"an integer >= {minimum}")


def _positive_float(cfg: DictConfig, key: str) -> None:
    value = cfg_select(cfg, key)
    _require(_is_number(value) and value > 0, key, value, "a number > 0")


def _alpha(cfg: DictConfig, key: str, meaning: str = "") -> None:
    value = cfg_select(cfg, key)
    _require(_is_number(value) and 0 <= value < 1, key, value, "a number in [0, 1)" + meaning)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_trajectory_settings(cfg: DictConfig) -> None:
    """Expert settings, and for method=mtt the matcher's, including that the segment fits the experts."""
    for key in ("experts.num", "experts.epochs", "experts.batch_size"):
        _positive_int(cfg, key)
    _positive_float(cfg, "experts.lr")
    _require(isinstance(cfg.experts.seed, int), "experts.seed", cfg.experts.seed, "an integer")
    _require(cfg.experts.augment in AUGMENTS, "experts.augment", cfg.experts.augment, ", ".join(AUGMENTS))
    _require(cfg.model.get("norm") != "batchnorm", "model.norm", cfg.model.get("norm"),
             "a norm without running statistics (instancenorm, layernorm, groupnorm, none) for MTT: experts keep "
             "parameters only, as the reference does")
    if cfg.task == "experts":
        return
    for key in ("method.syn_steps", "method.expert_epochs", "method.max_start_epoch"):
        _positive_int(cfg, key)
    for key in ("method.lr_lr", "method.lr_student"):
        _positive_float(cfg, key)
    if cfg.method.batch_syn is not None:
        _positive_int(cfg, "method.batch_syn")
    _require(isinstance(cfg.method.checkpoint, bool), "method.checkpoint", cfg.method.checkpoint, "true or false")
    last = cfg.method.max_start_epoch - 1 + cfg.method.expert_epochs
    _require(last <= cfg.experts.epochs, "method.max_start_epoch + method.expert_epochs",
             f"{cfg.method.max_start_epoch} + {cfg.method.expert_epochs}",
             f"at most experts.epochs + 1 = {cfg.experts.epochs + 1} (the last target epoch, start "
             f"{cfg.method.max_start_epoch - 1} + {cfg.method.expert_epochs} = {last}, must exist in the experts)")


def cfg_select(cfg: DictConfig, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid value: types and keys by the schemas, then ranges and names."""
    check_types(cfg)
    _require(cfg.task in TASKS, "task", cfg.task, ", ".join(TASKS))
    _positive_int(cfg, "ipc")
    _positive_int(cfg, "checkpoint.every", minimum=0)
    _positive_int(cfg, "dashboard.group_stats_every", minimum=0)
    _positive_int(cfg, "iterations", minimum=0)
    _require(cfg.method.name in METHODS, "method", cfg.method.name, ", ".join(METHODS))
    check_dataset(cfg)
    _require(cfg.cvar.name in CVARS, "cvar", cfg.cvar.name, ", ".join(CVARS))
    if cfg.cvar.name == "cvar":
        _alpha(cfg, "cvar.alpha", " (0: the mean, non-robust; 0.8: the worst 20 %; near 1: the worst group)")
        _require(cfg.cvar.weighting in WEIGHTINGS, "cvar.weighting", cfg.cvar.weighting, ", ".join(WEIGHTINGS))
        _require(cfg.cvar.target in TARGETS, "cvar.target", cfg.cvar.target, ", ".join(TARGETS))
        _require(cfg.cvar.target == "matching" or cfg.method.name in ROBUST_NETWORK_METHODS or cfg.task == "experts",
                 "cvar.target", cfg.cvar.target, f"'matching' for method={cfg.method.name} ('network' and 'both' "
                 f"need a trained network: {', '.join(ROBUST_NETWORK_METHODS)})")
        _require(_is_number(cfg.cvar.weight) and cfg.cvar.weight >= 0, "cvar.weight", cfg.cvar.weight, "a number >= 0")
        _check_design_choices(cfg)
        scale = cfg.cvar.scale
        _require(scale == "classes" or (isinstance(scale, (int, float)) and scale > 0), "cvar.scale", scale,
                 "'classes' or a number > 0")
    if cfg.method.name != "random":
        _positive_float(cfg, "method.lr_img")
        _positive_int(cfg, "method.batch_real")
        _require(cfg.method.init in INITS, "method.init", cfg.method.init, ", ".join(INITS))
        _require(cfg.method.augment in AUGMENTS, "method.augment", cfg.method.augment, ", ".join(AUGMENTS))
    if cfg.method.get("embed_batch") is not None:
        _positive_int(cfg, "method.embed_batch")
    if cfg.method.name in GRADIENT_METHODS:
        _require(cfg.method.metric in DISTANCES, "method.metric", cfg.method.metric, ", ".join(DISTANCES))
        _positive_float(cfg, "method.lr_net")
        _positive_int(cfg, "method.batch_train")
        for key in ("method.outer_loop", "method.inner_loop"):
            if cfg_select(cfg, key) is not None:
                _positive_int(cfg, key)
        explicit = cfg.method.outer_loop is not None and cfg.method.inner_loop is not None
        _require(explicit or cfg.ipc in LOOPS_BY_IPC, "ipc", cfg.ipc,
                 f"one of {sorted(LOOPS_BY_IPC)} for the reference loop schedule of {cfg.method.name}, "
                 "or set method.outer_loop and method.inner_loop")
    if cfg.method.name == "mtt" or cfg.task == "experts":
        _check_trajectory_settings(cfg)
    check_evaluation(cfg)


def _check_design_choices(cfg: DictConfig) -> None:
    """The robust objective's options (mix, min_count, shrink, warmup, features)."""
    c = cfg.cvar
    _require(_is_number(c.mix) and 0 <= c.mix <= 1, "cvar.mix", c.mix, "a number in [0, 1] (0: the mean, 1: CVaR alone)")
    for key in ("cvar.min_count", "cvar.warmup"):
        _positive_int(cfg, key, minimum=0)
    _require(_is_number(c.shrink) and c.shrink >= 0, "cvar.shrink", c.shrink, "a number >= 0 (images of prior)")
    _require(c.features in GROUP_FEATURES, "cvar.features", c.features, ", ".join(GROUP_FEATURES))
    _positive_int(cfg, "cvar.encoder_epochs")
    _positive_int(cfg, "cvar.refresh")
    _check_sampling(cfg)
    _check_known_groups(cfg)
    if c.features != "step" or c.shrink > 0:
        key = "cvar.features" if c.features != "step" else "cvar.shrink"
        _require(cfg.method.name in GROUPING_METHODS, key, cfg_select(cfg, key),
                 f"the default ({'step' if key == 'cvar.features' else 0}) for method={cfg.method.name}: only dm, dc "
                 "and dsa form groups of real images in network features")


def _check_known_groups(cfg: DictConfig) -> None:
    """``cvar.groups=known`` needs subgroup labels (a shift benchmark) and a matcher that groups its real batch."""
    c = cfg.cvar
    _require(c.groups in GROUPS, "cvar.groups", c.groups, ", ".join(GROUPS))
    if c.groups != "known":
        return
    _require(cfg.dataset.get("shift") is not None, "cvar.groups", c.groups, "'nearest' unless the data set has known "
             "subgroups (a dataset.shift benchmark such as dataset=cifar10_shift)")
    _require(cfg.method.name in GROUPING_METHODS, "cvar.groups", c.groups,
             f"'nearest' for method={cfg.method.name} (known groups: dm, dc, dsa)")
    _require(c.target == "matching", "cvar.target", c.target, "'matching' with cvar.groups=known")
    _require(c.features == "step", "cvar.features", c.features, "'step' with cvar.groups=known (no features are used)")


def _check_sampling(cfg: DictConfig) -> None:
    """``cvar.sampling`` and its ``cvar.rarity`` settings; the oracle control cannot be combined with it."""
    c = cfg.cvar
    _require(c.sampling in SAMPLINGS, "cvar.sampling", c.sampling, ", ".join(SAMPLINGS))
    if c.sampling != "rarity":
        return
    try:
        Rarity.from_config(c.rarity)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    shift = cfg.dataset.get("shift")
    _require(shift is None or not shift.get("balanced_batches", False), "dataset.shift.balanced_batches", True,
             "false with cvar.sampling=rarity (both set the real batches' sampling weights)")


def check_dataset(cfg: DictConfig) -> None:
    """The data set and the model of ``cfg``."""
    _require(cfg.dataset.reader in READERS, "dataset.reader", cfg.dataset.reader, ", ".join(sorted(READERS)))
    _require(cfg.model.name in MODELS, "model.name", cfg.model.name, ", ".join(sorted(MODELS)))
    _require(len(cfg.dataset.mean) == len(cfg.dataset.std) == cfg.dataset.channels, "dataset.mean/std",
             f"{list(cfg.dataset.mean)}/{list(cfg.dataset.std)}", f"one value per channel ({cfg.dataset.channels})")
    if cfg.dataset.get("shift") is not None:
        try:
            Shift.from_config(cfg.dataset.shift)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    strategy_families = str(cfg.dataset.dsa_strategy).split("_")
    _require(all(f in FAMILIES for f in strategy_families), "dataset.dsa_strategy", cfg.dataset.dsa_strategy,
             f"families joined by '_' from {', '.join(FAMILIES)}")


def check_evaluation(cfg: DictConfig) -> None:
    """The ``eval`` group: the protocol and the cross-architecture model names."""
    for key in ("eval.nets", "eval.epochs", "eval.batch_size", "eval.num_groups"):
        _positive_int(cfg, key)
    _positive_int(cfg, "eval.every", minimum=0)
    _positive_float(cfg, "eval.lr")
    _require(cfg.eval.augment in AUGMENTS, "eval.augment", cfg.eval.augment, ", ".join(AUGMENTS))
    _alpha(cfg, "eval.cvar_alpha")
    _require(cfg.eval.precision in PRECISIONS, "eval.precision", cfg.eval.precision, ", ".join(PRECISIONS))
    known = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.yaml"))
    for name in cfg.eval.get("models") or []:
        _require(name in known, "eval.models", name, f"names of conf/model/*.yaml: {', '.join(known)}")
