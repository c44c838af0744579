"""The results store: one SQLite file (``results/snap_bench.sqlite`` by default).

A run row is written as ``running`` when training starts. Its metrics, every generation with
its verdict, and the ``done`` status are committed in ONE transaction at the end, so a reader
never sees a finished run with partial results; an exception marks the run ``failed`` with its
reason. WAL mode and a busy timeout let several processes share a store.

Crash safety: a killed process leaves its run ``running`` with its host and pid; every open of
the store marks such a run ``interrupted`` when its owner is gone (a dead pid on this host) or
its heartbeat (refreshed every ``HEARTBEAT_S`` by a background thread) is older than
``STALE_S``. A sweep claims a config hash atomically (:meth:`Store.claim_run`) before it runs it,
so two sweeps on one store never run the same configuration twice, and a dead owner's claim is
taken over. Schema changes are additive only (new tables and columns, each guarded), so a store
written by an older snap-bench opens, upgrades in place and keeps every row.
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
from typing import Any, Iterable, Iterator

from snap_bench.errors import SnapBenchError
from snap_bench.util.redaction import redact

DB_NAME = "snap_bench.sqlite"
SCHEMA_VERSION = 2
ENV_HEARTBEAT_S = "SNAP_BENCH_HEARTBEAT_S"
ENV_STALE_S = "SNAP_BENCH_STALE_S"
HEARTBEAT_S = 15.0
"""Seconds between a running run's heartbeats (``$SNAP_BENCH_HEARTBEAT_S``)."""
STALE_S = 300.0
"""A run whose heartbeat is older than this is presumed dead, whatever host owns it (``$SNAP_BENCH_STALE_S``)."""
# (table, column, declaration): added when missing. Never drop or rename a column here; readers
# of older stores and the report generator depend on the existing ones.
_COLUMNS = (
    ("runs", "heartbeat", "REAL"),  # v2: last sign of life of a running run (unix time)
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    method      TEXT NOT NULL,
    regularizer TEXT NOT NULL,
    mode        TEXT NOT NULL,
    entities    TEXT NOT NULL,      -- JSON list of slugs
    model       TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    config      TEXT NOT NULL,      -- JSON: the resolved config
    versions    TEXT NOT NULL,      -- JSON: package versions
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    reason      TEXT,
    host        TEXT,
    pid         INTEGER,
    created_at  REAL NOT NULL,
    finished_at REAL,
    timings     TEXT                -- JSON: seconds per phase
);
CREATE INDEX IF NOT EXISTS runs_hash ON runs (config_hash, status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,        -- sequential step (0 for single and batch runs)
    entity TEXT NOT NULL,
    metric TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, step, entity, metric)
);
CREATE TABLE IF NOT EXISTS generations (
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    item_id     TEXT NOT NULL,
    entity      TEXT NOT NULL,
    eval_set    TEXT NOT NULL,
    question    TEXT NOT NULL,
    response    TEXT NOT NULL,
    obliterated INTEGER NOT NULL,
    reason      TEXT,
    judge       TEXT NOT NULL,
    PRIMARY KEY (run_id, step, item_id)
);
CREATE TABLE IF NOT EXISTS losses (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    phase  INTEGER NOT NULL,        -- sequential step the training belongs to
    step   INTEGER NOT NULL,
    term   TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, phase, step, term)
);
CREATE TABLE IF NOT EXISTS analyses (
    run_id  TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,          -- "probes", "nlp", ...
    payload TEXT NOT NULL,          -- JSON, as printed under that key by `run --json`
    PRIMARY KEY (run_id, kind)
);
-- Added after schema 1 shipped; CREATE IF NOT EXISTS adds it to older stores when they open.
CREATE TABLE IF NOT EXISTS saved_models (
    run_id   TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
    path     TEXT NOT NULL,         -- absolute directory written by `run --save`
    saved_at REAL NOT NULL
);
"""


def default_results_dir() -> Path:
    return Path("results")


class StoreReader:
    """Read-only access to a results store, for report and bench: it opens the database read-only and never
    migrates, reaps or writes, so reading a store cannot change it (a run whose owner died stays ``running``
    here until a writer opens the store). ``Store`` adds the writes."""

    def __init__(self, results_dir: Path | str | None = None):
        self.dir = Path(results_dir) if results_dir else default_results_dir()
        self.path = self.dir / DB_NAME
        if not self.path.is_file():
            raise SnapBenchError(f"no results store at {self.path}")
        try:
            self.conn = _connect_read_only(self.path)
            self.conn.execute("SELECT 1 FROM runs LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise SnapBenchError(f"results store {self.path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY created_at"
        return [self._run_row(r) for r in self.conn.execute(q, (status,) if status else ())]

    def run(self, run_id: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._run_row(r) if r else None

    def done_run_for_hash(self, config_hash: str) -> str | None:
        r = self.conn.execute(
            "SELECT run_id FROM runs WHERE config_hash=? AND status='done' ORDER BY created_at LIMIT 1", (config_hash,)
        ).fetchone()
        return r["run_id"] if r else None

    def live_run_for_hash(self, config_hash: str) -> str | None:
        """The ``running`` run holding ``config_hash`` (a claim), if any."""
        r = self.conn.execute("SELECT run_id FROM runs WHERE config_hash=? AND status='running' LIMIT 1",
                              (config_hash,)).fetchone()
        return r["run_id"] if r else None

    def metrics(self, run_id: str) -> dict[int, dict[str, dict[str, float]]]:
        out: dict[int, dict[str, dict[str, float]]] = {}
        for r in self.conn.execute("SELECT step, entity, metric, value FROM metrics WHERE run_id=?", (run_id,)):
            out.setdefault(r["step"], {}).setdefault(r["entity"], {})[r["metric"]] = r["value"]
        return out

    def analyses(self, run_id: str) -> dict[str, Any]:
        rows = self.conn.execute("SELECT kind, payload FROM analyses WHERE run_id=?", (run_id,))
        return {r["kind"]: json.loads(r["payload"]) for r in rows}

    def losses(self, run_id: str) -> dict[int, list[dict[str, float]]]:
        """phase (sequential step) -> one ``{term: value}`` per optimiser step, in step order."""
        out: dict[int, dict[int, dict[str, float]]] = {}
        for r in self.conn.execute("SELECT phase, step, term, value FROM losses WHERE run_id=? ORDER BY phase, step",
                                   (run_id,)):
            out.setdefault(r["phase"], {}).setdefault(r["step"], {})[r["term"]] = r["value"]
        return {phase: [steps[k] for k in sorted(steps)] for phase, steps in out.items()}

    def saved_model(self, run_id: str) -> str | None:
        try:
            r = self.conn.execute("SELECT path FROM saved_models WHERE run_id=?", (run_id,)).fetchone()
        except sqlite3.OperationalError:  # a store from before the table, read without migrating it
            return None
        return r["path"] if r else None

    def generations(self, run_id: str, step: int | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM generations WHERE run_id=?" + (" AND step=?" if step is not None else "") + " ORDER BY step, item_id"
        args = (run_id, step) if step is not None else (run_id,)
        return [dict(r) for r in self.conn.execute(q, args)]

    @staticmethod
    def _run_row(r: sqlite3.Row) -> dict[str, Any]:
        d = dict(r)
        for k in ("entities", "config", "versions", "timings"):
            if d.get(k):
                d[k] = json.loads(d[k])
        return d


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL store needs its -shm file; where the folder is not writable and none
    exists, fall back to ``immutable`` (safe only because nothing can be writing such a store)."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA schema_version")
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=60000")
    conn.row_factory = sqlite3.Row
    return conn


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
            self.conn.executescript(_SCHEMA)
            self._migrate()
            self.reap_stale()
        except sqlite3.DatabaseError as exc:
            raise SnapBenchError(f"results store {self.path}: {exc}") from None

    def _migrate(self) -> None:
        """Bring a store from any earlier schema version up to SCHEMA_VERSION, additively.

        Runs in one write transaction, so two processes opening an old store at once do not both
        try to add the same column."""
        if not self._needs_migration():
            return  # the usual case: no write lock taken just to open a store
        with self.transaction() as c:
            for table, column, decl in _COLUMNS:
                have = {r["name"] for r in c.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or int(row["value"]) < SCHEMA_VERSION:
                c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _needs_migration(self) -> bool:
        for table, column, _ in _COLUMNS:
            if column not in {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}:
                return True
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return row is None or int(row["value"]) < SCHEMA_VERSION

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

    def finish_run(self, run_id: str, timings: dict[str, float], step_results: list[tuple], judge: str,
                   analyses: dict[str, Any] | None = None) -> None:
        """Write every step's (step, metrics, records, losses), any analyses (probes, NLP scores) and
        mark the run done, atomically."""
        from snap_bench.util import faults

        with self.transaction() as c:
            for step, metrics, records, losses in step_results:
                self._write_step(c, run_id, step, metrics, records, judge, losses)
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
