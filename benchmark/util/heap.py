"""The process's heap policy: where freed tensor memory goes (glibc only).

Training frees ~1.7 GB of activations every step and allocates a slightly different pattern the
next; generation does the same per batch. Three policies, chosen with ``SNAP_BENCH_MALLOC``:

``trim`` (default)
    glibc's own malloc, plus ``malloc_trim(0)`` once at the end of every optimiser step and every
    generated batch. Between steps the freed blocks' pages go back to the OS, so the resident set
    does not creep up with fragmentation; within a step blocks are reused from the heap, so pages
    fault once a step at most, not once a tensor.
``glibc``
    glibc untouched (its dynamic mmap threshold, no trimming): as fast per step, but a fragmented
    heap keeps freed pages resident and the resident set grows over a run.
``mmap``
    Blocks of 128 KiB and more served by ``mmap`` and unmapped when freed (the policy before issue
    24): the resident set follows the live tensors exactly, but every activation gets fresh pages
    that fault on first touch, and 22 % of a run's CPU time went to the kernel (docs/speed.md).

An allocator loaded with ``LD_PRELOAD`` (jemalloc, mimalloc, tcmalloc) replaces glibc's malloc
altogether; the policy then reads ``preload:<name>`` and no glibc call is made.
docs/speed.md, "Allocator policy", has the measurements the default was chosen by.
Tensor values are untouched by any policy: only where their memory comes from changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from snap_bench.errors import SnapBenchError

ENV = "SNAP_BENCH_MALLOC"
POLICIES = ("trim", "glibc", "mmap")
DEFAULT = "trim"
ALIASES = {"default": "glibc"}  # the old SNAP_BENCH_MALLOC=default meant glibc's own policy
M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's default before its dynamic threshold starts raising it
PRELOADED = ("jemalloc", "mimalloc", "tcmalloc")

_policy: str | None = None
_trim = None  # libc.malloc_trim under the trim policy, else None


def requested() -> str:
    """The policy ``SNAP_BENCH_MALLOC`` asks for (the default when unset); a bad name is an error."""
    raw = os.environ.get(ENV, "").strip().lower() or DEFAULT
    name = ALIASES.get(raw, raw)
    if name not in POLICIES:
        raise SnapBenchError(f"{ENV}={raw}: expected one of {', '.join(POLICIES)}")
    return name


def _preloaded() -> str | None:
    for lib in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        base = os.path.basename(lib)
        for name in PRELOADED:
            if name in base:
                return name
    return None


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def apply_policy() -> str:
    """Put the requested policy in force (once per process; later calls return the same) and return its
    name: ``trim``, ``glibc``, ``mmap``, ``preload:<allocator>``, or ``none`` where there is no glibc
    (non-Linux, musl: their allocators return memory on their own)."""
    global _policy, _trim
    if _policy is not None:
        return _policy
    name = requested()
    pre = _preloaded()
    libc = _libc() if sys.platform.startswith("linux") else None
    if pre is not None:
        _policy = f"preload:{pre}"
    elif libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        _policy = "none"
    elif name == "mmap":
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        _policy = "mmap" if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) else "glibc"
    else:
        if name == "trim":
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
            _trim = libc.malloc_trim
        _policy = name
    return _policy


def policy() -> str:
    """The policy in force (applying the requested one if nothing has yet)."""
    return apply_policy()


def step_done() -> None:
    """Called at the end of every optimiser step and generated batch: under ``trim``, give the heap's free
    pages back to the OS (its cost is inside the step times of docs/speed.md); a no-op under the other policies."""
    if _trim is not None:
        _trim(0)
