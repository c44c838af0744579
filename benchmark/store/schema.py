"""The results store's schema: the SQLite DDL and its version, plus the store's constants (file name,
heartbeat and staleness defaults and their environment variables).

Schema changes are additive only (new tables and columns, each guarded; the upgrade of an older store is
:mod:`~snap_bench.store.migrations`), so a store written by an older snap-bench opens, upgrades in place and
keeps every row. Only the writer (:class:`~snap_bench.store.Store`) creates and migrates; the reader never
does, so it must cope with a store of any earlier version.
"""

from __future__ import annotations

DB_NAME = "snap_bench.sqlite"
SCHEMA_VERSION = 2
ENV_HEARTBEAT_S = "SNAP_BENCH_HEARTBEAT_S"
ENV_STALE_S = "SNAP_BENCH_STALE_S"
HEARTBEAT_S = 15.0
"""Seconds between a running run's heartbeats (``$SNAP_BENCH_HEARTBEAT_S``)."""
STALE_S = 300.0
"""A run whose heartbeat is older than this is presumed dead, whatever host owns it (``$SNAP_BENCH_STALE_S``)."""

SCHEMA = """
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
