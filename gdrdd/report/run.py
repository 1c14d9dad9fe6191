"""Sweep report: ``python -m gdrdd.report <multirun folder or run folders...> [--out DIR]``.

Collects every ``metrics.json`` under the given folders (runs copied together from several machines work
too), groups the runs by method, data set, IPC, iterations, objective (``none`` or ``cvar-<target>`` at
each alpha), the robust objective's design options that differ from their defaults and a coreset start
(``options``, e.g. ``mix=0.5 shrink=16``, ``init=kcenter``), and writes ``report.md`` and ``report.csv``
(mean and std over seeds of accuracy, worst- and mean-group accuracy, corrupted accuracies and the CVaR of
group test loss) and ``report.png`` (accuracy and worst-group accuracy against alpha, one line per method,
data set, IPC, objective and options; ``cvar=none`` as a dashed line).

A run that also scored its set during distillation (``eval.at=[100,400]``, ``eval.every``) counts as one run per
budget it was scored at (the set after that many iterations, as a shorter run with the same seed would have
made it).

Where a setting has plain runs (``cvar=none`` from the method's own start) of the same method, data set, IPC
and iterations, ``report.md`` also holds its *paired* differences from them: the setting minus plain, per seed
(same seed: same initial images, real batches and evaluation networks), mean and std over the seeds both have
(``paired_differences.csv``). Pairing removes the variance the two runs share, which dominates small cells
such as the worst class x subgroup accuracy. Where a setting's paired differences exist at two or more
budgets, ``trend.png`` draws them against iterations (overall, the subgroups kept at 25 % and 5 % and the worst
cell on a shift benchmark; else overall and worst group).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from gdrdd.config.schema import CvarSchema
from gdrdd.distill.coreset import SELECTIONS
from gdrdd.evaluation.tables import shown_metrics
from gdrdd.utils.figures import pyplot, save_png
from gdrdd.utils.files import atomic_write, write_text

KEYS = ("method", "dataset", "ipc", "iterations", "objective", "alpha", "options")
SETTING = tuple(k for k in KEYS if k != "iterations")  # a setting, whatever its budget
TREND_METRICS = {"acc": "overall", "acc_kept25": "subgroups kept at 25 %", "acc_kept5": "subgroups kept at 5 %",
                 "worst_cell_acc": "worst class x subgroup cell", "worst_group_acc": "worst test group"}
# The robust objective's design options; at their schema defaults they are not shown in ``options``.
OPTION_DEFAULTS = {k: getattr(CvarSchema(), k)
                   for k in ("weighting", "mix", "min_count", "shrink", "warmup", "features", "sampling", "groups")}


def run_records(path: Path) -> list[dict[str, Any]]:
    """One run's identifying keys, seed and distilled-set metrics from its ``metrics.json``: the final set, and
    one record per intermediate evaluation (``eval.at`` / ``eval.every``, under ``during``) as the run at that
    many iterations (none if it has no scored distilled set, e.g. a ``method=random`` run)."""
    data = json.loads(path.read_text())
    scored = data.get("scored", {}).get("distilled")
    if scored is None or "method" not in data:  # a random-subset run, or an evaluate.py result
        return []
    cvar = data.get("cvar", {})
    robust = cvar.get("name") == "cvar"
    alpha = float(cvar["alpha"]) if robust else None
    objective = f"cvar-{cvar.get('target', 'matching')}" if robust else "none"
    options = " ".join(filter(None, [design_options(cvar) if robust else "", start_option(data.get("init"))]))
    if (data.get("shift") or {}).get("balanced_batches"):
        options = f"{options} balanced_batches".strip()  # the oracle control of the shift benchmark
    run = {"method": data["method"], "dataset": data["dataset"], "ipc": data["ipc"], "objective": objective,
           "alpha": alpha, "options": options, "seed": data.get("seed"), "path": str(path.parent)}
    budgets = [(point["iteration"], point["metrics"]) for point in data.get("during", [])]
    budgets.append((data.get("iterations"), scored))
    return [{**run, "iterations": n, "metrics": {k: m[k] for k in shown_metrics(m)}} for n, m in budgets]


def design_options(cvar: dict[str, Any]) -> str:
    """The robust objective's design options that differ from their defaults, as ``key=value`` words."""
    changed = {k: cvar[k] for k, default in OPTION_DEFAULTS.items() if k in cvar and cvar[k] != default}
    if changed.get("features") == "encoder":
        changed["encoder_epochs"] = cvar.get("encoder_epochs")
    if changed.get("features") == "evaluation":
        changed["refresh"] = cvar.get("refresh")
    if changed.get("sampling") == "rarity":
        changed["rarity_power"] = cvar.get("rarity", {}).get("power")
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())


def start_option(init: dict[str, Any] | None) -> str:
    """A coreset start (``method.init=kcenter|herding``, with ``init_epochs`` when its network was trained) as an
    option word; a method's own starts (real, first, noise images) are part of the base method and show nothing."""
    if not init or init.get("init") not in SELECTIONS:
        return ""
    epochs = init.get("init_epochs", 0)
    return f"init={init['init']}" + (f" init_epochs={epochs}" if epochs else "")


def collect(folders: list[Path]) -> list[dict[str, Any]]:
    files = dict.fromkeys(f.resolve() for folder in folders
                          for f in ([folder] if folder.is_file() else sorted(folder.rglob("metrics.json"))))
    return [r for f in files for r in run_records(f)]  # each file once, even if folders overlap


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, data set, IPC, iterations, objective, alpha, options): ``<metric>`` mean,
    ``<metric>_std``, ``seeds``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in KEYS)].append(r)
    rows = []
    def order(k: tuple) -> tuple:  # method, data set, IPC, iterations, plain first, objective, alpha, options
        return (*k[:3], k[3] or 0, k[4] != "none", k[4], -1.0 if k[5] is None else k[5], k[6])

    for key in sorted(groups, key=order):
        runs = groups[key]
        row: dict[str, Any] = dict(zip(KEYS, key))
        row["seeds"] = len(runs)
        for metric in metric_columns(runs):
            values = [r["metrics"][metric] for r in runs if metric in r["metrics"]]
            if values:
                row[metric] = statistics.fmean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def paired_differences(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting other than plain ``cvar=none`` that has plain runs of the same method, data set, IPC and
    iterations: ``<metric>`` = mean over the shared seeds of (setting - plain), ``<metric>_std``, ``seeds``."""
    def is_plain(r: dict[str, Any]) -> bool:
        return r["objective"] == "none" and not r["options"]

    def partner(r: dict[str, Any]) -> tuple:
        return r["method"], r["dataset"], r["ipc"], r["iterations"], r["seed"]

    plain = {partner(r): r for r in records if is_plain(r)}
    pairs: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for r in records:
        base = plain.get(partner(r))
        if not is_plain(r) and base is not None:
            pairs[tuple(r[k] for k in KEYS)].append((r, base))
    deltas = [{**dict(zip(KEYS, key)), "seed": run["seed"],
               "metrics": {m: run["metrics"][m] - base["metrics"][m] for m in run["metrics"] if m in base["metrics"]}}
              for key, matched in pairs.items() for run, base in matched]
    return summarise(deltas)


def metric_columns(records: list[dict[str, Any]]) -> list[str]:
    """The metrics any of ``records`` (run records or summary rows) has, in table order."""
    present = {m: 0.0 for r in records for m in r.get("metrics", r)}
    return shown_metrics(present)


def markdown(rows: list[dict[str, Any]], signed: bool = False) -> str:
    """``signed``: cells as differences (``+1.20 ± 0.30``)."""
    metrics = metric_columns(rows)
    number = "{:+.2f}" if signed else "{:.2f}"
    head = ["method", "dataset", "IPC", "iterations", "objective", "alpha", "options", "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["dataset"], str(r["ipc"]), "-" if r["iterations"] is None else str(r["iterations"]),
                 r["objective"], "-" if r["alpha"] is None else f"{r['alpha']:g}", r["options"] or "-",
                 str(r["seeds"])]
        cells += [f"{number.format(r[m])} ± {r[m + '_std']:.2f}" if m in r else "-" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = [*KEYS, "seeds", *(f for m in metric_columns(rows) for f in (m, f"{m}_std"))]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """Accuracy and worst-group accuracy against alpha (error bars: std over seeds)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        series[(r["method"], r["dataset"], r["ipc"], f"{r['objective']} {r['options']}".strip())].append(r)
    for ax, metric, title in zip(axes, ("acc", "worst_group_acc"), ("test accuracy (%)", "worst-group accuracy (%)")):
        for (method, dataset, ipc, objective), points in series.items():
            label = f"{method} {dataset} IPC {ipc}"
            if objective == "none":
                ax.axhline(points[0][metric], linestyle="--", linewidth=1, label=f"{label} cvar=none")
                continue
            points = sorted(points, key=lambda p: p["alpha"])
            ax.errorbar([p["alpha"] for p in points], [p[metric] for p in points],
                        yerr=[p[f"{metric}_std"] for p in points], marker="o", capsize=3, label=f"{label} {objective}")
        ax.set_xlabel("CVaR alpha")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def budget_trends(paired: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Paired-difference rows grouped by setting (``SETTING``), in iteration order, for the settings scored at two
    or more budgets."""
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in paired:
        if r["iterations"] is not None:
            series[tuple(r[k] for k in SETTING)].append(r)
    return {k: sorted(v, key=lambda r: r["iterations"]) for k, v in series.items()
            if len({r["iterations"] for r in v}) > 1}


def trend_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The trend's panels: overall, 25 %, 5 % and worst cell on a shift benchmark, else overall and worst group."""
    present = [m for m in TREND_METRICS if any(m in r for r in rows)]
    return [m for m in present if m != "worst_group_acc"] if "worst_cell_acc" in present else present


def plot_trend(path: Path, trends: dict[tuple, list[dict[str, Any]]]) -> None:
    """Paired differences (setting - plain, error bars: std over seeds) against iterations, one panel per metric."""
    plt = pyplot()
    metrics = trend_metrics([r for rows in trends.values() for r in rows])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for key, rows in trends.items():
            setting = dict(zip(SETTING, key))
            label = " ".join(str(v) for v in (setting["method"], setting["objective"], setting["alpha"],
                                              setting["options"]) if v not in (None, ""))
            points = [r for r in rows if metric in r]
            ax.errorbar([r["iterations"] for r in points], [r[metric] for r in points],
                        yerr=[r[f"{metric}_std"] for r in points], marker="o", capsize=3, label=label)
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("distillation iterations")
        ax.set_ylabel("setting - plain (points)")
        ax.set_title(TREND_METRICS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="multirun folders, run folders or metrics.json files")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.* (default: the first folder)")
    args = parser.parse_args(argv)
    unreadable = [str(f) for f in args.folders if not f.is_dir() and f.name != "metrics.json"]
    if unreadable:
        parser.error(f"{', '.join(unreadable)}: neither a folder nor a metrics.json file; give multirun folders, run "
                     "folders or their metrics.json files (a shell pattern like runs/*_seed* also matches log files)")
    records = collect(args.folders)
    if not records:
        parser.error(f"no metrics.json with a distilled set under {', '.join(map(str, args.folders))}")
    rows = summarise(records)
    out = args.out or (args.folders[0] if args.folders[0].is_dir() else args.folders[0].parent)
    table = markdown(rows)
    paired = paired_differences(records)
    trends = budget_trends(paired)
    if paired:
        table += ("\n\nPaired differences from `cvar=none` (the setting minus plain, per seed; mean ± std over the "
                  "shared seeds, counted in `seeds`):\n\n" + markdown(paired, signed=True))
        write_csv(out / "paired_differences.csv", paired)
        if trends:
            plot_trend(out / "trend.png", trends)
    write_text(out / "report.md", table + "\n")
    write_csv(out / "report.csv", rows)
    plot(out / "report.png", rows)
    print(f"{len(records)} runs, {len(rows)} settings\n{table}\nwritten: {out / 'report.md'}, report.csv, report.png"
          + (", trend.png" if trends else ""))
    return rows


if __name__ == "__main__":
    main()
