"""Evaluation of several fresh networks: a loop of networks against one vmapped stack of them.

    python bench/eval_vmap.py [--nets 3] [--images 100] [--epochs 20] [--test 10000] [--rounds 2] [--device cpu]
                              [--out outputs/bench/eval_vmap.json]

The evaluation protocol trains ``--nets`` fresh ConvNet-3s (CIFAR-10 sizes, instance norm) on the same
synthetic set (SGD, momentum 0.9, weight decay 5e-4, one batch per epoch for up to 256 images) and tests each
on ``--test`` images. "loop" does this one network after another, as gdrdd's Evaluator does; "vmap" stacks the
networks' parameters (``torch.func.stack_module_state``) and runs every forward, backward and SGD update of all
networks at once (``torch.func.vmap`` of ``functional_call``; hand-written SGD with the same settings). Each
network sees its own augmented batch in both variants (augmentation outside the timed region). The script
first checks that both variants end at the same parameters, then reports the median seconds of interleaved
rounds for training and for the test pass. Prints a table, writes a JSON report.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import timed, write_report  # noqa: E402

from gdrdd.models.convnet import ConvNet  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def train_loop(nets: list[torch.nn.Module], batches: torch.Tensor, labels: torch.Tensor) -> None:
    """``batches`` ``(epochs, nets, B, ch, H, W)``: one SGD step per epoch for each network in turn."""
    for k, net in enumerate(nets):
        optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        for epoch_batches in batches:
            loss = F.cross_entropy(net(epoch_batches[k]), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def train_vmap(template: torch.nn.Module, params: dict, batches: torch.Tensor, labels: torch.Tensor) -> dict:
    """The same SGD for a stack of networks (``params``: name -> ``(nets, ...)``); returns the new stack."""

    def loss_of(p, x):
        return F.cross_entropy(functional_call(template, p, (x,)), labels)

    grads_of = vmap(grad(loss_of))
    momenta = {name: torch.zeros_like(p) for name, p in params.items()}
    params = {name: p.detach().clone() for name, p in params.items()}  # no autograd history across steps
    for epoch_batches in batches:
        grads = grads_of(params, epoch_batches)
        for name, p in params.items():
            g = grads[name] + WEIGHT_DECAY * p
            momenta[name].mul_(MOMENTUM).add_(g)
            p.sub_(LR * momenta[name])
    return params


def train_vmap_into(result: dict, *args) -> None:
    """``train_vmap(*args)``, its parameters stored into ``result`` (for timing)."""
    result.update(train_vmap(*args))


def test_loop(nets: list[torch.nn.Module], test: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([torch.cat([net(x).argmax(1) for x in test.split(500)]) for net in nets])


def test_vmap(template: torch.nn.Module, params: dict, test: torch.Tensor) -> torch.Tensor:
    forward = vmap(lambda p, x: functional_call(template, p, (x,)), in_dims=(0, None))
    with torch.no_grad():
        return torch.cat([forward(params, x).argmax(2) for x in test.split(500)], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=int, default=3)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/eval_vmap.json")
    args = parser.parse_args()
    from gdrdd.utils.runtime import tune_allocator

    tune_allocator()
    device = torch.device(args.device)
    torch.manual_seed(0)
    labels = torch.arange(10, device=device).repeat_interleave(max(1, args.images // 10))
    batches = torch.randn(args.epochs, args.nets, len(labels), 3, 32, 32, device=device)
    test = torch.randn(args.test, 3, 32, 32, device=device)
    fresh = [ConvNet(3, 10, 32).to(device) for _ in range(args.nets)]
    template = copy.deepcopy(fresh[0]).to("meta")

    # Same start, same batches -> same end (up to float summation order).
    nets = copy.deepcopy(fresh)
    train_loop(nets, batches[:3], labels)
    stacked = train_vmap(template, stack_module_state(fresh)[0], batches[:3], labels)
    gap = max(float((stacked[name][k] - p.detach()).abs().max())
              for k, net in enumerate(nets) for name, p in net.named_parameters())
    print(f"largest parameter difference loop vs vmap after 3 steps: {gap:.2e}")

    times: dict[str, list[float]] = {"train_loop": [], "train_vmap": [], "test_loop": [], "test_vmap": []}
    for _ in range(args.rounds):
        nets = copy.deepcopy(fresh)
        times["train_loop"].append(timed(partial(train_loop, nets, batches, labels), args.device))
        params = stack_module_state(fresh)[0]
        result = {}
        times["train_vmap"].append(timed(partial(train_vmap_into, result, template, params, batches, labels),
                                         args.device))
        times["test_loop"].append(timed(partial(test_loop, nets, test), args.device))
        times["test_vmap"].append(timed(partial(test_vmap, template, result, test), args.device))
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.nets} ConvNet-3s, {len(labels)} images, {args.epochs} epochs, {args.test} test images, "
          f"{args.rounds} interleaved rounds (median s)")
    print("| part | loop | vmap | vmap / loop |\n|---|---|---|---|")
    for part in ("train", "test"):
        loop, vm = medians[f"{part}_loop"], medians[f"{part}_vmap"]
        print(f"| {part} | {loop:.2f} | {vm:.2f} | {vm / loop:.2f} |")
    write_report(args.out, {"settings": vars(args), "max_param_gap": gap, "seconds": times, "median": medians})


if __name__ == "__main__":
    main()
