"""Checks run on the composed config before any data is read or any step is taken.

Types and keys come first (``gdrdd.config.schema``; the ``method`` section's ranges too, by its method's
schema); then the ranges and names of the other sections, and the combinations that a method does not support,
read off its registry entry (``gdrdd.matchers.registry``): among them every ``cvar`` option that the method with
its ``cvar.target`` ignores (``refuse_ignored_options``). Where a component states its own rule (the CVaR's
ranges, the shift benchmark's, the real batches' weights), the check calls it, so each rule and its message exist
once. The first invalid value raises one ``ConfigError``.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from gdrdd.augment.dsa import EVAL_AUGMENTATIONS, FAMILIES
from gdrdd.config import CONFIG_DIR
from gdrdd.config.schema import CvarSchema, check_types
from gdrdd.data.datamodule import check_batch_weights
from gdrdd.data.rarity import Rarity
from gdrdd.data.readers import READERS
from gdrdd.data.subpopulation import Shift
from gdrdd.distill.parameterization import MIN_TILE, tile_size
from gdrdd.errors import ConfigError
from gdrdd.experts.trajectory import check_expert_settings
from gdrdd.matchers.registry import Method, method, methods
from gdrdd.models import MODELS
from gdrdd.robust.objective import TARGETS
from gdrdd.robust.risk import CVaR
from gdrdd.utils.checks import integer, is_number, level, one_of, positive, require
from gdrdd.utils.runtime import PRECISIONS, cpu_compiler_found

TASKS = ("distill", "experts", "teacher")
EVAL_LABELS = ("own", "teacher")
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
    check_trainer(cfg)
    check_dataset(cfg)
    one_of("cvar", cfg.cvar.name, CVARS)
    if cfg.cvar.name == "cvar":
        _check_cvar(cfg, entry)
    elif cfg.task == "distill":
        refuse_ignored_options(cfg.cvar, entry)
    if cfg.task == "experts":
        check_expert_settings(cfg)
        check_norm(cfg, "task=experts", "MTT's experts keep parameters only, as the reference does")
    if cfg.task == "distill" and entry.stateless_norm:
        check_norm(cfg, f"method={entry.name}", entry.stateless_norm)
    if cfg.task == "distill" and entry.check is not None:
        entry.check(cfg)
    check_real_batch(cfg, entry)
    if "factor" in cfg.method:
        check_factor("method.factor", cfg.method.factor, cfg.dataset)
    check_evaluation(cfg)


def check_real_batch(cfg: DictConfig, entry: Method) -> None:
    """``method.real_batch=kmeans`` needs a matcher that matches a real batch in its network's embedding."""
    if cfg.method.get("real_batch", "random") != "kmeans":
        return
    able = ", ".join(name for name, m in methods().items() if m.groups_real and m.matches_real)
    require(entry.groups_real and entry.matches_real, "method.real_batch", "kmeans",
            f"'random' for method={entry.name}, which matches no real batch in a network's embedding (k-means "
            f"batches: {able})")


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
    one_of("cvar.target", c.target, TARGETS)
    robust_network = ", ".join(name for name, m in methods().items() if m.trains_network)
    require(c.target in ("matching", "release") or entry.trains_network or cfg.task == "experts", "cvar.target",
            c.target, f"'matching' for method={entry.name} ('network' and 'both' need a trained network: "
            f"{robust_network})")
    released = ", ".join(name for name, m in methods().items() if m.trains_as_released)
    require(c.target != "release" or (entry.trains_as_released and cfg.task == "distill"), "cvar.target", c.target,
            f"'matching' for method={entry.name} and task={cfg.task}: cvar=release trains the network between "
            f"gradient-matching steps as the robust-DD release does, which a distillation of {released} has")
    integer("cvar.release.log_every", c.release.log_every)
    for key in ("centres", "epochs"):
        if c.release[key] is not None:
            integer(f"cvar.release.{key}", c.release[key])
    CVaR(c.alpha, c.weighting, mix=c.mix, min_count=c.min_count, warmup=c.warmup)  # the risk measure's own checks
    require(is_number(c.weight) and c.weight >= 0, "cvar.weight", c.weight, "a number >= 0")
    require(c.scale == "classes" or (is_number(c.scale) and c.scale > 0), "cvar.scale", c.scale,
            "'classes' or a number > 0")
    require(is_number(c.shrink) and c.shrink >= 0, "cvar.shrink", c.shrink, "a number >= 0 (images of prior)")
    one_of("cvar.features", c.features, GROUP_FEATURES)
    integer("cvar.encoder_epochs", c.encoder_epochs)
    integer("cvar.refresh", c.refresh)
    _check_sampling(cfg)
    _check_groups(cfg, entry)
    if cfg.task == "distill":
        refuse_ignored_options(cfg.cvar, entry)


def refuse_ignored_options(cvar: DictConfig, entry: Method) -> None:
    """A ``cvar`` key set away from its default that this method with this ``cvar.target`` does not read
    (``Method.cvar_options``), or that only refines an option not chosen (``encoder_epochs`` without
    ``features=encoder``, ...), is refused: a run would accept it and do nothing with it, and a sweep report
    would list it as a different setting. With ``cvar=none`` every key but ``name`` is ignored. (The experts job
    is not checked: it takes the distillation run's overrides, ``experts_command``.)"""
    defaults = OmegaConf.structured(CvarSchema)
    set_keys = [key for key in cvar if key != "name" and cvar[key] != defaults.get(key)]
    read = entry.cvar_options(cvar.target) if cvar.name != "none" else frozenset()
    for key in set_keys:
        value = OmegaConf.to_container(cvar[key]) if OmegaConf.is_config(cvar[key]) else cvar[key]
        if cvar.name == "none":
            raise ConfigError(f"cvar.{key}={value!r} has no effect with cvar=none (the plain base method reads no "
                              "cvar option), so it is not accepted; choose cvar=default or cvar=known to use it.")
        if key not in read:
            targets = [t for t in TARGETS if key in entry.cvar_options(t)]
            where = (f"cvar.target={' or '.join(targets)}" if targets else f"no cvar.target of method={entry.name}")
            raise ConfigError(
                f"cvar.{key}={value!r} has no effect with method={entry.name} and cvar.target={cvar.target}, so it "
                f"is not accepted there; it is read with {where}. Leave it at its default "
                f"({_default(defaults, key)!r}; a preset may have set it: cvar=paper sets mix=1.0, so start from "
                f"cvar=default with this target); the options read here: {', '.join(sorted(read))}.")
        for option, choice in REFINES.get(key, ()):
            require(cvar[option] == choice, f"cvar.{key}", value,
                    f"its default ({_default(defaults, key)!r}) unless cvar.{option}={choice}: it has no effect with "
                    f"cvar.{option}={cvar[option]}")
    require(cvar.get("groups") != "known" or "features" not in set_keys, "cvar.features", cvar.get("features"),
            "'step' with cvar.groups=known (no features are used)")


# Options that only refine another: (that option, the value that selects them).
REFINES = {"encoder_epochs": [("features", "encoder")], "refresh": [("features", "evaluation")],
           "rarity": [("sampling", "rarity")]}


def _default(defaults: DictConfig, key: str) -> object:
    value = defaults[key]
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


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


def _check_sampling(cfg: DictConfig) -> None:
    """``cvar.sampling`` and its ``cvar.rarity`` settings; the oracle control cannot be combined with it."""
    c = cfg.cvar
    one_of("cvar.sampling", c.sampling, SAMPLINGS)
    if c.sampling != "rarity":
        return
    try:
        rarity = Rarity.from_config(c.rarity)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    shift = cfg.dataset.get("shift")
    check_batch_weights(None if shift is None else Shift.from_config(shift), rarity)


def check_norm(cfg: DictConfig, who: str, reason: str) -> None:
    """A network norm without running statistics, for ``who`` (a method or the experts job) because ``reason``."""
    require(cfg.model.get("norm") != "batchnorm", "model.norm", cfg.model.get("norm"),
            f"a norm without running statistics (instancenorm, layernorm, groupnorm, none) for {who}: {reason}")


def check_trainer(cfg: DictConfig) -> None:
    """``trainer.precision``: float32, bfloat16 autocast, or float16 autocast with loss scaling on a CUDA device
    (Lightning's scaler for the synthetic update, a static scale inside the differentiated gradients,
    ``gdrdd.utils.runtime.scaled_grad``). On a CPU Lightning would run ``16-mixed`` as bfloat16, so it is
    refused there. ``method.compile`` on a CPU needs a C++ compiler (``check_compile``)."""
    precision = cfg.trainer.get("precision", "32-true")
    one_of("trainer.precision", precision, PRECISIONS)
    if precision == "16-mixed":
        require(on_cuda(cfg), "trainer.precision", precision, "32-true or bf16-mixed on this machine: 16-mixed "
                "(float16) needs a CUDA device (trainer.accelerator=gpu); on a CPU use bf16-mixed")
    check_compile(cfg, "method.compile")


def on_cuda(cfg: DictConfig) -> bool:
    """Whether the job runs on a CUDA device: one is present and ``trainer.accelerator`` allows it."""
    return torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")


def check_compile(cfg: DictConfig, key: str) -> None:
    """``key`` (``method.compile``, ``eval.compile``) true on a CPU needs a C++ compiler: torch.compile builds
    C++ kernels there."""
    if OmegaConf.select(cfg, key) and not on_cuda(cfg):
        require(cpu_compiler_found(), key, True, "false on this machine: torch.compile on a CPU builds C++ kernels, "
                "and no C++ compiler ($CXX, g++, c++ or clang++) is on the path; install one or set "
                f"{key}=false (the same numerics, slower)")


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


def epoch_fractions(key: str, milestones) -> None:
    """Learning-rate milestones: fractions of the epochs in (0, 1)."""
    require(all(is_number(m) and 0 < m < 1 for m in milestones), key, list(milestones),
            "fractions of the epochs in (0, 1), e.g. [0.5]")


def check_teacher(t: DictConfig) -> None:
    """The ``teacher`` group (``task=teacher``, ``eval.labels=teacher``)."""
    for key in ("epochs", "batch_size"):
        integer(f"teacher.{key}", t[key])
    positive("teacher.lr", t.lr)
    epoch_fractions("teacher.milestones", t.milestones)
    one_of("teacher.augment", t.augment, EVAL_AUGMENTATIONS)


def check_ddranking(cfg: DictConfig) -> None:
    """``evaluate.py``'s ``ddranking`` group: weights in [0, 1] and the real data's accuracy in percent."""
    d = cfg.ddranking
    for key in ("weight", "gamma"):
        require(is_number(d[key]) and 0 <= d[key] <= 1, f"ddranking.{key}", d[key], "a number in [0, 1]")
    require(d.real_accuracy is None or (is_number(d.real_accuracy) and 0 <= d.real_accuracy <= 100),
            "ddranking.real_accuracy", d.real_accuracy, "null (train on the real training set) or a percentage")


def check_evaluation(cfg: DictConfig) -> None:
    """The ``eval`` group: the protocol and the cross-architecture model names."""
    e = cfg.eval
    for key in ("nets", "epochs", "batch_size", "num_groups"):
        integer(f"eval.{key}", e[key])
    integer("eval.every", e.every, minimum=0)
    positive("eval.lr", e.lr)
    epoch_fractions("eval.milestones", e.milestones)
    positive("eval.gamma", e.gamma)
    require(is_number(e.cutmix) and 0 <= e.cutmix <= 1, "eval.cutmix", e.cutmix, "a probability in [0, 1]")
    positive("eval.cutmix_beta", e.cutmix_beta)
    one_of("eval.augment", e.augment, EVAL_AUGMENTATIONS)
    check_compile(cfg, "eval.compile")
    level("eval.cvar_alpha", e.cvar_alpha)
    one_of("eval.precision", e.precision, PRECISIONS)
    one_of("eval.labels", e.get("labels", "own"), EVAL_LABELS)
    if e.get("labels", "own") == "teacher":
        positive("eval.temperature", e.temperature)
        require(e.cutmix == 0, "eval.cutmix", e.cutmix, "0 with eval.labels=teacher (the teacher relabels each "
                "augmented batch itself)")
    if "teacher" in cfg:
        check_teacher(cfg.teacher)
    known = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    for name in e.get("models") or []:
        require(name in known, "eval.models", name, f"names of conf/model/*.yaml: {', '.join(known)}")
