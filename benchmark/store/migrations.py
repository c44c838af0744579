"""The additive migrations of the results store: bring a store written by an older snap-bench up to
:data:`~snap_bench.store.schema.SCHEMA_VERSION` in place, keeping every row.

Only the writer (:class:`~snap_bench.store.Store`) imports this module; the reader, and ``report`` and
``bench`` through it, never do (an import-linter contract in ``pyproject.toml`` checks it).
"""

from __future__ import annotations

import sqlite3

from snap_bench.store.schema import SCHEMA_VERSION

# (table, column, declaration): added when missing. Never drop or rename a column here; readers
# of older stores and the report generator depend on the existing ones.
COLUMNS = (
    ("runs", "heartbeat", "REAL"),  # v2: last sign of life of a running run (unix time)
)


def needs_migration(conn: sqlite3.Connection) -> bool:
    """Whether a store lacks a column of :data:`COLUMNS` or records an older schema version."""
    for table, column, _ in COLUMNS:
        if column not in {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}:
            return True
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return row is None or int(row["value"]) < SCHEMA_VERSION


def migrate(c: sqlite3.Connection) -> None:
    """Bring a store from any earlier schema version up to SCHEMA_VERSION, additively.

    Call it inside one write transaction, so two processes opening an old store at once do not both
    try to add the same column."""
    for table, column, decl in COLUMNS:
        have = {r["name"] for r in c.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or int(row["value"]) < SCHEMA_VERSION:
        c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
