"""``--set log_with=tensorboard|wandb|mlflow``: the numbers a tracker receives are the ones the store keeps.

TensorBoard's files are read back with tensorboard's own event reader; W&B runs offline (no network) and
MLflow writes to a local file store, both configured through their own environment variables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

ARGS = ("--model", "tiny-random", "--set", "max_steps=3", "--set", "eval_limit=2", "--set", "max_new_tokens=4",
        "--no-progress", "--json")


def _stored_losses(results: Path, run_id: str) -> dict[tuple[int, int, str], float]:
    with sqlite3.connect(results / "snap_bench.sqlite") as c:
        rows = c.execute("SELECT phase, step, term, value FROM losses WHERE run_id=?", (run_id,)).fetchall()
    return {(ph, st, term): v for ph, st, term, v in rows}


def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_are_the_stored_losses_and_metrics(cli, tmp_path):
    pytest.importorskip("tensorboard")
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", results,
            "--set", "log_with=tensorboard")
    assert r.code == 0, r.err
    run_id = r.json["run_id"]
    scalars = _scalars(results / "tensorboard" / run_id)
    stored = _stored_losses(results, run_id)
    assert {k for (_, _, k) in stored} >= {"forget", "reg", "lr"}
    assert {f"train/{term}" for (_, _, term) in stored} <= set(scalars)
    for (phase, step, term), value in stored.items():  # event files hold float32
        assert scalars[f"train/{term}"][step] == pytest.approx(value, rel=1e-6, abs=1e-12)
    metrics = r.json["metrics"]["peter_parker"]
    for name in ("UA", "RA", "TA", "cross_RA"):
        assert scalars[f"final/peter_parker/{name}"] == {2: pytest.approx(metrics[name])}


def test_sequential_phases_log_on_one_global_step(cli, tmp_path):
    pytest.importorskip("tensorboard")
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--entity", "black_panther", "--mode",
            "sequential", *ARGS, "--results", results, "--set", "log_with=tensorboard", "--set", "log_dir=" + str(tmp_path / "tb"))
    assert r.code == 0, r.err
    scalars = _scalars(tmp_path / "tb" / r.json["run_id"])
    stored = _stored_losses(results, r.json["run_id"])
    assert sorted({(ph, st) for ph, st, _ in stored}) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    for (phase, step, term), value in stored.items():
        assert scalars[f"train/{term}"][3 * phase + step] == pytest.approx(value, rel=1e-6, abs=1e-12)
    assert not (results / "tensorboard").exists()  # log_dir replaced the default


def test_tracking_is_outside_the_config_hash(tmp_path):
    from snap_bench.run.spec import RunSpec, plan

    def planned(**overrides):
        return plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", overrides=overrides,
                            results_dir=tmp_path))

    quiet = planned()
    tracked = planned(log_with="mlflow" if _has("mlflow") else "none", log_dir=str(tmp_path / "x"))
    assert tracked.config_hash == quiet.config_hash  # turning tracking on does not re-run a sweep
    assert tracked.record["execution"]["log_dir"] == str(tmp_path / "x")  # but the run records it


def _has(pkg: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(pkg) is not None


def test_wandb_offline_writes_its_run_directory(cli, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", tmp_path / "res",
            "--set", "log_with=wandb")
    assert r.code == 0, r.err
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


def test_mlflow_logs_every_step_to_a_local_file_store(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store in maintenance mode
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", results, "--set", "log_with=mlflow")
    assert r.code == 0, r.err
    import mlflow

    (run,) = mlflow.search_runs(experiment_names=["snap-bench"], output_format="list")
    assert run.info.run_name == r.json["run_id"]
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "train/forget")
    stored = _stored_losses(results, r.json["run_id"])
    assert {m.step: m.value for m in history} == {st: pytest.approx(v) for (_, st, t), v in stored.items() if t == "forget"}


def test_a_bogus_or_missing_tracker_exits_2_and_writes_nothing(cli, tmp_path, monkeypatch):
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", tmp_path / "a",
            "--set", "log_with=tensorbored")
    assert r.code == 2 and "expected one of none, tensorboard, wandb, mlflow" in r.err
    assert len(r.err.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", tmp_path / "b",
            "--set", "log_with=wandb")
    assert r.code == 2 and "the wandb package is not installed" in r.err and not (tmp_path / "b").exists()


def test_a_tracker_that_cannot_start_fails_the_run_with_one_line(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *ARGS, "--results", results, "--set", "log_with=mlflow")
    assert r.code == 2 and "--set log_with=mlflow: the tracker did not start" in r.err, r.err
    assert "Traceback" not in r.err
    with sqlite3.connect(results / "snap_bench.sqlite") as c:
        assert c.execute("SELECT status, reason FROM runs").fetchall()[0][0] == "failed"  # recorded, with its reason
