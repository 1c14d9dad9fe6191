"""Sweep report: ``python -m gdrdd.report <multirun folder or run folders...> [--out DIR]``.

Collects every ``metrics.json`` under the given folders (runs copied together from several machines work
too), groups the runs by their *setting* (every config value that can change the result,
``gdrdd.config.setting``: runs differ only in their seed within a row) and budget, and writes ``report.md`` and
``report.csv``
(mean and std over seeds of accuracy, worst- and mean-group accuracy, corrupted accuracies and the CVaR of
group test loss). A row shows its method, data set, IPC, iterations, objective (``none`` or ``cvar-<target>``)
and alpha, and under ``options`` every other value that differs between the runs of that method, data set and
IPC (``mix=1 shrink=16``, ``init=kcenter``, ``model.width=32``, ``eval.epochs=1000``; a ``cvar`` option at its
default and a method's own start are not shown); ``report.csv`` also holds the setting's short hash
(``setting``). It also writes ``report.png`` (accuracy and worst-group accuracy against alpha, one line per method,
data set, IPC, objective and options; ``cvar=none`` as a dashed line).

A run that also scored its set during distillation (``eval.at=[100,400]``, ``eval.every``) counts as one run per
budget it was scored at (the set after that many iterations, as a shorter run with the same seed would have
made it). A run still in progress (its ``run.json``, written at the start, without a ``metrics.json`` yet)
counts with the intermediate evaluations its ``eval_during.jsonl`` holds so far, so a long run's trend can be
read before it ends.

Where a setting has plain runs (``cvar=none`` from the method's own start, without the oracle's balanced
batches) that agree with it in everything but those levers and the seed, at the same iterations, ``report.md``
also holds its *paired* differences from them: the setting minus plain, per seed
(same seed: same initial images, real batches and evaluation networks), mean and std over the seeds both have
(``paired_differences.csv``). Pairing removes the variance the two runs share, which dominates small cells
such as the worst class x subgroup accuracy. Where a setting's paired differences exist at two or more
budgets, ``trend.png`` draws them against iterations (overall, the subgroups kept at 25 % and 5 % and the worst
cell on a shift benchmark; else overall and worst group). On a shift benchmark ``report.md`` also says where each
paired difference goes, cell by cell (``cell_shift.csv``; ``gdrdd.report.cells``): the mean difference over the
third of class x subgroup cells plain gets least right, the middle third and the third it gets most right.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gdrdd.config.schema import CvarSchema
from gdrdd.config.setting import canonical, setting_id
from gdrdd.distill.coreset import SELECTIONS
from gdrdd.evaluation.callback import DURING, read_during
from gdrdd.evaluation.tables import shown_metrics
from gdrdd.report.cells import SHIFT_KEYS, cell_metrics, cell_shift
from gdrdd.utils.figures import pyplot, save_png
from gdrdd.utils.files import atomic_write, write_text
from gdrdd.utils.nested import flatten

METRICS_FILE, RUN_FILE = "metrics.json", "run.json"  # a finished run's results; a run's identity, from its start
KEYS = ("method", "dataset", "ipc", "iterations", "objective", "alpha", "options")
TREND_METRICS = {"acc": "overall", "acc_kept25": "subgroups kept at 25 %", "acc_kept5": "subgroups kept at 5 %",
                 "worst_cell_acc": "worst class x subgroup cell", "worst_group_acc": "worst test group"}
# Setting keys shown as columns; the rest is shown under ``options`` where it differs.
COLUMNS = ("method.name", "dataset.name", "ipc", "cvar.name", "cvar.alpha", "cvar.target")
# The levers a paired difference measures: the objective, a coreset start (``method.init`` in ``SELECTIONS``,
# with its ``init_epochs``), the k-means real batch (``method.real_batch``, with its centres), the oracle's
# balanced batches.
LEVERS = ("cvar.", "method.init", "method.init_epochs", "method.real_batch", "method.kmeans_centres",
          "dataset.shift.balanced_batches")
CVAR_DEFAULTS = flatten(asdict(CvarSchema()), "cvar.")


def run_records(path: Path) -> list[dict[str, Any]]:
    """One run's setting, seed and distilled-set metrics from its ``metrics.json``: the final set, and one record
    per intermediate evaluation (``eval.at`` / ``eval.every``, under ``during``) as the run at that many
    iterations (none if it has no scored distilled set, e.g. a ``method=random`` run). For a run in progress,
    ``path`` is its ``run.json`` and the records are the intermediate evaluations in its ``eval_during.jsonl``."""
    data = json.loads(path.read_text())
    budgets = list(read_during(path.parent / DURING).items()) if path.name == RUN_FILE else \
        [(point["iteration"], point["metrics"]) for point in data.get("during", [])]
    scored = data.get("scored", {}).get("distilled")
    if scored is not None:  # none in a random-subset run or a run in progress
        budgets.append((data.get("iterations"), scored))
    if not budgets or "method" not in data:  # nothing scored yet, a random-subset run, or an evaluate.py result
        return []
    setting = flatten(data["setting"]) if "setting" in data else recorded_setting(data)
    # The budget is a column of its own; a null value is left out, so an option added later whose null keeps the
    # earlier behaviour leaves the records written before it in the same setting.
    setting = {k: canonical(v) for k, v in setting.items() if k != "iterations" and v is not None}
    robust = setting["cvar.name"] == "cvar"
    run = {"method": setting["method.name"], "dataset": setting["dataset.name"], "ipc": setting["ipc"],
           "objective": f"cvar-{setting.get('cvar.target', 'matching')}" if robust else "none",
           "alpha": float(setting["cvar.alpha"]) if robust else None, "options": "", "setting": setting,
           "setting_id": setting_id(setting), "seed": data.get("seed"), "path": str(path.parent)}
    return [{**run, "iterations": n, "metrics": {k: m[k] for k in shown_metrics(m)}, "cells": cell_metrics(m)}
            for n, m in budgets]


def recorded_setting(data: dict[str, Any]) -> dict[str, Any]:
    """The setting of a ``metrics.json`` written before it recorded its whole setting: the method, data set, IPC,
    the ``cvar`` group (its options at their defaults where not recorded), the shift benchmark and the start."""
    cvar = {**CVAR_DEFAULTS, **flatten(data.get("cvar", {}), "cvar.")} if data.get("cvar", {}).get("name") == "cvar" \
        else {"cvar.name": "none"}
    return {"method.name": data["method"], "dataset.name": data["dataset"], "ipc": data["ipc"], **cvar,
            **flatten(data.get("shift") or {}, "dataset.shift."), **flatten(data.get("init") or {}, "method.")}


def label_options(records: list[dict[str, Any]]) -> None:
    """Fill each record's ``options``: the setting values (not shown as columns) that differ between the records
    of its method, data set and IPC (a value left out, null, differs from any other), as ``key=value`` words
    (``cvar.`` and ``method.`` dropped from ``cvar`` options and the start), leaving out a ``cvar`` option at its
    default, ``init_epochs`` 0 and the balanced batches when off."""
    families: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        families[(r["method"], r["dataset"], r["ipc"])].append(r)
    for family in families.values():
        keys = dict.fromkeys(k for r in family for k in r["setting"])
        varying = [k for k in keys if k not in COLUMNS
                   and len({json.dumps(r["setting"].get(k)) for r in family}) > 1]
        for r in family:
            words = (option_word(k, r["setting"][k], r["setting"]) for k in varying if k in r["setting"])
            r["options"] = " ".join(w for w in words if w)


def option_word(key: str, value: Any, setting: dict[str, Any]) -> str:
    """``key=value`` as a report shows it (``""``: not shown)."""
    if key.startswith("cvar."):
        if setting.get("cvar.name") != "cvar" or CVAR_DEFAULTS.get(key) == value:
            return ""
        key = key[len("cvar."):]
    elif key in ("method.init", "method.init_epochs"):
        if key == "method.init_epochs" and not value:
            return ""
        key = key[len("method."):]
    elif key == "dataset.shift.balanced_batches":
        return "balanced_batches" if value else ""
    shown = f"{value:g}" if isinstance(value, float) else (list(value) if isinstance(value, tuple) else value)
    return f"{key}={shown}".replace(" ", "")


def collect(folders: list[Path]) -> list[dict[str, Any]]:
    """The records of every finished run (``metrics.json``) and run in progress (``run.json`` without
    ``metrics.json`` beside it) under ``folders`` (folders, or those files themselves)."""
    found = [[folder] if folder.is_file() else sorted(folder.rglob(METRICS_FILE)) + sorted(folder.rglob(RUN_FILE))
             for folder in folders]
    files = dict.fromkeys(f.resolve() for paths in found for f in paths
                          if f.name == METRICS_FILE or not (f.parent / METRICS_FILE).exists())
    records = [r for f in files for r in run_records(f)]  # each file once, even if folders overlap
    label_options(records)
    return records


def summarise(records: list[dict[str, Any]], columns: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per setting and budget: the ``KEYS``, ``setting`` (its short hash), ``<metric>`` mean,
    ``<metric>_std``, ``seeds``, for the metrics in ``columns`` (default: the tabulated ones the runs have)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["setting_id"], r["iterations"])].append(r)
    rows = []

    def order(runs: list[dict]) -> tuple:  # method, data set, IPC, iterations, plain first, objective, alpha, options
        r = runs[0]
        return (r["method"], r["dataset"], r["ipc"], r["iterations"] or 0, r["objective"] != "none", r["objective"],
                -1.0 if r["alpha"] is None else r["alpha"], r["options"])

    for runs in sorted(groups.values(), key=order):
        row: dict[str, Any] = {k: runs[0][k] for k in KEYS}
        row["setting"], row["seeds"] = runs[0]["setting_id"], len(runs)
        for metric in columns or metric_columns(runs):
            values = [r["metrics"][metric] for r in runs if metric in r["metrics"]]
            if values:
                row[metric] = statistics.fmean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def is_plain(record: dict[str, Any]) -> bool:
    """``cvar=none`` from the method's own start (not a coreset), with random real batches (not the k-means
    batch), without the oracle's balanced batches."""
    s = record["setting"]
    return (s["cvar.name"] == "none" and s.get("method.init") not in SELECTIONS
            and s.get("method.real_batch", "random") == "random" and not s.get("dataset.shift.balanced_batches"))


def partner_key(record: dict[str, Any]) -> tuple:
    """What a setting and its plain partner share: the setting without the ``LEVERS``, the budget and the seed."""
    rest = {k: v for k, v in record["setting"].items() if not k.startswith(LEVERS)}
    return setting_id(rest), record["iterations"], record["seed"]


def plain_partner(record: dict[str, Any], plain: dict[tuple, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The plain run to subtract from ``record``: among the plain runs that share its ``partner_key``, the one with
    its start when that is one of the method's own (real, first, noise images); for a coreset start the only own
    start there is (none when plain runs from different own starts leave it ambiguous)."""
    candidates = plain.get(partner_key(record), [])
    start = record["setting"].get("method.init")
    if start not in SELECTIONS:
        candidates = [c for c in candidates if c["setting"].get("method.init") == start]
    return candidates[0] if len({json.dumps(c["setting"].get("method.init")) for c in candidates}) == 1 else None


def pairs(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each record of a setting other than plain with its plain partner (``plain_partner``), where it has one."""
    plain: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if is_plain(r):
            plain[partner_key(r)].append(r)
    partners = ((r, None if is_plain(r) else plain_partner(r, plain)) for r in records)
    return [(r, base) for r, base in partners if base is not None]


def paired_differences(matched: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per setting other than plain among the ``pairs``: ``<metric>`` = mean over the shared seeds of
    (setting - plain), ``<metric>_std``, ``seeds``."""
    return summarise([{**r, "metrics": {m: r["metrics"][m] - base["metrics"][m] for m in r["metrics"]
                                        if m in base["metrics"]}} for r, base in matched])


def cell_shifts(matched: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per setting among the ``pairs`` on a shift benchmark: where its difference from plain goes, cell
    by cell (``gdrdd.report.cells``: the hardest, middle and easiest third of plain's cells, and the
    correlation), mean and std over the shared seeds."""
    shifts = [{**r, "metrics": cell_shift(r["cells"], base["cells"])} for r, base in matched]
    return summarise([s for s in shifts if s["metrics"]], columns=list(SHIFT_KEYS))


def metric_columns(records: list[dict[str, Any]]) -> list[str]:
    """The metrics any of ``records`` (run records or summary rows) has, in table order."""
    present = {m: 0.0 for r in records for m in r.get("metrics", r)}
    return shown_metrics(present)


def markdown(rows: list[dict[str, Any]], signed: bool = False, columns: list[str] | None = None) -> str:
    """``signed``: cells as differences (``+1.20 ± 0.30``); ``columns``: the metrics (default: those tabulated)."""
    metrics = columns or metric_columns(rows)
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


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    fields = [*KEYS, "setting", "seeds", *(f for m in columns or metric_columns(rows) for f in (m, f"{m}_std"))]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """Accuracy and worst-group accuracy against alpha (error bars: std over seeds), each setting at its largest
    budget (``trend.png`` draws the budgets); a setting without alpha (``cvar=none``, with any options) as a
    dashed line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    final: dict[str, dict] = {}
    for r in rows:
        if r["setting"] not in final or (r["iterations"] or 0) > (final[r["setting"]]["iterations"] or 0):
            final[r["setting"]] = r
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in final.values():
        series[(r["method"], r["dataset"], r["ipc"], f"{r['objective']} {r['options']}".strip())].append(r)
    for ax, metric, title in zip(axes, ("acc", "worst_group_acc"), ("test accuracy (%)", "worst-group accuracy (%)")):
        for (method, dataset, ipc, objective), points in series.items():
            label = f"{method} {dataset} IPC {ipc}"
            if points[0]["alpha"] is None:
                ax.axhline(points[0][metric], linestyle="--", linewidth=1, label=f"{label} {objective}")
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


def budget_trends(paired: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Paired-difference rows grouped by setting (its hash, whatever the budget), in iteration order, for the
    settings scored at two or more budgets."""
    series: dict[str, list[dict]] = defaultdict(list)
    for r in paired:
        if r["iterations"] is not None:
            series[r["setting"]].append(r)
    return {k: sorted(v, key=lambda r: r["iterations"]) for k, v in series.items()
            if len({r["iterations"] for r in v}) > 1}


def trend_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The trend's panels: overall, 25 %, 5 % and worst cell on a shift benchmark, else overall and worst group."""
    present = [m for m in TREND_METRICS if any(m in r for r in rows)]
    return [m for m in present if m != "worst_group_acc"] if "worst_cell_acc" in present else present


def plot_trend(path: Path, trends: dict[str, list[dict[str, Any]]]) -> None:
    """Paired differences (setting - plain, error bars: std over seeds) against iterations, one panel per metric."""
    plt = pyplot()
    metrics = trend_metrics([r for rows in trends.values() for r in rows])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    budgets = sorted({r["iterations"] for rows in trends.values() for r in rows})
    for ax, metric in zip(axes[0], metrics):
        for rows in trends.values():
            label = " ".join(str(rows[0][k]) for k in ("method", "objective", "alpha", "options")
                             if rows[0][k] not in (None, ""))
            points = [r for r in rows if metric in r]
            ax.errorbar([r["iterations"] for r in points], [r[metric] for r in points],
                        yerr=[r[f"{metric}_std"] for r in points], marker="o", capsize=3, label=label)
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{n:,}" for n in budgets], fontsize=7)  # the measured budgets, not powers of ten
        ax.minorticks_off()
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
    unreadable = [str(f) for f in args.folders if not f.is_dir() and f.name not in (METRICS_FILE, RUN_FILE)]
    if unreadable:
        parser.error(f"{', '.join(unreadable)}: neither a folder nor a metrics.json or run.json file; give multirun "
                     "folders, run folders or their metrics.json files (a shell pattern like runs/*_seed* also "
                     "matches log files)")
    records = collect(args.folders)
    if not records:
        parser.error(f"no metrics.json with a distilled set, and no run in progress with an intermediate evaluation "
                     f"(run.json and eval_during.jsonl), under {', '.join(map(str, args.folders))}")
    rows = summarise(records)
    out = args.out or (args.folders[0] if args.folders[0].is_dir() else args.folders[0].parent)
    table = markdown(rows)
    matched = pairs(records)
    paired = paired_differences(matched)
    trends = budget_trends(paired)
    if paired:
        table += ("\n\nPaired differences from `cvar=none` (the setting minus plain, per seed; mean ± std over the "
                  "shared seeds, counted in `seeds`):\n\n" + markdown(paired, signed=True))
        write_csv(out / "paired_differences.csv", paired)
        shifts = cell_shifts(matched)
        if shifts:
            table += ("\n\nWhere the paired differences go, cell by cell (class x subgroup cells ordered by the plain "
                      "run's accuracy: the mean difference over its hardest, middle and easiest third, and the "
                      "correlation of plain cell accuracy with the difference):\n\n"
                      + markdown(shifts, signed=True, columns=list(SHIFT_KEYS)))
            write_csv(out / "cell_shift.csv", shifts, columns=list(SHIFT_KEYS))
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
