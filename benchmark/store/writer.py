"""The results store a run or sweep writes: :class:`Store` (a :class:`StoreReader` plus the writes), the
claims and heartbeats of running runs, and the reaping of runs whose owner is gone.

A run row is written as ``running`` when training starts. Its metrics, every generation with
its verdict, and the ``done`` status are committed in ONE transaction at the end, so a reader
never sees a finished run with partial results; an exception marks the run ``failed`` with its
reason. WAL mode and a busy timeout let several processes share a store.

Crash safety: a killed process leaves its run ``running`` with its host and pid; every open of
the store marks such a run ``interrupted`` when its owner is gone (a dead pid on this host) or
its heartbeat (refreshed every ``HEARTBEAT_S`` by a background thread) is older than
``STALE_S``. A sweep claims a config hash atomically (:meth:`Store.claim_run`) before it runs it,
so two sweeps on one store never run the same configuration twice, and a dead owner's claim is
taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from snap_bench.errors import SnapBenchError
from snap_bench.records import StepResult
from snap_bench.store.reader import StoreReader, default_results_dir
from snap_bench.store.migrations import migrate, needs_migration
from snap_bench.store.schema import DB_NAME, ENV_HEARTBEAT_S, ENV_STALE_S, HEARTBEAT_S, SCHEMA, STALE_S
from snap_bench.util.redaction import redact


class Store(StoreReader):
    """The results store a run or sweep writes: created, migrated to the current schema and reaped of dead
    runs when opened, then written atomically (one transaction per change)."""

    def __init__(self, results_dir: Path | str | None = None):
        self.dir = Path(results_dir) if results_dir else default_results_dir()
        self.path = self.dir / DB_NAME
        check_env()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnapBenchError(f"results dir {self.dir}: cannot create ({exc.strerror})") from None
        if not os.access(self.dir, os.W_OK):
            raise SnapBenchError(f"results dir {self.dir}: not writable")
        try:
            self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=60000")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.row_factory = sqlite3.Row
            self.conn.executescript(SCHEMA)
            self._migrate()
            self.reap_stale()
        except sqlite3.DatabaseError as exc:
            raise SnapBenchError(f"results store {self.path}: {exc}") from None

    def _migrate(self) -> None:
        """Upgrade an older store in place (:func:`~snap_bench.store.migrations.migrate`), in one write transaction."""
        if not needs_migration(self.conn):
            return  # the usual case: no write lock taken just to open a store
        with self.transaction() as c:
            migrate(c)

    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()["value"])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # --- writing ---------------------------------------------------------------------------

    def start_run(self, *, config_hash: str, method: str, regularizer: str, mode: str, entities: list[str],
                  model: str, seed: int, config: dict[str, Any], versions: dict[str, str]) -> str:
        with self.transaction() as c:
            return self._insert_run(c, config_hash=config_hash, method=method, regularizer=regularizer, mode=mode,
                                    entities=entities, model=model, seed=seed, config=config, versions=versions)

    def claim_run(self, *, config_hash: str, **fields: Any) -> tuple[str, str]:
        """Atomically take ``config_hash`` for this process, unless it is done or a live process holds it.

        Returns ``("claimed", new_run_id)``, ``("done", run_id)`` or ``("busy", run_id)``. A claim
        whose owner is dead (see :meth:`reap_stale`) is marked interrupted and taken over."""
        with self.transaction() as c:
            self._reap(c)
            for status in ("done", "running"):
                r = c.execute("SELECT run_id FROM runs WHERE config_hash=? AND status=? ORDER BY created_at LIMIT 1",
                              (config_hash, status)).fetchone()
                if r:
                    return ("done" if status == "done" else "busy"), r["run_id"]
            return "claimed", self._insert_run(c, config_hash=config_hash, **fields)

    @staticmethod
    def _insert_run(c: sqlite3.Connection, *, config_hash: str, method: str, regularizer: str, mode: str,
                    entities: list[str], model: str, seed: int, config: dict[str, Any], versions: dict[str, str]) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        c.execute(
            "INSERT INTO runs (run_id, config_hash, method, regularizer, mode, entities, model, seed, config,"
            " versions, status, host, pid, created_at, heartbeat) VALUES (?,?,?,?,?,?,?,?,?,?,'running',?,?,?,?)",
            (run_id, config_hash, method, regularizer, mode, json.dumps(entities), model, seed,
             json.dumps(config, sort_keys=True, default=str), json.dumps(versions, sort_keys=True),
             socket.gethostname(), os.getpid(), now, now),
        )
        return run_id

    # --- liveness of running runs ----------------------------------------------------------

    def reap_stale(self) -> list[str]:
        """Mark every ``running`` run whose owner is gone as ``interrupted``; returns their ids."""
        if not self.conn.execute("SELECT 1 FROM runs WHERE status='running' LIMIT 1").fetchone():
            return []  # nothing running: no write lock needed
        with self.transaction() as c:
            return self._reap(c)

    def _reap(self, c: sqlite3.Connection) -> list[str]:
        now, host, stale = time.time(), socket.gethostname(), _env_seconds(ENV_STALE_S, STALE_S)
        # A dead pid counts only once the heartbeat has also missed two beats: two containers can share
        # a host name but not a pid namespace, and a live process there must not lose its run.
        grace = 2 * _env_seconds(ENV_HEARTBEAT_S, HEARTBEAT_S) + 1
        reaped = []
        for r in c.execute("SELECT run_id, host, pid, heartbeat FROM runs WHERE status='running'").fetchall():
            why = None
            quiet = r["heartbeat"] is None or now - r["heartbeat"] > grace
            if r["host"] == host and r["pid"] and quiet and not pid_alive(r["pid"]):
                why = f"interrupted: owner process {r['pid']} on {host} is gone (killed or crashed)"
            elif r["heartbeat"] is not None and now - r["heartbeat"] > stale:
                why = (f"interrupted: no heartbeat for {now - r['heartbeat']:.0f} s from {r['host']}:{r['pid']} "
                       f"(limit {stale:g} s)")
            if why:
                self._mark(c, r["run_id"], "interrupted", why, now, only_running=True)
                reaped.append(r["run_id"])
        return reaped

    def start_heartbeat(self, run_id: str) -> "Heartbeat":
        """Refresh the run's heartbeat from a background thread until ``.stop()``.

        A thread (not the training loop) beats, so a long phase without callbacks (model load,
        lm-eval) never looks dead; only a killed, frozen or unreachable process stops beating."""
        return Heartbeat(self.path, run_id, _env_seconds(ENV_HEARTBEAT_S, HEARTBEAT_S))

    @staticmethod
    def _write_step(c: sqlite3.Connection, run_id: str, step: int, metrics: dict[str, dict[str, float | None]],
                    records: Iterable[Any], judge: str, losses: list[dict[str, float]] | None) -> None:
        c.executemany(
            "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
            [(run_id, step, ent, k, v) for ent, m in metrics.items() for k, v in m.items()],
        )
        c.executemany(
            "INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(run_id, step, r.item_id, r.entity, r.eval_set, r.question, r.response, int(r.obliterated),
              r.reason, judge) for r in records],
        )
        c.executemany(
            "INSERT OR REPLACE INTO losses VALUES (?,?,?,?,?)",
            [(run_id, step, i, k, v) for i, d in enumerate(losses or []) for k, v in d.items()],
        )

    def finish_run(self, run_id: str, timings: dict[str, float], step_results: Sequence[StepResult], judge: str,
                   analyses: dict[str, Any] | None = None) -> None:
        """Write every step's metrics, graded responses and losses, any analyses (probes, NLP scores) and
        mark the run done, atomically."""
        from snap_bench.util import faults

        with self.transaction() as c:
            for s in step_results:
                self._write_step(c, run_id, s.step, s.metrics, s.records, judge, s.losses)
            c.executemany(
                "INSERT OR REPLACE INTO analyses VALUES (?,?,?)",
                [(run_id, kind, json.dumps(payload, default=str)) for kind, payload in (analyses or {}).items()],
            )
            faults.point("finish_run")  # the crash tests kill the process here, mid-transaction
            c.execute(
                "UPDATE runs SET status='done', finished_at=?, timings=? WHERE run_id=?",
                (time.time(), json.dumps(timings), run_id),
            )

    def fail_run(self, run_id: str, reason: str, status: str = "failed") -> None:
        """Mark a run failed (or interrupted), dropping any metrics; the reason is stored redacted."""
        with self.transaction() as c:
            self._mark(c, run_id, status, reason, time.time())

    @staticmethod
    def _mark(c: sqlite3.Connection, run_id: str, status: str, reason: str, now: float,
              only_running: bool = False) -> None:
        c.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
        c.execute("DELETE FROM analyses WHERE run_id=?", (run_id,))
        c.execute(
            "UPDATE runs SET status=?, reason=?, finished_at=? WHERE run_id=?" + (" AND status='running'" if only_running else ""),
            (status, redact(reason)[:2000], now, run_id),
        )

    def record_saved_model(self, run_id: str, path: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO saved_models VALUES (?,?,?)", (run_id, path, time.time()))


def check_env() -> None:
    """Raise on a bad $SNAP_BENCH_STALE_S / $SNAP_BENCH_HEARTBEAT_S now, not halfway through a run."""
    for name, default in ((ENV_STALE_S, STALE_S), (ENV_HEARTBEAT_S, HEARTBEAT_S)):
        _env_seconds(name, default)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal check is all there is


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
        if not v > 0:
            raise ValueError
    except ValueError:
        raise SnapBenchError(f"{name}={raw!r}: expected a positive number of seconds") from None
    return v


class Heartbeat:
    """A daemon thread that stamps ``runs.heartbeat`` every ``every`` seconds, on its own connection."""

    def __init__(self, db_path: Path, run_id: str, every: float):
        self._stop = threading.Event()
        self._db_path, self._run_id, self._every = db_path, run_id, every
        self._thread = threading.Thread(target=self._run, name=f"snap-bench-heartbeat-{run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._db_path, timeout=60.0, isolation_level=None)
        try:
            while not self._stop.wait(self._every):
                try:
                    conn.execute("UPDATE runs SET heartbeat=? WHERE run_id=? AND status='running'",
                                 (time.time(), self._run_id))
                except sqlite3.Error:
                    pass  # a busy or full store this once; the next beat tries again
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
