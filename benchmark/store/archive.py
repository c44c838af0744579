"""The portable results archive: ``snap-bench store export`` writes every run of a store as gzip-compressed
JSON Lines shards plus a ``manifest.json``; ``snap-bench store import`` (:mod:`~snap_bench.store.archive_import`)
merges archives into a store.

An archive is a folder::

    manifest.json           {"format": "snap-bench-archive", "version": 1, "schema_version": N, "runs": total,
                             "shards": [{"file", "sha256", "runs", "bytes", "jsonl_bytes"}, ...]}
    runs-00001.jsonl.gz     one JSON object per line, one line per run, runs sorted by run_id
    runs-00002.jsonl.gz     ...

A shard holds whole runs, at most :data:`SHARD_BYTES` of *uncompressed* JSON Lines (a single larger run gets
a shard of its own); ``bytes`` and ``sha256`` are those of the compressed file. Each line is :func:`run_object`:
every row of the store that belongs to the run, the JSON columns decoded (see docs/store-and-reports.md).

Deterministic: the same store gives a byte-identical archive (runs by run_id, each table's rows in the
store's row order, which is the order its readers see; gzip with mtime 0, no file name, a fixed level). The
JSON columns keep the key order the store holds, rather than being sorted, so an imported store reads back
exactly as the original (reports iterate analysis payloads in that order). The export reads the store
read-only (:class:`StoreReader`, in one read transaction: a consistent snapshot while a sweep writes), and
builds the archive in a temporary folder next to ``--out`` that is renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.store.reader import StoreReader
from snap_bench.util.fsutil import atomic_write_bytes, replace_dir

FORMAT = "snap-bench-archive"
VERSION = 1
MANIFEST = "manifest.json"
SHARD_BYTES = 20_000_000
"""The most uncompressed JSON Lines bytes in one shard (20 MB); the size limit is on the uncompressed text
because it is known before compressing, so the split does not depend on the compressor."""
SHARD_RE = re.compile(r"runs-\d{5}\.jsonl\.gz")
GZIP_LEVEL = 6  # fixed: another level would give other bytes for the same store
STATUSES = ("running", "done", "failed", "interrupted")

# Column -> kind, for the runs row and the per-run tables. A "?" kind may be null; "json" columns hold JSON
# text in the store and a decoded value in the archive. The order here is the key order in the archive.
RUN_COLUMNS = {
    "config_hash": "str", "method": "str", "regularizer": "str", "mode": "str", "entities": "json", "model": "str",
    "seed": "int", "config": "json", "versions": "json", "status": "status", "reason": "str?", "host": "str?",
    "pid": "int?", "created_at": "num", "finished_at": "num?", "timings": "json?", "heartbeat": "num?",
}
ROW_TABLES = {
    "metrics": {"step": "int", "entity": "str", "metric": "str", "value": "num?"},
    "losses": {"phase": "int", "step": "int", "term": "str", "value": "num?"},
    "generations": {"step": "int", "item_id": "str", "entity": "str", "eval_set": "str", "question": "str",
                    "response": "str", "obliterated": "int", "reason": "str?", "judge": "str"},
}
SAVED_MODEL = {"path": "str", "saved_at": "num"}
KEYS = ("run_id", "run", "metrics", "losses", "generations", "analyses", "saved_model")
# Every column this module knows, per table: a store with any other column (a newer snap-bench) is refused
# rather than exported without it.
KNOWN_COLUMNS = {"runs": {"run_id", *RUN_COLUMNS}, **{t: {"run_id", *cols} for t, cols in ROW_TABLES.items()},
                 "analyses": {"run_id", "kind", "payload"}, "saved_models": {"run_id", *SAVED_MODEL}}


# --- one run as a JSON object ----------------------------------------------------------------


def run_object(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    """Every row of the store that belongs to ``run_id``, as the archive's JSON object (keys :data:`KEYS`)."""
    where = f"run {run_id}"
    row = dict(conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())
    run = {k: (_decode(row.get(k), f"{where}: runs.{k}") if kind.startswith("json") else row.get(k))
           for k, kind in RUN_COLUMNS.items()}  # .get: a schema-1 store has no heartbeat column
    obj: dict[str, Any] = {"run_id": run_id, "run": run}
    for table, cols in ROW_TABLES.items():
        # rowid order: the order the writer inserted them, which is the order a reader's dicts get
        q = f"SELECT {', '.join(cols)} FROM {table} WHERE run_id=? ORDER BY rowid"
        obj[table] = [dict(r) for r in conn.execute(q, (run_id,))]
    obj["analyses"] = {r["kind"]: _decode(r["payload"], f"{where}: analyses.{r['kind']}")
                       for r in conn.execute("SELECT kind, payload FROM analyses WHERE run_id=? ORDER BY rowid", (run_id,))}
    saved = None
    if _has_table(conn, "saved_models"):  # a schema-1 store read without migrating may lack it
        r = conn.execute("SELECT path, saved_at FROM saved_models WHERE run_id=?", (run_id,)).fetchone()
        saved = dict(r) if r else None
    obj["saved_model"] = saved
    return obj


def _decode(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise SnapBenchError(f"{what}: not valid JSON in the store ({exc})") from None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def line_bytes(obj: dict[str, Any]) -> bytes:
    """The archive's line for a run: compact JSON, keys in the object's own order, UTF-8, newline-terminated."""
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def content_hash(obj: dict[str, Any]) -> str:
    """The canonical content hash of a run object: sha256 of its JSON with sorted keys, so two copies of a
    run that differ only in the key order of a JSON column count as the same run."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_columns(conn: sqlite3.Connection, where: str) -> None:
    """Refuse a store whose tables have columns this snap-bench does not know (a newer schema)."""
    for table, known in KNOWN_COLUMNS.items():
        extra = sorted({r["name"] for r in conn.execute(f"PRAGMA table_info({table})")} - known)
        if extra:
            raise SnapBenchError(f"{where}: table {table} has columns this snap-bench does not know "
                                 f"({', '.join(extra)}); use the snap-bench that wrote the store")


def schema_version(conn: sqlite3.Connection) -> int | None:
    r = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(r["value"]) if r else None


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a timestamp or a file name, so equal data gives equal bytes."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


# --- export ----------------------------------------------------------------------------------


def export_archive(results_dir: Path | str | None, out_dir: Path | str, shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
    """Write every run of the store in ``results_dir`` as an archive at ``out_dir``; returns a summary.

    ``out_dir`` must be missing, empty or an earlier archive (which is replaced); it appears complete or
    not at all."""
    out = check_out_dir(out_dir)
    store = StoreReader(results_dir)
    try:
        check_columns(store.conn, f"results store {store.path}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            store.conn.execute("BEGIN")  # one snapshot: a sweep writing meanwhile cannot tear the archive
            try:
                manifest, statuses = _write_shards(store.conn, tmp, shard_bytes)
                manifest["schema_version"] = schema_version(store.conn)
            finally:
                store.conn.execute("COMMIT")
            atomic_write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), shared=True)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the archive private
            _place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        store.close()
    shards = manifest["shards"]
    return {"out": str(out), "store": str(store.path), "runs": manifest["runs"], "statuses": statuses,
            "shards": len(shards), "bytes": sum(s["bytes"] for s in shards)}


def _write_shards(conn: sqlite3.Connection, folder: Path, limit: int) -> tuple[dict[str, Any], dict[str, int]]:
    """Every run, by run_id, into shards of at most ``limit`` uncompressed bytes; returns the manifest's
    format, runs and shards, and the count of runs per status."""
    shards: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    buf: list[bytes] = []
    size = 0

    def flush() -> None:
        data = b"".join(buf)
        packed = gzip_bytes(data)
        name = f"runs-{len(shards) + 1:05d}.jsonl.gz"
        atomic_write_bytes(folder / name, packed, shared=True)
        shards.append({"file": name, "sha256": hashlib.sha256(packed).hexdigest(), "runs": len(buf),
                       "bytes": len(packed), "jsonl_bytes": len(data)})

    run_ids = [r["run_id"] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id")]
    for run_id in run_ids:
        obj = run_object(conn, run_id)
        statuses[obj["run"]["status"]] = statuses.get(obj["run"]["status"], 0) + 1
        line = line_bytes(obj)
        if buf and size + len(line) > limit:
            flush()
            buf, size = [], 0
        buf.append(line)
        size += len(line)
    if buf:
        flush()
    return {"format": FORMAT, "version": VERSION, "runs": len(run_ids), "shards": shards}, dict(sorted(statuses.items()))


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a folder snap-bench wrote as an archive: a manifest of this format and nothing
    but shard files beside it (so replacing it never deletes a file snap-bench did not write)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        names = [p.name for p in path.iterdir()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(manifest, dict) and manifest.get("format") == FORMAT
            and all(n == MANIFEST or SHARD_RE.fullmatch(n) for n in names))


def check_out_dir(out_dir: Path | str) -> Path:
    """``--out`` as an absolute path, refused unless it is missing, an empty folder or an earlier archive."""
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise SnapBenchError(f"--out {out_dir}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not is_archive(out):
        raise SnapBenchError(f"--out {out_dir}: directory exists, is not empty and is not a snap-bench archive; "
                             "choose a new or empty directory")
    return out


def _place(tmp: Path, final: Path) -> None:
    """Rename the finished archive into place; an earlier archive (or an empty folder) is moved aside first,
    since rename cannot replace a full folder, and put back if the rename fails."""
    check_out_dir(final)  # again: something may have appeared there while the shards were written
    try:
        replace_dir(tmp, final)
    except OSError as exc:
        raise SnapBenchError(f"--out {final}: could not write the archive ({exc.strerror or exc})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

