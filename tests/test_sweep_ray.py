"""``snap-bench sweep --executor ray`` on a local Ray instance (2 CPUs): the same grid, the same numbers,
one writer, and a lost worker's run retried and recorded once.

Ray is the ``cluster`` extra, installed in dev, so CI runs these for real. Each test starts its own local
instance (about 3 s) through the sweep and stops it at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")

SNAP_BENCH = [sys.executable, "-m", "snap_bench"]


def _store_rows(results: Path, table: str, cols: str) -> list[tuple]:
    with sqlite3.connect(results / "snap_bench.sqlite") as c:
        return c.execute(f"SELECT {cols} FROM {table} ORDER BY 1, 2").fetchall()


def _numbers(results: Path) -> dict[str, dict]:
    """Per config hash: its metrics, losses and generations (run ids differ between stores; hashes do not)."""
    with sqlite3.connect(results / "snap_bench.sqlite") as c:
        hashes = dict(c.execute("SELECT run_id, config_hash FROM runs WHERE status='done'").fetchall())
        out: dict[str, dict] = {h: {"metrics": {}, "losses": {}, "generations": {}} for h in hashes.values()}
        for rid, *key, v in c.execute("SELECT run_id, step, entity, metric, value FROM metrics"):
            out[hashes[rid]]["metrics"][tuple(key)] = v
        for rid, *key, v in c.execute("SELECT run_id, phase, step, term, value FROM losses"):
            out[hashes[rid]]["losses"][tuple(key)] = v
        for rid, *key, v in c.execute("SELECT run_id, step, item_id, response FROM generations"):
            out[hashes[rid]]["generations"][tuple(key)] = v
    return out


def _executor_records(results: Path) -> list[dict]:
    """The ``executor`` analysis of every run: attempts, lost workers, the worker that ran it."""
    with sqlite3.connect(results / "snap_bench.sqlite") as c:
        return [json.loads(p) for (p,) in c.execute("SELECT payload FROM analyses WHERE kind='executor'")]


def test_ray_runs_the_smoke_suite_like_the_local_executor(cli, tmp_path):
    local, ray = tmp_path / "local", tmp_path / "ray"
    a = cli("sweep", "--suite", "smoke", "--results", local, "--json", "--no-progress")
    assert a.code == 0, a.err
    b = cli("sweep", "--suite", "smoke", "--results", ray, "--json", "--no-progress", "--executor", "ray",
            "--cpus-per-run", "1")
    assert b.code == 0, b.err
    assert b.json["executor"] == "ray" and b.json["ran"] == a.json["ran"] == a.json["total"] == 18
    # Every run recorded exactly once, done, with the driver's pid as its owner (workers never write).
    runs = _store_rows(ray, "runs", "config_hash, status, pid")
    assert len(runs) == 18 and len({h for h, _, _ in runs}) == 18
    assert {s for _, s, _ in runs} == {"done"} and {pid for _, _, pid in runs} == {os.getpid()}
    assert _numbers(ray) == _numbers(local)
    executor = _executor_records(ray)
    assert len(executor) == 18 and all(e["attempts"] == 1 and e["lost"] == [] for e in executor)
    assert all(e["worker"]["pid"] != os.getpid() for e in executor)  # the runs ran in Ray's worker processes
    assert all(e["worker"]["threads"] == 1 for e in executor)  # torch's threads follow --cpus-per-run
    again = cli("sweep", "--suite", "smoke", "--results", ray, "--json", "--no-progress", "--executor", "ray")
    assert again.code == 0 and again.json["skipped"] == 18 and again.json["ran"] == 0  # resume by config hash
    assert len(_store_rows(ray, "runs", "run_id, status")) == 18


def _two_runs(tmp_path: Path, snap_set: str = "{}") -> Path:
    """snap (with ``snap_set`` overrides) and euclidean on peter_parker, 3 steps each."""
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(f"""
        name: two
        model: tiny-random
        set: {{max_steps: 3, eval_limit: 2, max_new_tokens: 4}}
        grid:
          - methods: [snap]
            entities: [[peter_parker]]
            set: {snap_set}
          - methods: [euclidean]
            entities: [[peter_parker]]
    """))
    return path


def _start_parked_sweep(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start a 2-run Ray sweep in a subprocess and wait until the first task to reach its first training step
    parks there (faults.py); returns the driver's process and the parked worker's pid."""
    results, pid_file = tmp_path / "res", tmp_path / "parked.pid"
    env = {**os.environ, "SNAP_BENCH_FAULT": "train_step:1", "SNAP_BENCH_FAULT_ONCE": str(pid_file)}
    proc = subprocess.Popen([*SNAP_BENCH, "sweep", "--suite", str(_two_runs(tmp_path)), "--results", str(results),
                             "--executor", "ray", "--no-progress", "--json", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no task reached its first training step"
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    assert pid != proc.pid  # a Ray worker, not the driver
    return proc, pid


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``; on a timeout the driver is killed first, so a hung sweep does not outlive the
    test with its Ray cluster (one did, still polling 27 min after its Ctrl-C)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def _sweep_killing_one_worker(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, int, Path]:
    """The parked worker is killed with SIGKILL; returns the finished sweep, the killed pid and the results."""
    proc, pid = _start_parked_sweep(tmp_path, *extra)
    os.kill(pid, signal.SIGKILL)
    out, err = _finish(proc, 300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), pid, tmp_path / "res"


def test_a_killed_worker_is_retried_and_its_run_recorded_once(tmp_path):
    done, pid, results = _sweep_killing_one_worker(tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ran"] == 2 and summary["failed"] == 0 and summary["retried"] == 1
    assert sorted(r["attempts"] for r in summary["runs"]) == [1, 2]
    assert "worker lost" in done.stderr and "submitting it again" in done.stderr
    runs = _store_rows(results, "runs", "config_hash, status")
    assert len(runs) == 2 and {s for _, s in runs} == {"done"}  # one row per run: the retry is not a new run
    executor = sorted(_executor_records(results), key=lambda e: e["attempts"])
    assert [e["attempts"] for e in executor] == [1, 2]
    assert len(executor[1]["lost"]) == 1 and executor[1]["lost"][0].startswith("attempt 1: ")
    assert executor[1]["worker"]["pid"] != pid  # the second attempt ran in another worker


def test_a_worker_lost_on_every_attempt_fails_its_run_and_the_sweep_goes_on(tmp_path):
    done, _, results = _sweep_killing_one_worker(tmp_path, "--max-retries", "0")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ran"] == 1 and summary["failed"] == 1
    (failed,) = [r for r in summary["runs"] if "failed" in r]
    assert "worker lost in all 1 attempts" in failed["failed"]
    runs = _store_rows(results, "runs", "status, reason")
    assert sorted(s for s, _ in runs) == ["done", "failed"]
    assert any(s == "failed" and "worker lost" in r for s, r in runs)


def test_a_second_driver_on_the_store_is_refused_with_one_line(cli, tmp_path):
    from snap_bench.run.driver_lock import DriverLock

    results = tmp_path / "res"
    held = DriverLock(results, "ray")  # a Ray driver holds the store (the lock is per open file: this counts)
    try:
        for executor in ("ray", "local"):
            r = cli("sweep", "--suite", "smoke", "--results", results, "--executor", executor, "--no-progress")
            assert r.code == 2, r.err
            assert len(r.err.strip().splitlines()) == 1 and "in use by another sweep driver" in r.err
            assert f"pid {os.getpid()}" in r.err
        assert not (results / "snap_bench.sqlite").exists()  # refused before the store was opened
    finally:
        held.release()
    shared = DriverLock(results, "local")  # local sweeps share the store with each other...
    try:
        DriverLock(results, "local").release()
        r = cli("sweep", "--suite", "smoke", "--results", results, "--executor", "ray", "--no-progress")
        assert r.code == 2 and "local sweep(s)" in r.err  # ...but not with a Ray driver
    finally:
        shared.release()


def test_ray_flags_need_the_ray_executor_and_sane_values(cli, tmp_path):
    r = cli("sweep", "--suite", "smoke", "--results", tmp_path, "--address", "auto")
    assert r.code == 2 and "--address: only with --executor ray" in r.err
    r = cli("sweep", "--suite", "smoke", "--results", tmp_path, "--executor", "ray", "--gpus-per-run", "-1")
    assert r.code == 2 and "--gpus-per-run -1: must be >= 0" in r.err
    r = cli("sweep", "--suite", "smoke", "--results", tmp_path, "--executor", "ray", "--cpus-per-run", "0")
    assert r.code == 2 and "must reserve something" in r.err


def test_ctrl_c_on_the_driver_marks_its_runs_in_flight_interrupted(tmp_path):
    results = tmp_path / "res"
    proc, _ = _start_parked_sweep(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = _finish(proc, 120)
    assert proc.returncode == 130, err
    runs = _store_rows(results, "runs", "status, reason")
    assert "running" not in {s for s, _ in runs}  # nothing left claimed by a driver that is gone
    assert ("interrupted", "interrupted (KeyboardInterrupt)") in runs  # the parked run
    again = subprocess.run([*SNAP_BENCH, "sweep", "--suite", str(_two_runs(tmp_path)), "--results", str(results),
                            "--executor", "ray", "--no-progress", "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # a re-run resumes: what was interrupted runs now
    assert {s for s, _ in _store_rows(results, "runs", "status, reason")} >= {"done"}
    assert json.loads(again.stdout)["ran"] + json.loads(again.stdout)["skipped"] == 2


def test_a_run_that_fails_in_its_own_code_is_recorded_failed_once_and_not_retried(cli, tmp_path):
    suite = _two_runs(tmp_path, snap_set="{lr: 1e30}")  # an exploding lr: a non-finite loss after step 0
    r = cli("sweep", "--suite", suite, "--results", tmp_path / "res", "--executor", "ray", "--no-progress", "--json")
    assert r.code == 1, r.err
    assert r.json["ran"] == 1 and r.json["failed"] == 1 and "submitting it again" not in r.err
    (failed,) = [x for x in r.json["runs"] if "failed" in x]
    assert failed["attempts"] == 1 and failed["failed"].startswith("non-finite loss at step ")
    runs = _store_rows(tmp_path / "res", "runs", "status, reason")
    assert sorted(s for s, _ in runs) == ["done", "failed"]
    assert [reason for s, reason in runs if s == "failed"][0].startswith("non-finite loss at step ")
