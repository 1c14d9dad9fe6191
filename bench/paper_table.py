"""The robust objective at the reference DM budget on one GPU: plain vs ``cvar=default`` DM at IPC 10 for 20,000
iterations and plain vs ``cvar=release`` IDC at IPC 10 for as much of its budget as fits, one seed each, on the
CIFAR-10 subpopulation-shift benchmark, with the benchmark's table at the end (docs/robust.md, "The reference
budget on a GPU").

    python bench/paper_table.py --data-dir DATA --out OUT [--minutes 10]     (bench/paper_table.sh wraps it)
    python bench/paper_table.py --smoke --out OUT                            (the embedded data, a CPU, ~2 min)

The four runs start together on the one device (small ConvNet kernels leave most of an H100 idle, so runs that
share it finish sooner than one after another). Each distillation is bounded by Lightning's ``max_time``: a run
that would not finish stops there and is scored as it stands, and the table says how many iterations it reached.
Writes OUT/<run>/ (each run folder), OUT/paper_table.json and OUT/paper_table.md, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [("acc", "acc"), ("acc_kept100", "kept 100 %"), ("acc_kept25", "kept 25 %"), ("acc_kept5", "kept 5 %"),
           ("worst_cell_acc", "worst cell")]
# (run name, overrides): the pairs of the table, plain first.
RUNS = {
    "dm_plain": ["method=dm", "iterations=20000", "cvar=none"],
    "dm_default": ["method=dm", "iterations=20000", "cvar=default"],
    "idc_plain": ["method=idc", "eval=idc", "iterations=2000", "cvar=none"],
    "idc_release": ["method=idc", "eval=idc", "iterations=2000", "cvar=release"],
}
PAIRS = [("dm_default", "dm_plain"), ("idc_release", "idc_plain")]
SMOKE = ["dataset=mnist_mini_shift", "ipc=2", "eval.epochs=2", "trainer.accelerator=cpu", "method.batch_real=16"]
SMOKE_BY_RUN = {"dm": ["iterations=3"], "idc": ["iterations=1", "method.inner_loop=2", "method.n_data=32"]}


def clock(minutes: float) -> str:
    """Lightning's ``max_time`` string ``DD:HH:MM:SS`` of ``minutes``."""
    seconds = int(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def commands(out: Path, data_dir: str | None, distill_minutes: float, smoke: bool) -> dict[str, list[str]]:
    """The ``train.py`` command of every run."""
    common = ["ipc=10", "eval.nets=3", "eval.epochs=300", "eval.baseline=false", "eval.coverage=false", "seed=0",
              "checkpoint.every=0", "trainer.enable_progress_bar=false",
              f"+trainer.max_time={clock(distill_minutes)}"]
    if smoke:
        common += SMOKE
    else:
        common += ["dataset=cifar10_shift", f"paths.data_dir={data_dir}", "trainer=gpu",
                   "trainer.precision=bf16-mixed", "eval.precision=bf16-mixed"]
    return {name: [sys.executable, "train.py", *common, *overrides,
                   *(SMOKE_BY_RUN[name.split("_")[0]] if smoke else []), f"hydra.run.dir={out / name}"]
            for name, overrides in RUNS.items()}


def run_all(cmds: dict[str, list[str]], out: Path, threads: int) -> dict[str, int]:
    """Start every run at once (each with ``threads`` CPU threads), wait for all; their exit statuses."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HYDRA_FULL_ERROR": "1"}
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=(out / f"{name}.log").open("w"),
                                    stderr=subprocess.STDOUT) for name, cmd in cmds.items()}
    return {name: proc.wait() for name, proc in procs.items()}


def table(out: Path, statuses: dict[str, int]) -> tuple[str, dict]:
    """The runs' scores (iterations reached) and each pair's difference, as Markdown and as a dict."""
    runs = {}
    for name in RUNS:
        path = out / name / "metrics.json"
        if statuses.get(name) == 0 and path.is_file():
            m = json.loads(path.read_text())
            runs[name] = {"iterations": m.get("iterations_timed", 0), "of": m["iterations"],
                          **{k: m["scored"]["distilled"][k] for k, _ in COLUMNS}}
    lines = ["| run | iterations | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name in RUNS:
        r = runs.get(name)
        cells = [f"{r[k]:.2f}" for k, _ in COLUMNS] if r else ["failed: see " + f"{name}.log"] + [""] * 4
        reached = f"{r['iterations']} / {r['of']}" if r else "-"
        lines.append(f"| {name} | {reached} | " + " | ".join(cells) + " |")
    for robust, plain in PAIRS:
        if robust in runs and plain in runs:
            diff = [runs[robust][k] - runs[plain][k] for k, _ in COLUMNS]
            lines.append(f"| {robust} − {plain} | | " + " | ".join(f"{d:+.2f}" for d in diff) + " |")
    return "\n".join(lines), {"runs": runs, "statuses": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="CIFAR-10 (python pickles or train/test class folders)")
    parser.add_argument("--out", default="outputs/bench/paper_table")
    parser.add_argument("--minutes", type=float, default=10.0, help="the whole budget; distillation gets it less "
                        "the evaluation's and the start's share (3.5 minutes)")
    parser.add_argument("--smoke", action="store_true", help="the embedded data on a CPU, tiny budgets")
    args = parser.parse_args()
    if not args.smoke and not args.data_dir:
        parser.error("--data-dir is needed (a folder with CIFAR-10), or --smoke for the embedded data")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    distill_minutes = max(0.5, args.minutes - 3.5)
    cmds = commands(out, args.data_dir, distill_minutes, args.smoke)
    statuses = run_all(cmds, out, threads=2 if args.smoke else 4)
    text, report = table(out, statuses)
    header = (f"CIFAR-10 subpopulation shift, IPC 10, seed 0, 3 networks x 300 epochs; distillation bounded to "
              f"{distill_minutes:g} minutes per run, all four at once" if not args.smoke else "smoke run")
    (out / "paper_table.md").write_text(f"{header}\n\n{text}\n")
    (out / "paper_table.json").write_text(json.dumps({**report, "commands": cmds}, indent=2, default=str) + "\n")
    print(f"{header}\n\n{text}")
    return 0 if all(s == 0 for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
