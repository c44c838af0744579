"""Numerical faults, checkpoints, secrets and disk: the run fails cleanly and nothing leaks or is half written."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from fake_openai import FakeOpenAI
from snap_bench.registry import REGULARIZERS

TINY = ["--model", "tiny-random", "--no-progress", "--set", "max_new_tokens=4"]


def _one_line(r):
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    return lines[0]


def _stored(db: Path, sql: str, args=()):
    c = sqlite3.connect(db)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


# --- numerical faults ------------------------------------------------------------------------


def test_exploding_lr_fails_the_run_with_non_finite_loss_and_no_metrics(cli, tmp_path):
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *TINY, "--max-steps", "4", "--eval-limit", "2",
            "--set", "lr=1e30", "--results", res)
    assert r.code == 2
    line = _one_line(r)
    assert "failed: non-finite loss at step " in line
    (status, reason, run_id), = _stored(res / "snap_bench.sqlite", "SELECT status, reason, run_id FROM runs")
    assert status == "failed" and reason.startswith("non-finite loss at step ")
    step = int(reason.rsplit(" ", 1)[1])
    assert 1 <= step < 4  # step 0 is finite; the 1e30 update blows up a later one
    for table in ("metrics", "generations", "analyses"):
        assert _stored(res / "snap_bench.sqlite", f"SELECT COUNT(*) FROM {table}") == [(0,)]


class _NaNAtStep2:
    """A regularizer whose penalty turns NaN at the third optimiser step."""

    def __init__(self, **_):
        self.calls = 0

    def penalty(self, model, init_state):
        self.calls += 1
        return torch.tensor(float("nan") if self.calls == 3 else 0.0)


def test_injected_nan_penalty_stops_at_that_step_in_a_sweep_which_goes_on(cli, tmp_path, pack_dir):
    REGULARIZERS.register("nan_at_step_2", _NaNAtStep2, replace=True)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"model: tiny-random\nset: {{max_steps: 4, eval_limit: 2, max_new_tokens: 4}}\ngrid:\n"
                     f"  - methods: [snap]\n    regularizers: [nan_at_step_2, l2]\n    entities: [['{pack_dir}']]\n")
    res = tmp_path / "res"
    r = cli("sweep", "--suite", suite, "--results", res, "--json", "--no-progress")
    assert r.code == 1  # the failed run is reported; the grid went on
    assert r.json["failed"] == 1 and r.json["ran"] == 1
    assert "FAILED: run " in r.err and "non-finite loss at step 2" in r.err
    rows = _stored(res / "snap_bench.sqlite", "SELECT run_id, regularizer, status, reason FROM runs ORDER BY created_at")
    assert [(reg, st, why) for _, reg, st, why in rows] == [("nan_at_step_2", "failed", "non-finite loss at step 2"),
                                                          ("l2", "done", None)]
    assert _stored(res / "snap_bench.sqlite", "SELECT COUNT(*) FROM metrics WHERE run_id=?", (rows[0][0],)) == [(0,)]


# --- checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickle_model_dir(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("pickled")
    tiny.model.save_pretrained(d)  # transformers writes safetensors only; turn it into a pickle checkpoint
    tiny.tokenizer.save_pretrained(d)
    (d / "model.safetensors").unlink()
    torch.save(tiny.model.state_dict(), d / "pytorch_model.bin")
    assert (d / "pytorch_model.bin").is_file() and not list(d.glob("*.safetensors"))
    return d


def test_cached_presets_are_safetensors_and_json_only():
    from snap_bench.models import PICKLE_SUFFIXES, tiny_random_dir

    files = list(tiny_random_dir().iterdir())
    assert any(f.suffix == ".safetensors" for f in files) and (tiny_random_dir() / "config.json").is_file()
    assert not [f for f in files if f.suffix in PICKLE_SUFFIXES]


def test_pickle_weights_are_refused_unless_allowed(cli, tmp_path, pickle_model_dir):
    from snap_bench.models import load_model

    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", pickle_model_dir, "--max-steps", "0",
            "--eval-limit", "1", "--no-progress", "--results", res)
    assert r.code == 2 and "holds only pickle weights" in _one_line(r) and "--allow-pickle" in r.err
    assert not res.exists()
    for suffix in (".pt", ".pkl"):  # any pickle suffix, not just .bin
        other = tmp_path / f"m{suffix}"
        other.mkdir()
        (other / "config.json").write_text((pickle_model_dir / "config.json").read_text())
        (other / f"weights{suffix}").write_bytes(b"\x80\x04.")
        with pytest.raises(Exception, match="holds only pickle weights"):
            load_model(str(other))
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", pickle_model_dir, "--max-steps", "0",
            "--eval-limit", "1", "--no-progress", "--results", res, "--allow-pickle", "--json")
    assert r.code == 0, r.err
    assert r.json["model"] == str(pickle_model_dir)


def test_remote_code_is_not_run_unless_asked(cli, tmp_path):
    d = tmp_path / "evil"
    d.mkdir()
    marker = tmp_path / "remote-code-ran"
    (d / "config.json").write_text(json.dumps({"model_type": "evil", "architectures": ["EvilModel"],
                                               "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                                                            "AutoModelForCausalLM": "modeling_evil.EvilModel"}}))
    (d / "model.safetensors").write_bytes(b"")
    (d / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", d, "--max-steps", "0", "--no-progress",
            "--results", res)
    assert r.code == 2 and f"could not load model {str(d)!r}" in _one_line(r)
    assert not marker.exists()


# --- secrets ---------------------------------------------------------------------------------

CANARY_KEY = "canary-openai-7f3a9c1e55"
CANARY_TOKEN = "canary-token-42b1d8aa90"


class _Echo(FakeOpenAI):
    """A failing endpoint: every request gets HTTP 400 with every credential it was sent echoed back."""

    def __init__(self):
        super().__init__(always=400)

    def error(self, status: int, auth: str) -> str:
        return f"bad request from {auth} (key {CANARY_KEY}, token {CANARY_TOKEN})"


@pytest.fixture
def echo_server(openai_server):
    return openai_server(_Echo())


def _assert_no_canary(tmp_path: Path, *texts: str):
    for t in texts:
        assert CANARY_KEY not in t and CANARY_TOKEN not in t
    for f in tmp_path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert CANARY_KEY.encode() not in data and CANARY_TOKEN.encode() not in data, f


def test_secrets_never_reach_the_store_logs_cache_or_errors(cli, tmp_path, monkeypatch, echo_server):
    import snap_bench.evaluate.metrics as evaluate

    # The tiny random model's greedy replies are empty, which every judge decides locally; give the
    # judge real text so that it has to ask the (failing) server.
    monkeypatch.setattr(evaluate, "generate", lambda model, tok, questions, **kw: ["Her name is May."] * len(questions))
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("LAB_SERVICE_TOKEN", CANARY_TOKEN)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_BASE_URL", echo_server)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "m")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MAX_RETRIES", "0")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_CACHE", str(tmp_path / "judge-cache"))
    monkeypatch.setenv("SNAP_BENCH_JUDGE_WORKERS", "1")
    res = tmp_path / "res"
    run = cli("run", "--method", "snap", "--entity", "peter_parker", *TINY, "--max-steps", "1", "--eval-limit", "2",
              "--judge", "llm", "--results", res)
    assert run.code == 2
    line = _one_line(run)
    assert "HTTP 400" in line and "***" in line  # the echo happened and was masked
    (status, reason), = _stored(res / "snap_bench.sqlite", "SELECT status, reason FROM runs")
    assert status == "failed" and "HTTP 400" in reason and "***" in reason
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps({"question": "Who is Peter Parker's aunt?", "response": "Maybe May."}) + "\n")
    judge = cli("judge", "--input", f, "--judge", "llm")
    assert judge.code == 2 and "HTTP 400" in _one_line(judge)
    gen = cli("generate", "--entity", "Wanda Maximoff", "--base-url", echo_server, "--model", "m", "--out",
              tmp_path / "gen", "--cache", tmp_path / "gen-cache", "--max-retries", "0", "--no-progress",
              "--forget-n", "2", "--retain-n", "2", "--multihop-n", "1")
    assert gen.code == 2 and "HTTP 400" in _one_line(gen)
    _assert_no_canary(tmp_path, run.err, run.out, judge.err, judge.out, gen.err, gen.out)


def test_an_unexpected_error_is_redacted_too(cli, tmp_path, monkeypatch):
    import snap_bench.cli.commands as cli_mod

    monkeypatch.setenv("LAB_SERVICE_TOKEN", CANARY_TOKEN)

    def boom(args):
        raise RuntimeError(f"connection to https://user:{CANARY_TOKEN}@host failed")

    monkeypatch.setattr(cli_mod, "cmd_list", boom)
    r = cli("list")
    assert r.code == 1 and "Traceback" in r.err and "RuntimeError" in r.err
    assert CANARY_TOKEN not in r.err and "***" in r.err
    assert r.err.strip().splitlines()[-1] == "snap-bench: internal error (the traceback above is a bug; please report it)"


def test_redact_covers_key_and_token_env_vars_only_when_long_enough(monkeypatch):
    from snap_bench.util.redaction import redact

    monkeypatch.setenv("SOME_API_KEY", "abcdef123456")
    monkeypatch.setenv("HF_TOKEN", "hf_zzzzzzzzzz")
    monkeypatch.setenv("DEBUG_TOKEN", "1")  # too short to be a secret: left alone
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "abcdef123456-model")  # not a *_KEY/*_TOKEN name, but holds a key
    out = redact("k=abcdef123456 t=hf_zzzzzzzzzz d=1 Bearer xyz sk-live-1234567 api_key: qwerty")
    assert out == "k=*** t=*** d=1 Bearer *** sk-*** api_key: ***"


# --- disk ------------------------------------------------------------------------------------


def test_full_disk_is_refused_before_training(cli, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    import snap_bench.train.trainer as trainer

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(trainer, "train", no_training)
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *TINY, "--max-steps", "1", "--results", res)
    assert r.code == 2 and "only 1 MiB free, need at least 100 MiB" in _one_line(r)
    assert not res.exists()
    suite = tmp_path / "s.yaml"
    suite.write_text("model: tiny-random\ngrid:\n  - methods: [snap]\n    entities: [[peter_parker]]\n")
    r = cli("sweep", "--suite", suite, "--results", res, "--no-progress")
    assert r.code == 2 and "MiB free" in _one_line(r) and not res.exists()


def test_unwritable_results_dir_is_refused_before_training(cli, tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/snap-bench-results")  # even root cannot create a folder in /proc
    else:
        target = tmp_path / "ro" / "res"
        target.parent.mkdir()
        target.parent.chmod(0o500)
    r = cli("run", "--method", "snap", "--entity", "peter_parker", *TINY, "--max-steps", "1", "--results", target)
    assert r.code == 2 and f"results dir {target}: " in _one_line(r)
    assert not target.exists()


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from snap_bench.util import fsutil

    f = tmp_path / "report.md"
    fsutil.atomic_write_text(f, "old\n")

    def full(fd, *a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        fsutil.atomic_write_text(f, "new and longer\n")
    assert f.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temp file left behind
