"""Fault injection for the crash-recovery tests: stop the process at a named point.

``SNAP_BENCH_FAULT=POINT:N`` makes the N-th arrival at ``POINT`` in this process print
``snap-bench: fault: paused at POINT #N`` on stderr and sleep, so a test can ``kill -9`` a real
run at a known phase (training step, evaluation batch, inside the store's final transaction).
Unset (always, outside tests) each point costs one dictionary lookup.

With ``SNAP_BENCH_FAULT_ONCE=PATH`` as well, only the first process to get there pauses: it creates
``PATH`` (exclusively) and writes its pid into it, for the test to kill; every later arrival, in any
process, goes on. That is how the Ray tests kill one worker and let the retried task finish.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "SNAP_BENCH_FAULT"
ENV_ONCE = "SNAP_BENCH_FAULT_ONCE"
POINTS = ("train_step", "eval_batch", "finish_run")  # where point() is called; see the crash tests
_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth or 1) or not _first_across_processes():
        return
    print(f"snap-bench: fault: paused at {name} #{_hits[name]}", file=sys.stderr, flush=True)
    while True:  # wait for the test's SIGKILL
        time.sleep(60)


def _first_across_processes() -> bool:
    once = os.environ.get(ENV_ONCE)
    if not once:
        return True
    try:
        fd = os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False  # an earlier process paused here (and was killed)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    return True
