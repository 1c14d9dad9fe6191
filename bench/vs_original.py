"""gdrdd side by side with an original program: the same data, IPC, budget and seed, run one after the other;
both distilled sets scored by one and the same evaluation (gdrdd's ``evaluate.py``, same network seeds).

    python bench/vs_original.py --matcher idc --reference-dir DIR --reference-python PY --data-dir DATA --ipc 1

- ``DIR``: a local copy of the original repository's files (IDC: snu-mllab/Efficient-Dataset-Condensation),
  never edited; ``bench/run_original.py`` runs it with documented runtime patches (CUDA calls to the CPU,
  torchvision's CIFAR checksum check, NumPy's removed aliases);
- ``PY``: a Python with the original's dependencies (torch, torchvision, matplotlib, efficientnet_pytorch);
- ``DATA``: CIFAR-10 in the official python layout (``DATA/cifar-10-batches-py``), read by both programs.

Budget: the original counts ``niter * 100 / inner_loop`` outer iterations and logs every fiftieth of them, so it
needs at least 50; ``--inner-loop K`` (default 2) gives 50 outer iterations of K inner steps, identical for both.
``--original-run`` reuses a finished original run of the same settings (the original is the slow part): the
time ratio then compares two runs that did not share the machine's load, so prefer a fresh paired run for speed.
Writes a JSON report (both programs' seconds per outer iteration: median; their peak resident memory; both
sets' accuracy under IDC's evaluation protocol) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import write_report

ROOT = Path(__file__).resolve().parents[1]
OUTER = 50  # the fewest outer iterations the original's logging allows


def peak_mb(command: list[str], cwd: Path, log: Path) -> float:
    """Run ``command`` under GNU time (its output to ``log``); return its peak resident memory in MB."""
    with open(log, "w") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *command], cwd=cwd, stdout=out,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed (exit {proc.returncode}); its log: {log}\n{log.read_text()[-3000:]}")
    return logged_peak_mb(log)


def logged_peak_mb(log: Path) -> float:
    """The peak resident memory (MB) GNU time wrote at the end of ``log``."""
    peak = [line for line in log.read_text().splitlines() if line.startswith("PEAK_KB")][-1]
    return int(peak.split()[1]) / 1024


def run_original_idc(args, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    timing = work / "timing.json"
    niter = OUTER * args.inner_loop // 100  # the original runs niter * 100 / inner_loop outer iterations
    command = [args.reference_python, str(ROOT / "bench" / "run_original.py"), str(args.reference_dir), "condense.py",
               str(timing), "-d", "cifar10", "--data_dir", str(args.data_dir), "-f", str(args.factor), "--ipc",
               str(args.ipc), "-n", "convnet", "--depth", "3", "--metric", "mse", "--lr_img", "5e-3",
               "--n_data", str(args.n_data), "--niter", str(niter), "--inner_loop", str(args.inner_loop),
               "--seed", str(args.seed + 1), "-j", "0", "--test"]  # its seed 0 means "not seeded"
    peak_mb(command, work, work / "log.txt")
    return finished_original(work)


def finished_original(work: Path) -> dict:
    """The record of an original run that has finished in ``work`` (its log, timing and data files)."""
    seconds = json.loads((work / "timing.json").read_text())["seconds_per_iteration"]
    return {"seconds_per_iteration_median": statistics.median(seconds), "iterations": len(seconds),
            "peak_rss_mb": logged_peak_mb(work / "log.txt"), "file": str(work / "results" / "test" / "data.pt"),
            "format": "idc"}


def run_gdrdd_idc(args, work: Path) -> dict:
    overrides = [f"experiment=idc_cifar10_ipc{args.ipc}", "cvar=none", f"paths.data_dir={args.data_dir}",
                 f"iterations={OUTER}", f"method.inner_loop={args.inner_loop}",
                 f"method.factor={args.factor}", f"method.n_data={args.n_data}", f"seed={args.seed}", "eval.nets=1",
                 "eval.epochs=1", "eval.baseline=false", "eval.coverage=false", "trainer.enable_progress_bar=false",
                 f"hydra.run.dir={work}", "checkpoint.every=0"]
    peak = peak_mb([sys.executable, str(ROOT / "train.py"), *overrides], ROOT, work.parent / "gdrdd_log.txt")
    metrics = json.loads((work / "metrics.json").read_text())
    return {"seconds_per_iteration_median": metrics["seconds_per_iteration_median"],
            "iterations": metrics["iterations_timed"], "peak_rss_mb": peak,
            "file": str(work / "distilled.pt"), "format": "gdrdd"}


def score(args, program: dict, work: Path) -> dict:
    """One evaluation for both files: IDC's protocol, the same network seeds (read back if ``work`` has it)."""
    metrics = work / "metrics.json"
    if not metrics.is_file():
        overrides = [f"path={program['file']}", f"format={program['format']}", "dataset=cifar10", "eval=idc",
                     f"paths.data_dir={args.data_dir}", f"eval.nets={args.eval_nets}",
                     f"eval.epochs={args.eval_epochs}", f"seed={args.seed}", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={work}"]
        if program["format"] == "idc":
            overrides.append(f"factor={args.factor}")
        subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *overrides], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    scored = json.loads(metrics.read_text())["scored"]["distilled"]
    return {"acc": scored["acc"], "acc_std": scored["acc_std"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matcher", choices=["idc"], required=True)
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--inner-loop", type=int, default=2)
    parser.add_argument("--n-data", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-nets", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "vs_original")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--original-run", type=Path, default=None,
                        help="the 'original' folder of an earlier report with the same settings: reuse that run "
                             "(its time, memory and file) instead of running the original again")
    args = parser.parse_args()
    if not (args.data_dir / "cifar-10-batches-py").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no cifar-10-batches-py/: both programs read CIFAR-10's python "
                     "release layout there")
    if args.inner_loop % 2 or not 2 <= args.inner_loop <= 100:
        parser.error(f"--inner-loop {args.inner_loop}: an even number from 2 to 100, so that both programs run "
                     f"{OUTER} outer iterations")
    if not (args.reference_dir / "condense.py").is_file():
        parser.error(f"--reference-dir {args.reference_dir} has no condense.py: give a copy of IDC's repository files")
    run = args.work / f"{args.matcher}_ipc{args.ipc}_seed{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir(parents=True)
    original_eval = run / "eval_original"
    if args.original_run:  # its score too, if that report has one
        original = finished_original(args.original_run)
        earlier = args.original_run.parent / "eval_original"
        original_eval = earlier if earlier.is_dir() else original_eval
    else:
        original = run_original_idc(args, run / "original")
    programs = {"original": original, "gdrdd": run_gdrdd_idc(args, run / "gdrdd")}
    programs["original"].update(score(args, original, original_eval))
    programs["gdrdd"].update(score(args, programs["gdrdd"], run / "eval_gdrdd"))
    o, g = programs["original"], programs["gdrdd"]
    report = {"matcher": args.matcher, "ipc": args.ipc, "factor": args.factor, "inner_loop": args.inner_loop,
              "outer_iterations": OUTER, "n_data": args.n_data, "seed": args.seed, "eval_nets": args.eval_nets,
              "eval_epochs": args.eval_epochs, "programs": programs,
              "time_ratio": g["seconds_per_iteration_median"] / o["seconds_per_iteration_median"],
              "memory_ratio": g["peak_rss_mb"] / o["peak_rss_mb"], "accuracy_difference": g["acc"] - o["acc"]}
    print("| program | s / outer iteration | peak RSS (MB) | accuracy (%) |\n|---|---|---|---|")
    for name, p in programs.items():
        print(f"| {name} | {p['seconds_per_iteration_median']:.2f} | {p['peak_rss_mb']:.0f} | "
              f"{p['acc']:.2f} ± {p['acc_std']:.2f} |")
    print(f"gdrdd / original: time x{report['time_ratio']:.2f}, memory x{report['memory_ratio']:.2f}; "
          f"accuracy difference {report['accuracy_difference']:+.2f}")
    write_report(args.out or run / "report.json", report)


if __name__ == "__main__":
    main()
