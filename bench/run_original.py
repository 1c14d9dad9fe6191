"""Run an original dataset-distillation program unchanged on a CPU, with runtime patches applied from outside its
clone (nothing in the clone is edited). Executed by ``bench/vs_original.py`` with the Python that has the
original's dependencies (torch and torchvision); it imports nothing of gdrdd.

    python bench/run_original.py REFERENCE_DIR SCRIPT TIMING_JSON [the script's arguments...]

Patches:
- CUDA -> CPU: ``Tensor.cuda`` and ``Module.cuda`` return their argument unchanged; ``device='cuda'`` given to the
  tensor factories, to ``Tensor.to`` and ``Module.to`` means the CPU;
- torchvision's CIFAR files check: the MD5 check of the python release's files is replaced by a check that they
  exist (a locally prepared copy of the release, in its format, has other checksums); they are read as usual;
- NumPy: the aliases ``np.int``, ``np.float``, ``np.bool`` (removed in NumPy 1.24) are the builtins again;
- timing: the network constructor the script calls once per outer iteration (IDC: ``train.define_model``) is
  wrapped to record a timestamp, so TIMING_JSON gets the seconds of every outer iteration and the peak resident
  memory of the process.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import runpy
import sys
import time
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


def patch_numpy_aliases() -> None:
    """``np.int`` and friends, removed in NumPy 1.24, which older originals still call (IDC's CutMix box)."""
    import numpy as np

    for name, alias in (("int", int), ("float", float), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, alias)


def patch_cifar_check() -> None:
    """torchvision's CIFAR reader checks its files' MD5 sums: only that they exist, here."""
    from torchvision.datasets import cifar

    cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)


def record_iterations(module_name: str, function: str, stamps: list[float]) -> None:
    module = __import__(module_name)
    original = getattr(module, function)

    @functools.wraps(original)
    def stamped(*args, **kwargs):
        stamps.append(time.perf_counter())
        return original(*args, **kwargs)

    setattr(module, function, stamped)


TIMED = {"condense.py": ("train", "define_model")}  # script -> the function called once per outer iteration


def main() -> None:
    reference, script, timing, *args = sys.argv[1:]
    reference = str(Path(reference).resolve())
    sys.path.insert(0, reference)
    patch_cuda()
    patch_numpy_aliases()
    patch_cifar_check()
    stamps: list[float] = []
    if script in TIMED:
        record_iterations(*TIMED[script], stamps)
    start = time.perf_counter()
    sys.argv = [script, *args]
    runpy.run_path(str(Path(reference) / script), run_name="__main__")
    stamps.append(time.perf_counter())
    seconds = [b - a for a, b in zip(stamps, stamps[1:])]
    Path(timing).write_text(json.dumps({"seconds_per_iteration": seconds, "total_seconds": time.perf_counter() - start,
                                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
