"""Fault injection for the crash-recovery tests: stop the process at a named point.

``SNAP_BENCH_FAULT=POINT:N`` makes the N-th arrival at ``POINT`` in this process print
``snap-bench: fault: paused at POINT #N`` on stderr and sleep, so a test can ``kill -9`` a real
run at a known phase (training step, evaluation batch, inside the store's final transaction).
Unset (always, outside tests) each point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "SNAP_BENCH_FAULT"
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
    if _hits[name] != int(nth or 1):
        return
    print(f"snap-bench: fault: paused at {name} #{_hits[name]}", file=sys.stderr, flush=True)
    while True:  # wait for the test's SIGKILL
        time.sleep(60)
