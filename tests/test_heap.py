"""The heap policy that returns freed tensor memory to the OS (benchmark/util/heap.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import sys, torch
from snap_bench.util.heap import release_freed_memory


def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


on = release_freed_memory()
base = rss()
# Allocate and free blocks of shifting sizes, as activations do from one training step to the next.
for i in range(12):
    xs = [torch.ones(2_000_000 + 37_000 * i + 1000 * j) for j in range(40)]
    del xs
print(on, (rss() - base) / 1e6)
"""


def _child(env_extra):
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
    on, grown = out.stdout.split()
    return on == "True", float(grown)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc policy")
def test_freed_blocks_leave_the_resident_set():
    on, grown = _child({})
    assert on
    assert grown < 30  # MB: ~330 MB were allocated and freed in each round; glibc's default kept ~78 MB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc policy")
def test_the_policy_can_be_turned_off():
    on, _ = _child({"SNAP_BENCH_MALLOC": "default"})
    assert not on
