"""Crashes, kills and concurrent writers never corrupt or drop results.

Real ``snap-bench sweep`` subprocesses on the tiny random model are killed with SIGKILL at known
phases (``SNAP_BENCH_FAULT`` parks the process at a named point and prints a marker; the test then
kills it from outside). The store must show the run as interrupted, never done with partial
metrics, and a re-run must complete the rest with every configuration done exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from packmaker import make_pack
from snap_bench.evaluate.metrics import EXTRA_METRICS, METRICS

SNAP_BENCH = [sys.executable, "-m", "snap_bench"]

N_METRICS = len(METRICS) + len(EXTRA_METRICS)  # UA..Avg, cross_RA..degenerate


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture(autouse=True)
def _fast_heartbeat(monkeypatch):
    """Beat every 0.2 s (here and in the subprocesses), so a killed owner is recognised within a second."""
    monkeypatch.setenv("SNAP_BENCH_HEARTBEAT_S", "0.2")


@pytest.fixture
def packs(tmp_path):
    return make_pack(tmp_path / "packs"), make_pack(tmp_path / "packs", slug="quorvax", name="Quorvax Dell")


def _two_run_suite(tmp_path, packs):
    """Run 1: sequential over two packs (train, eval, train, eval); run 2: single, snap+l2."""
    a, b = packs
    return _suite(tmp_path, f"""
        name: crash
        model: tiny-random
        set: {{max_steps: 3, eval_limit: 2, max_new_tokens: 4}}
        grid:
          - methods: [snap]
            entities: [["{a}", "{b}"]]
            modes: [sequential]
          - methods: [snap]
            regularizers: [l2]
            entities: [["{a}"]]
    """)


class Proc:
    """A real snap-bench subprocess whose stderr is read line by line in the background."""

    def __init__(self, args, env_extra=None, cwd=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONFAULTHANDLER": "1", **(env_extra or {})}
        self.p = subprocess.Popen([*SNAP_BENCH, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env, cwd=cwd)
        self.err: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stderr:
            self.err.append(line)

    def wait_for(self, marker: str, timeout: float = 240) -> None:
        t0 = time.time()
        while not any(marker in line for line in self.err):
            if self.p.poll() is not None and not self._t.is_alive():
                raise AssertionError(f"process ended ({self.p.returncode}) before {marker!r}:\n{''.join(self.err)}")
            if time.time() - t0 > timeout:
                state = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                os.kill(self.p.pid, signal.SIGABRT)  # faulthandler prints every thread's stack
                self.p.wait(timeout=30)
                self._t.join(timeout=5)
                raise AssertionError(f"no {marker!r} within {timeout}s (state {state[0]}, cpu ticks {state[11]}+{state[12]}):"
                                     f"\n{''.join(self.err)}")
            time.sleep(0.05)

    def kill(self) -> None:
        os.kill(self.p.pid, signal.SIGKILL)  # kill -9: no handler, no finally, no atexit runs
        self.p.wait(timeout=30)  # reaped, as a shell would

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        out, _ = self.p.communicate(timeout=timeout)
        self._t.join(timeout=5)
        return self.p.returncode, out, "".join(self.err)


def _rows(db: Path, sql: str, args=()):
    c = sqlite3.connect(db)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


# (fault point, what the killed process was doing). Points count arrivals within one process, and
# each process starts run 1 afresh: run 1 trains 3 steps per sequential step, one eval batch each.
KILL_POINTS = [
    ("train_step:2", "training (run 1, sequential step 1)"),
    ("eval_batch:1", "evaluation (run 1, after step 1's training)"),
    ("train_step:5", "training of sequential step 2, with step 1's metrics computed"),
    ("finish_run:1", "inside the store's final transaction, metrics written but not committed"),
]


def test_kill_9_at_each_phase_leaves_the_run_interrupted_and_a_rerun_completes_without_duplicates(cli, tmp_path,
                                                                                                   packs):
    """A chain: each sweep is killed at the next point, and each next sweep first finds the previous
    one's run dead. The last sweep, uninterrupted, completes the grid."""
    from snap_bench.store import Store

    suite, res = _two_run_suite(tmp_path, packs), tmp_path / "res"
    db = res / "snap_bench.sqlite"
    killed = []
    for fault, what in KILL_POINTS:
        proc = Proc(["sweep", "--suite", suite, "--results", res, "--no-progress"], {"SNAP_BENCH_FAULT": fault})
        proc.wait_for(f"fault: paused at {fault.split(':')[0]}")
        proc.kill()
        time.sleep(1)  # past the 2-beat grace
        # As the killed process left it: its run is 'running' (never 'done'), with no results at all
        # (for finish_run, the metrics it had inserted were rolled back with the transaction).
        rows = _rows(db, "SELECT run_id, status, pid FROM runs ORDER BY created_at")
        assert [s for _, s, _ in rows] == ["interrupted"] * len(killed) + ["running"], what
        run_id, _, owner = rows[-1]
        assert owner == proc.p.pid
        assert _rows(db, "SELECT COUNT(*) FROM metrics") == [(0,)], what
        assert _rows(db, "SELECT COUNT(*) FROM generations") == [(0,)], what
        assert _rows(db, "SELECT COUNT(*) FROM analyses") == [(0,)], what
        killed.append((run_id, owner))

    time.sleep(1)
    store = Store(res)  # the next open notices the dead owner
    runs = {r["run_id"]: r for r in store.runs()}
    store.close()
    for run_id, owner in killed:
        assert runs[run_id]["status"] == "interrupted"
        assert f"owner process {owner} on {socket.gethostname()} is gone" in runs[run_id]["reason"]

    again = cli("sweep", "--suite", suite, "--results", res, "--json", "--no-progress")
    assert again.code == 0, again.err
    assert again.json["ran"] == 2 and again.json["skipped"] == 0 and again.json["failed"] == 0
    rows = _rows(db, "SELECT run_id, config_hash, status FROM runs")
    assert sorted(s for _, _, s in rows) == ["done", "done"] + ["interrupted"] * len(KILL_POINTS)
    assert len({h for _, h, s in rows if s == "done"}) == 2  # each configuration done exactly once
    for r in again.json["runs"]:
        assert _rows(db, "SELECT COUNT(*) FROM metrics WHERE run_id=?", (r["run_id"],))[0][0] > 0
    for run_id, _ in killed:
        assert _rows(db, "SELECT COUNT(*) FROM metrics WHERE run_id=?", (run_id,)) == [(0,)]
    third = cli("sweep", "--suite", suite, "--results", res, "--json", "--no-progress")
    assert third.json["ran"] == 0 and third.json["skipped"] == 2


def _grid_suite(tmp_path, pack, regs=("swd", "l2", "none"), methods=("snap", "euclidean")):
    return _suite(tmp_path, f"""
        name: together
        model: tiny-random
        set: {{max_steps: 3, eval_limit: 2, max_new_tokens: 4}}
        grid:
          - methods: [{", ".join(methods)}]
            regularizers: [{", ".join(regs)}]
            entities: [["{pack}"]]
    """)


def test_two_sweeps_on_one_store_record_every_run_exactly_once(tmp_path, packs):
    suite, res = _grid_suite(tmp_path, packs[0]), tmp_path / "res"  # 2 methods x 3 regularizers = 6 runs
    procs = [Proc(["sweep", "--suite", suite, "--results", res, "--json", "--no-progress"]) for _ in range(2)]
    results = [p.finish() for p in procs]
    summaries = []
    for code, out, err in results:
        assert code == 0, err
        summaries.append(json.loads(out))
    assert all(s["total"] == 6 and s["failed"] == 0 for s in summaries)
    assert sum(s["ran"] for s in summaries) == 6  # the grid was split, nothing ran twice
    assert all(s["ran"] + s["skipped"] == 6 for s in summaries)  # each sweep accounts for every run
    db = res / "snap_bench.sqlite"
    rows = _rows(db, "SELECT config_hash, status FROM runs")
    assert len(rows) == 6 and {s for _, s in rows} == {"done"}
    assert len({h for h, _ in rows}) == 6
    ids = {r["run_id"] for s in summaries for r in s["runs"]}
    assert len(ids) == 6  # both sweeps report the same six stored runs
    for (run_id,) in _rows(db, "SELECT run_id FROM runs"):
        assert _rows(db, "SELECT COUNT(*) FROM metrics WHERE run_id=?", (run_id,))[0][0] == N_METRICS


def test_a_waiting_sweep_takes_over_the_claim_of_a_killed_one(tmp_path, packs):
    suite, res = _grid_suite(tmp_path, packs[0], regs=("default", "l2"), methods=("snap",)), tmp_path / "res"
    holder = Proc(["sweep", "--suite", suite, "--results", res, "--no-progress"], {"SNAP_BENCH_FAULT": "train_step:2"})
    holder.wait_for("fault: paused at train_step")  # alive and holding the claim on run 1
    other = Proc(["sweep", "--suite", suite, "--results", res, "--json", "--no-progress"])
    other.wait_for("another process is running it")
    other.wait_for("[2/2]")  # it went on with run 2 meanwhile
    holder.kill()
    code, out, err = other.finish()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ran"] == 2 and summary["failed"] == 0
    rows = _rows(res / "snap_bench.sqlite", "SELECT config_hash, status FROM runs ORDER BY created_at")
    assert [s for _, s in rows] == ["interrupted", "done", "done"]
    assert len({h for h, s in rows if s == "done"}) == 2


# --- store-level liveness and migration (no subprocess) ---------------------------------------


def _insert_running(db: Path, run_id: str, host: str, pid: int, heartbeat):
    c = sqlite3.connect(db)
    c.execute("INSERT INTO runs (run_id, config_hash, method, regularizer, mode, entities, model, seed, config, versions,"
              " status, host, pid, created_at, heartbeat) VALUES (?, ?, 'snap', 'swd', 'single', '[]', 'm', 0, '{}', '{}',"
              " 'running', ?, ?, ?, ?)", (run_id, "h-" + run_id, host, pid, time.time(), heartbeat))
    c.commit()
    c.close()


def test_stale_heartbeat_and_dead_pid_are_reaped_live_runs_are_not(tmp_path, monkeypatch):
    from snap_bench.store import Store

    Store(tmp_path).close()
    db = tmp_path / "snap_bench.sqlite"
    now = time.time()
    dead = subprocess.Popen(["true"])
    dead.wait()
    _insert_running(db, "stale-remote", "other-host", 1, now - 1000)
    _insert_running(db, "fresh-remote", "other-host", 1, now)
    _insert_running(db, "silent-remote", "other-host", 1, None)  # an old-schema row: no heartbeat to judge by
    _insert_running(db, "dead-local", socket.gethostname(), dead.pid, now - 60)
    _insert_running(db, "just-died-local", socket.gethostname(), dead.pid, now)  # within the 2-beat grace
    _insert_running(db, "live-local", socket.gethostname(), os.getpid(), now)
    monkeypatch.setenv("SNAP_BENCH_STALE_S", "300")
    monkeypatch.setenv("SNAP_BENCH_HEARTBEAT_S", "15")
    store = Store(tmp_path)
    status = {r["run_id"]: (r["status"], r["reason"]) for r in store.runs()}
    store.close()
    assert status["stale-remote"][0] == "interrupted" and "no heartbeat for 1" in status["stale-remote"][1]
    assert status["dead-local"][0] == "interrupted" and f"process {dead.pid}" in status["dead-local"][1]
    assert [status[k][0] for k in ("fresh-remote", "silent-remote", "live-local", "just-died-local")] == ["running"] * 4


def test_heartbeat_thread_refreshes_a_running_run(tmp_path, monkeypatch):
    from snap_bench.store import Store

    monkeypatch.setenv("SNAP_BENCH_HEARTBEAT_S", "0.05")
    store = Store(tmp_path)
    run_id = store.start_run(config_hash="h", method="snap", regularizer="swd", mode="single", entities=["x"],
                             model="m", seed=0, config={}, versions={})
    first = store.run(run_id)["heartbeat"]
    beat = store.start_heartbeat(run_id)
    time.sleep(0.5)
    beat.stop()
    assert store.run(run_id)["heartbeat"] > first
    store.close()


def test_claims_are_atomic_and_a_done_hash_is_never_claimed(tmp_path):
    from snap_bench.store import Store

    fields = dict(method="snap", regularizer="swd", mode="single", entities=["x"], model="m", seed=0, config={},
                  versions={})
    a, b = Store(tmp_path), Store(tmp_path)
    status, run_id = a.claim_run(config_hash="h1", **fields)
    assert status == "claimed"
    assert b.claim_run(config_hash="h1", **fields) == ("busy", run_id)  # a live owner: this process
    a.finish_run(run_id, {}, [], judge="rules")
    assert b.claim_run(config_hash="h1", **fields) == ("done", run_id)
    assert [r["status"] for r in b.runs()] == ["done"]
    a.close(), b.close()


V1_INSERT = ("INSERT INTO runs (run_id, config_hash, method, regularizer, mode, entities, model, seed, config, versions,"
             " status, host, pid, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,'done',?,?,?)")


def test_a_schema_1_store_upgrades_in_place_and_keeps_every_row(tmp_path):
    from snap_bench import store as store_mod
    from snap_bench.store.schema import SCHEMA

    db = tmp_path / "snap_bench.sqlite"
    c = sqlite3.connect(db)  # a store as SCHEMA_VERSION 1 code wrote it
    c.executescript(SCHEMA)
    c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    c.execute(V1_INSERT, ("old-run", "hash", "snap", "swd", "single", '["peter_parker"]', "m", 0, "{}", "{}", "h", 1, 1.0))
    c.execute("INSERT INTO metrics VALUES ('old-run', 0, 'peter_parker', 'UA', 42.0)")
    c.execute("INSERT INTO generations VALUES ('old-run', 0, 'i1', 'peter_parker', 'forget', 'q', 'r', 1, 'refusal', 'rules')")
    c.execute("INSERT INTO losses VALUES ('old-run', 0, 0, 'total', 1.5)")
    c.execute("INSERT INTO analyses VALUES ('old-run', 'probes', '{\"x\": 1}')")
    c.commit()
    c.close()
    assert "heartbeat" not in {r[1] for r in _rows(db, "PRAGMA table_info(runs)")}

    s = store_mod.Store(tmp_path)
    assert s.schema_version() == store_mod.SCHEMA_VERSION == 2
    assert s.run("old-run")["status"] == "done" and s.run("old-run")["heartbeat"] is None
    assert s.metrics("old-run") == {0: {"peter_parker": {"UA": 42.0}}}
    assert [g["response"] for g in s.generations("old-run")] == ["r"]
    assert s.analyses("old-run") == {"probes": {"x": 1}}
    assert s.done_run_for_hash("hash") == "old-run"
    s.close()
    assert _rows(db, "SELECT COUNT(*) FROM losses") == [(1,)]
    # code still on schema 1 keeps writing to the upgraded store (its INSERT names no new column)
    c = sqlite3.connect(db)
    c.execute(V1_INSERT, ("old-code-run", "hash2", "snap", "swd", "single", "[]", "m", 0, "{}", "{}", "h", 1, 2.0))
    c.commit()
    c.close()
    s = store_mod.Store(tmp_path)  # and a second open is a no-op
    assert [r["run_id"] for r in s.runs()] == ["old-run", "old-code-run"] and s.schema_version() == 2
    s.close()


def test_store_reader_reads_without_reaping_migrating_or_writing(tmp_path):
    """report and bench read through StoreReader: a dead owner's run stays as stored, an old schema is not
    upgraded, the database bytes do not change, and the reader has no write methods."""
    from snap_bench.store import DB_NAME, Store, StoreReader

    res = tmp_path / "res"
    Store(res).close()
    db = res / DB_NAME
    dead = subprocess.Popen(["true"])
    dead.wait()
    _insert_running(db, "dead-local", socket.gethostname(), dead.pid, time.time() - 3600)
    c = sqlite3.connect(db)  # an older store: schema 1, no saved_models table
    c.execute("DROP TABLE saved_models")
    c.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    before = db.read_bytes()

    reader = StoreReader(res)
    try:
        assert [(r["run_id"], r["status"]) for r in reader.runs()] == [("dead-local", "running")]
        assert reader.saved_model("dead-local") is None and reader.metrics("dead-local") == {}
        assert not any(hasattr(reader, m) for m in ("start_run", "claim_run", "finish_run", "reap_stale", "transaction"))
        with pytest.raises(sqlite3.OperationalError):  # the connection itself is read-only
            reader.conn.execute("DELETE FROM runs")
    finally:
        reader.close()
    assert db.read_bytes() == before
    assert _rows(db, "SELECT value FROM meta WHERE key='schema_version'") == [("1",)]

    store = Store(res)  # a writer migrates and reaps
    try:
        assert store.run("dead-local")["status"] == "interrupted" and store.schema_version() > 1
    finally:
        store.close()


def test_store_reader_without_a_store_is_one_clear_error(tmp_path):
    from snap_bench.errors import SnapBenchError
    from snap_bench.store import StoreReader

    with pytest.raises(SnapBenchError, match="no results store at"):
        StoreReader(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()  # and nothing created
