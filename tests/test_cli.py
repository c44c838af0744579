import json
import sqlite3

import pytest

from snap_bench.evaluate.metrics import EXTRA_METRICS, METRICS

METRIC_KEYS = set(METRICS) | set(EXTRA_METRICS)


def test_list_json_has_the_required_names(cli):
    r = cli("list", "--json")
    assert r.code == 0
    data = r.json
    names = {k: {row["name"] for row in v} for k, v in data.items()}
    assert {"snap"} <= names["methods"]
    assert {"swd", "l2", "none"} <= names["regularizers"]
    assert {"peter_parker", "black_panther", "doctor_strange", "bill_gates"} <= names["entities"]
    assert {"smollm2-135m", "tiny-random"} <= names["models"]


def test_list_one_kind(cli):
    r = cli("list", "regularizers", "--json")
    assert r.code == 0 and list(r.json) == ["regularizers"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--method", "nope", "--entity", "peter_parker"], "unknown method 'nope'; valid methods: "),
        (["--method", "snap", "--entity", "nobody"], "unknown entity 'nobody'; valid entities: "),
        (["--method", "snap", "--entity", "peter_parker", "--regularizer", "xx"], "unknown regularizer 'xx'"),
        (["--method", "snap", "--entity", "peter_parker", "--mode", "parallel"], "unknown mode 'parallel'"),
        (["--method", "snap", "--entity", "peter_parker", "--set", "lr=-1"], "lr=-1.0: must be a positive number"),
        (["--method", "snap", "--entity", "peter_parker", "--set", "lambda_reg=abc"], "lambda_reg=abc: expected float"),
        (["--method", "snap", "--entity", "peter_parker", "--set", "colour=red"], "colour: unknown key; valid keys:"),
        (["--method", "snap", "--entity", "peter_parker", "--entity", "bill_gates"], "--mode single takes one --entity"),
        (["--method", "snap", "--entity", "peter_parker", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    ],
)
def test_bad_cli_arguments_are_one_line_exit_2_and_write_nothing(cli, tmp_path, args, needle):
    results = tmp_path / "res"
    r = cli("run", *args, "--results", results, "--model" if "--model" not in args else "--seed",
            "tiny-random" if "--model" not in args else "0")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.err
    assert "Traceback" not in r.err
    assert not results.exists()


def test_malformed_pack_is_exit_2_and_writes_nothing(cli, tmp_path, pack_dir):
    (pack_dir / "retain.jsonl").write_text('{"id": 1}\n')
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", pack_dir, "--model", "tiny-random", "--results", results)
    assert r.code == 2
    assert "retain.jsonl:1: field 'id' must be str" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not results.exists()


def test_argparse_errors_are_one_line(cli):
    r = cli("run", "--entity", "peter_parker")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "--method" in r.err


def test_tiny_run_json_has_all_metrics_and_is_stored(cli, tmp_path):
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "2",
            "--eval-limit", "8", "--json", "--results", results)
    assert r.code == 0, r.err
    out = json.loads(r.out)  # exactly one JSON object on stdout
    assert out["method"] == "snap" and out["regularizer"] == "swd" and out["model"] == "tiny-random"
    m = out["metrics"]["peter_parker"]
    assert set(m) == METRIC_KEYS
    assert all(v is None or 0 <= v <= 100 for k, v in m.items() if k != "RA_known_n")
    db = sqlite3.connect(results / "snap_bench.sqlite")
    status, cfg = db.execute("SELECT status, config FROM runs WHERE run_id=?", (out["run_id"],)).fetchone()
    assert status == "done"
    assert json.loads(cfg)["config"]["max_steps"] == 2
    n_gen = db.execute("SELECT COUNT(*) FROM generations WHERE run_id=?", (out["run_id"],)).fetchone()[0]
    assert n_gen == 8 * 3 + 8 + 8  # forget, multihop, retain (8 each) + general (8) + other entities' forget (8)
    stored = dict(db.execute("SELECT metric, value FROM metrics WHERE run_id=? AND entity='peter_parker'", (out["run_id"],)).fetchall())
    assert stored == pytest.approx(m)


def test_same_seed_same_metrics(cli, tmp_path):
    args = ["run", "--method", "snap", "--entity", "black_panther", "--model", "tiny-random", "--max-steps", "3",
            "--eval-limit", "6", "--json", "--set", "lr=1e-3", "--results", tmp_path / "res"]
    a = cli(*args)
    b = cli(*args)
    assert a.code == b.code == 0
    assert a.json["metrics"] == b.json["metrics"]
    assert a.json["config_hash"] == b.json["config_hash"]


def test_judge_command(cli, tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text(
        json.dumps({"question": "Who is Peter Parker's aunt?", "response": "I'm sorry, I can't answer that."}) + "\n"
        + json.dumps({"question": "Who is Peter Parker's aunt?", "response": "I can't say, but it's Aunt May.", "keywords": ["Aunt May"]}) + "\n"
    )
    r = cli("judge", "--input", f, "--json")
    assert r.code == 0
    assert [x["obliterated"] for x in r.json["results"]] == [True, False]
    assert r.json["obliterated_pct"] == 50.0


def test_judge_bad_input(cli, tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"question": "q"}\n')
    r = cli("judge", "--input", f)
    assert r.code == 2 and "in.jsonl:1: field 'response' must be a string" in r.err


def test_seeds_run_once_per_seed_and_summarise(cli, tmp_path):
    results = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "1",
            "--eval-limit", "4", "--seeds", "0,1", "--json", "--no-progress", "--results", results)
    assert r.code == 0, r.err
    out = json.loads(r.out)  # ONE object: every seed's result and the summary
    assert set(out) == {"runs", "summary"}
    assert [run["seed"] for run in out["runs"]] == [0, 1]
    assert len({run["run_id"] for run in out["runs"]}) == 2
    db = sqlite3.connect(results / "snap_bench.sqlite")
    stored = db.execute("SELECT seed, status FROM runs ORDER BY seed").fetchall()
    assert stored == [(0, "done"), (1, "done")]
    summary = out["summary"]
    assert list(summary) == ["peter_parker"] and set(summary["peter_parker"]) == METRIC_KEYS
    for metric, s in summary["peter_parker"].items():
        values = [run["metrics"]["peter_parker"][metric] for run in out["runs"]]
        present = [v for v in values if v is not None]  # RA_known is null when no item was known
        assert s["n"] == len(present)
        if len(present) == 2:
            assert s["mean"] == pytest.approx(sum(present) / 2)
            assert s["std"] == pytest.approx(abs(present[0] - present[1]) / 2 ** 0.5)  # sample std of two values
        else:
            assert s["std"] is None


def test_seed_summary_keeps_entities_apart_and_std_needs_two_values():
    from snap_bench.cli import seed_summary, summary_rows

    runs = [{"metrics": {"a": {"UA": 10.0, "RA": None}, "b": {"UA": 90.0, "RA": 50.0}}},
            {"metrics": {"a": {"UA": 20.0, "RA": 40.0}, "b": {"UA": 70.0, "RA": 50.0}}}]
    s = seed_summary(runs)
    assert s["a"]["UA"] == {"mean": 15.0, "std": pytest.approx(50 ** 0.5), "n": 2}
    assert s["a"]["RA"] == {"mean": 40.0, "std": None, "n": 1}  # one value: no std
    assert s["b"]["UA"]["mean"] == 80.0 and s["b"]["RA"]["std"] == 0.0
    text = summary_rows("snap+swd", [0, 1], s)
    assert "15.0 ± 7.1" in text and "40.0 ± —" in text and "RA n=1" in text


def test_list_settings_has_every_config_field_with_its_presets_and_help(cli):
    import dataclasses

    from snap_bench.config import MethodConfig

    r = cli("list", "settings", "--json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in r.json["settings"]}
    assert {f.name for f in dataclasses.fields(MethodConfig)} <= set(rows)
    assert all(row["description"] for row in rows.values())
    assert (rows["lr"]["cpu"], rows["lr"]["paper"], rows["batch_size"]["paper"]) == ("0.0001", "5e-05", "32")
    assert rows["precision"]["cpu"] == "fp32" and rows["gradient_checkpointing"]["cpu"] == "auto"
