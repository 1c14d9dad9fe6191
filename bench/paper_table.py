"""The robust objective on one GPU in one prepared call, with a table of plain against robust at the end
(docs/robust.md, "The reference budget on a GPU"). Three tables:

- ``reference`` (the default), on the CIFAR-10 subpopulation-shift benchmark: plain vs ``cvar=default`` DM at
  IPC 10 for its reference 20,000 iterations and plain vs ``cvar=release`` IDC at IPC 10 for as much of its budget
  as fits, seed 0, ConvNet-3 width 128, bfloat16.
- ``standard``: the same four runs on standard CIFAR-10 (no planted subgroups), scored as the paper scores them:
  accuracy, Cluster-min (the worst of 10 k-means groups of the test pixels), Gaussian noise, blur, inverted.
- ``reduced``: the reduced converged protocol (``experiment=reduced_dm``: width 32 for distillation and
  evaluation, float32, trend points ``eval.at``) for plain vs ``cvar=default`` DM to 20,000 iterations, seeds 0, 1
  and 2, which a 2-core CPU needs about 2.5 hours per run for.

    python bench/paper_table.py --data-dir DATA --out OUT [--runs RUNS] [--table standard|reduced] [--minutes 9]
    python bench/paper_table.py --smoke --out OUT [--table standard|reduced]   (the embedded data, a CPU, minutes)

(bench/paper_table.sh runs the first.) A table's runs start together on the one device (small ConvNet kernels leave
most of an H100 idle, so runs that share it finish sooner than one after another). Each distillation is bounded by
Lightning's ``max_time``: a run that would not finish stops there and is scored as it stands, and the table says how
many iterations it reached. A pair whose runs stopped at different iterations is marked in its difference row.

Writes the run folders and their logs to RUNS (``--runs``, default OUT_runs beside OUT), with ``gdrdd.report`` over
the finished runs in RUNS/report (paired mean ± std over seeds, the trend over ``eval.at``, the cell table), and at
most five files to OUT, so that a job whose outputs are copied back file by file needs only OUT: paper_table.md and
paper_table.json (each run's scores and each pair's difference), report.md and trend.png (the report's), runs.tar.gz
(each run's config, records and log). Prints the table, and the end of each failed run's log. Refused before
anything starts: a RUNS that already holds one of the table's runs or logs, an OUT that already holds one of those
five files, and, off ``--smoke``, a machine without a CUDA device or a ``--data-dir`` without CIFAR-10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gdrdd from this checkout, installed or not (the script runs from bench/)
SHIFT_COLUMNS = (("acc", "acc"), ("acc_kept100", "kept 100 %"), ("acc_kept25", "kept 25 %"),
                 ("acc_kept5", "kept 5 %"), ("worst_cell_acc", "worst cell"))
PAPER_COLUMNS = (("acc", "acc"), ("worst_group_acc", "Cluster-min"), ("acc_noise", "noise"), ("acc_blur", "blur"),
                 ("acc_invert", "inverted"))


@dataclass(frozen=True)
class Table:
    """One device call: ``runs`` maps a run's name (its method first, ``dm_...``) to its ``train.py`` overrides,
    ``pairs`` lists (robust run, plain run), ``gpu`` holds the overrides every run adds on the device, ``title``
    heads the printed table, ``columns`` are its (metric, label) columns, ``smoke_data`` is the embedded data set
    that ``--smoke`` runs on instead."""

    title: str
    runs: dict[str, list[str]]
    pairs: list[tuple[str, str]]
    gpu: list[str]
    columns: tuple[tuple[str, str], ...] = SHIFT_COLUMNS
    smoke_data: str = "mnist_mini_shift"


def reference_budget(dataset: str, title: str, **scoring) -> Table:
    """Plain vs ``cvar=default`` DM for its 20,000 iterations and plain vs ``cvar=release`` IDC for what fits, IPC 10,
    seed 0, ConvNet-3 width 128 in bfloat16, on ``dataset``; ``scoring``: the table's columns and smoke data."""
    return Table(
        title=f"{title}, IPC 10, seed 0, ConvNet-3 width 128, 3 networks x 300 epochs",
        # experiment=reference: the methods' own batches (DM's 256 real images per class), not the quickstart's;
        # DM embeds all classes' real images in one pass (method.embed_batch=null: fewer launches, the same
        # embeddings up to rounding)
        runs={"dm_plain": ["experiment=reference", "method=dm", "iterations=20000", "cvar=none", "seed=0",
                           "method.embed_batch=null"],
              "dm_default": ["experiment=reference", "method=dm", "iterations=20000", "cvar=default", "seed=0",
                             "method.embed_batch=null"],
              "idc_plain": ["experiment=reference", "method=idc", "eval=idc", "iterations=2000", "cvar=none", "seed=0"],
              "idc_release": ["experiment=reference", "method=idc", "eval=idc", "iterations=2000", "cvar=release",
                              "seed=0"]},
        pairs=[("dm_default", "dm_plain"), ("idc_release", "idc_plain")],
        gpu=[f"dataset={dataset}", "trainer.precision=bf16-mixed", "eval.precision=bf16-mixed"], **scoring)


REDUCED_SEEDS = (0, 1, 2)
TABLES = {
    "reference": reference_budget("cifar10_shift", "CIFAR-10 subpopulation shift"),
    "standard": reference_budget("cifar10", "standard CIFAR-10, the paper's robustness scores",
                                 columns=PAPER_COLUMNS, smoke_data="mnist_mini"),
    "reduced": Table(
        title="CIFAR-10 subpopulation shift, IPC 10, the reduced protocol (experiment=reduced_dm: ConvNet-3 width 32, "
              "3 networks x 300 epochs), seeds 0-2",
        # eager (method.compile=false): six processes compiling at once would spend minutes of the budget; one
        # embedding pass for all classes (method.embed_batch=null)
        runs={f"dm_{name}_s{seed}": ["experiment=reduced_dm", "method.compile=false", "method.embed_batch=null",
                                     f"cvar={cvar}", f"seed={seed}"]
              for seed in REDUCED_SEEDS for name, cvar in (("plain", "none"), ("default", "default"))},
        pairs=[(f"dm_default_s{seed}", f"dm_plain_s{seed}") for seed in REDUCED_SEEDS],
        gpu=[]),  # float32, as on the CPU
}
SMOKE = ["ipc=2", "eval.epochs=2", "trainer.accelerator=cpu", "method.batch_real=16"]
SMOKE_BY_METHOD = {"dm": ["iterations=3", "eval.at=[2]"],
                   "idc": ["iterations=1", "method.inner_loop=2", "method.n_data=32"]}


def clock(minutes: float) -> str:
    """Lightning's ``max_time`` string ``DD:HH:MM:SS`` of ``minutes``."""
    seconds = int(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def commands(table: Table, out: Path, data_dir: str | None, distill_minutes: float,
             smoke: bool) -> dict[str, list[str]]:
    """The ``train.py`` command of every run of ``table``."""
    common = ["ipc=10", "eval.nets=3", "eval.epochs=300", "eval.baseline=false", "eval.coverage=false",
              "checkpoint.every=0", "trainer.enable_progress_bar=false", f"+trainer.max_time={clock(distill_minutes)}"]
    common += [*SMOKE, f"dataset={table.smoke_data}"] if smoke else [f"paths.data_dir={data_dir}", "trainer=gpu",
                                                                     *table.gpu]
    return {name: [sys.executable, "train.py", *overrides, *common,
                   *(SMOKE_BY_METHOD[name.split("_")[0]] if smoke else []), f"hydra.run.dir={out / name}"]
            for name, overrides in table.runs.items()}


def run_all(cmds: dict[str, list[str]], out: Path, threads: int) -> dict[str, int]:
    """Start every run at once (each with ``threads`` CPU threads), wait for all; their exit statuses."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HYDRA_FULL_ERROR": "1"}
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=(out / f"{name}.log").open("w"),
                                    stderr=subprocess.STDOUT) for name, cmd in cmds.items()}
    return {name: proc.wait() for name, proc in procs.items()}


def table(spec: Table, out: Path, statuses: dict[str, int]) -> tuple[str, dict]:
    """The runs' scores (iterations reached) and each pair's difference, as Markdown and as a dict."""
    runs = {}
    for name in spec.runs:
        path = out / name / "metrics.json"
        if statuses.get(name) == 0 and path.is_file():
            m = json.loads(path.read_text())
            runs[name] = {"iterations": m.get("iterations_timed", 0), "of": m["iterations"],
                          **{k: m["scored"]["distilled"][k] for k, _ in spec.columns}}
    lines = ["| run | iterations | " + " | ".join(label for _, label in spec.columns) + " |",
             "|---|---|" + "---|" * len(spec.columns)]
    for name in spec.runs:
        r = runs.get(name)
        cells = ([f"{r[k]:.2f}" for k, _ in spec.columns] if r
                 else ["failed: see " + f"{name}.log"] + [""] * (len(spec.columns) - 1))
        reached = f"{r['iterations']} / {r['of']}" if r else "-"
        lines.append(f"| {name} | {reached} | " + " | ".join(cells) + " |")
    for robust, plain in spec.pairs:
        if robust in runs and plain in runs:
            diff = [runs[robust][k] - runs[plain][k] for k, _ in spec.columns]
            reached = runs[robust]["iterations"], runs[plain]["iterations"]
            budgets = " " if reached[0] == reached[1] else f" unequal budgets: {reached[0]} vs {reached[1]} "
            lines.append(f"| {robust} − {plain} |{budgets}| " + " | ".join(f"{d:+.2f}" for d in diff) + " |")
    return "\n".join(lines), {"runs": runs, "statuses": statuses}


def report(runs: Path, finished: list[str]) -> None:
    """``gdrdd.report`` over the finished runs into RUNS/report (paired mean ± std over seeds, trend, cell table)."""
    from gdrdd.report.run import main as report_main

    if finished:
        report_main([*(str(runs / name) for name in finished), "--out", str(runs / "report")])


RUN_RECORDS = ("config.yaml", "run.json", "metrics.json", "eval_during.jsonl", "cell_accuracy.csv", "table.md")


def pack_runs(runs: Path, names: list[str], archive: Path) -> None:
    """``archive`` (``.tar.gz``): each run's log and its small records (``RUN_RECORDS``, where written), under
    ``<run>/``; no images or checkpoints."""
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            for path in [runs / f"{name}.log", *(runs / name / f for f in RUN_RECORDS)]:
                if path.is_file():
                    tar.add(path, arcname=f"{name}/{path.name}")


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a run's log (or a note that it has none)."""
    if not path.is_file():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def check_device_and_data(data_dir: str) -> str | None:
    """Why a device table cannot start (no CUDA device, or no CIFAR-10 in ``data_dir`` in a layout its reader,
    ``gdrdd.data.cifar.find_layout``, accepts), or None."""
    import torch
    from common import compose_config

    from gdrdd.data.cifar import CIFAR10, find_layout
    from gdrdd.errors import DataNotFoundError
    from gdrdd.jobs.build import dataset_spec

    if not torch.cuda.is_available():
        return ("no CUDA device is visible to PyTorch (torch.cuda.is_available() is False); these tables run on a "
                "GPU: use --smoke to run them on the embedded data on a CPU")
    try:
        find_layout(CIFAR10, Path(data_dir), dataset_spec(compose_config(["dataset=cifar10"])))
    except DataNotFoundError as missing:
        return f"--data-dir: {missing} (bench/paper_table.sh unpacks cifar10-jpeg.tar.gz there)"
    return None


OUTPUTS = ("paper_table.md", "paper_table.json", "report.md", "trend.png", "runs.tar.gz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="CIFAR-10 (python pickles or train/test class folders)")
    parser.add_argument("--out", default="outputs/bench/paper_table", help="the table, the report and runs.tar.gz")
    parser.add_argument("--runs", help="where the run folders and logs go (default: OUT_runs beside OUT)")
    parser.add_argument("--table", choices=sorted(TABLES), default="reference", help="which runs (see above)")
    parser.add_argument("--minutes", type=float, default=9.0, help="the whole budget; distillation gets it less "
                        "the evaluation's and the start's share (3.5 minutes)")
    parser.add_argument("--smoke", action="store_true", help="the embedded data on a CPU, tiny budgets")
    args = parser.parse_args()
    if not args.smoke and not args.data_dir:
        parser.error("--data-dir is needed (a folder with CIFAR-10), or --smoke for the embedded data")
    spec = TABLES[args.table]
    out = Path(args.out).resolve()
    runs = Path(args.runs).resolve() if args.runs else out.with_name(out.name + "_runs")
    taken = [name for name in spec.runs if (runs / name).exists() or (runs / f"{name}.log").exists()]
    if taken:
        parser.error(f"--runs {runs} already holds the runs {', '.join(taken)} of this table; give another folder "
                     "(nothing was started or overwritten)")
    written = [name for name in OUTPUTS if (out / name).exists()]
    if written:
        parser.error(f"--out {out} already holds {', '.join(written)} of an earlier table; give another folder "
                     "(nothing was started or overwritten)")
    problem = None if args.smoke else check_device_and_data(args.data_dir)
    if problem:
        parser.error(problem)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    distill_minutes = max(0.5, args.minutes - 3.5)
    cmds = commands(spec, runs, args.data_dir, distill_minutes, args.smoke)
    statuses = run_all(cmds, runs, threads=max(1, (os.cpu_count() or 2) // len(cmds)))
    text, result = table(spec, runs, statuses)
    header = (f"{spec.title}; distillation bounded to {distill_minutes:g} minutes per run, all {len(cmds)} at once"
              if not args.smoke else f"smoke run of the {args.table} table")
    (out / "paper_table.md").write_text(f"{header}\n\n{text}\n")
    (out / "paper_table.json").write_text(json.dumps({**result, "commands": cmds}, indent=2, default=str) + "\n")
    for name, status in statuses.items():
        if status != 0:
            print(f"--- {name} exited with {status}; the end of {runs / name}.log:\n{log_tail(runs / f'{name}.log')}")
    print(f"{header}\n\n{text}")
    pack_runs(runs, list(cmds), out / "runs.tar.gz")
    try:  # the table and the runs' records are written: a failing report must not hide them
        report(runs, list(result["runs"]))
    except (Exception, SystemExit):
        print(f"--- the report over the finished runs failed (the table above stands):\n{traceback.format_exc()}")
    for name in ("report.md", "trend.png"):
        if (runs / "report" / name).is_file():
            shutil.copyfile(runs / "report" / name, out / name)
    return 0 if all(s == 0 for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
