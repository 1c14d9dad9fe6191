"""Cost of per-group real gradients for robust gradient matching, three exact ways against plain DC.

    python bench/group_gradients.py [--n 256] [--ipc 10] [--repeats 3] [--out outputs/bench/group_gradients.json]

For one class's real batch (``n`` CIFAR-10-sized images, ConvNet-3, instance norm) split into ``ipc`` groups:
- ``plain``: one forward + backward of the whole batch (what ``cvar=none`` pays);
- ``subset`` (gdrdd's choice): one forward + backward per group on that group's images only;
- ``masked``: one forward of the whole batch, then one backward per group of the group's masked mean loss;
- ``per_sample``: per-sample gradients with ``torch.func`` (vmap of grad, in chunks), summed per group.
Prints median seconds and the ratio to ``plain``, checks that all three agree, writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from gdrdd.matchers.gradient import group_gradients
from gdrdd.models import ConvNet
from gdrdd.utils.runtime import tune_allocator


def masked(net, params, x, label, ids, k):
    per_sample = F.cross_entropy(net(x), torch.full((len(x),), label), reduction="none")
    out = [p.new_zeros(k, *p.shape) for p in params]
    for g in range(k):
        mask = ids == g
        if mask.any():
            for acc, gr in zip(out, torch.autograd.grad(per_sample[mask].mean(), params, retain_graph=True)):
                acc[g] = gr
    return out


def per_sample(net, params, x, label, ids, k, chunk=64):
    names = [n for n, _ in net.named_parameters()]
    detached = {n: p.detach() for n, p in zip(names, params)}

    def loss(p, xi):
        return F.cross_entropy(functional_call(net, p, (xi[None],)), torch.tensor([label]))

    counts = torch.bincount(ids, minlength=k).clamp(min=1).to(x.dtype)
    out = [p.new_zeros(k, *p.shape) for p in params]
    for start in range(0, len(x), chunk):
        grads = vmap(grad(loss), in_dims=(None, 0))(detached, x[start:start + chunk])
        for acc, n in zip(out, names):
            acc.index_add_(0, ids[start:start + chunk], grads[n])
    return [acc / counts.view(-1, *[1] * (acc.dim() - 1)) for acc in out]


def plain(net, params, x, label, ids, k):
    return [g.unsqueeze(0) for g in torch.autograd.grad(F.cross_entropy(net(x), torch.full((len(x),), label)), params)]


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="outputs/bench/group_gradients.json")
    args = parser.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    net = ConvNet(3, 10, 32)
    params = list(net.parameters())
    x = torch.randn(args.n, 3, 32, 32)
    ids = torch.randint(0, args.ipc, (args.n,))
    ways = {"plain": plain, "subset": group_gradients, "masked": masked, "per_sample": per_sample}
    reference = group_gradients(net, params, x, 3, ids, args.ipc)[0]
    report = {"n": args.n, "ipc": args.ipc, "threads": torch.get_num_threads(), "seconds": {}, "max_abs_diff": {}}
    for name, fn in ways.items():
        run = lambda fn=fn: fn(net, params, x, 3, ids, args.ipc)  # noqa: E731
        report["seconds"][name] = median_seconds(run, args.repeats)
        if name != "plain":
            got = run()
            got = got[0] if isinstance(got, tuple) else got
            report["max_abs_diff"][name] = max(float((a - b).abs().max()) for a, b in zip(got, reference))
    base = report["seconds"]["plain"]
    print(f"per-group real gradients, n={args.n} images, {args.ipc} groups, ConvNet-3 on 3x32x32, "
          f"{report['threads']} threads")
    print(f"{'way':<12}{'seconds':>10}{'x plain':>10}{'max |diff| vs subset':>24}")
    for name, sec in report["seconds"].items():
        diff = report["max_abs_diff"].get(name, float("nan"))
        print(f"{name:<12}{sec:>10.3f}{sec / base:>10.2f}{diff:>24.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
