"""DD-Ranking's scores of a distilled set: what its images add beyond its labels and its augmentation.

With accuracies as fractions in [0, 1] (``acc``: test accuracy of networks trained on ...):

    HLR = acc(real training set, hard labels) - acc(set, hard labels)           hard-label recovery (lower: better)
    IOR = acc(set, its own labels) - acc(random real subset, the same labels)   improvement over random
    a   = lambda * IOR - (1 - lambda) * HLR
    LRS = (e^a - e^-1) / (e - e^-1)                                             label-robust score, in [0, 1]
    b   = gamma * (acc(set, aug) - acc(random, aug)) + (1 - gamma) * (acc(set, no aug) - acc(random, no aug))
    ARS = (e^b - e^-1) / (e - e^-1)                                             augmentation-robust score, in [0, 1]

``lambda = gamma = 0.5`` by default. Units: DD-Ranking's package (0.2.0) feeds ``a`` and ``b`` in percentage
points, which puts its scores far outside [0, 1] (``e^a`` of tens of points); gdrdd uses fractions, so ``a`` and
``b`` lie in [-1, 1] and the scores in [0, 1] as the normalisation intends. ``scores`` also gives the package's
numbers (``*_percent_points``: the same normalisation of ``100 a`` and ``100 b``) for comparison. The random
subset has the set's size per class and is labelled by the same rule as the set (hard labels for a hard-label
set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def normalised(x: float) -> float:
    """``(e^x - e^-1) / (e - e^-1)``: maps [-1, 1] onto [0, 1], increasing."""
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


@dataclass(frozen=True)
class Accuracies:
    """Test accuracies in percent (``evaluate.py``'s ``acc``) of networks trained on: the whole real training set
    with hard labels (``real_hard``); the set with hard labels (``syn_hard``) and with its own labels and the
    protocol's augmentation (``syn``); the random subset likewise (``random``); both without augmentation
    (``syn_no_aug``, ``random_no_aug``)."""

    real_hard: float
    syn_hard: float
    syn: float
    random: float
    syn_no_aug: float
    random_no_aug: float


def scores(acc: Accuracies, weight: float = 0.5, gamma: float = 0.5) -> dict[str, float]:
    """HLR, IOR (fractions), LRS and ARS (in [0, 1]) and the package's percentage-point LRS/ARS beside them."""
    hlr = (acc.real_hard - acc.syn_hard) / 100
    ior = (acc.syn - acc.random) / 100
    a = weight * ior - (1 - weight) * hlr
    b = gamma * (acc.syn - acc.random) / 100 + (1 - gamma) * (acc.syn_no_aug - acc.random_no_aug) / 100
    return {"hlr": hlr, "ior": ior, "lrs": normalised(a), "ars": normalised(b),
            "lrs_percent_points": normalised(100 * a), "ars_percent_points": normalised(100 * b)}
