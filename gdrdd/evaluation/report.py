"""The comparison table a run prints: one row per metric, one column per scored set."""

from __future__ import annotations

from gdrdd.evaluation.evaluator import METRICS

LABELS = {
    "acc": "test accuracy (%)",
    "worst_group_acc": "worst-group accuracy (%)",
    "mean_group_acc": "mean-group accuracy (%)",
    "acc_noise": "accuracy, Gaussian noise (%)",
    "acc_blur": "accuracy, Gaussian blur (%)",
    "acc_invert": "accuracy, inverted (%)",
    "test_cvar": "CVaR of group test loss",
}


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of ``mean ± std`` for each metric (rows) and each set in ``results`` (columns)."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in METRICS:
        cells = [f"{results[n][key]:.2f} ± {results[n][key + '_std']:.2f}" for n in names]
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
