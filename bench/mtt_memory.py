"""MTT: peak memory and seconds of one distillation iteration against the number of student steps N,
plain unroll against the memory-bounded one (``method.checkpoint=true``), on CIFAR-10-sized data.

    python bench/mtt_memory.py [--ipc 10 50] [--steps 10 20 40 80] [--variants plain bounded] [--max-mb 12000]
                               [--max-seconds 300] [--device cpu] [--out outputs/bench/mtt_memory.json]

Each (IPC, N, checkpoint) runs in its own subprocess: a ConvNet expert segment (random start parameters and
a perturbed target), the synthetic set of IPC random images per class (all of them per student step, as the
reference CIFAR-10 settings), per-sample DSA, one iteration (unroll, loss, backward, update), timed without
warm-up. ``extra_mb`` is the peak memory of the iteration above what the process held before it (max RSS on
CPU, max allocated on CUDA). A configuration whose memory or time, extrapolated linearly in N from the last
measured one of the same kind, would pass ``--max-mb`` or ``--max-seconds`` is skipped and reported with its
estimate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mtt_module_with_one_expert, peak_memory_mb, run_worker, timed, write_report  # noqa: E402


def worker(ipc: int, steps: int, checkpoint: bool, device: str) -> dict:
    from gdrdd.utils.runtime import tune_allocator

    tune_allocator()
    module, data = mtt_module_with_one_expert([f"ipc={ipc}", f"method.syn_steps={steps}", "cvar=none",
                                               f"method.checkpoint={str(checkpoint).lower()}"], device)
    optimizer = module.configure_optimizers()
    before = peak_memory_mb(device)

    def iteration() -> None:
        out = module.matcher.group_losses(data.sample_real(1), module.synthetic_by_class(), module.grouping)
        optimizer.zero_grad()
        (module.risk(out.losses, out.counts).objective + out.base).backward()
        optimizer.step()

    seconds = timed(iteration, device)
    peak = peak_memory_mb(device)
    return {"ipc": ipc, "syn_steps": steps, "checkpoint": checkpoint, "seconds": seconds, "peak_mb": peak,
            "extra_mb": peak - before, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 20, 40, 80])
    parser.add_argument("--max-mb", type=float, default=12000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--variants", nargs="+", default=["plain", "bounded"], choices=["plain", "bounded"],
                        help="plain: the full unroll; bounded: method.checkpoint=true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/mtt_memory.json")
    parser.add_argument("--worker", nargs=3, metavar=("IPC", "STEPS", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json

        ipc, steps, checkpoint = args.worker
        print(json.dumps(worker(int(ipc), int(steps), checkpoint == "1", args.device)))
        return
    rows = []
    for ipc in args.ipc:
        last: dict[bool, dict] = {}
        for steps in sorted(args.steps):
            for checkpoint in [v == "bounded" for v in args.variants]:
                prev = last.get(checkpoint)
                if prev is not None:
                    grow = steps / prev["syn_steps"]
                    est_mb, est_s = prev["extra_mb"] * grow, prev["seconds"] * grow
                    if est_mb > args.max_mb or est_s > args.max_seconds:
                        row = {"ipc": ipc, "syn_steps": steps, "checkpoint": checkpoint, "skipped": True,
                               "estimated_extra_mb": est_mb, "estimated_seconds": est_s}
                        rows.append(row)
                        print(f"ipc {ipc:<3} N {steps:<3} checkpoint {checkpoint!s:<5} skipped: estimated "
                              f"{est_mb:8.0f} MB, {est_s:6.1f} s", flush=True)
                        continue
                row = run_worker(__file__, [str(ipc), str(steps), str(int(checkpoint)), "--device", args.device])
                last[checkpoint] = row
                rows.append(row)
                print(f"ipc {ipc:<3} N {steps:<3} checkpoint {checkpoint!s:<5} {row['seconds']:7.1f} s  "
                      f"extra {row['extra_mb']:8.0f} MB  peak {row['peak_mb']:8.0f} MB", flush=True)
    write_report(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
