"""Typed schemas of the config groups (OmegaConf structured configs), checked before any work starts.

``check_types(cfg)`` merges each section of the composed config onto its dataclass: a value of the wrong type
(``seed=abc``, ``guard.skip_nonfinite=maybe``) or a key the section does not have (``+cvar.alpah=0.8``) is a
``ConfigError`` naming the key, the value and what is accepted. The ``method`` section is checked against the
schema its method registered (``gdrdd.matchers.registry``), ranges included; the other sections' ranges and
names (alpha in [0, 1), known readers) are checked afterwards by ``gdrdd.config.checks``. The YAML files in
``conf/`` stay the source of the defaults; these classes only state the types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from gdrdd.errors import ConfigError
from gdrdd.matchers.registry import MethodConfig, method


@dataclass
class RunSchema:
    task: str = "distill"
    task_name: str = "distill"
    ipc: int = 10
    iterations: int = 1000
    seed: int = 0
    resume: Optional[str] = None


@dataclass
class CheckpointSchema:
    every: int = 50


@dataclass
class GuardSchema:
    skip_nonfinite: bool = False


@dataclass
class DashboardSchema:
    group_stats_every: int = 10


@dataclass
class RaritySchema:
    resolution: int = 8
    neighbours: int = 10
    power: float = 8.0


@dataclass
class ReleaseSchema:
    log_every: int = 3
    centres: Optional[int] = None
    epochs: Optional[int] = None


@dataclass
class CvarSchema:
    name: str = "cvar"
    alpha: float = 0.8
    weighting: str = "mass"
    scale: Any = "classes"  # 'classes' or a number
    target: str = "matching"
    weight: float = 0.1
    mix: float = 0.5
    min_count: int = 0
    shrink: float = 0.0
    warmup: int = 0
    features: str = "step"
    encoder_epochs: int = 3
    refresh: int = 50
    sampling: str = "uniform"
    groups: str = "nearest"
    rarity: RaritySchema = field(default_factory=RaritySchema)
    release: ReleaseSchema = field(default_factory=ReleaseSchema)


@dataclass
class ShiftSchema:
    keep: List[float] = field(default_factory=lambda: [1.0, 0.25, 0.05])
    seed: int = 0
    balanced_batches: bool = False


@dataclass
class DatasetSchema:
    name: str = "?"
    reader: str = "?"
    channels: int = 3
    resolution: int = 32
    class_names: Optional[List[str]] = None
    class_indices: Optional[List[int]] = None
    mean: List[float] = field(default_factory=list)
    std: List[float] = field(default_factory=list)
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    convnet_depth: int = 3
    zca: bool = False
    download: bool = False
    shift: Optional[ShiftSchema] = None


@dataclass
class ModelSchema:
    name: str = "convnet"
    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"
    activation: str = "relu"
    pooling: str = "avgpooling"
    downsample: str = "stride"


@dataclass
class ExpertsSchema:
    num: int = 100
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    augment: str = "dsa"
    seed: int = 0


@dataclass
class TeacherSchema:
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    batch_size: int = 256
    milestones: List[float] = field(default_factory=lambda: [0.5])
    augment: str = "dsa"
    seed: int = 0


@dataclass
class EvalSchema:
    nets: int = 3
    epochs: int = 300
    every: int = 0
    at: List[int] = field(default_factory=list)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    batch_size: int = 256
    milestones: List[float] = field(default_factory=lambda: [0.5])
    gamma: float = 0.1
    augment: str = "dsa"
    cutmix: float = 0.0
    cutmix_beta: float = 1.0
    num_groups: int = 10
    cvar_alpha: float = 0.8
    baseline: bool = True
    labels: str = "own"
    temperature: float = 4.0
    models: List[str] = field(default_factory=list)
    coverage: bool = True
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False


SECTIONS = {"checkpoint": CheckpointSchema, "guard": GuardSchema, "dashboard": DashboardSchema, "cvar": CvarSchema,
            "dataset": DatasetSchema, "model": ModelSchema, "experts": ExpertsSchema, "eval": EvalSchema,
            "teacher": TeacherSchema}


def check_types(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value whose type or key does not fit its section's schema (and for the
    ``method`` section, whose range does not fit either)."""
    top = {k: cfg[k] for k in vars(RunSchema()) if k in cfg}
    _merge(RunSchema, OmegaConf.create(top), "")
    for section, schema in SECTIONS.items():
        if section in cfg:
            _merge(schema, cfg[section], f"{section}.")
    if "method" in cfg:
        method_config(cfg.method)


def method_config(node: DictConfig) -> MethodConfig:
    """The ``method`` section as its method's schema instance: types, keys and ranges checked."""
    schema = method(node.name).schema
    return OmegaConf.to_object(_merge(schema, node, "method.", f"method={node.name}"))


def _merge(schema: type, node: DictConfig, prefix: str, owner: str | None = None) -> DictConfig:
    """``node`` merged onto ``schema``; ``owner`` names the section in messages (default: the prefix)."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as err:
        key = f"{prefix}{err.key}"
        known = ", ".join(vars(schema())) if prefix else "the keys of conf/config.yaml"
        owner = owner or prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{key} is not a known setting; {owner} accepts: {known}. "
                          "Check the spelling of the override.") from None
    except ValidationError as err:
        field_name = str(err.full_key).split("[")[0]  # 'mean[0]' -> 'mean'
        value = OmegaConf.select(node, field_name, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        raise ConfigError(f"{prefix}{field_name}={value!r} is not valid; accepted: "
                          f"{_type_name(schema, field_name)}.") from None


def _type_name(schema: type, key: str) -> str:
    annotation = str(schema.__dataclass_fields__[key].type) if key in schema.__dataclass_fields__ else "?"
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "Optional[int]": "an integer or null", "Optional[str]": "a string or null",
             "List[float]": "a list of numbers", "List[str]": "a list of names",
             "Optional[List[str]]": "a list of names or null", "Optional[List[int]]": "a list of integers or null"}
    return names.get(annotation, annotation)
