"""One DM step, gdrdd against the original implementation's step structure, and the speed options, side by side.

    python bench/dm_step.py [--ipc 10] [--batch-real 256] [--steps 5] [--variants ...] [--device cpu]
                            [--out outputs/bench/dm_step.json]

Setting: CIFAR-10 sizes (10 classes, 3x32x32, random pixels), ConvNet-3 width 128 with instance norm,
IPC 10, 256 real images per class, DSA. Every variant runs in its own subprocess (so the allocator setting and
peak memory are per variant) and reports the median seconds of its timed steps: ``--rounds`` rounds, each
running every variant once (``--steps`` steps after one warm-up step), so slow phases of a shared machine hit
every variant alike. A step includes drawing the fresh network. Variants:

- ``reference`` / ``reference+alloc``: the step as the original DM code structures it, re-created here for timing
  (not numerics): per class, draw the real batch by index, augment real and synthetic images with one seed (one
  DSA family per call, parameters drawn per sample then replaced by the first sample's, affine matrices built
  from Python lists, translation and cutout through meshgrid indexing), embed each separately, sum the squared
  mean-embedding distances; then one backward and SGD step. ``+alloc``: with gdrdd's allocator setting.
- ``gdrdd`` (allocator tuned, as ``train.py``), ``gdrdd-noalloc``: gdrdd's DM step (``cvar=none``).
- ``gdrdd-cvar``: the robust objective at alpha 0.8 (grouping and risk measure).
- ``gdrdd+whole`` / ``+chunk512`` / ``+chunk256``: the real images embedded in one forward pass, or in passes of
  512 / 256 images (``method.embed_batch``; ``gdrdd`` uses the configured default).
- ``gdrdd+channels_last``, ``gdrdd+bf16`` (``trainer.precision=bf16-mixed``), ``gdrdd+compile``
  (``method.compile=true``: the embeddings through ``torch.compile``, compiled in the warm-up step): one option
  each. ``gdrdd+width64`` / ``+width32``: the ConvNet-3 narrowed from 128 channels (``model.width``; the
  reduced protocol's network); ``gdrdd+width32+compile``: that network compiled, as ``experiment=reduced_dm`` runs
  it. ``gdrdd`` itself runs the network in the configured memory format
  (``method.channels_last``), as do the other variants unless they force it with ``+channels_last`` or
  ``+channels_first``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_config, peak_memory_mb, random_cifar_data, run_worker, timed, write_report  # noqa: E402

VARIANTS = ["reference", "reference+alloc", "gdrdd-noalloc", "gdrdd", "gdrdd-cvar", "gdrdd+whole", "gdrdd+chunk512",
            "gdrdd+chunk256", "gdrdd+channels_first", "gdrdd+channels_last", "gdrdd+bf16", "gdrdd-cvar+bf16",
            "gdrdd+compile", "gdrdd+width64", "gdrdd+width32", "gdrdd+width32+compile"]


class ReferenceStyleDSA:
    """DSA as the original code runs it inside DM: ``augment(x, seed)`` seeds the RNG, picks one family, draws
    one parameter per sample and keeps the first sample's for the whole batch."""

    def __init__(self, strategy: str = "color_crop_cutout_flip_scale_rotate") -> None:
        self.families = strategy.split("_")

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        self.seed = seed
        self._reseed()
        family = self.families[int(torch.randint(0, len(self.families), (1,)))]
        steps = {"color": [self._brightness, self._saturation, self._contrast], "crop": [self._translate],
                 "cutout": [self._cutout], "flip": [self._flip], "scale": [self._scale], "rotate": [self._rotate]}
        for op in steps[family]:
            x = op(x)
        return x.contiguous()

    def _reseed(self) -> None:
        torch.manual_seed(self.seed)
        self.seed += 1

    def _shared(self, *shape: int) -> torch.Tensor:
        self._reseed()
        values = torch.rand(*shape)
        values[:] = values[0].clone()
        return values

    def _brightness(self, x):
        return x + (self._shared(x.shape[0], 1, 1, 1).to(x.device) - 0.5)

    def _saturation(self, x):
        mean = x.mean(dim=1, keepdim=True)
        return (x - mean) * (self._shared(x.shape[0], 1, 1, 1).to(x.device) * 2.0) + mean

    def _contrast(self, x):
        mean = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - mean) * (self._shared(x.shape[0], 1, 1, 1).to(x.device) + 0.5) + mean

    def _flip(self, x):
        return torch.where(self._shared(x.shape[0], 1, 1, 1).to(x.device) < 0.5, x.flip(3), x)

    def _affine(self, x, rows):
        theta = torch.tensor(rows, dtype=torch.float)
        theta[:] = theta[0].clone()
        grid = F.affine_grid(theta, list(x.shape), align_corners=True).to(x.device)
        return F.grid_sample(x, grid, align_corners=True)

    def _scale(self, x):
        self._reseed()
        sx = torch.rand(x.shape[0]) * (1.2 - 1 / 1.2) + 1 / 1.2
        self._reseed()
        sy = torch.rand(x.shape[0]) * (1.2 - 1 / 1.2) + 1 / 1.2
        return self._affine(x, [[[float(sx[i]), 0.0, 0.0], [0.0, float(sy[i]), 0.0]] for i in range(x.shape[0])])

    def _rotate(self, x):
        self._reseed()
        angle = (torch.rand(x.shape[0]) - 0.5) * 2 * 15 / 180 * math.pi
        return self._affine(x, [[[math.cos(a), math.sin(-a), 0.0], [math.sin(a), math.cos(a), 0.0]]
                                for a in angle.tolist()])

    def _grid(self, x, shift_range):
        b, _, h, w = x.shape
        self._reseed()
        dx = torch.randint(*shift_range, size=[b, 1, 1], device=x.device)
        self._reseed()
        dy = torch.randint(*shift_range, size=[b, 1, 1], device=x.device)
        dx[:], dy[:] = dx[0].clone(), dy[0].clone()
        gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                    torch.arange(w, device=x.device), indexing="ij")
        return gb, gx, gy, dx, dy

    def _translate(self, x):
        h = x.shape[2]
        shift = int(h * 0.125 + 0.5)
        gb, gx, gy, dx, dy = self._grid(x, (-shift, shift + 1))
        gx, gy = torch.clamp(gx + dx + 1, 0, h + 1), torch.clamp(gy + dy + 1, 0, h + 1)
        padded = F.pad(x, [1, 1, 1, 1])
        return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)

    def _cutout(self, x):
        h = x.shape[2]
        cut = int(h * 0.5 + 0.5)
        gb, gx, gy, dx, dy = self._grid(x, (0, h + (1 - cut % 2)))
        gx, gy = torch.clamp(gx + dx - cut // 2, 0, h - 1), torch.clamp(gy + dy - cut // 2, 0, h - 1)
        mask = torch.ones(x.shape[0], h, h, dtype=x.dtype, device=x.device)
        mask[gb, gx, gy] = 0
        return x * mask.unsqueeze(1)


def reference_step_fn(ipc: int, batch_real: int, device: str):
    """The original step structure (see the module docstring), on the same data sizes and network."""
    from gdrdd.models import ConvNet

    classes, per_class = 10, 500
    g = torch.Generator().manual_seed(0)
    images_all = torch.randn(classes * per_class, 3, 32, 32, generator=g).to(device)
    indices_class = [list(range(c * per_class, (c + 1) * per_class)) for c in range(classes)]
    image_syn = torch.randn(classes * ipc, 3, 32, 32, generator=g).to(device).requires_grad_(True)
    optimizer = torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)
    augment = ReferenceStyleDSA()

    def step() -> None:
        net = ConvNet(3, classes, 32).to(device).train()
        for p in net.parameters():
            p.requires_grad = False
        loss = torch.tensor(0.0, device=device)
        for c in range(classes):
            idx = torch.randperm(len(indices_class[c]))[:batch_real]
            img_real = images_all[[indices_class[c][i] for i in idx.tolist()]]
            img_syn = image_syn[c * ipc:(c + 1) * ipc]
            seed = int(time.time() * 1000) % 100000
            out_real = net.embed(augment(img_real, seed)).detach()
            out_syn = net.embed(augment(img_syn, seed))
            loss = loss + ((out_real.mean(dim=0) - out_syn.mean(dim=0)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def gdrdd_step_fn(ipc: int, batch_real: int, device: str, robust: bool, options: set[str]):
    """gdrdd's DM step (network draw, real batch, group losses, risk, backward, SGD), with ``options``."""
    from gdrdd.jobs import build

    overrides = ["method=dm", "dataset=cifar10", f"ipc={ipc}", f"method.batch_real={batch_real}",
                 "experiment=reference"]
    overrides += ["cvar.alpha=0.8"] if robust else ["cvar=none"]
    overrides += ["method.compile=true"] if "compile" in options else []
    overrides += [f"model.width={o[len('width'):]}" for o in options if o.startswith("width")]
    cfg = compose_config(overrides)
    spec = build.dataset_spec(cfg)
    data = random_cifar_data(spec, device)
    module = build.distill_module(cfg, data, spec).to(device)
    matcher, optimizer = module.matcher, module.configure_optimizers()
    if "whole" in options:
        matcher.embed_batch = None
    for size in (o[len("chunk"):] for o in options if o.startswith("chunk")):
        matcher.embed_batch = int(size)
    if "channels_last" in options or "channels_first" in options:
        matcher.memory_format = torch.channels_last if "channels_last" in options else torch.contiguous_format
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled="bf16" in options)

    def step() -> None:
        matcher.start_iteration(device)
        real = data.sample_real(batch_real)
        with autocast:
            out = matcher.group_losses(real, module.synthetic_by_class(), module.grouping)
        optimizer.zero_grad()
        module.risk(out.losses.float(), out.counts).objective.backward()
        optimizer.step()

    return step


def worker(variant: str, ipc: int, batch_real: int, steps: int, device: str) -> dict:
    from gdrdd.utils.runtime import tune_allocator

    base, *opts = variant.split("+")
    if variant == "reference+alloc" or (base.startswith("gdrdd") and base != "gdrdd-noalloc"):
        tune_allocator()
    if base == "reference":
        step = reference_step_fn(ipc, batch_real, device)
    else:
        step = gdrdd_step_fn(ipc, batch_real, device, robust=base == "gdrdd-cvar", options=set(opts))
    step()  # warm-up
    seconds = [timed(step, device) for _ in range(steps)]
    return {"variant": variant, "step_s": statistics.median(seconds), "steps": seconds,
            "peak_mb": peak_memory_mb(device), "ipc": ipc, "batch_real": batch_real, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="outputs/bench/dm_step.json")
    parser.add_argument("--worker", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json

        print(json.dumps(worker(args.worker, args.ipc, args.batch_real, args.steps, args.device)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for round_index in range(args.rounds):
        for variant in args.variants:
            worker_args = [variant, "--ipc", str(args.ipc), "--batch-real", str(args.batch_real),
                           "--steps", str(args.steps), "--device", args.device]
            runs[variant].append(run_worker(__file__, worker_args))
            print(f"round {round_index + 1}: {variant:<22} {runs[variant][-1]['step_s']:6.3f} s", flush=True)
    rows = []
    for variant, results in runs.items():
        seconds = [t for r in results for t in r["steps"]]
        rows.append({"variant": variant, "step_s": statistics.median(seconds), "steps": seconds,
                     "peak_mb": max(r["peak_mb"] for r in results), "ipc": args.ipc, "batch_real": args.batch_real,
                     "device": args.device})
    by_name = {r["variant"]: r["step_s"] for r in rows}
    for r in rows:
        for ref in ("reference", "gdrdd"):
            if ref in by_name:
                r[f"ratio_to_{ref}"] = r["step_s"] / by_name[ref]
    for r in rows:
        print(f"{r['variant']:<22} median {r['step_s']:6.3f} s over {len(r['steps'])} steps  "
              f"peak {r['peak_mb']:6.0f} MB  "
              + "  ".join(f"x{r[k]:.2f} vs {k[9:]}" for k in ("ratio_to_reference", "ratio_to_gdrdd") if k in r))
    write_report(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
