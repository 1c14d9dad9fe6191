"""Base methods by name: ``method=<name>`` on the command line selects one.

Each matcher module of ``gdrdd/matchers/`` registers its methods when imported, with ``register(Method(...))``:

- ``name``: the value of ``method.name``, and the file ``conf/method/<name>.yaml`` that holds its defaults;
- ``schema``: a dataclass of every ``method.*`` key the method reads, with their types (a subclass of
  ``MethodConfig``); its ``__post_init__`` checks their ranges. The composed ``method`` group is checked
  against it once, before any work, so a key the method does not read (``method=dm method.outer_loop=5``) is
  refused by name;
- ``build(inputs)``: the matcher, from the checked config and the run's shared pieces (``MatcherInputs``);
  ``None`` for a method that distils nothing (``random``);
- ``groups_real``: the matcher groups its real batch in network features, so the grouping options apply
  (``cvar.features``, ``cvar.shrink``, ``cvar.groups=known``);
- ``trains_network``: it has a network trained on real data (or experts), so ``cvar.target=network|both``
  applies;
- ``trains_as_released``: its network can train as the robust-DD release trains it (``cvar=release``,
  ``gdrdd.robust.release``: gradient matching);
- ``risk_is_term``: its group losses are a term added to its own loss with weight ``cvar.weight`` (MTT),
  not the whole objective scaled by ``cvar.scale``;
- ``updates_all_classes``: each synthetic update covers every class (``False``: one class per update, IDC);
- ``stores_pixels``: its synthetic tensors are learnt in ``[0, 1]`` pixel space (IDC), not as network inputs;
- ``matches_real``: every update reads a real batch (``False``: only the robust risk term does, MTT);
- ``matches_experts``: it matches the cached expert trajectories of ``task=experts`` (MTT, DATM), so the
  ``experts`` group is part of its setting;
- ``stateless_norm``: why the method needs a network norm without running statistics (``""``: any norm);
- ``reference_iterations``: the distillation iterations of the method's reference protocol (its original code's
  default, the same for every data set and IPC; ``None``: it distils nothing). A shorter run says so;
- ``check(cfg)``: optional checks that involve other config groups (the IPC, the experts).

``cvar_options(target)`` derives from these which ``cvar`` keys a robust run of the method reads with
``cvar.target=target``; ``gdrdd.config.checks`` refuses any other key set away from its default.

A new matcher is one module in this package that calls ``register``, plus its ``conf/method/<name>.yaml``:
``methods()`` imports every module of the package, so nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Optional

from omegaconf import DictConfig
from torch import nn

from gdrdd.augment.dsa import AUGMENTATIONS, DSA
from gdrdd.data.spec import DatasetSpec
from gdrdd.errors import ConfigError
from gdrdd.utils.checks import integer, one_of, positive, require

if TYPE_CHECKING:
    from gdrdd.data.datamodule import RealDataModule
    from gdrdd.matchers.base import Matcher

INITS = ("real", "first", "kcenter", "herding", "noise")
REAL_BATCHES = ("random", "kmeans")


@dataclass
class MethodConfig:
    """The ``method.*`` keys of every method. ``batch_real``: real images per class in each update's batch
    (also accepted, unused, by ``random``, so a budget preset that sets it applies to every method)."""

    name: str = "?"
    batch_real: int = 256

    def __post_init__(self) -> None:
        integer("method.batch_real", self.batch_real)


@dataclass
class DistillConfig(MethodConfig):
    """The keys of every method that learns a synthetic set: the images' SGD (``lr_img``, ``momentum``), their
    initialisation (``init``: ``real`` random real images, ``first`` the first real images of each class,
    ``kcenter``/``herding`` a coreset of each class in a fixed network's features, that network trained
    ``init_epochs`` epochs on the real data first (0: as initialised), ``gdrdd.distill.coreset``; or ``noise``),
    the augmentation while matching (``augment``) and the multi-formation ``factor`` (each stored image trains as
    ``factor^2`` images; 1: none; ``gdrdd.distill.parameterization``). ``real_batch``: each update's real batch of a
    class is ``random`` (``batch_real`` images) or ``kmeans`` (the image nearest each of ``kmeans_centres`` k-means
    centres of those images in the step's network; ``None``: half of ``batch_real``; ``gdrdd.distill.kmeans_batch``)."""

    inits: ClassVar[tuple[str, ...]] = INITS  # the accepted values of init (a method may add its own)
    lr_img: float = 1.0
    momentum: float = 0.5
    init: str = "real"
    init_epochs: int = 0
    augment: str = "dsa"
    factor: int = 1
    real_batch: str = "random"
    kmeans_centres: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("method.real_batch", self.real_batch, REAL_BATCHES)
        if self.kmeans_centres is not None:
            integer("method.kmeans_centres", self.kmeans_centres)
            require(self.kmeans_centres <= self.batch_real, "method.kmeans_centres", self.kmeans_centres,
                    f"at most method.batch_real ({self.batch_real}): k-means picks one real image per centre "
                    "among the batch's images")
        positive("method.lr_img", self.lr_img)
        integer("method.factor", self.factor)
        one_of("method.init", self.init, self.inits)
        integer("method.init_epochs", self.init_epochs, minimum=0)
        one_of("method.augment", self.augment, AUGMENTATIONS)


@dataclass
class MatcherInputs:
    """What a method's builder receives: its checked ``method`` config, the whole run config ``cfg`` (for
    ``ipc``, ``cvar``, ``experts``), the data set, a factory of the run's network architecture, the augmentation
    ``method.augment`` names (``None`` for ``none``), and the grouping options of ``groups_real`` methods: a
    fixed network to form groups in (``cvar.features=encoder``; ``None``: the matcher's own network) and the
    shrinkage prior ``cvar.shrink``."""

    method: MethodConfig
    cfg: DictConfig
    spec: DatasetSpec
    data: RealDataModule
    make_network: Callable[[], nn.Module]
    augment: DSA | None = None
    group_encoder: nn.Module | None = None
    shrink: float = 0.0


@dataclass(frozen=True)
class Method:
    name: str
    schema: type[MethodConfig]
    build: Callable[[MatcherInputs], Matcher] | None
    groups_real: bool = False
    trains_network: bool = False
    trains_as_released: bool = False
    risk_is_term: bool = False
    updates_all_classes: bool = True
    stores_pixels: bool = False
    matches_real: bool = True
    matches_experts: bool = False
    stateless_norm: str = ""
    reference_iterations: int | None = None
    check: Callable[[DictConfig], None] | None = None

    def cvar_options(self, target: str) -> frozenset[str]:
        """The ``cvar`` keys a distillation run of this method reads with ``cvar.target=target`` (``matching``:
        the synthetic set's objective; ``network``: the network's training on real data, whose risk is the CVaR
        alone at ``alpha`` with ``weighting``; ``both``; ``release``: the release's training, ``alpha`` and
        ``release`` logged only). Keys that only refine another (``encoder_epochs``,
        ``refresh``, ``rarity``) are listed with it; whether that one selects them is the config check's."""
        if self.build is None:  # distils nothing (random): no cvar option has an effect
            return frozenset({"name"})
        if target == "release":  # the release's training: alpha and cvar.release shape its logged value only
            return frozenset({"name", "alpha", "target", "release", "sampling", "rarity"})
        keys = {"name", "alpha", "weighting", "target"}
        matching = target in ("matching", "both")
        if matching:
            keys |= {"mix", "min_count", "warmup", "groups", "weight" if self.risk_is_term else "scale"}
            if self.groups_real:
                keys |= {"features", "encoder_epochs", "refresh", "shrink"}
        if matching or self.matches_real:  # the real batches are drawn by cvar.sampling
            keys |= {"sampling", "rarity"}
        return frozenset(keys)


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS and _METHODS[method.name] != method:
        raise ValueError(f"two methods are registered as {method.name!r}")
    _METHODS[method.name] = method
    return method


def methods() -> dict[str, Method]:
    """Every registered method by name (imports every module of ``gdrdd.matchers`` first)."""
    package = importlib.import_module("gdrdd.matchers")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"gdrdd.matchers.{module.name}")
    return dict(sorted(_METHODS.items()))


def method(name: str) -> Method:
    """The method registered as ``name``; a ``ConfigError`` naming the registered ones otherwise."""
    known = methods()
    if name not in known:
        raise ConfigError(f"method={name!r} is not valid; accepted: {', '.join(known)}.")
    return known[name]
