"""Seconds per distillation step and peak memory, plain against robust, on CIFAR-10-sized data.

    python bench/run.py [--methods dm dsa dc] [--ipc 1 10 50] [--steps 3] [--batch-real 256]
                        [--device cpu] [--out outputs/bench/run.json]

Each (method, IPC, objective) runs in its own subprocess on random 3x32x32 data (10 classes, 500 images per
class; speed does not depend on pixel values), so peak memory (max RSS on CPU, max allocated on CUDA) is
per configuration. Objectives: ``cvar=none`` and ``cvar.alpha=0.8`` (for DC/DSA with target matching,
network and both). After one warm-up step it times ``--steps`` matching steps (real batch -> group losses
-> risk -> update), and for DC/DSA one inner-loop training of the network (``after_update``), from which
seconds per iteration = outer_loop * step + (outer_loop - 1) * inner. Prints a table, writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_config, peak_memory_mb, random_cifar_data, run_worker, timed, write_report  # noqa: E402

OBJECTIVES = {"dm": ["none", "matching"], "dc": ["none", "matching", "network", "both"],
              "dsa": ["none", "matching", "network", "both"]}


def worker(method: str, ipc: int, objective: str, steps: int, batch_real: int, device: str) -> dict:
    from gdrdd import build
    from gdrdd.runtime import tune_allocator

    tune_allocator()
    overrides = [f"method={method}", "dataset=cifar10", f"ipc={ipc}", f"method.batch_real={batch_real}",
                 "experiment=reference"]
    overrides += ["cvar=none"] if objective == "none" else ["cvar.alpha=0.8", f"cvar.target={objective}"]
    cfg = compose_config(overrides)
    spec = build.dataset_spec(cfg)
    data = random_cifar_data(spec, device)
    module = build.distill_module(cfg, data, spec).to(device)
    matcher, optimizer = module.matcher, module.configure_optimizers()
    matcher.start_iteration(device)

    def step() -> None:
        real = data.sample_real(batch_real)
        out = matcher.group_losses(real, module.synthetic_by_class(), module.grouping)
        optimizer.zero_grad()
        module.risk(out.losses, out.counts).objective.backward()
        optimizer.step()

    step()  # warm-up
    step_seconds = statistics.median(timed(step, device) for _ in range(steps))
    outer = matcher.updates_per_iteration
    inner = lambda: matcher.after_update(module.synthetic_by_class().detach(), is_last=False)  # noqa: E731
    inner_seconds = timed(inner, device) if outer > 1 else 0.0
    return {"method": method, "ipc": ipc, "objective": objective, "step_s": step_seconds, "inner_s": inner_seconds,
            "outer_loop": outer, "iteration_s": outer * step_seconds + (outer - 1) * inner_seconds,
            "peak_mb": peak_memory_mb(device), "device": device, "batch_real": batch_real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["dm", "dsa", "dc"], choices=sorted(OBJECTIVES))
    parser.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--objectives", nargs="+", default=None, help="a subset of none, matching, network, both")
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/run.json")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "IPC", "OBJECTIVE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, ipc, objective = args.worker
        print(json.dumps(worker(method, int(ipc), objective, args.steps, args.batch_real, args.device)))
        return
    rows = []
    for method in args.methods:
        for ipc in args.ipc:
            for objective in (o for o in OBJECTIVES[method] if args.objectives is None or o in args.objectives):
                row = run_worker(__file__, [method, str(ipc), objective, "--steps", str(args.steps),
                                            "--batch-real", str(args.batch_real), "--device", args.device])
                plain = next((r for r in rows if r["method"] == method and r["ipc"] == ipc and r["objective"] == "none"), row)
                row["ratio_to_none"] = row["iteration_s"] / plain["iteration_s"]
                rows.append(row)
                print(f"{method:<4} ipc {ipc:<3} {objective:<9} step {row['step_s']:7.3f} s  inner {row['inner_s']:7.3f} s  "
                      f"iteration {row['iteration_s']:8.2f} s  x{row['ratio_to_none']:.2f} vs none  "
                      f"peak {row['peak_mb']:7.0f} MB", flush=True)
    write_report(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
