"""Where a paired difference goes, cell by cell, on a subpopulation-shift benchmark.

A shift benchmark scores every class x subgroup cell (``cell<class>_<subgroup>_acc``). For a setting and its
plain partner (same seed and budget), order the cells by the plain run's accuracy (ties by name), split them into
thirds (``numpy.array_split``: sizes differ by at most one) and average the setting's difference from plain over
each third:

    hard   = mean over the third plain gets least right of (setting - plain)
    middle = the same over the middle third
    easy   = the same over the third plain gets most right
    corr   = Pearson correlation of the plain cell accuracies with the differences (0 when either is constant)

A risk measure that weights the worst-matched groups should move accuracy from the easy cells to the hard ones
(``hard`` > 0 > ``easy``, ``corr`` < 0), whichever way the benchmark builds its subgroups; a lever that lifts
every cell alike has ``corr`` near 0.
"""

from __future__ import annotations

import re

import numpy as np

CELL = re.compile(r"cell\d+_\d+_acc")
SHIFT_KEYS = ("cells_hard", "cells_middle", "cells_easy", "cells_corr")  # hard, middle, easy, corr above


def cell_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The class x subgroup cell accuracies among a result's metrics (none off a shift benchmark)."""
    return {k: v for k, v in metrics.items() if CELL.fullmatch(k)}


def cell_shift(setting: dict[str, float], plain: dict[str, float]) -> dict[str, float]:
    """``SHIFT_KEYS`` for the cells both results score (empty when fewer than 3 cells are shared)."""
    names = sorted(set(cell_metrics(setting)) & set(cell_metrics(plain)), key=lambda k: (plain[k], k))
    if len(names) < 3:
        return {}
    base = np.array([plain[k] for k in names], dtype=float)
    delta = np.array([setting[k] for k in names], dtype=float) - base
    hard, middle, easy = (float(part.mean()) for part in np.array_split(delta, 3))
    corr = float(np.corrcoef(base, delta)[0, 1]) if base.std() > 0 and delta.std() > 0 else 0.0
    return {"cells_hard": hard, "cells_middle": middle, "cells_easy": easy, "cells_corr": corr}
