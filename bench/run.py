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
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

OBJECTIVES = {"dm": ["none", "matching"], "dc": ["none", "matching", "network", "both"],
              "dsa": ["none", "matching", "network", "both"]}


def worker(method: str, ipc: int, objective: str, steps: int, batch_real: int, device: str) -> dict:
    from hydra import compose, initialize_config_dir

    from gdrdd import build
    from gdrdd.data import RealDataModule
    from gdrdd.runtime import tune_allocator

    tune_allocator()
    root = Path(__file__).resolve().parents[1]
    overrides = [f"method={method}", "dataset=cifar10", f"ipc={ipc}", f"method.batch_real={batch_real}",
                 "paths.output_dir=unused", "experiment=reference"]
    overrides += ["cvar=none"] if objective == "none" else ["cvar.alpha=0.8", f"cvar.target={objective}"]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    spec = build.dataset_spec(cfg)
    data = RealDataModule(spec, "unused", None)
    g = torch.Generator().manual_seed(0)
    data.class_images = [torch.randn(500, 3, 32, 32, generator=g) for _ in range(10)]
    data.test_images, data.test_labels = torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long)
    data.to(device)
    module = build.distill_module(cfg, data, spec).to(device)
    matcher, optimizer = module.matcher, module.configure_optimizers()
    matcher.start_iteration(device)

    def step() -> None:
        real = data.sample_real(batch_real)
        out = matcher.group_losses(real, module.synthetic_by_class(), module.grouping)
        optimizer.zero_grad()
        module.risk(out.losses, out.counts).objective.backward()
        optimizer.step()

    def timed(fn) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up
    step_seconds = statistics.median(timed(step) for _ in range(steps))
    outer = matcher.updates_per_iteration
    inner_seconds = timed(lambda: matcher.after_update(module.synthetic_by_class().detach(), is_last=False)) if outer > 1 else 0.0
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"method": method, "ipc": ipc, "objective": objective, "step_s": step_seconds, "inner_s": inner_seconds,
            "outer_loop": outer, "iteration_s": outer * step_seconds + (outer - 1) * inner_seconds,
            "peak_mb": peak / 2**20, "device": device, "batch_real": batch_real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["dm", "dsa", "dc"], choices=sorted(OBJECTIVES))
    parser.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    parser.add_argument("--steps", type=int, default=3)
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
            for objective in OBJECTIVES[method]:
                cmd = [sys.executable, __file__, "--worker", method, str(ipc), objective, "--steps", str(args.steps),
                       "--batch-real", str(args.batch_real), "--device", args.device]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                plain = next((r for r in rows if r["method"] == method and r["ipc"] == ipc and r["objective"] == "none"), row)
                row["ratio_to_none"] = row["iteration_s"] / plain["iteration_s"]
                rows.append(row)
                print(f"{method:<4} ipc {ipc:<3} {objective:<9} step {row['step_s']:7.3f} s  inner {row['inner_s']:7.3f} s  "
                      f"iteration {row['iteration_s']:8.2f} s  x{row['ratio_to_none']:.2f} vs none  "
                      f"peak {row['peak_mb']:7.0f} MB", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
