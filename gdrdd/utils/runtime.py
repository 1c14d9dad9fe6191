"""Speed settings: the process's allocator (numerics unchanged), compiled network passes and mixed precision
(both opt-in)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import shutil
from typing import Callable, TypeVar

import torch

Compilable = TypeVar("Compilable", bound=Callable)

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
INNER_LOSS_SCALE = 2.0 ** 10  # float16: cross-entropy gradients of a batch sit near 1e-3, float16 underflows near 6e-8

# glibc mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap instead of returning them to the system.

    On glibc, every convolution output above the mmap threshold is otherwise mapped and page-faulted anew
    at each call, which made a CPU forward pass about 1.5x slower here. Equivalent to starting Python with
    ``MALLOC_MMAP_THRESHOLD_=2000000000 MALLOC_TRIM_THRESHOLD_=2147483647``. A no-op (returns False) off
    Linux/glibc; harmless on GPUs, whose memory this does not touch.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, 2_000_000_000) == 1
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # mallopt takes a C int
    return mmap_ok and trim_ok


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim``), for use between a run's phases: with
    ``tune_allocator`` freed memory otherwise stays resident, and the temporaries of one phase (reading the data,
    building the test sets) would add to the peak of the next. The freed blocks stay reusable. A no-op (returns
    False) off Linux/glibc."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        return libc.malloc_trim(0) == 1
    except AttributeError:  # a libc without malloc_trim
        return False


def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None off Linux or where it cannot be loaded."""
    if platform.system() != "Linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a Lightning-style ``precision`` name: ``32-true`` (none), ``bf16-mixed`` or
    ``16-mixed`` (bfloat16 or float16 autocast on ``device``'s type; a training loop under float16 autocast scales
    its loss, ``gradient_scaler``).

    The weight-cast cache is off: autocast otherwise keeps the first bfloat16 copy of every weight until the
    context exits, so a training loop inside one context would run every forward with the initial weights.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; accepted: {', '.join(PRECISIONS)}")
    if precision == "32-true":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=False)


def make_deterministic(mode: bool | str | None) -> None:
    """Deterministic kernels for a job without a Lightning Trainer (experts, ``evaluate.py``), as
    ``trainer.deterministic`` makes the Trainer set them for distillation: ``true`` (an operation without a
    deterministic CUDA kernel raises: the backward of ``grid_sample``, which DSA's scale and rotate use, and of
    bilinear ``interpolate``, which multi-formation uses), ``warn`` (such an operation warns and runs; the setting
    to use on GPUs), ``None``/``false`` (PyTorch's defaults). Sets ``CUBLAS_WORKSPACE_CONFIG`` (cuBLAS needs it
    for deterministic matrix products) unless already set, and turns cuDNN's benchmark autotuning off."""
    if not mode:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=mode == "warn")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor (random draws, indices) on ``device``: on CUDA through pinned memory without blocking the
    host, so the copy overlaps the queued kernels instead of waiting for them; elsewhere a plain ``.to``."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def float16_autocast(device: torch.device | str) -> bool:
    """The caller runs under float16 autocast on ``device``'s type (``False`` for a type without autocast)."""
    kind = torch.device(device).type
    try:
        return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.float16
    except RuntimeError:  # a device type without autocast (meta)
        return False


def gradient_scaler(device: torch.device | str) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler when the caller runs under float16 autocast on ``device`` (float16 gradients
    underflow without one), else ``None`` (float32 and bfloat16 need none). It starts at 2^10, not PyTorch's
    2^16, so the short training loops it serves lose fewer first steps to overflow."""
    return torch.amp.GradScaler(torch.device(device).type, init_scale=INNER_LOSS_SCALE) \
        if float16_autocast(device) else None


def scaled_grad(loss: torch.Tensor, inputs: tuple[torch.Tensor, ...] | list[torch.Tensor],
                create_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(loss, inputs, create_graph=create_graph)``; under float16 autocast the loss is
    multiplied by ``INNER_LOSS_SCALE`` first and the gradients divided by it, so the float16 gradients of the
    activations in between do not underflow (the differentiated gradients of gradient matching and MTT's unroll;
    a static scale: no host synchronisation). Elsewhere exactly ``autograd.grad``."""
    if not float16_autocast(loss.device):
        return torch.autograd.grad(loss, inputs, create_graph=create_graph)
    grads = torch.autograd.grad(loss * INNER_LOSS_SCALE, inputs, create_graph=create_graph)
    return tuple(g / INNER_LOSS_SCALE for g in grads)


def cpu_compiler_found() -> bool:
    """Whether ``torch.compile`` can build its C++ kernels on a CPU: ``$CXX``, g++, c++ or clang++ is on the path."""
    return any(c and shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++", "clang++"))


def compiled(fn: Compilable, enabled: bool) -> Compilable:
    """``torch.compile(fn)`` if ``enabled`` (a module or a function), else ``fn`` itself.

    The default (inductor) backend fuses the norm, activation and pooling around each convolution; on a CPU it
    builds C++ kernels with the system's compiler. The first call compiles (seconds to tens of seconds); fresh
    networks of the same architecture reuse that code, since parameters are inputs of the compiled graph. The
    numerics equal the eager ones up to summation order. Only for passes differentiated once at most: a graph
    that is differentiated twice (``create_graph=True``) must stay eager.
    """
    return torch.compile(fn) if enabled else fn
