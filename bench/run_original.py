"""Run an original dataset-distillation program unchanged on a CPU, with runtime patches applied from outside its
clone (nothing in the clone is edited). Executed by ``bench/vs_original.py`` with the Python that has the
original's dependencies (torch and torchvision); it imports nothing of gdrdd.

    python bench/run_original.py REFERENCE_DIR SCRIPT TIMING_JSON [--start FILE] [the script's arguments...]

Patches:
- CUDA -> CPU: ``Tensor.cuda`` and ``Module.cuda`` return their argument unchanged; ``device='cuda'`` given to the
  tensor factories, to ``Tensor.to`` and ``Module.to`` means the CPU;
- torchvision's CIFAR files check: the MD5 check of the python release's files is replaced by a check that they
  exist (a locally prepared copy of the release, in its format, has other checksums); they are read as usual;
- overlapping assignment: ``x[:] = x[0]`` (DatasetCondensation's siamese DSA draws one transform for a whole
  batch that way) is refused by PyTorch >= 2.1 as a write into its own source; ``Tensor.__setitem__`` copies a
  right-hand side that shares the target's storage first, which gives what older PyTorch computed;
- NumPy: the aliases ``np.int``, ``np.float``, ``np.bool`` (removed in NumPy 1.24) are the builtins again;
- torchvision without its compiled operators (a CUDA build of torchvision beside a CPU build of torch, what the
  package registry offers for a CPU-only torch): registering the fake implementation of an operator that did not
  load is skipped instead of failing torchvision's import; the originals use its data sets, transforms and image
  grid only, which need none of those operators;
- W&B (MTT's ``distill.py`` and DATM's ``DATM.py`` log to it and read their settings back from ``wandb.config``):
  a stand-in module with
  ``init``, ``config``, ``run.name``, ``log``, ``Histogram``, ``Image`` and ``finish`` that keeps nothing but the
  settings, as there is no W&B server to log to;
- MTT's final set: ``distill.py`` saves its images only at evaluations that improve on the best so far, so the
  first SGD optimiser built over one 4-D tensor (its synthetic images) and the first over one 0-D tensor (its
  learnable step size) are recorded, and after the script ends the images, their class-major labels (``--ipc``
  per class, MTT's order) and the step size are written to ``final/{images,labels,lr}_best.pt`` in the working
  folder (the MTT/DATM layout that ``evaluate.py`` reads); DATM's ``DATM.py`` likewise, its labels being the
  single 2-D tensor it builds an optimiser over (its learned logits);
- ``--start FILE`` (a saved ``(N, ch, H, W)`` tensor of network inputs, class-major): the synthetic set starts
  from it instead of the script's own random draw: the first SGD optimiser built over one tensor of that shape (the
  scripts build their synthetic images' optimiser right after drawing them) gets the file's values copied into
  that tensor, so both programs of a comparison can start from the same set (DC, DSA, DM and MTT);
- the run's start: the first single 4-D tensor an optimiser is built over (the synthetic images, after any
  ``--start``) is copied then and written to ``start_set.pt`` in the working folder as ``(images, labels)`` when
  the script ends (DC, DSA, DM, MTT), so its initial set can be scored like its result;
- timing: the network constructor the script calls once per outer iteration (IDC: ``train.define_model``; the
  DatasetCondensation scripts and MTT's ``distill.py``: ``utils.get_network``; DATM:
  ``utils.utils_baseline.get_network``, whose first two calls build the networks of its set-up, which picks the
  start images and labels them, and are not counted) is wrapped to record a timestamp,
  and the evaluation function (``utils.evaluate_synset``) to record its start and end, so TIMING_JSON gets the
  seconds of every outer iteration (an interval that contains an evaluation is not one), the seconds of every
  evaluation and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import resource
import runpy
import sys
import time
import types
from pathlib import Path

import torch


def on_cpu(device):
    return "cpu" if isinstance(device, (str, torch.device)) and str(device).startswith("cuda") else device


def patch_cuda() -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    for name in ("tensor", "zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint", "randperm", "eye",
                 "linspace", "as_tensor"):
        original = getattr(torch, name)

        @functools.wraps(original)
        def factory(*args, _original=original, **kwargs):
            if "device" in kwargs:
                kwargs["device"] = on_cpu(kwargs["device"])
            return _original(*args, **kwargs)

        setattr(torch, name, factory)
    for cls in (torch.Tensor, torch.nn.Module):
        original_to = cls.to

        @functools.wraps(original_to)
        def to(self, *args, _original=original_to, **kwargs):
            args = tuple(on_cpu(a) for a in args)
            if "device" in kwargs:
                kwargs["device"] = on_cpu(kwargs["device"])
            return _original(self, *args, **kwargs)

        cls.to = to


def patch_overlapping_assignment() -> None:
    original = torch.Tensor.__setitem__

    @functools.wraps(original)
    def setitem(self, key, value):
        if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() == self.untyped_storage().data_ptr():
            value = value.clone()
        return original(self, key, value)

    torch.Tensor.__setitem__ = setitem


def patch_numpy_aliases() -> None:
    """``np.int`` and friends, removed in NumPy 1.24, which older originals still call (IDC's CutMix box)."""
    import numpy as np

    for name, alias in (("int", int), ("float", float), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, alias)


def patch_missing_torchvision_ops() -> None:
    """``torch.library.register_fake`` of an operator that does not exist is skipped (module docstring)."""
    original = torch.library.register_fake

    @functools.wraps(original)
    def register_fake(op, *args, **kwargs):
        register = original(op, *args, **kwargs)

        def apply(fn):
            try:
                return register(fn)
            except RuntimeError:  # the operator's compiled library did not load
                return fn

        return apply

    torch.library.register_fake = register_fake


def patch_cifar_check() -> None:
    """torchvision's CIFAR reader checks its files' MD5 sums: only that they exist, here (nothing to patch where
    torchvision is not installed: a script that reads CIFAR through it fails at its own import)."""
    try:
        from torchvision.datasets import cifar
    except ImportError:
        return

    cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)


def wandb_stand_in() -> types.ModuleType:
    """A ``wandb`` module that keeps the settings given to ``init`` (``config._items``, as MTT reads them back)
    and logs nothing."""
    wandb = types.ModuleType("wandb")
    wandb.config = types.SimpleNamespace(_items={})
    wandb.run = types.SimpleNamespace(name="local")

    def init(config=None, **_):
        wandb.config._items = dict(vars(config) if isinstance(config, argparse.Namespace) else config or {})
        return wandb.run

    wandb.init = init
    wandb.log = lambda *args, **kwargs: None
    wandb.finish = lambda *args, **kwargs: None
    wandb.Histogram = wandb.Image = lambda *args, **kwargs: None
    return wandb


def record_optimisers(built: list[torch.optim.Optimizer], start: torch.Tensor | None = None,
                      initial: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Append every ``torch.optim.SGD`` the script builds to ``built``; with ``start``, copy it into the single
    tensor of the first one built over one tensor of ``start``'s shape (the synthetic images); append to
    ``initial`` a copy of the first single 4-D tensor an optimiser is built over (the synthetic set as the run
    starts). Returns the list of starts not yet used (``[start]`` until then)."""
    original = torch.optim.SGD
    pending = [start] if start is not None else []
    initial = [] if initial is None else initial

    class RecordedSGD(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)
            tensor = only_tensor(self)
            if pending and tensor is not None and tensor.shape == pending[0].shape:
                with torch.no_grad():
                    tensor.copy_(pending.pop())
                print(f"run_original: the synthetic set starts from the given {tuple(tensor.shape)} tensor",
                      flush=True)
            if not initial and tensor is not None and tensor.dim() == 4:
                initial.append(tensor.detach().cpu().clone())

    torch.optim.SGD = RecordedSGD
    return pending


def require_start_used(module_name: str, function: str, pending: list[torch.Tensor], setup: int = 0) -> None:
    """Stop at the first call of ``module_name.function`` after its ``setup`` calls (the network of the first
    iteration) if the start has not been copied into the synthetic set by then."""
    module = importlib.import_module(module_name)
    original = getattr(module, function)
    calls = [0]

    @functools.wraps(original)
    def checked(*args, **kwargs):
        calls[0] += 1
        if pending and calls[0] > setup:
            raise SystemExit(f"--start: no optimiser over a {tuple(pending[0].shape)} tensor was built before the "
                             "first network, so the start cannot be used; check its shape (IPC x classes images)")
        return original(*args, **kwargs)

    setattr(module, function, checked)


def only_tensor(optimiser: torch.optim.Optimizer) -> torch.Tensor | None:
    params = [p for group in optimiser.param_groups for p in group["params"]]
    return params[0] if len(params) == 1 else None


def save_final_set(built: list[torch.optim.Optimizer], ipc: int, folder: Path) -> None:
    """MTT's or DATM's synthetic images (the first optimiser's single 4-D tensor), their labels (DATM: the first
    single 2-D tensor, its logits; MTT: class-major class indices) and the learned step size (the first single
    0-D tensor) as ``folder/{images,labels,lr}_best.pt``."""
    tensors = [t for t in map(only_tensor, built) if t is not None]
    images = next(t for t in tensors if t.dim() == 4).detach().cpu()
    lr = next(t for t in tensors if t.dim() == 0).detach().cpu()
    logits = next((t for t in tensors if t.dim() == 2), None)
    labels = torch.arange(len(images) // ipc).repeat_interleave(ipc) if logits is None else logits.detach().cpu()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(images, folder / "images_best.pt")
    torch.save(labels, folder / "labels_best.pt")
    torch.save(lr, folder / "lr_best.pt")


def save_start_set(images: torch.Tensor, ipc: int, path: Path) -> None:
    """The run's initial synthetic set as ``(images, labels)`` (class-major, ``ipc`` per class), which
    ``evaluate.py`` reads (``format=pair``)."""
    torch.save((images, torch.arange(len(images) // ipc).repeat_interleave(ipc)), path)


def argument(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def images_per_class(args: list[str]) -> int:
    """The script's ``--ipc``, or the ``ipc`` of the config file it is given with ``--cfg`` (DATM)."""
    if "--ipc" in args:
        return int(argument(args, "--ipc"))
    import yaml

    return int(yaml.safe_load(Path(argument(args, "--cfg")).read_text())["ipc"])


def record_calls(module_name: str, function: str, events: list[tuple[str, float]], kind: str) -> None:
    """Wrap ``module_name.function`` to append ``(kind, time)`` to ``events`` when called; an evaluation function
    also appends ``("end of " + kind, time)`` when it returns."""
    module = importlib.import_module(module_name)
    original = getattr(module, function)

    @functools.wraps(original)
    def stamped(*args, **kwargs):
        events.append((kind, time.perf_counter()))
        result = original(*args, **kwargs)
        if kind == "evaluation":
            events.append(("end of evaluation", time.perf_counter()))
        return result

    setattr(module, function, stamped)


def iteration_seconds(events: list[tuple[str, float]], setup: int = 0) -> list[float]:
    """Seconds between consecutive network constructions (and the script's end) after the first ``setup`` ones,
    leaving out every interval in which an evaluation ran (those constructions build evaluation networks, not an
    iteration's)."""
    seconds, last, evaluated = [], None, False
    networks = [i for i, (kind, _) in enumerate(events) if kind == "network"]
    for kind, stamp in events[networks[setup] if setup else 0:]:
        if kind == "evaluation":
            evaluated = True
        elif kind == "network":
            if last is not None and not evaluated:
                seconds.append(stamp - last)
            last, evaluated = stamp, False
    return seconds


def evaluation_seconds(events: list[tuple[str, float]]) -> list[float]:
    starts = [stamp for kind, stamp in events if kind == "evaluation"]
    ends = [stamp for kind, stamp in events if kind == "end of evaluation"]
    return [b - a for a, b in zip(starts, ends)]


# script -> (module, the function called once per outer iteration, the evaluation function or None, the calls of
# that function that build set-up networks before the first iteration)
TIMED = {"condense.py": ("train", "define_model", None, 0),
         "main.py": ("utils", "get_network", "evaluate_synset", 0),
         "main_DM.py": ("utils", "get_network", "evaluate_synset", 0),
         "distill.py": ("utils", "get_network", "evaluate_synset", 0),
         "distill/DATM.py": ("utils.utils_baseline", "get_network", "evaluate_synset", 2)}


def main() -> None:
    reference, script, timing, *args = sys.argv[1:]
    start_set = None
    if args[:1] == ["--start"]:
        start_set = torch.load(args[1], map_location="cpu", weights_only=True)
        args = args[2:]
    reference = str(Path(reference).resolve())
    sys.path.insert(0, reference)
    patch_cuda()
    patch_overlapping_assignment()
    patch_numpy_aliases()
    patch_missing_torchvision_ops()
    patch_cifar_check()
    sys.modules["wandb"] = wandb_stand_in()
    optimisers: list[torch.optim.Optimizer] = []
    initial: list[torch.Tensor] = []
    pending_start = record_optimisers(optimisers, start_set, initial)
    events: list[tuple[str, float]] = []
    module, network, evaluation, setup = TIMED[script]
    record_calls(module, network, events, "network")
    require_start_used(module, network, pending_start, setup)
    if evaluation:
        record_calls(module, evaluation, events, "evaluation")
    start = time.perf_counter()
    sys.argv = [script, *args]
    runpy.run_path(str(Path(reference) / script), run_name="__main__")
    events.append(("network", time.perf_counter()))  # the end closes the last iteration
    if script in ("distill.py", "distill/DATM.py"):
        save_final_set(optimisers, images_per_class(args), Path("final"))
    if initial and script != "condense.py":  # IDC's optimised tensor is compact, in pixels: not a set to score
        save_start_set(initial[0], images_per_class(args), Path("start_set.pt"))
    Path(timing).write_text(json.dumps({
        "seconds_per_iteration": iteration_seconds(events, setup), "seconds_per_evaluation": evaluation_seconds(events),
        "total_seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
