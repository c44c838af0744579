"""``snap-bench sweep --executor ray``: the grid's runs as Ray tasks, with this process the store's only writer.

The driver (this process) claims each run's config hash in its store before it submits the run, beats its
heartbeat while the task runs, and writes what the task returns (run/worker.py): workers never open the
store, so it can stay on the driver's local disk however many nodes do the work. The rest is the local
executor's contract: a run done already is skipped (resume by config hash), and a run that fails in its own
code is recorded failed with its reason while the sweep goes on. New here: a task whose worker process or
node is lost (Ray raises a system error instead of returning) is submitted again, up to ``max_retries``
times, and recorded once; the attempts and what was lost are stored with the run (analysis ``executor``).

Without an address a local Ray instance is started (and stopped at the end), so the same command runs on a
laptop. docs/cluster.md covers Slurm and KubeRay.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from snap_bench.errors import SnapBenchError

POLL_S = 2.0  # how long the driver waits for a task before it looks at the store's other runs again


@dataclass
class RayOptions:
    """What ``sweep --executor ray`` asks of Ray."""

    address: str | None = None
    """A running cluster (``auto``, ``HOST:PORT``, ``ray://...``); None starts a local instance (or uses $RAY_ADDRESS)."""
    cpus_per_run: float = 1.0
    """CPUs each run's task reserves."""
    gpus_per_run: float = 0.0
    """GPUs each run's task reserves (Ray sets CUDA_VISIBLE_DEVICES for it)."""
    max_retries: int = 2
    """Times a run is submitted again after its worker process or node was lost; a run's own error is not retried."""


@dataclass
class _Job:
    plan: Any
    tag: str
    run_id: str | None = None
    attempts: int = 0
    lost: list[str] = field(default_factory=list)
    beat: Any = None


def import_ray():
    try:
        import ray
    except ImportError:
        raise SnapBenchError("--executor ray needs Ray: pip install 'snap-bench[cluster]' (or pip install ray)") from None
    return ray


def run_on_ray(jobs: list[tuple[Any, str]], store, summary: dict[str, Any], opts: RayOptions) -> None:
    """Run every (plan, tag) of ``jobs`` not done yet on Ray; counts go into ``summary`` as the local executor's do."""
    from snap_bench.run.worker import run_task

    ray = import_ray()
    # Ray prints what workers and raylets say on this process's stdout, which belongs to --json: send it to
    # stderr with our own progress lines for the whole Ray session.
    with contextlib.redirect_stdout(sys.stderr):
        started = not ray.is_initialized()
        if started:
            # The dashboard is a web server per instance; nothing here reads it.
            ray.init(address=opts.address, include_dashboard=False, logging_level="WARNING")
        try:
            task = ray.remote(run_task).options(num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run, max_retries=0)
            _Driver(ray, task, store, summary, opts).drive(jobs)
        finally:
            if started:
                ray.shutdown()


@contextlib.contextmanager
def _remember_ctrl_c(driver):
    """While the driver runs, a Ctrl-C also sets ``driver.interrupted`` before raising as usual: a call into Ray
    that catches the KeyboardInterrupt (seen as a driver that went on after SIGINT, in tests/test_sweep_ray.py)
    cannot lose it, because the loop checks the flag every turn."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        driver.interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Driver:
    def __init__(self, ray, task, store, summary: dict[str, Any], opts: RayOptions):
        self.ray, self.task, self.store, self.summary, self.opts = ray, task, store, summary, opts
        self.inflight: dict[Any, _Job] = {}
        self.waiting: list[_Job] = []  # runs another process holds: looked at again when nothing is in flight
        self.interrupted = False

    def drive(self, jobs: list[tuple[Any, str]]) -> None:
        # The task runs without progress bars: Ray would interleave every worker's bars on this terminal.
        pending = deque(_Job(replace(p, spec=replace(p.spec, progress=False)), tag) for p, tag in jobs)
        with _remember_ctrl_c(self):
            self._drive(pending)

    def _drive(self, pending: deque) -> None:
        try:
            while pending or self.inflight or self.waiting:
                if self.interrupted:  # a Ctrl-C that a call into Ray swallowed: honour it here
                    raise KeyboardInterrupt
                while pending and len(self.inflight) < self._window():
                    self._claim(pending.popleft())
                if not self.inflight:
                    if self.waiting:
                        time.sleep(POLL_S)
                        self.store.reap_stale()
                        pending.extend(self.waiting)
                        self.waiting.clear()
                    continue
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._collect(ref)
        except BaseException as exc:  # Ctrl-C or a broken store: what is in flight stops and is marked so
            self._abandon(f"interrupted ({type(exc).__name__})")
            raise

    def _window(self) -> int:
        """Runs claimed and submitted at once: twice what the cluster can run now, so the next ones are queued
        in Ray, without claiming (and heartbeating) the whole grid up front."""
        res, o = self.ray.cluster_resources(), self.opts
        slots = int(res.get("CPU", 0) // o.cpus_per_run) if o.cpus_per_run else 1 << 20
        if o.gpus_per_run:
            slots = min(slots, int(res.get("GPU", 0) // o.gpus_per_run))
        return 2 * max(slots, 1)

    def _claim(self, job: _Job) -> None:
        from snap_bench.run.execute import run_fields
        from snap_bench.run.sweep import note_skipped

        p = job.plan
        status, run_id = self.store.claim_run(config_hash=p.config_hash, **run_fields(p))
        if status == "done":
            note_skipped(self.summary, p, run_id, f"{job.tag}: done already ({run_id}), skipping")
        elif status == "busy":
            _say(f"{job.tag}: another process is running it ({run_id}); coming back to it")
            self.waiting.append(job)
        else:
            job.run_id, job.beat = run_id, self.store.start_heartbeat(run_id)
            self._submit(job)

    def _submit(self, job: _Job) -> None:
        job.attempts += 1
        again = f" (attempt {job.attempts} of {self.opts.max_retries + 1})" if job.attempts > 1 else ""
        _say(f"{job.tag}: submitted as {job.run_id}{again}")
        self.inflight[self.task.remote(job.plan, job.run_id, str(self.store.path))] = job

    def _collect(self, ref) -> None:
        exceptions = self.ray.exceptions
        job = self.inflight.pop(ref)
        try:
            out = self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # raised by our code outside run_task's own guard
            out = {"ok": False, "status": "failed", "reason": _first_line(exc)}
        except exceptions.RayError as exc:  # the worker process or its node was lost: not the run's fault
            why = f"attempt {job.attempts}: {type(exc).__name__}: {_first_line(exc)}"
            job.lost.append(why)
            if job.attempts <= self.opts.max_retries:
                _say(f"{job.tag}: worker lost ({why}); submitting it again")
                self._submit(job)
                return
            out = {"ok": False, "status": "failed",
                   "reason": f"worker lost in all {job.attempts} attempts; last: {why}"}
        job.beat.stop()
        self._record(job, out)

    def _record(self, job: _Job, out: dict[str, Any]) -> None:
        p, s = job.plan, self.summary
        executor = {"name": "ray", "attempts": job.attempts, "lost": job.lost, "worker": out.get("worker")}
        if not out["ok"]:
            self.store.fail_run(job.run_id, out["reason"], status=out["status"])
            s["failed"] += 1
            s["runs"].append({"run_id": job.run_id, "config_hash": p.config_hash, "skipped": False,
                              "failed": out["reason"], "attempts": job.attempts})
            _say(f"{job.tag}: FAILED: {out['reason']}")
            return
        self.store.finish_run(job.run_id, out["timings"], out["steps"], judge=out["judge"],
                              analyses={**out["analyses"], "executor": executor})
        s["ran"] += 1
        s["retried"] = s.get("retried", 0) + (job.attempts > 1)
        s["runs"].append({"run_id": job.run_id, "config_hash": p.config_hash, "skipped": False,
                          "metrics": out["result"]["metrics"], "attempts": job.attempts})
        _say(f"{job.tag}: done ({job.run_id})" + (f" after {job.attempts} attempts" if job.attempts > 1 else ""))

    def _abandon(self, reason: str) -> None:
        for ref, job in self.inflight.items():
            self.ray.cancel(ref, force=True)
            job.beat.stop()
            try:
                self.store.fail_run(job.run_id, reason, status="interrupted")
            except Exception as exc:  # noqa: BLE001  the next open of the store reaps the claim instead
                _say(f"warning: could not mark {job.run_id} interrupted ({exc})")
        self.inflight.clear()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[0].split())
    return text or type(exc).__name__


def _say(message: str) -> None:
    print(f"snap-bench sweep: {message}", file=sys.stderr, flush=True)
