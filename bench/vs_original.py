"""gdrdd side by side with an original program: the same data, IPC, budget and seed, run one after the other;
both distilled sets scored by one and the same evaluation (gdrdd's ``evaluate.py``, same network seeds).

    python bench/vs_original.py --matcher {dc,dsa,dm,idc,mtt,datm} --reference-dir DIR --reference-python PY \
                                --data-dir DATA
                                [--ipc 1] [--iterations N | --inner-loop K] [--experts 2 --expert-epochs 3]
                                [--eval-nets 3] [--eval-epochs E] [--same-start | --score-starts]
                                [--gdrdd-override KEY=VALUE ...]

- ``DIR``: a local copy of the original repository's files, never edited: VICO-UoE/DatasetCondensation for DC, DSA
  (``main.py``) and DM (``main_DM.py``), snu-mllab/Efficient-Dataset-Condensation for IDC (``condense.py``),
  GeorgeCazenavette/mtt-distillation for MTT (``distill.py``), NUS-HPC-AI-Lab/DATM for DATM (``distill/DATM.py``);
  ``bench/run_original.py`` runs it with documented runtime patches (CUDA calls to the CPU, torchvision's CIFAR
  checksum check, NumPy's removed aliases, a stand-in for W&B) and times its iterations and evaluations;
- ``PY``: a Python with the original's dependencies (torch, torchvision; IDC also matplotlib, efficientnet_pytorch;
  DATM also kornia, scipy, yacs, pyyaml, tqdm);
- ``DATA``: CIFAR-10 in the official python layout (``DATA/cifar-10-batches-py``), read by both programs.

Budget. DC/DSA/DM: ``--iterations N`` synthetic-set updates (outer iterations) in both programs, with the
reference loops for the IPC; the original script is given ``--Iteration N-1`` (it updates once more than that
number) and evaluates its own set once at the end with ``--original-eval-nets`` networks (its own protocol: for DC
300 epochs without augmentation, for DSA 1000 with DSA, for DM ``--eval-epochs`` with DSA); that number is
reported beside the common one. The DatasetCondensation scripts seed nothing, so only gdrdd's run follows
``--seed``. IDC: the original counts ``niter * 100 / inner_loop`` outer iterations and logs every fiftieth of
them, so it needs at least 50; ``--inner-loop K`` (default 2) gives 50 outer iterations of K inner steps in both.
MTT: ``--iterations N`` updates in both (``--Iteration N-1``, as its loop also runs ``Iteration + 1`` times), the
author-provided settings of the ``mtt_cifar10_ipc<IPC>`` preset without ZCA, ``max_start_epoch`` cut to what
``--expert-epochs`` allows; both programs match the same ``--experts`` trajectories of ``--expert-epochs`` epochs,
trained once by gdrdd (``task=experts``, cached under ``--work``) and written in the original's replay-buffer
format; the original evaluates its set at its iteration N-1 (its printed number) and its final set is recorded
by ``run_original.py``; both are scored with their learned step sizes.
DATM: as MTT, with the authors' settings of the ``datm_cifar10_ipc<IPC>`` preset (its window's bounds cut to what
``--expert-epochs`` allows), given to ``DATM.py`` as a config file (it reads booleans only from one); it is not
asked to evaluate (its own evaluations are its protocol at 1000 epochs), and its final images, learned label
logits and step size are recorded by ``run_original.py``. Both sets are scored with DATM's protocol (``eval=datm``:
soft cross-entropy on softmax(logits), their learned step sizes) for ``--eval-epochs``.
``--same-start`` (DC, DSA, DM, MTT, DATM): both programs start from one synthetic set, gdrdd's initial set for
``--seed`` (a gdrdd run of 0 iterations), which ``run_original.py --start`` copies into the original's synthetic
tensor; that set is scored too, so the report has each program's gain from the same start. Without it each
program draws its own random start, and at small budgets the difference between two draws can exceed a point;
``--score-starts`` (DC, DSA, DM) then scores each program's own start (gdrdd's from a run of 0 iterations, the
original's as ``run_original.py`` recorded it), so the report has each program's gain from its own start.
``--gdrdd-override`` adds ``train.py`` settings to gdrdd's runs (its distillation and its start) (for example
``trainer.precision=bf16-mixed``, to compare gdrdd's bfloat16 run with the original's float32 one); the scoring is
unchanged.
``--original-run`` reuses a finished original run of the same settings (the original is the slow part): the time
ratio then compares two runs that did not share the machine's load, so prefer a fresh paired run for speed.

Writes a JSON report (both programs' seconds per outer iteration: median; their peak resident memory, and gdrdd's
before its end-of-run evaluation, which holds the corrupted test sets and the test k-means groups that the
originals do not compute; both sets' accuracy under one evaluation: IDC's protocol for IDC, gdrdd's default
protocol otherwise) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from common import write_report

ROOT = Path(__file__).resolve().parents[1]
IDC_OUTER = 50  # the fewest outer iterations IDC's logging allows


@dataclass(frozen=True)
class Original:
    """How one matcher's original program runs with the settings of ``args``, and where its result lands."""

    repository: str  # what --reference-dir must be a copy of
    script: str
    arguments: Callable[[argparse.Namespace], list[str]]
    result: Callable[[argparse.Namespace, Path], Path]  # its distilled file, given its working folder
    format: str  # evaluate.py's format= for that file


def condensation_arguments(method: str) -> Callable[[argparse.Namespace], list[str]]:
    """DatasetCondensation's ``main.py`` (DC, DSA) or ``main_DM.py`` (DM) arguments: the reference settings."""
    by_method = {"dc": ["--method", "DC", "--init", "noise"],
                 "dsa": ["--method", "DSA", "--init", "real", "--dsa_strategy", "color_crop_cutout_flip_scale_rotate"],
                 "dm": ["--init", "real", "--dsa_strategy", "color_crop_cutout_flip_scale_rotate", "--lr_img", "1"]}

    def arguments(args: argparse.Namespace) -> list[str]:
        # An eval_mode outside its list evaluates the training model once, after the last iteration.
        return [*by_method[method], "--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", str(args.ipc),
                "--eval_mode", "final", "--num_exp", "1", "--num_eval", str(args.original_eval_nets),
                "--epoch_eval_train", str(args.eval_epochs), "--Iteration", str(args.iterations - 1),
                "--data_path", str(args.data_dir), "--save_path", "result"]

    return arguments


def condensation_result(method: str) -> Callable[[argparse.Namespace, Path], Path]:
    return lambda args, work: work / "result" / f"res_{method.upper()}_CIFAR10_ConvNet_{args.ipc}ipc.pt"


def idc_arguments(args: argparse.Namespace) -> list[str]:
    niter = IDC_OUTER * args.inner_loop // 100  # the original runs niter * 100 / inner_loop outer iterations
    return ["-d", "cifar10", "--data_dir", str(args.data_dir), "-f", str(args.factor), "--ipc", str(args.ipc), "-n",
            "convnet", "--depth", "3", "--metric", "mse", "--lr_img", "5e-3", "--n_data", str(args.n_data),
            "--niter", str(niter), "--inner_loop", str(args.inner_loop), "--seed", str(args.seed + 1),  # 0: unseeded
            "-j", "0", "--test"]


def mtt_preset(args: argparse.Namespace) -> dict:
    """The author-provided MTT settings of the ``mtt_cifar10_ipc<IPC>`` preset, ``max_start_epoch`` cut so that
    start + ``expert_epochs`` stays within ``--expert-epochs``."""
    from omegaconf import OmegaConf

    method = OmegaConf.load(ROOT / "conf" / "experiment" / f"mtt_cifar10_ipc{args.ipc}.yaml").method
    start = min(method.max_start_epoch, args.expert_epochs - method.expert_epochs + 1)
    return {"syn_steps": method.syn_steps, "expert_epochs": method.expert_epochs, "max_start_epoch": start,
            "lr_img": method.lr_img, "lr_lr": method.lr_lr, "lr_student": method.lr_student,
            "batch_syn": method.batch_syn}


def mtt_arguments(args: argparse.Namespace) -> list[str]:
    p = mtt_preset(args)
    batch = ["--batch_syn", str(p["batch_syn"])] if p["batch_syn"] else []
    # Evaluations at iterations 0 and N-1 only (np.arange(0, Iteration + 1, eval_it)).
    return ["--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", str(args.ipc), "--syn_steps", str(p["syn_steps"]),
            "--expert_epochs", str(p["expert_epochs"]), "--max_start_epoch", str(p["max_start_epoch"]),
            "--lr_img", str(p["lr_img"]), "--lr_lr", str(p["lr_lr"]), "--lr_teacher", str(p["lr_student"]), *batch,
            "--pix_init", "real", "--dsa", "True", "--Iteration", str(args.iterations - 1),
            "--eval_it", str(args.iterations - 1), "--num_eval", str(args.original_eval_nets),
            "--epoch_eval_train", str(args.eval_epochs), "--data_path", str(args.data_dir),
            "--buffer_path", "buffers"]


def datm_preset(args: argparse.Namespace) -> dict:
    """The authors' DATM settings of the ``datm_cifar10_ipc<IPC>`` preset, the window cut as ``mtt_preset`` cuts
    ``max_start_epoch`` (its first upper bound, ``current_max_start_epoch``, too)."""
    from omegaconf import OmegaConf

    method = OmegaConf.to_container(OmegaConf.merge(
        OmegaConf.load(ROOT / "conf" / "method" / "datm.yaml"),
        OmegaConf.load(ROOT / "conf" / "experiment" / f"datm_cifar10_ipc{args.ipc}.yaml").method))
    method["max_start_epoch"] = min(method["max_start_epoch"], args.expert_epochs - method["expert_epochs"] + 1)
    method["current_max_start_epoch"] = min(method["current_max_start_epoch"], method["max_start_epoch"])
    return method


def write_datm_config(args: argparse.Namespace, path: Path) -> None:
    """``DATM.py``'s config file (its command line would read ``False`` as true) with the preset's settings, no
    ZCA, and no evaluation (its first one is due after the last iteration). Each value has the type of DATM's
    default for the key (its config reader refuses others: ``lr_img`` is an integer there)."""
    p = datm_preset(args)
    sequential = p["expansion_end_epoch"] is not None
    settings = {
        "dataset": "CIFAR10", "model": "ConvNet", "ipc": args.ipc, "zca": False, "dsa": True,
        "syn_steps": p["syn_steps"], "expert_epochs": p["expert_epochs"], "min_start_epoch": p["min_start_epoch"],
        "max_start_epoch": p["max_start_epoch"], "current_max_start_epoch": p["current_max_start_epoch"],
        "Sequential_Generation": sequential, "expansion_end_epoch": p["expansion_end_epoch"] or 1,
        "lr_img": int(p["lr_img"]), "lr_lr": float(p["lr_lr"]), "lr_teacher": float(p["lr_student"]),
        "lr_y": float(p["lr_y"]), "Momentum_y": float(p["momentum_y"]), "threshold": float(p["threshold"]),
        "batch_syn": p["batch_syn"] or args.ipc * 10, "pix_init": "samples_predicted_correctly",
        "Iteration": args.iterations - 1, "eval_it": args.iterations + 1, "skip_first_eva": True,
        "num_eval": 1, "data_path": str(args.data_dir), "buffer_path": "buffers", "device": [0]}
    import yaml

    path.write_text(yaml.safe_dump(settings))


ORIGINALS = {
    **{m: Original("VICO-UoE/DatasetCondensation", "main_DM.py" if m == "dm" else "main.py",
                   condensation_arguments(m), condensation_result(m), "dc") for m in ("dc", "dsa", "dm")},
    "idc": Original("snu-mllab/Efficient-Dataset-Condensation", "condense.py", idc_arguments,
                    lambda args, work: work / "results" / "test" / "data.pt", "idc"),
    "mtt": Original("GeorgeCazenavette/mtt-distillation", "distill.py", mtt_arguments,
                    lambda args, work: work / "final", "pair"),
    "datm": Original("NUS-HPC-AI-Lab/DATM", "distill/DATM.py", lambda args: ["--cfg", "datm.yaml"],
                     lambda args, work: work / "final", "pair"),
}
TRAJECTORY = ("mtt", "datm")  # the matchers of expert trajectories


def trajectory_preset(args: argparse.Namespace) -> dict:
    return mtt_preset(args) if args.matcher == "mtt" else datm_preset(args)
MTT_BUFFER = Path("buffers") / "CIFAR10_NO_ZCA" / "ConvNet" / "replay_buffer_0.pt"  # where distill.py looks


def experts_overrides(args: argparse.Namespace) -> list[str]:
    """The expert settings of gdrdd's MTT and DATM runs: no ZCA, ``--experts`` x ``--expert-epochs``, cached under
    --work (one cache for both: its key does not name the method)."""
    return [f"experiment={args.matcher}_cifar10_ipc{args.ipc}", "dataset.zca=false", f"paths.data_dir={args.data_dir}",
            f"experts.num={args.experts}", f"experts.epochs={args.expert_epochs}",
            f"paths.cache_dir={args.work / 'cache'}", "trainer.enable_progress_bar=false"]


def write_replay_buffer(cache: Path, out: Path) -> None:
    """gdrdd's cached experts (``expert_NNNN.pt``, a trajectory of ``{name: tensor}`` dicts) as MTT's replay buffer:
    a list of experts, each a list over epochs of the parameter tensors in the network's order. gdrdd's ConvNet
    names its parameters as the original's does (``features.0.weight`` ... ``classifier.bias``), in that order."""
    experts = []
    for path in sorted(cache.glob("expert_*.pt")):
        trajectory = torch.load(path, map_location="cpu", weights_only=True)["trajectory"]
        experts.append([list(params.values()) for params in trajectory])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(experts, out)


def prepare_experts(args: argparse.Namespace, work: Path) -> None:
    """Train (or find cached) the shared experts with gdrdd and write them where the original reads them."""
    folder = work.parent / "experts"
    command = [sys.executable, str(ROOT / "train.py"), "task=experts", *experts_overrides(args),
               f"hydra.run.dir={folder}"]
    with open(work.parent / "experts_log.txt", "w") as log:
        subprocess.run(command, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
    summary = json.loads((folder / "experts.json").read_text())
    write_replay_buffer(Path(summary["cache"]), work / MTT_BUFFER)


def gdrdd_overrides(args: argparse.Namespace) -> list[str]:
    """train.py settings equal to the original's; its own end-of-run evaluation reduced to one 1-epoch network."""
    budget = ([f"iterations={IDC_OUTER}", f"method.inner_loop={args.inner_loop}", f"method.factor={args.factor}",
               f"method.n_data={args.n_data}"] if args.matcher == "idc" else [f"iterations={args.iterations}"])
    if args.matcher in TRAJECTORY:
        shared = ("experiment=", "paths.data_dir=", "trainer.")  # given below
        budget += [o for o in experts_overrides(args) if not o.startswith(shared)]
        budget.append(f"method.max_start_epoch={trajectory_preset(args)['max_start_epoch']}")
    if args.matcher == "datm":
        budget.append(f"method.current_max_start_epoch={datm_preset(args)['current_max_start_epoch']}")
    return [f"experiment={args.matcher}_cifar10_ipc{args.ipc}", "cvar=none", f"paths.data_dir={args.data_dir}",
            *budget, f"seed={args.seed}", "eval.nets=1", "eval.epochs=1", "eval.baseline=false",
            "eval.coverage=false", "trainer.enable_progress_bar=false", "checkpoint.every=0"]


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


def own_evaluation(log: Path) -> dict | None:
    """The accuracy (%) the DatasetCondensation scripts print for their own set, if the log has it."""
    found = re.findall(r"Evaluate (\d+) random \S+, mean = ([\d.]+) std = ([\d.]+)", log.read_text())
    if not found:
        return None
    nets, mean, std = found[-1]
    return {"nets": int(nets), "acc": 100 * float(mean), "acc_std": 100 * float(std)}


def run_original(args, work: Path, start: Path | None = None) -> dict:
    """Run the original in ``work``; ``start``: a saved tensor its synthetic set starts from."""
    work.mkdir(parents=True, exist_ok=True)
    if args.matcher in TRAJECTORY:
        prepare_experts(args, work)
    if args.matcher == "datm":
        write_datm_config(args, work / "datm.yaml")
    original = ORIGINALS[args.matcher]
    command = [args.reference_python, str(ROOT / "bench" / "run_original.py"), str(args.reference_dir),
               original.script, str(work / "timing.json"), *(["--start", str(start)] if start else []),
               *original.arguments(args)]
    peak_mb(command, work, work / "log.txt")
    return finished_original(args, work)


def finished_original(args, work: Path) -> dict:
    """The record of an original run that has finished in ``work`` (its log, timing and result file)."""
    original = ORIGINALS[args.matcher]
    timing = json.loads((work / "timing.json").read_text())
    seconds = timing["seconds_per_iteration"]
    record = {"seconds_per_iteration_median": statistics.median(seconds), "iterations": len(seconds),
              "peak_rss_mb": logged_peak_mb(work / "log.txt"), "file": str(original.result(args, work)),
              "format": original.format, "own_evaluation": own_evaluation(work / "log.txt")}
    if timing.get("seconds_per_evaluation"):
        record["seconds_per_own_evaluation_network"] = statistics.median(timing["seconds_per_evaluation"])
    return record


def gdrdd_start(args, work: Path) -> Path:
    """gdrdd's initial set for ``args.seed`` (a run of 0 iterations in ``work``, its ``distilled.pt``), also written
    as a bare images tensor, ``start.pt``, for ``run_original.py --start``; returns that file."""
    if args.matcher in TRAJECTORY:
        prepare_experts(args, work)  # gdrdd's run reads the experts' cache even at 0 iterations
    overrides = [o for o in gdrdd_overrides(args) if not o.startswith("iterations=")] + args.gdrdd_override
    peak_mb([sys.executable, str(ROOT / "train.py"), *overrides, "iterations=0", f"hydra.run.dir={work}"], ROOT,
            work.parent / "start_log.txt")
    images = torch.load(work / "distilled.pt", map_location="cpu", weights_only=True)["images"]
    torch.save(images, work / "start.pt")
    return work / "start.pt"


def run_gdrdd(args, work: Path) -> dict:
    overrides = [*gdrdd_overrides(args), *args.gdrdd_override, f"hydra.run.dir={work}"]
    peak = peak_mb([sys.executable, str(ROOT / "train.py"), *overrides], ROOT, work.parent / "gdrdd_log.txt")
    metrics = json.loads((work / "metrics.json").read_text())
    return {"seconds_per_iteration_median": metrics["seconds_per_iteration_median"],
            "iterations": metrics["iterations_timed"], "peak_rss_mb": peak,
            "peak_rss_distillation_mb": metrics["peak_rss_mb"],  # before its end-of-run evaluation
            "file": str(work / "distilled.pt"), "format": "gdrdd"}


def score(args, program: dict, work: Path) -> dict:
    """One evaluation for both files, the same network seeds (read back if ``work`` has it): IDC's protocol for
    IDC, DATM's for DATM, gdrdd's default protocol (DSA) otherwise."""
    metrics = work / "metrics.json"
    if not metrics.is_file():
        protocol = f"eval={args.matcher}" if args.matcher in ("idc", "datm") else "eval=default"
        overrides = [f"path={program['file']}", f"format={program['format']}", "dataset=cifar10", protocol,
                     f"paths.data_dir={args.data_dir}", f"eval.nets={args.eval_nets}",
                     f"eval.epochs={args.eval_epochs}", "eval.baseline=false", "eval.coverage=false",
                     f"seed={args.seed}", "trainer.enable_progress_bar=false", f"hydra.run.dir={work}"]
        if program["format"] == "idc":
            overrides.append(f"factor={args.factor}")
        subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *overrides], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    scored = json.loads(metrics.read_text())["scored"]["distilled"]
    return {"acc": scored["acc"], "acc_std": scored["acc_std"]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matcher", choices=sorted(ORIGINALS), required=True)
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=200, help="DC/DSA/DM: outer iterations of both programs")
    parser.add_argument("--original-eval-nets", type=int, default=1,
                        help="DC/DSA/DM: networks of the original's own evaluation of its set (0: none)")
    parser.add_argument("--factor", type=int, default=2, help="IDC: multi-formation factor")
    parser.add_argument("--inner-loop", type=int, default=2, help="IDC: inner steps per outer iteration")
    parser.add_argument("--n-data", type=int, default=2000, help="IDC: real images the network trains on")
    parser.add_argument("--experts", type=int, default=2, help="MTT: expert trajectories both programs match")
    parser.add_argument("--expert-epochs", type=int, default=3, help="MTT: epochs of each expert")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-nets", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=None, help="default: 1000 for IDC, 300 otherwise")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "vs_original")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--gdrdd-override", nargs="+", default=[], metavar="KEY=VALUE",
                        help="train.py settings added to gdrdd's runs (distillation and start), not to the scoring")
    parser.add_argument("--same-start", action="store_true",
                        help="DC/DSA/DM/MTT/DATM: both programs start from gdrdd's initial set for --seed, also "
                             "scored")
    parser.add_argument("--score-starts", action="store_true",
                        help="DC/DSA/DM: also score each program's own initial set (gains from each start)")
    parser.add_argument("--original-run", type=Path, default=None,
                        help="the 'original' folder of an earlier report with the same settings: reuse that run "
                             "(its time, memory and file) instead of running the original again")
    args = parser.parse_args()
    args.eval_epochs = args.eval_epochs or (1000 if args.matcher == "idc" else 300)
    original = ORIGINALS[args.matcher]
    if not (args.data_dir / "cifar-10-batches-py").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no cifar-10-batches-py/: both programs read CIFAR-10's python "
                     "release layout there")
    if args.matcher == "idc" and (args.inner_loop % 2 or not 2 <= args.inner_loop <= 100):
        parser.error(f"--inner-loop {args.inner_loop}: an even number from 2 to 100, so that both programs run "
                     f"{IDC_OUTER} outer iterations")
    if args.matcher in TRAJECTORY and args.ipc not in (1, 10, 50):
        parser.error(f"--ipc {args.ipc}: 1, 10 or 50 with --matcher {args.matcher} (the IPCs of the authors' "
                     "settings)")
    if args.matcher in TRAJECTORY and args.expert_epochs < trajectory_preset(args)["expert_epochs"]:
        parser.error(f"--expert-epochs {args.expert_epochs}: at least the preset's expert_epochs "
                     f"({trajectory_preset(args)['expert_epochs']}), so that a start epoch has its target")
    if args.same_start and args.matcher == "idc":
        parser.error("--same-start: DC, DSA, DM and MTT only (IDC's synthetic set is not one tensor built before "
                     "its optimiser)")
    if args.score_starts and (args.same_start or args.matcher not in ("dc", "dsa", "dm") or args.original_run):
        parser.error("--score-starts: DC, DSA or DM (MTT's start would need its step size), without --same-start "
                     "(which scores the shared start) and without --original-run")
    if args.same_start and args.original_run:
        parser.error("--same-start with --original-run: the earlier original run had its own start; run it again")
    if args.iterations < 2:
        parser.error(f"--iterations {args.iterations}: at least 2 (the original is given --Iteration N-1 >= 1)")
    if not (args.reference_dir / original.script).is_file():
        parser.error(f"--reference-dir {args.reference_dir} has no {original.script}: give a copy of "
                     f"{original.repository}'s files")
    return args


def main() -> None:
    args = parse_args()
    run = args.work / f"{args.matcher}_ipc{args.ipc}_seed{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir(parents=True)
    start = gdrdd_start(args, run / "start") if args.same_start or args.score_starts else None
    original_eval = run / "eval_original"
    if args.original_run:  # its score too, if that report has one
        original = finished_original(args, args.original_run)
        earlier = args.original_run.parent / "eval_original"
        original_eval = earlier if earlier.is_dir() else original_eval
    else:
        original = run_original(args, run / "original", start if args.same_start else None)
    programs = {"original": original, "gdrdd": run_gdrdd(args, run / "gdrdd")}
    programs["original"].update(score(args, original, original_eval))
    programs["gdrdd"].update(score(args, programs["gdrdd"], run / "eval_gdrdd"))
    o, g = programs["original"], programs["gdrdd"]
    budget = ({"outer_iterations": IDC_OUTER, "inner_loop": args.inner_loop, "factor": args.factor,
               "n_data": args.n_data} if args.matcher == "idc" else {"outer_iterations": args.iterations})
    report = {"matcher": args.matcher, "ipc": args.ipc, **budget, "seed": args.seed, "eval_nets": args.eval_nets,
              "eval_epochs": args.eval_epochs, "gdrdd_overrides": args.gdrdd_override, "programs": programs,
              "time_ratio": g["seconds_per_iteration_median"] / o["seconds_per_iteration_median"],
              "memory_ratio": g["peak_rss_mb"] / o["peak_rss_mb"],
              "distillation_memory_ratio": g["peak_rss_distillation_mb"] / o["peak_rss_mb"],
              "accuracy_difference": g["acc"] - o["acc"]}
    if start:
        gdrdd_start_score = score(args, {"file": str(start.parent / "distilled.pt"), "format": "gdrdd"},
                                  run / "eval_start")
        starts = {"gdrdd": gdrdd_start_score, "original": gdrdd_start_score if args.same_start else
                  score(args, {"file": str(run / "original" / "start_set.pt"), "format": "pair"},
                        run / "eval_original_start")}
        report["shared_start"] = args.same_start
        for name, p in programs.items():
            p["start"], p["gain"] = starts[name], p["acc"] - starts[name]["acc"]
    print_table(report)
    write_report(args.out or run / "report.json", report)


def print_table(report: dict) -> None:
    start_kind = "shared start" if report.get("shared_start") else "its start"
    print(f"| program | s / outer iteration | peak RSS (MB) | accuracy (%) | {start_kind} (%) | gain | "
          "its own evaluation (%) |\n|---|---|---|---|---|---|---|")
    for name, p in report["programs"].items():
        own = p.get("own_evaluation")
        own = f"{own['acc']:.2f} ± {own['acc_std']:.2f} ({own['nets']} nets)" if own else "-"
        start = f"{p['start']['acc']:.2f} ± {p['start']['acc_std']:.2f}" if "start" in p else "-"
        gain = f"{p['gain']:+.2f}" if "gain" in p else "-"
        print(f"| {name} | {p['seconds_per_iteration_median']:.2f} | {p['peak_rss_mb']:.0f} | "
              f"{p['acc']:.2f} ± {p['acc_std']:.2f} | {start} | {gain} | {own} |")
    print(f"gdrdd / original: time x{report['time_ratio']:.2f}, memory x{report['memory_ratio']:.2f} "
          f"(gdrdd's distillation alone x{report['distillation_memory_ratio']:.2f}); "
          f"accuracy difference {report['accuracy_difference']:+.2f}")


if __name__ == "__main__":
    main()
