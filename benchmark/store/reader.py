"""Read-only access to the results store, for report and bench (and every other reader).

Opening a :class:`StoreReader` never creates, migrates, reaps or writes: the connection itself is read-only,
so reading a store cannot change it. This module imports nothing of the writer
(:mod:`snap_bench.store.writer`), so a reader cannot reach the writes by accident.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.store.schema import DB_NAME


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
