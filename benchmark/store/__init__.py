"""The results store: one SQLite file (``results/snap_bench.sqlite`` by default).

Four modules, read in this order: :mod:`~snap_bench.store.schema` (the DDL and the store's constants),
:mod:`~snap_bench.store.migrations` (the additive upgrades of older stores, used by the writer only),
:mod:`~snap_bench.store.reader` (:class:`StoreReader`: read-only, never migrates,
reaps or writes; what report and bench use) and :mod:`~snap_bench.store.writer` (:class:`Store`: creates,
migrates, reaps dead runs, claims config hashes, beats hearts and writes each change atomically). The reader
imports nothing of the writer. The names other code imports are re-exported here.

Beside them, the portable archive (``snap-bench store export | import``): :mod:`~snap_bench.store.archive`
(the format; export through the reader) and :mod:`~snap_bench.store.archive_import` (all-or-nothing import
through the writer). They are imported where used, not here, so opening a store loads neither.
"""

from snap_bench.store.reader import StoreReader, default_results_dir
from snap_bench.store.schema import DB_NAME, ENV_HEARTBEAT_S, ENV_STALE_S, HEARTBEAT_S, SCHEMA_VERSION, STALE_S
from snap_bench.store.writer import Heartbeat, Store, check_env, pid_alive

__all__ = ["DB_NAME", "ENV_HEARTBEAT_S", "ENV_STALE_S", "HEARTBEAT_S", "SCHEMA_VERSION", "STALE_S", "Heartbeat", "Store", "StoreReader", "check_env",
           "default_results_dir", "pid_alive"]
