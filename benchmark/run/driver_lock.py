"""One Ray sweep driver per results store: a lock file beside the store, ``sweep.lock``.

A Ray driver is its store's only writer and takes the lock exclusively; local sweeps, which share a store
through claims and heartbeats, take it shared. So any number of local sweeps coexist, but a second driver
(Ray or local) next to a Ray driver is refused with one line instead of racing it. ``flock`` locks die
with their process, so a killed driver leaves no stale lock. Like SQLite's, they are unreliable on network
filesystems: the store belongs on the driver's local disk (docs/cluster.md).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from snap_bench.errors import SnapBenchError

LOCK_NAME = "sweep.lock"


class DriverLock:
    """Held from construction until :meth:`release`; raises SnapBenchError when another driver holds it."""

    def __init__(self, results_dir: Path, executor: str):
        results_dir.mkdir(parents=True, exist_ok=True)
        self.path = results_dir / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.exclusive = exclusive = executor != "local"
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            raise SnapBenchError(f"{results_dir} is in use by another sweep driver ({holder}); wait for it to "
                                 "finish or give another --results") from None
        # The file names the exclusive holder, for the next one's refusal; holding the lock at all proves any
        # name left there by a killed driver stale.
        os.ftruncate(self._fd, 0)
        if exclusive:
            os.write(self._fd, f"{executor} driver, pid {os.getpid()} on {socket.gethostname()} since "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())

    def _holder(self) -> str:
        try:
            text = os.pread(self._fd, 500, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        # Local sweeps write nothing (several hold it at once); an empty file means one or more of them.
        return text or "local sweep(s)"

    def release(self) -> None:
        if self._fd is not None:
            if self.exclusive:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
