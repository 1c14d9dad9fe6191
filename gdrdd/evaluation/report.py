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
