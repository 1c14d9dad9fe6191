"""Speed settings: the process's allocator (numerics unchanged), compiled network passes and mixed precision
(both opt-in)."""

from __future__ import annotations

import contextlib
import ctypes
import platform
from typing import Callable, TypeVar

import torch

Compilable = TypeVar("Compilable", bound=Callable)

PRECISIONS = ("32-true", "bf16-mixed")

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
    """The autocast context of a Lightning-style ``precision`` name: ``32-true`` (none) or ``bf16-mixed``
    (bfloat16 autocast on ``device``'s type).

    The weight-cast cache is off: autocast otherwise keeps the first bfloat16 copy of every weight until the
    context exits, so a training loop inside one context would run every forward with the initial weights.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; accepted: {', '.join(PRECISIONS)}")
    if precision == "32-true":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


def compiled(fn: Compilable, enabled: bool) -> Compilable:
    """``torch.compile(fn)`` if ``enabled`` (a module or a function), else ``fn`` itself.

    The default (inductor) backend fuses the norm, activation and pooling around each convolution; on a CPU it
    builds C++ kernels with the system's compiler. The first call compiles (seconds to tens of seconds); fresh
    networks of the same architecture reuse that code, since parameters are inputs of the compiled graph. The
    numerics equal the eager ones up to summation order. Only for passes differentiated once at most: a graph
    that is differentiated twice (``create_graph=True``) must stay eager.
    """
    return torch.compile(fn) if enabled else fn
