"""The quantization probe (issue 25): config, the share recovered, the run's output, table_quant and fig_quant."""

from __future__ import annotations

import csv

import pytest

from snap_bench.config import MethodConfig
from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.quant_probe import FULL, quant_result, recovered
from snap_bench.records import StepResult
from snap_bench.report.data import load_runs
from snap_bench.run.execute import RunSpec, plan
from snap_bench.store import Store
from snap_bench.store.reader import StoreReader

PP = "peter_parker"


# --- config -------------------------------------------------------------------------------------------------

def test_quant_probe_off_leaves_the_config_hash_as_before():
    from snap_bench.run.spec import _hashed_config

    assert "quant_probe" not in _hashed_config(MethodConfig())
    on = MethodConfig(quant_probe=" Q4_1,q8_0,q4_1 ")
    on.validate()
    assert on.quant_probe == "q4_1,q8_0"  # normalised: one spelling, one hash
    assert _hashed_config(on)["quant_probe"] == "q4_1,q8_0"


def test_a_bad_scheme_lists_the_valid_ones():
    cfg = MethodConfig(quant_probe="q4_1,q3_zz")
    with pytest.raises(SnapBenchError) as err:
        cfg.validate()
    msg = str(err.value)
    assert "q3_zz" in msg and "\n" not in msg
    assert all(s in msg for s in ("shipped", "q8_0", "q4_0", "q4_1", "int4_g32"))


def test_a_bad_scheme_exits_2_and_writes_nothing(cli, tmp_path):
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", PP, "--model", "tiny-random", "--max-steps", "1",
            "--set", "quant_probe=q3_zz", "--results", res)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "q3_zz" in r.err and "int4_g32" in r.err
    assert not res.exists()


# --- the share recovered ------------------------------------------------------------------------------------

def _m(ua, leak):
    return {"UA": ua, "leak": leak}


def test_recovered_is_the_share_of_the_unlearning_effect_the_scheme_undoes():
    unlearned = {FULL: _m(80.0, 10.0), "q4_1": _m(50.0, 25.0)}
    control = {FULL: _m(0.0, 40.0), "q4_1": _m(10.0, 40.0)}
    # UA: effect 80 at full precision, 40 after Q4_1 (50 - 10): half of it undone
    assert recovered(unlearned, control, "q4_1", "UA") == pytest.approx(0.5)
    # leak: effect 30 (40 - 10) at full precision, 15 (40 - 25) after: half undone
    assert recovered(unlearned, control, "q4_1", "leak") == pytest.approx(0.5)
    same = {FULL: _m(80.0, 10.0), "q4_1": _m(80.0, 10.0)}
    assert recovered(same, {FULL: _m(0.0, 40.0), "q4_1": _m(0.0, 40.0)}, "q4_1", "UA") == 0.0  # all of it survives
    undone = {FULL: _m(80.0, 10.0), "q4_1": _m(10.0, 40.0)}
    assert recovered(undone, control, "q4_1", "UA") == pytest.approx(1.0)  # behaves like the quantized control
    assert recovered({FULL: _m(0.0, 40.0), "q4_1": _m(0.0, 40.0)}, control, "q4_1", "UA") is None  # no effect
    assert recovered({FULL: _m(None, 1.0), "q4_1": _m(1.0, 1.0)}, control, "q4_1", "UA") is None


def test_quant_result_puts_each_value_beside_its_full_precision_one():
    full = {"UA": 80.0, "leak": 10.0, "answer_logprob": -3.0, "RA": 90.0, "RA_correct": 75.0, "RA_correct_n": 4.0}
    q = {**full, "UA": 40.0}
    ctrl = {**full, "UA": 0.0}
    sets = {PP: {"forget": [1] * 6, "retain": [1] * 5}}
    out = quant_result({PP: {FULL: full, "q4_1": q}}, {PP: {FULL: ctrl, "q4_1": ctrl}}, ["q4_1"], sets)
    row = out[PP]["q4_1"]
    assert row["UA"] == {"full": 80.0, "quantized": 40.0} and row["control"]["UA"] == {"full": 0.0, "quantized": 0.0}
    assert row["RA_correct"] == {"full": 75.0, "quantized": 75.0}
    assert row["recovered"]["UA"] == pytest.approx(0.5) and row["n"] == {"forget": 6, "retain": 5, "RA_correct": 4.0}
    assert quant_result({PP: {FULL: full, "q4_1": q}}, None, ["q4_1"], sets)[PP]["q4_1"]["control"] is None


# --- a real (tiny) run --------------------------------------------------------------------------------------

def test_run_reports_the_probe_for_each_scheme_and_the_control(cli, tmp_path):
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", PP, "--model", "tiny-random", "--max-steps", "1",
            "--eval-limit", "4", "--set", "quant_probe=q4_1,q8_0", "--set", "probe_limit=4", "--set", "cross_eval=false",
            "--set", "dev_size=0", "--set", "select=last", "--set", "max_new_tokens=4", "--results", res,
            "--no-progress", "--json")
    assert r.code == 0, r.err
    out = r.json
    q = out["quant"][PP]
    assert list(q) == ["q4_1", "q8_0"]
    for scheme in q.values():
        for metric in ("UA", "leak", "RA", "RA_correct", "answer_logprob"):
            assert set(scheme[metric]) == {"full", "quantized"} and set(scheme["control"][metric]) == {"full", "quantized"}
        assert scheme["n"]["forget"] == 4 and scheme["n"]["retain"] == 4
        assert set(scheme["recovered"]) == {"UA", "leak"}
    # the full-precision measurement is the same model on the same items: one value for every scheme
    assert q["q4_1"]["answer_logprob"]["full"] == q["q8_0"]["answer_logprob"]["full"]
    assert q["q4_1"]["answer_logprob"]["quantized"] != q["q4_1"]["answer_logprob"]["full"]  # the rounding shows
    assert "quant_before" in out["timings"] and "quant" in out["timings"]
    assert "RA_correct" in out["metrics"][PP] and "RA_correct_n" in out["metrics"][PP]
    store = Store(res)
    try:
        assert store.analyses(out["run_id"])["quant"] == out["quant"]
    finally:
        store.close()


# --- report ---------------------------------------------------------------------------------------------------

def _quant(ua_full, ua_q, ctrl_full=0.0, ctrl_q=0.0):
    m = lambda f, qq: {"full": f, "quantized": qq}  # noqa: E731
    row = {"UA": m(ua_full, ua_q), "leak": m(5.0, 20.0), "answer_logprob": m(-3.0, -2.5), "RA": m(90.0, 90.0),
           "RA_correct": m(70.0, 60.0), "control": {k: m(ctrl_full, ctrl_q) for k in ("UA", "leak", "RA_correct")},
           "recovered": {"UA": 1 - (ua_q - ctrl_q) / (ua_full - ctrl_full), "leak": 0.5},
           "n": {"forget": 40, "retain": 40, "RA_correct": 12}}
    return {PP: {"q4_1": row}}


def _store_run(store, method, seed, analyses=None):
    spec = RunSpec(method=method, entities=[PP], model="tiny-random", progress=False, seed=seed)
    p = plan(spec)
    run_id = store.start_run(config_hash=p.config_hash, method=method, regularizer=p.regularizer, mode="single",
                             entities=[PP], model=spec.model, seed=seed, config=p.record, versions={"snap_bench": "test"})
    metrics = {"UA": 80.0, "UA_multihop": 80.0, "RA": 90.0, "TA": 90.0, "Avg": 85.0, "leak": 5.0}
    store.finish_run(run_id, {"total": 1.0}, [StepResult(0, [], {PP: metrics})], judge="rules", analyses=analyses)


def test_table_quant_and_fig_quant_from_runs_that_stored_the_probe(tmp_path):
    from snap_bench.report import build_report
    from snap_bench.report.tables_quant import table_quant

    store = Store(tmp_path / "res")
    _store_run(store, "snap", 0, {"quant": _quant(80.0, 40.0)})
    _store_run(store, "snap", 1, {"quant": _quant(90.0, 60.0)})
    _store_run(store, "gradient_ascent", 0)  # no probe: no row in table_quant
    store.close()
    reader = StoreReader(tmp_path / "res")
    try:
        runs = load_runs(reader)
    finally:
        reader.close()
    t = table_quant(runs)
    rows = [dict(zip(t.header, (c.text for c in r))) for r in t.rows]
    assert [r["Method"] for r in rows] == ["SNAP"]
    snap = rows[0]
    assert snap["Entity · scheme"] == "peter_parker · q4_1" and snap["n"] == "2"
    assert snap["UA full"].startswith("85.0 ± 7.1") and snap["UA quantized"].startswith("50.0 ± 14.1")
    assert snap["forget n"] == "40" and snap["RA_correct n"] == "12"
    summary = build_report(tmp_path / "res", tmp_path / "rep", progress=False)
    assert "table_quant" in summary["tables"] and not summary["absent"]
    assert (tmp_path / "rep" / "fig_quant.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "rep" / "table_quant.csv") as f:
        rec = list(csv.DictReader(f))
    assert rec[0]["scheme"] == "q4_1" and float(rec[0]["recovered_UA_mean"]) == pytest.approx((0.5 + 1 / 3) / 2)
    refusal = (tmp_path / "rep" / "table_refusal.md").read_text()
    assert "UA after Q4_1" in refusal and "50.0 ± 14.1" in refusal


def test_the_report_says_plainly_when_no_run_has_the_probe(tmp_path):
    from snap_bench.report import build_report

    store = Store(tmp_path / "res")
    _store_run(store, "snap", 0)
    store.close()
    summary = build_report(tmp_path / "res", tmp_path / "rep", progress=False)
    assert "table_quant" not in summary["tables"] and not (tmp_path / "rep" / "fig_quant.png").exists()
    assert any("quantization probe" in a for a in summary["absent"])
