"""Nested plain dicts (resolved configs) addressed by dotted keys, ``"dataset.shift.seed"``."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any


def without_keys(tree: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``tree`` without the dotted ``keys`` (a key that is not there is ignored)."""
    tree = copy.deepcopy(tree)
    for key in keys:
        *parents, last = key.split(".")
        section = tree
        for parent in parents:
            section = section.get(parent) if isinstance(section.get(parent), dict) else {}
        section.pop(last, None)
    return tree


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"cvar": {"alpha": 0.8}}`` -> ``{"cvar.alpha": 0.8}``; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat
