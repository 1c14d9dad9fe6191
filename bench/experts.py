"""Seconds per expert-training epoch on CIFAR-10-sized data, plain cross-entropy against the group-robust loss
(robust experts, groups from an IPC-sized initial synthetic set), from timed mini-batches.

    python bench/experts.py [--batches 20] [--ipc 10] [--train-size 50000] [--device cpu]
                            [--out outputs/bench/experts.json]

Times ``--batches`` SGD steps (batch 256, per-sample DSA, ConvNet-3) after one warm-up step on random
3x32x32 images, and extrapolates to an epoch of ``--train-size`` images (196 batches for CIFAR-10).
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_config, random_cifar_data, timed, write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=50000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/experts.json")
    args = parser.parse_args()

    from gdrdd.experts.trajectory import ExpertSettings
    from gdrdd.jobs import build
    from gdrdd.jobs.experts import expert_loss
    from gdrdd.models.fit import run_epochs
    from gdrdd.utils.runtime import tune_allocator

    tune_allocator()
    rows = []
    for objective in ("none", "network"):
        robust = [] if objective == "none" else ["cvar.target=network", "cvar.alpha=0.8"]
        cfg = compose_config(["task=experts", "dataset=cifar10", f"ipc={args.ipc}", *robust])
        spec = build.dataset_spec(cfg)
        data = random_cifar_data(spec, args.device)
        settings = ExpertSettings.from_config(cfg.experts)
        images, labels = data.training_set()
        kept = settings.batch_size * (args.batches + 1)
        images, labels = images[:kept], labels[:kept]
        torch.manual_seed(0)
        net = build.network_factory(cfg, spec)().to(args.device)
        optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum)
        augment, loss_fn = build.augmentation(cfg.experts.augment, spec), expert_loss(cfg, data)
        warm_x, warm_y = images[: settings.batch_size], labels[: settings.batch_size]
        run_epochs(net, optimizer, warm_x, warm_y, 1, settings.batch_size, augment, loss_fn=loss_fn)
        rest_x, rest_y = images[settings.batch_size:], labels[settings.batch_size:]
        seconds = timed(partial(run_epochs, net, optimizer, rest_x, rest_y, 1, settings.batch_size, augment,
                                loss_fn=loss_fn), args.device)
        per_batch = seconds / args.batches
        epoch = per_batch * math.ceil(args.train_size / settings.batch_size)
        rows.append({"objective": objective, "seconds_per_batch": per_batch, "seconds_per_epoch": epoch,
                     "batch_size": settings.batch_size, "ipc": args.ipc, "device": args.device})
        print(f"experts {objective:<8} {per_batch:6.3f} s per batch  ~{epoch:7.1f} s per {args.train_size}-image epoch",
              flush=True)
    rows[1]["ratio_to_none"] = rows[1]["seconds_per_epoch"] / rows[0]["seconds_per_epoch"]
    write_report(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
