"""The heap policies (benchmark/util/heap.py): trim at step ends (default), glibc untouched, mmap per block."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = """
import sys, torch
from snap_bench.util import heap


def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


policy = heap.apply_policy()
base = rss()
# Allocate and free blocks of shifting sizes, as activations do from one training step to the next,
# with a step end after each round (where the trainer and the generator call step_done).
for i in range(12):
    xs = [torch.ones(2_000_000 + 37_000 * i + 1000 * j) for j in range(40)]
    del xs
    heap.step_done()
print(policy, (rss() - base) / 1e6)
"""

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc policies")


def _child(env_extra: dict[str, str], code: str = CHILD):
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_BENCH_MALLOC", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **env_extra},
                         check=True)
    policy, grown = out.stdout.split()
    return policy, float(grown)


@linux
def test_the_default_trims_freed_blocks_at_step_ends():
    policy, grown = _child({})
    assert policy == "trim"
    assert grown < 30  # MB: ~330 MB were allocated and freed in each round; glibc untouched kept ~70 MB here


@linux
def test_mmap_policy_returns_every_block():
    policy, grown = _child({"SNAP_BENCH_MALLOC": "mmap"})
    assert policy == "mmap" and grown < 30


@linux
@pytest.mark.parametrize("value", ["glibc", "default"])  # "default" is the old spelling of glibc's own policy
def test_glibc_policy_leaves_the_allocator_alone(value):
    policy, _ = _child({"SNAP_BENCH_MALLOC": value})
    assert policy == "glibc"


@linux
def test_a_preloaded_allocator_is_named_and_left_alone():
    # The loader warns about a library it cannot find and goes on; the name alone says which allocator it is.
    code = "from snap_bench.util import heap; heap.step_done(); print(heap.apply_policy(), 0)"
    policy, _ = _child({"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"}, code)
    assert policy == "preload:jemalloc"


def test_a_bad_policy_is_one_line_and_exit_2():
    env = {**os.environ, "SNAP_BENCH_MALLOC": "bogus"}
    out = subprocess.run([sys.executable, "-m", "snap_bench", "list", "methods"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "snap-bench: error: SNAP_BENCH_MALLOC=bogus: expected one of trim, glibc, mmap"]
