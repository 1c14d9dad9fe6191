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
    """Markdown table of ``mean ± std`` for each metric (rows) and each set in ``results`` (columns); metrics of
    further architectures (``<arch>/<metric>``) follow as rows labelled ``[<arch>]``."""
    names = list(results)
    first = results[names[0]]
    architectures = list(dict.fromkeys(k.split("/")[0] for k in first if "/" in k))
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for prefix in ["", *(f"{a}/" for a in architectures)]:
        for key in METRICS:
            full = prefix + key
            if full not in first:
                continue
            cells = [f"{results[n][full]:.2f} ± {results[n][full + '_std']:.2f}" for n in names]
            label = LABELS[key] + (f" [{prefix[:-1]}]" if prefix else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
