"""The tables of an evaluation: the comparison table a run prints (one row per metric, one column per scored
set), and the CSV tables of the run folder (also sent to W&B)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

from gdrdd.evaluation.evaluator import METRICS
from gdrdd.utils.files import write_text

LABELS = {
    "acc": "test accuracy (%)",
    "worst_group_acc": "worst-group accuracy (%)",
    "mean_group_acc": "mean-group accuracy (%)",
    "acc_noise": "accuracy, Gaussian noise (%)",
    "acc_blur": "accuracy, Gaussian blur (%)",
    "acc_invert": "accuracy, inverted (%)",
    "test_cvar": "CVaR of group test loss",
    "worst_cell_acc": "worst class x subgroup accuracy (%)",
}
KEPT_PREFIX = "acc_kept"  # acc_kept<percent>: subpopulation-shift accuracy per rarity level


def shown_metrics(metrics: dict[str, float]) -> list[str]:
    """The metric names of a result to tabulate, in order: the protocol's, then the subpopulation-shift ones
    (rarity levels from common to rare, then the worst cell) when present. Architecture-prefixed keys and
    ``_std`` entries are left out."""
    kept = sorted((k for k in metrics if k.startswith(KEPT_PREFIX) and not k.endswith("_std")),
                  key=lambda k: -float(k[len(KEPT_PREFIX):]))
    return [k for k in (*METRICS, *kept, "worst_cell_acc") if k in metrics]


def metric_label(key: str) -> str:
    if key.startswith(KEPT_PREFIX):
        return f"accuracy, subgroups kept at {key[len(KEPT_PREFIX):]} % (%)"
    return LABELS[key]


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of ``mean ± std`` for each metric (rows) and each set in ``results`` (columns); metrics of
    further architectures (``<arch>/<metric>``) follow as rows labelled ``[<arch>]``."""
    names = list(results)
    first = results[names[0]]
    architectures = list(dict.fromkeys(k.split("/")[0] for k in first if "/" in k))
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for prefix in ["", *(f"{a}/" for a in architectures)]:
        for key in shown_metrics({k[len(prefix):]: v for k, v in first.items() if k.startswith(prefix)}):
            full = prefix + key
            cells = [f"{results[n][full]:.2f} ± {results[n][full + '_std']:.2f}" for n in names]
            label = metric_label(key) + (f" [{prefix[:-1]}]" if prefix else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_accuracy_rows(scored: dict[str, dict[str, float]], group_sizes: list[int]) -> tuple[list[str], list[list]]:
    """Columns and rows of the per-group test accuracy table: group, test images in it, then the mean accuracy
    of each scored set (``group<g>_acc`` metrics)."""
    columns = ["group", "test_images", *scored]
    rows = [[g, size, *(round(scored[name].get(f"group{g}_acc", float("nan")), 2) for name in scored)]
            for g, size in enumerate(group_sizes)]
    return columns, rows


def cell_accuracy_rows(scored: dict[str, dict[str, float]],
                       cells: list[tuple[int, int, float, int]]) -> tuple[list[str], list[list]]:
    """Columns and rows of the class x subgroup test accuracy table of a subpopulation-shift data set: class,
    subgroup, its kept training fraction, test images in the cell, then each scored set's ``cell<c>_<s>_acc``."""
    columns = ["class", "subgroup", "kept", "test_images", *scored]
    rows = [[c, s, kept, size, *(round(scored[name].get(f"cell{c}_{s}_acc", float("nan")), 2) for name in scored)]
            for c, s, kept, size in cells]
    return columns, rows


def comparison_rows(scored: dict[str, dict[str, float]]) -> tuple[list[str], list[list]]:
    """Columns and rows of the evaluation table (one row per metric, mean and std of each scored set)."""
    columns = ["metric", *(f"{n}{s}" for n in scored for s in ("", "_std"))]
    first = next(iter(scored.values()))
    rows = [[metric_label(k), *(round(scored[n][key], 4) for n in scored for key in (k, f"{k}_std"))]
            for k in shown_metrics(first)]
    return columns, rows


def write_tables(out: str | Path, loggers: list, scored: dict[str, dict[str, float]], group_sizes: list[int],
                 cells: list[tuple[int, int, float, int]] | None = None) -> None:
    """``group_accuracy.csv``, ``comparison.csv`` and, given a subpopulation-shift data set's ``cells``
    (``Evaluator.cells``), ``cell_accuracy.csv`` in the run folder; the same tables to W&B (``eval/<name>``)."""
    tables = {"group_accuracy": group_accuracy_rows(scored, group_sizes), "comparison": comparison_rows(scored)}
    if cells is not None:
        tables["cell_accuracy"] = cell_accuracy_rows(scored, cells)
    for name, (columns, rows) in tables.items():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([columns, *rows])
        write_text(Path(out) / f"{name}.csv", buffer.getvalue())
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=f"eval/{name}", columns=columns, data=rows)
