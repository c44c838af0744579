"""The results store: one SQLite file (``results/snap_bench.sqlite`` by default).

A run row is written as ``running`` when training starts. Its metrics, every generation with
its verdict, and the ``done`` status are committed in ONE transaction at the end, so a reader
never sees a finished run with partial results; an exception marks the run ``failed`` with its
reason. WAL mode and a busy timeout let several processes share a store.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from snap_bench.errors import SnapBenchError

DB_NAME = "snap_bench.sqlite"
SCHEMA_VERSION = 1

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


class Store:
    def __init__(self, results_dir: Path | str | None = None):
        self.dir = Path(results_dir) if results_dir else default_results_dir()
        self.path = self.dir / DB_NAME
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
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise SnapBenchError(f"results store {self.path}: {exc}") from None
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

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
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.transaction() as c:
            c.execute(
                "INSERT INTO runs (run_id, config_hash, method, regularizer, mode, entities, model, seed, config,"
                " versions, status, host, pid, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,'running',?,?,?)",
                (run_id, config_hash, method, regularizer, mode, json.dumps(entities), model, seed,
                 json.dumps(config, sort_keys=True, default=str), json.dumps(versions, sort_keys=True),
                 socket.gethostname(), os.getpid(), time.time()),
            )
        return run_id

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
        with self.transaction() as c:
            for step, metrics, records, losses in step_results:
                self._write_step(c, run_id, step, metrics, records, judge, losses)
            c.executemany(
                "INSERT OR REPLACE INTO analyses VALUES (?,?,?)",
                [(run_id, kind, json.dumps(payload, default=str)) for kind, payload in (analyses or {}).items()],
            )
            c.execute(
                "UPDATE runs SET status='done', finished_at=?, timings=? WHERE run_id=?",
                (time.time(), json.dumps(timings), run_id),
            )

    def fail_run(self, run_id: str, reason: str, status: str = "failed") -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM analyses WHERE run_id=?", (run_id,))
            c.execute(
                "UPDATE runs SET status=?, reason=?, finished_at=? WHERE run_id=?",
                (status, reason[:2000], time.time(), run_id),
            )

    def record_saved_model(self, run_id: str, path: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO saved_models VALUES (?,?,?)", (run_id, path, time.time()))

    # --- reading ---------------------------------------------------------------------------

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
        r = self.conn.execute("SELECT path FROM saved_models WHERE run_id=?", (run_id,)).fetchone()
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
