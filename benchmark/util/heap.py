"""Make freed tensor memory go back to the operating system (glibc only).

glibc's malloc serves large blocks from its heap and keeps what is freed there for reuse. Training
frees ~1.7 GB of activations every step and allocates a slightly different pattern the next, so
the heap fragments and a SmolLM2-135M run's resident set grew by ~0.5 GB a step, to 6.5 GB,
while its live tensors were ~5 GB (measured with psutil; docs/speed.md, "Memory"). Blocks of 128 KiB and
more served by ``mmap`` are unmapped when freed, so the resident set follows the live tensors.
Tensor values are untouched: only where their memory comes from changes.

``SNAP_BENCH_MALLOC=default`` leaves glibc's own policy in place (e.g. to compare).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
THRESHOLD = 128 * 1024  # glibc's default before its dynamic threshold starts raising it
_done: bool | None = None


def release_freed_memory() -> bool:
    """Serve blocks >= 128 KiB by mmap from now on (setting the threshold also stops glibc raising it).

    Idempotent; returns whether the policy is in force (False on non-glibc systems or when disabled)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SNAP_BENCH_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt: their allocator already returns memory
        return _done
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    return _done
