"""What a Ray task of ``snap-bench sweep --executor ray`` runs: one planned run, with no store of its own.

The sweep's driver claimed the run in its store and passes the run id. The worker runs the usual
:func:`~snap_bench.run.execute.execute` against a :class:`CapturedStore`, which keeps what the run would
have written (steps with their metrics, generations and losses; analyses; timings) and hands it back as
the task's result. The driver writes it, so the store has one writer and never needs to sit on a filesystem
that several nodes share.
"""

from __future__ import annotations

import os
import socket
from typing import Any


class CapturedStore:
    """The store interface ``execute`` uses, keeping the writes for the driver instead of making them."""

    def __init__(self, run_id: str, config_hash: str, path: str):
        self.run_id, self.config_hash, self.path = run_id, config_hash, path
        self.finished: dict[str, Any] | None = None
        self.failed: tuple[str, str] | None = None

    def start_run(self, *, config_hash: str, **_fields) -> str:
        if config_hash != self.config_hash:  # the worker planned something other than what the driver claimed
            raise RuntimeError(f"config hash {config_hash} differs from the claimed {self.config_hash}")
        return self.run_id

    def finish_run(self, run_id: str, timings, step_results, judge: str, analyses=None) -> None:
        self.finished = {"timings": timings, "steps": list(step_results), "judge": judge, "analyses": analyses or {}}

    def fail_run(self, run_id: str, reason: str, status: str = "failed") -> None:
        self.failed = (status, reason)

    def record_saved_model(self, run_id: str, path: str) -> None:
        raise RuntimeError("a sweep does not save models")  # sweeps have no --save

    def start_heartbeat(self, _run_id: str):
        return self  # the driver beats for the runs it claimed

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def follow_assigned_cpus() -> int | None:
    """Set torch's intra-op threads to the CPUs Ray gave this task (``--cpus-per-run``), so two runs of one
    thread each share two cores instead of each spreading over both; returns the count (None outside Ray
    or for a fraction of a CPU, where torch keeps its default)."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001  not inside a Ray task (or an older Ray): leave torch as it is
        return None
    if not cpus or cpus < 1:
        return None
    import torch

    torch.set_num_threads(int(cpus))
    return int(cpus)


def run_task(p, run_id: str, store_path: str) -> dict[str, Any]:
    """Run plan ``p`` as ``run_id``; returns ``{"ok": True, ...the writes..., "result": ...}`` or
    ``{"ok": False, "status", "reason"}``. Errors of the run itself come back as values, so the driver
    can tell them from a lost worker (which Ray reports as an exception)."""
    from snap_bench.run.execute import execute
    from snap_bench.util.redaction import redact

    worker = {"host": socket.gethostname(), "pid": os.getpid(), "threads": follow_assigned_cpus()}
    store = CapturedStore(run_id, p.config_hash, store_path)
    try:
        result = execute(p, store=store)
    except Exception as exc:  # noqa: BLE001  recorded failed by the driver; the sweep goes on
        status, reason = store.failed or ("failed", f"{type(exc).__name__}: {exc}")
        return {"ok": False, "status": status, "reason": redact(" ".join(str(reason).split())), "worker": worker}
    return {"ok": True, **(store.finished or {}), "result": result, "worker": worker}
