"""Seconds per distillation step and peak memory, plain against robust, on CIFAR-10-sized data.

    python bench/run.py [--methods dm dsa dc mtt] [--ipc 1 10 50] [--steps 3] [--batch-real 256]
                        [--objectives none matching] [--precisions 32-true bf16-mixed] [--eval-epochs 20]
                        [--device cpu] [--out outputs/bench/run.json]

Each (method, IPC, objective, precision) runs in its own subprocess on random 3x32x32 data (10 classes, 500 images per
class; speed does not depend on pixel values), so peak memory (max RSS on CPU, max allocated on CUDA) is
per configuration. Objectives: ``cvar=none`` and ``cvar.alpha=0.8`` (for DC/DSA with target matching,
network, both and release). After one warm-up step it times ``--steps`` matching steps (real batch -> group losses
-> risk -> update), and for DC/DSA one inner-loop training of the network (``after_update``), from which
seconds per iteration = outer_loop * step + (outer_loop - 1) * inner. MTT (objectives none and the risk term
``matching``) runs its reference CIFAR-10 IPC 10 settings over a one-segment expert cache. Also reported: the
share of the timed steps spent in the grouping (``grouping.assign``) and in the forward of the risk measure,
and the evaluation cost (one fresh ConvNet trained ``--eval-epochs`` epochs on the synthetic set with DSA, then
a 10,000-image test pass). ``--precisions``: each configuration once per precision (``bf16-mixed``: the step, the
inner-loop training and the evaluation network under bfloat16 autocast, as ``trainer.precision`` and
``eval.precision`` run them), with its ratio to the same configuration in the first precision given. Prints a
table, writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    compose_config,
    mtt_module_with_one_expert,
    peak_memory_mb,
    random_cifar_data,
    run_worker,
    timed,
    write_report,
)

OBJECTIVES = {"dm": ["none", "matching"], "dc": ["none", "matching", "network", "both", "release"],
              "dsa": ["none", "matching", "network", "both", "release"], "mtt": ["none", "matching"]}


class Stopwatch:
    """Accumulated seconds spent inside the wrapped callables (device-synchronised)."""

    def __init__(self, device: str) -> None:
        self.device, self.seconds = device, 0.0

    def wrap(self, fn):
        def timed_fn(*args, **kwargs):
            result = None

            def call() -> None:
                nonlocal result
                result = fn(*args, **kwargs)

            self.seconds += timed(call, self.device)
            return result

        return timed_fn


def distill_setup(method: str, ipc: int, objective: str, batch_real: int, device: str):
    """(module, data) ready for a step: random CIFAR-10-sized data; MTT over a one-segment expert cache."""
    from gdrdd.jobs import build

    overrides = [f"ipc={ipc}", f"method.batch_real={batch_real}"]
    overrides += ["cvar=none"] if objective == "none" else ["cvar.alpha=0.8", f"cvar.target={objective}"]
    if method == "mtt":
        return mtt_module_with_one_expert(overrides, device)
    cfg = compose_config([f"method={method}", "dataset=cifar10", "experiment=reference", *overrides])
    spec = build.dataset_spec(cfg)
    data = random_cifar_data(spec, device)
    module = build.distill_module(cfg, data, spec).to(device)
    module.matcher.start_iteration(device)
    return module, data


def evaluation_seconds(module, device: str, epochs: int, precision: str) -> dict:
    """Seconds to train one fresh evaluation network on the synthetic set for ``epochs`` epochs (protocol settings,
    per-sample DSA) and to score it on 10,000 test images."""
    from gdrdd.augment.dsa import DSA
    from gdrdd.models import ConvNet
    from gdrdd.models.fit import TrainSettings, predict, train_network
    from gdrdd.utils.runtime import autocast

    images, labels = module.images.detach(), module.labels
    net = ConvNet(3, 10, 32).to(device)
    settings = TrainSettings(lr=0.01, momentum=0.9, weight_decay=0.0005, epochs=epochs, batch_size=256)
    with autocast(device, precision):
        train_s = timed(lambda: train_network(net, images, labels, settings, DSA()), device)
    test_x, test_y = torch.randn(10_000, 3, 32, 32, device=device), torch.randint(10, (10_000,), device=device)
    with torch.no_grad(), autocast(device, precision):
        test_s = timed(lambda: predict(net, test_x, test_y), device)
    return {"eval_train_s_per_epoch": train_s / epochs, "eval_test_s": test_s}


def worker(method: str, ipc: int, objective: str, precision: str, steps: int, batch_real: int, device: str,
           eval_epochs: int) -> dict:
    from gdrdd.utils.runtime import autocast, tune_allocator

    tune_allocator()
    module, data = distill_setup(method, ipc, objective, batch_real, device)
    matcher, optimizer = module.matcher, module.configure_optimizers()
    grouping, risk = Stopwatch(device), Stopwatch(device)
    module.grouping.assign = grouping.wrap(module.grouping.assign)
    module.risk = risk.wrap(module.risk)
    uses_real = getattr(matcher, "uses_real", True)

    def step() -> None:
        real = data.sample_real(batch_real) if uses_real else None
        with autocast(device, precision):  # the forward passes, as Lightning's precision plugin runs them
            out = matcher.group_losses(real, module.synthetic_by_class(), module.grouping)
            result = module.risk(out.losses, out.counts)
        optimizer.zero_grad()
        (result.objective if out.base is None else result.objective + out.base).backward()
        optimizer.step()

    step()  # warm-up
    grouping.seconds = risk.seconds = 0.0
    times = [timed(step, device) for _ in range(steps)]
    step_seconds = statistics.median(times)
    outer = matcher.updates_per_iteration

    def inner() -> None:
        with autocast(device, precision):
            matcher.after_update(module.synthetic_by_class().detach(), is_last=False)

    inner_seconds = timed(inner, device) if outer > 1 else 0.0
    row = {"method": method, "ipc": ipc, "objective": objective, "precision": precision, "step_s": step_seconds,
           "inner_s": inner_seconds, "outer_loop": outer,
           "iteration_s": outer * step_seconds + (outer - 1) * inner_seconds,
           "grouping_share": grouping.seconds / sum(times), "risk_share": risk.seconds / sum(times),
           "peak_mb": peak_memory_mb(device), "device": device, "batch_real": batch_real}
    if eval_epochs > 0:
        row.update(evaluation_seconds(module, device, eval_epochs, precision))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["dm", "dsa", "dc", "mtt"], choices=sorted(OBJECTIVES))
    parser.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--objectives", nargs="+", default=None,
                        help="a subset of none, matching, network, both, release")
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--precisions", nargs="+", default=["32-true"], choices=["32-true", "bf16-mixed"],
                        help="each configuration in each precision; ratios are to the first one given")
    parser.add_argument("--eval-epochs", type=int, default=20, help="0: skip the evaluation timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/run.json")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "IPC", "OBJECTIVE", "PRECISION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, ipc, objective, precision = args.worker
        row = worker(method, int(ipc), objective, precision, args.steps, args.batch_real, args.device,
                     args.eval_epochs)
        print(json.dumps(row))
        return
    rows = []
    for method in args.methods:
        for ipc in args.ipc:
            for objective in (o for o in OBJECTIVES[method] if args.objectives is None or o in args.objectives):
                for precision in args.precisions:  # adjacent, so a slow phase of a shared machine hits both
                    row = run_worker(__file__, [method, str(ipc), objective, precision, "--steps", str(args.steps),
                                                "--batch-real", str(args.batch_real), "--device", args.device,
                                                "--eval-epochs", str(args.eval_epochs)])
                    add_ratios(row, rows, args.precisions[0])
                    rows.append(row)
                    print_row(row)
    write_report(args.out, {"rows": rows})


def add_ratios(row: dict, earlier: list[dict], base_precision: str) -> None:
    """``ratio_to_none``: iteration time over plain's (same method, IPC, precision); ``ratio_to_base_precision`` and
    ``eval_ratio_to_base_precision``: iteration and evaluation-epoch time over the same configuration's in
    ``base_precision``."""
    def find(objective: str, precision: str) -> dict:
        key = (row["method"], row["ipc"], objective, precision)
        return next((r for r in earlier if (r["method"], r["ipc"], r["objective"], r["precision"]) == key), row)

    row["ratio_to_none"] = row["iteration_s"] / find("none", row["precision"])["iteration_s"]
    base = find(row["objective"], base_precision)
    row["ratio_to_base_precision"] = row["iteration_s"] / base["iteration_s"]
    if "eval_train_s_per_epoch" in row:
        row["eval_ratio_to_base_precision"] = row["eval_train_s_per_epoch"] / base["eval_train_s_per_epoch"]


def print_row(row: dict) -> None:
    evaluation = (f"  eval {row['eval_train_s_per_epoch']:.3f} s/epoch (x{row['eval_ratio_to_base_precision']:.2f})"
                  f" + {row['eval_test_s']:.2f} s test" if "eval_test_s" in row else "")
    print(f"{row['method']:<4} ipc {row['ipc']:<3} {row['objective']:<9} {row['precision']:<10} "
          f"step {row['step_s']:7.3f} s  inner {row['inner_s']:7.3f} s  iteration {row['iteration_s']:8.2f} s  "
          f"x{row['ratio_to_none']:.2f} vs none  x{row['ratio_to_base_precision']:.2f} vs first precision  "
          f"grouping {100 * row['grouping_share']:4.1f} %  risk {100 * row['risk_share']:4.1f} %  "
          f"peak {row['peak_mb']:7.0f} MB{evaluation}", flush=True)


if __name__ == "__main__":
    main()
