"""The process's allocator settings (``gdrdd.utils.runtime``), each checked in a fresh interpreter so the
test process keeps its own."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import torch
from gdrdd.utils.runtime import release_free_memory, tune_allocator

def resident_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

assert tune_allocator()
before = resident_mb()
x = torch.ones(64 * 2**20)  # 256 MB, written
del x
kept = resident_mb()
assert release_free_memory()
print(kept - before, resident_mb() - before)
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's allocator settings")
def test_tuned_heap_keeps_freed_memory_until_released():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    kept, released = map(float, out.split())
    assert kept > 200  # the freed 256 MB stays resident (no page faults when it is reused)
    assert released < 50  # and goes back to the system between phases


def test_deterministic_mode_for_jobs_without_a_trainer(monkeypatch):
    import torch

    from gdrdd.utils.runtime import make_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    benchmark = torch.backends.cudnn.benchmark
    try:
        make_deterministic(None)
        assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        make_deterministic("warn")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, False
