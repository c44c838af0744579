"""``snap-bench store import``: merge one or more archives (:mod:`~snap_bench.store.archive`) into a store,
creating it if needed.

All or nothing. Every archive is checked in full first (the manifest's format and version, each shard's size
and sha256, its gzip stream, every line's JSON and shape, the run counts) and every run id is compared with
the store, read-only; only then does the writer open the store (so a bad archive does not even create a
missing one) and write every new run in ONE transaction, which any error rolls back. A run the store already
holds with the same content (:func:`~snap_bench.store.archive.content_hash`) is skipped, so importing an
archive twice imports it once; a run id held with other content is refused, naming the archive and the store.

The shards are read twice, once to check and once to write, one shard in memory at a time rather than a
whole archive; the second read is checked against the sha256 of the same manifest, so the runs written are
the runs checked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from snap_bench.errors import SnapBenchError
from snap_bench.store.archive import (FORMAT, KEYS, MANIFEST, ROW_TABLES, RUN_COLUMNS, SAVED_MODEL, SHARD_RE, STATUSES,
                                      VERSION, content_hash, run_object)
from snap_bench.store.reader import StoreReader, default_results_dir
from snap_bench.store.schema import DB_NAME
from snap_bench.store.writer import Store

_KIND_TEXT = {"str": "a string", "int": "an integer", "num": "a number", "json": "a JSON value",
              "status": "one of " + ", ".join(STATUSES)}


def import_archives(archives: Sequence[Path | str], results_dir: Path | str | None) -> dict[str, Any]:
    """Merge ``archives`` into the store in ``results_dir``; returns the store and the imported and skipped counts."""
    paths = [Path(a) for a in archives]
    manifests, plan = _check_archives(paths)
    db = Path(results_dir or default_results_dir()) / DB_NAME
    _check_store(db, plan, paths)
    store = Store(results_dir)
    imported = 0
    try:
        with store.transaction() as c:
            for i, (archive, manifest) in enumerate(zip(paths, manifests)):
                for entry in manifest["shards"]:
                    for obj in shard_runs(archive, entry):
                        if plan[obj["run_id"]][1] == i:  # else an earlier archive brings the same run
                            imported += _write(c, obj, archive, store.path)
    finally:
        store.close()
    total = sum(m["runs"] for m in manifests)
    return {"store": str(store.path), "archives": [str(p) for p in paths], "runs": total, "imported": imported,
            "skipped": total - imported}


def _check_archives(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[str, tuple[str, int]]]:
    """Read and check every archive in full; returns their manifests and, per run id, its content hash and
    the first archive (index) that holds it. Two archives holding one run id with different content is refused."""
    manifests: list[dict[str, Any]] = []
    plan: dict[str, tuple[str, int]] = {}
    for i, archive in enumerate(paths):
        manifests.append(read_manifest(archive))
        seen: set[str] = set()
        for entry in manifests[-1]["shards"]:
            for obj in shard_runs(archive, entry):
                run_id, digest = obj["run_id"], content_hash(obj)
                if run_id in seen:
                    raise SnapBenchError(f"archive {archive}: run {run_id} appears twice (a corrupt archive); nothing imported")
                seen.add(run_id)
                if run_id in plan and plan[run_id][0] != digest:
                    raise SnapBenchError(f"run {run_id}: archive {paths[plan[run_id][1]]} and archive {archive} hold "
                                         f"different content ({plan[run_id][0][:12]} vs {digest[:12]}); nothing imported")
                plan.setdefault(run_id, (digest, i))
    return manifests, plan


def _check_store(db: Path, plan: dict[str, tuple[str, int]], paths: list[Path]) -> None:
    """Refuse, before anything is written, a run id the store already holds with other content. Read-only:
    a refused import leaves the store exactly as it was (no migration, no reaping)."""
    if not db.is_file():
        return
    reader = StoreReader(db.parent)
    try:
        held = {r["run_id"] for r in reader.conn.execute("SELECT run_id FROM runs")}
        for run_id in sorted(held & plan.keys()):
            digest, i = plan[run_id]
            theirs = content_hash(run_object(reader.conn, run_id))
            if theirs != digest:
                raise _conflict(run_id, paths[i], db, digest, theirs)
    finally:
        reader.close()


def _conflict(run_id: str, archive: Path, db: Path, ours: str, theirs: str) -> SnapBenchError:
    return SnapBenchError(f"run {run_id}: archive {archive} and the store {db} hold different content "
                          f"({ours[:12]} vs {theirs[:12]}); nothing imported")


def _write(c: sqlite3.Connection, obj: dict[str, Any], archive: Path, db: Path) -> int:
    """Insert one run inside the import's transaction: 1 when written, 0 when the store holds it already."""
    run_id = obj["run_id"]
    if c.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone():
        # checked before the transaction too; again here, since another writer may have added it since
        ours, theirs = content_hash(obj), content_hash(run_object(c, run_id))
        if ours != theirs:
            raise _conflict(run_id, archive, db, ours, theirs)
        return 0
    try:
        _insert(c, obj)
    except sqlite3.Error as exc:
        raise SnapBenchError(f"archive {archive}: run {run_id} cannot be written to {db} ({exc}); nothing imported") from None
    return 1


def _insert(c: sqlite3.Connection, obj: dict[str, Any]) -> None:
    run_id, run = obj["run_id"], obj["run"]
    cols = ["run_id", *RUN_COLUMNS]
    # JSON columns back to text as the writer writes them (json.dumps' defaults), so the store reads the same
    vals = [run_id] + [_encode(run[k]) if kind.startswith("json") else run[k] for k, kind in RUN_COLUMNS.items()]
    c.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
    for table, tcols in ROW_TABLES.items():  # in the archive's order, which keeps the original row order
        c.executemany(f"INSERT INTO {table} (run_id, {', '.join(tcols)}) VALUES (?{', ?' * len(tcols)})",
                      [(run_id, *(row[k] for k in tcols)) for row in obj[table]])
    c.executemany("INSERT INTO analyses (run_id, kind, payload) VALUES (?, ?, ?)",
                  [(run_id, kind, json.dumps(payload)) for kind, payload in obj["analyses"].items()])
    if obj["saved_model"] is not None:
        c.execute("INSERT INTO saved_models (run_id, path, saved_at) VALUES (?, ?, ?)",
                  (run_id, obj["saved_model"]["path"], obj["saved_model"]["saved_at"]))


def _encode(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


# --- reading and checking an archive ---------------------------------------------------------


def read_manifest(archive: Path) -> dict[str, Any]:
    """The archive's manifest, checked: this format and version, well-formed shard entries, consistent counts."""
    path = archive / MANIFEST
    if not archive.is_dir():
        raise SnapBenchError(f"archive {archive}: not a directory")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapBenchError(f"archive {archive}: no {MANIFEST} (not a snap-bench archive)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapBenchError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise SnapBenchError(f"{path}: not a {FORMAT} manifest")
    if m.get("version") != VERSION:
        raise SnapBenchError(f"{path}: archive version {m.get('version')!r} is unknown to this snap-bench (it reads {VERSION})")
    shards = m.get("shards")
    ok = isinstance(shards, list) and all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and SHARD_RE.fullmatch(s["file"])
        and isinstance(s.get("sha256"), str) and _count(s.get("runs")) and _count(s.get("bytes")) for s in shards)
    if not ok or len({s["file"] for s in shards}) != len(shards) or not _count(m.get("runs")) \
            or m["runs"] != sum(s["runs"] for s in shards):
        raise SnapBenchError(f"{path}: malformed manifest (shards must list distinct runs-NNNNN.jsonl.gz files with "
                             "sha256, runs and bytes that add up to runs)")
    return m


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def shard_runs(archive: Path, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The checked run objects of one shard; a shard that differs from its manifest entry, is not gzip, not
    UTF-8 JSON Lines or holds a malformed run raises a one-line error."""
    path = archive / entry["file"]
    try:
        packed = path.read_bytes()
    except OSError as exc:
        raise SnapBenchError(f"{path}: cannot read ({exc.strerror or exc}); nothing imported") from None
    if len(packed) != entry["bytes"]:
        raise SnapBenchError(f"{path}: {len(packed)} bytes, {MANIFEST} says {entry['bytes']} (truncated?); nothing imported")
    if hashlib.sha256(packed).hexdigest() != entry["sha256"]:
        raise SnapBenchError(f"{path}: sha256 differs from {MANIFEST} (corrupt or changed); nothing imported")
    try:
        data = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as exc:
        raise SnapBenchError(f"{path}: not a valid gzip file ({exc}); nothing imported") from None
    if data and not data.endswith(b"\n"):
        raise SnapBenchError(f"{path}: the last line has no newline (truncated); nothing imported")
    lines = data.split(b"\n")[:-1]
    if len(lines) != entry["runs"]:
        raise SnapBenchError(f"{path}: {len(lines)} runs, {MANIFEST} says {entry['runs']}; nothing imported")
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SnapBenchError(f"{path}: line {n}: not valid JSON ({exc}); nothing imported") from None
        yield validate_run(obj, f"{path}: line {n}")


def validate_run(obj: Any, where: str) -> dict[str, Any]:
    """Check a run object's shape (keys and column types, so the insert cannot half-fail on them); the numbers
    of REAL columns become floats, as the store gives them back."""
    if not isinstance(obj, dict) or set(obj) != set(KEYS):
        raise SnapBenchError(f"{where}: a run must be an object with the keys {', '.join(KEYS)}; nothing imported")
    if not isinstance(obj["run_id"], str) or not obj["run_id"]:
        raise SnapBenchError(f"{where}: run_id must be a non-empty string; nothing imported")
    where = f"{where} (run {obj['run_id']})"
    _check_row(obj["run"], RUN_COLUMNS, f"{where}: run")
    for table, cols in ROW_TABLES.items():
        if not isinstance(obj[table], list):
            raise SnapBenchError(f"{where}: {table} must be a list; nothing imported")
        for k, row in enumerate(obj[table]):
            _check_row(row, cols, f"{where}: {table}[{k}]")
    if not isinstance(obj["analyses"], dict):
        raise SnapBenchError(f"{where}: analyses must be an object (kind -> payload); nothing imported")
    if obj["saved_model"] is not None:
        _check_row(obj["saved_model"], SAVED_MODEL, f"{where}: saved_model")
    return obj


def _check_row(row: Any, cols: dict[str, str], where: str) -> None:
    if not isinstance(row, dict) or set(row) != set(cols):
        raise SnapBenchError(f"{where}: expected an object with the keys {', '.join(cols)}; nothing imported")
    for k, kind in cols.items():
        v = row[k]
        if not _fits(v, kind):
            raise SnapBenchError(f"{where}.{k}: {v!r:.60} is not {_KIND_TEXT[kind.rstrip('?')]}; nothing imported")
        if kind.startswith("num") and isinstance(v, int):
            row[k] = float(v)  # a REAL column gives 1.0 back for 1: the same value, and the same content hash


def _fits(v: Any, kind: str) -> bool:
    base = kind.rstrip("?")
    if v is None:
        return kind.endswith("?")
    if base == "json":
        return True
    if base in ("str", "status"):
        return isinstance(v, str) and (base == "str" or v in STATUSES)
    if isinstance(v, bool):  # JSON true is no integer here, though Python's bool is one
        return False
    return isinstance(v, int) if base == "int" else isinstance(v, (int, float))
