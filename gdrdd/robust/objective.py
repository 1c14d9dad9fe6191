"""The run's robust objective, from its ``cvar`` config group: where it acts, its grouping and risk measures.

``cvar=none`` is the base method. Otherwise ``cvar.target`` says where the CVaR (alpha convention of
``gdrdd.robust.risk``) acts: ``matching``, on the matcher's group losses (the synthetic set's objective);
``network``, on the training of the matcher's network on real data (gradient matching's inner network, MTT's
experts; the paper's Algorithm 1, ``gdrdd.robust.network``); ``both``; ``release``, the network's training as
the robust-DD release runs it (``gdrdd.robust.release``: plain mean cross-entropy on a pooled real set, the CVaR
logged only), the synthetic set's objective plain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from gdrdd.robust.grouping import ByClass, Grouping, KnownGroups, NearestAnySynthetic, NearestSynthetic
from gdrdd.robust.risk import CVaR, RiskMeasure, SumOverGroups

TARGETS = ("matching", "network", "both", "release")


def acts_on_matching(cvar: DictConfig) -> bool:
    """CVaR acts on the matcher's group losses (``cvar.target`` matching or both)."""
    return cvar.name != "none" and cvar.target in ("matching", "both")


def acts_on_network(cvar: DictConfig) -> bool:
    """CVaR acts on the training of the matcher's network on real data (``cvar.target`` network or both)."""
    return cvar.name != "none" and cvar.target in ("network", "both")


def acts_as_released(cvar: DictConfig) -> bool:
    """The network trains as the robust-DD release trains it (``cvar=release``, ``cvar.target=release``)."""
    return cvar.name != "none" and cvar.target == "release"


def release_options(cvar: DictConfig, epochs: int) -> dict[str, Any]:
    """``ReleaseNetworkTraining``'s keyword arguments from ``cvar``: ``alpha`` and ``cvar.release``'s ``log_every``,
    ``centres`` and ``epochs`` over the pool between matching steps (``epochs``, the matcher's own, where
    ``cvar.release.epochs`` is null)."""
    return {"alpha": float(cvar.alpha), "log_every": int(cvar.release.log_every), "centres": cvar.release.centres,
            "epochs": int(cvar.release.epochs or epochs)}


def matching_objective(cfg: DictConfig, num_classes: int, risk_is_term: bool = False,
                       classes_per_update: int | None = None) -> tuple[Grouping, RiskMeasure]:
    """The synthetic set's objective. When it ``acts_on_matching``: CVaR over nearest-synthetic groups (or the
    shift benchmark's known subgroups, ``cvar.groups=known``), scaled by ``cvar.scale`` (``classes``: the number
    of classes one update's losses cover, ``classes_per_update``, default all, so alpha 0 gives the base method's
    gradient), or weighted by ``cvar.weight`` when the group losses are a term beside the matcher's own loss
    (``risk_is_term``, MTT). Otherwise one group per class and the plain sum: the base method."""
    c = cfg.cvar
    if not acts_on_matching(c):
        return ByClass(), SumOverGroups()
    if risk_is_term:
        scale = float(c.weight)
    else:
        scale = float(classes_per_update or num_classes) if c.scale == "classes" else float(c.scale)
    groups = c.get("groups", "nearest")
    grouping = (KnownGroups(len(cfg.dataset.shift.keep)) if groups == "known"
                else NearestAnySynthetic(num_classes) if groups == "nearest_any" else NearestSynthetic())
    return grouping, CVaR(float(c.alpha), c.weighting, scale, mix=float(c.get("mix", 1.0)),
                          min_count=c.get("min_count", 0), warmup=c.get("warmup", 0))


def describe(cvar: Mapping[str, Any]) -> str:
    """The objective in a few words, for titles and headers: ``plain (cvar=none)``, or ``CVaR alpha 0.8, mix 0.5``
    plus the target and the groups where they are not the defaults (``matching``, ``nearest``)."""
    if cvar["name"] == "none":
        return "plain (cvar=none)"
    parts = [f"CVaR alpha {cvar['alpha']:g}"]
    if cvar.get("mix", 1.0) != 1.0 and cvar.get("target", "matching") in ("matching", "both"):  # mix: matching only
        parts.append(f"mix {cvar['mix']:g}")
    if cvar.get("target", "matching") != "matching":
        parts.append(f"target {cvar['target']}")
    if cvar.get("groups", "nearest") != "nearest":
        parts.append(f"{cvar['groups']} groups")
    return ", ".join(parts)


def network_risk(cvar: DictConfig) -> CVaR:
    """The risk measure of robust network training: CVaR at ``cvar.alpha`` with ``cvar.weighting``, unscaled."""
    return CVaR(float(cvar.alpha), cvar.weighting)
