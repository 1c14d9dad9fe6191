"""The labels of a distilled set and what networks train on.

A set's labels are one of three kinds, and every reader and writer of gdrdd says which (``label_kind``):

- ``hard``: class indices ``(N,)``; networks train with cross-entropy against them;
- ``probabilities``: ``(N, C)`` rows on the simplex (non-negative, summing to 1);
- ``logits``: ``(N, C)`` unnormalised scores, as DATM learns and saves them (``labels_<it>.pt``); networks train
  with the soft cross-entropy against ``softmax(logits)``, as DATM's evaluation does.

Files that do not say (another tool's ``(N, C)`` tensor) are read as ``auto``: probabilities when every row is
non-negative and sums to 1 within ``SIMPLEX_TOLERANCE``, logits otherwise (logits that happen to lie on the
simplex would be read as probabilities; ``labels=logits`` on ``evaluate.py``'s command line settles it).
"""

from __future__ import annotations

import torch

from gdrdd.errors import DistilledFileError

LABEL_KINDS = ("hard", "probabilities", "logits")
SIMPLEX_TOLERANCE = 1e-3


def resolve_kind(labels: torch.Tensor, declared: str = "auto") -> str:
    """The kind of ``labels``: ``declared`` when it is one of ``LABEL_KINDS`` (checked against the shape), else
    inferred (module docstring)."""
    if declared not in ("auto", *LABEL_KINDS):
        raise DistilledFileError(f"labels={declared!r} is not valid; accepted: auto, {', '.join(LABEL_KINDS)}")
    if labels.dim() == 1:
        if declared not in ("auto", "hard"):
            raise DistilledFileError(f"labels={declared} needs (N, C) labels; these are (N,) class indices (hard)")
        return "hard"
    if declared == "hard":
        raise DistilledFileError("labels=hard needs (N,) class indices; these are (N, C) soft labels: give "
                                 "labels=probabilities or labels=logits")
    if declared != "auto":
        return declared
    on_simplex = bool((labels >= 0).all()) and bool(((labels.sum(1) - 1).abs() <= SIMPLEX_TOLERANCE).all())
    return "probabilities" if on_simplex else "logits"


def hard_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class indices ``(N,)`` of ``(N,)`` indices or ``(N, C)`` soft labels (their most probable class)."""
    return labels if labels.dim() == 1 else labels.argmax(1)


def training_targets(labels: torch.Tensor, kind: str) -> torch.Tensor:
    """What networks train against: class indices for ``hard``, else class probabilities ``(N, C)``
    (``softmax`` of logits)."""
    return labels.softmax(dim=1) if kind == "logits" else labels


def as_probabilities(labels: torch.Tensor, kind: str, num_classes: int) -> torch.Tensor:
    """``(N, C)`` class probabilities of labels of any kind (one-hot for hard labels)."""
    if kind == "hard":
        return torch.nn.functional.one_hot(labels, num_classes).float()
    return training_targets(labels, kind)
