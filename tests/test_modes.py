"""batch and sequential modes (paper Figure 5): metrics per entity, and per step for sequential."""

from snap_bench.evaluate.metrics import EXTRA_METRICS
from snap_bench.evaluate.metrics import METRICS as EVAL_METRICS
from snap_bench.store import Store

ENTITIES = ["peter_parker", "black_panther", "doctor_strange", "bill_gates"]
METRICS = set(EVAL_METRICS) | set(EXTRA_METRICS)


def _args(mode, entities, res):
    out = ["run", "--method", "snap", "--mode", mode, "--model", "tiny-random", "--max-steps", "1",
           "--eval-limit", "2", "--results", res, "--no-progress"]
    for e in entities:
        out += ["--entity", e]
    return out


def _stored_metrics(res, run_id):
    store = Store(res)
    try:
        return store.metrics(run_id)
    finally:
        store.close()


def test_batch_mode_reports_every_entity_and_their_average(cli, tmp_path):
    r = cli(*_args("batch", ENTITIES, tmp_path / "res"), "--json")
    assert r.code == 0, r.err
    m = r.json["metrics"]
    assert set(m) == set(ENTITIES) | {"average"}
    assert all(set(m[e]) == METRICS for e in m)
    assert all(m[e]["cross_RA"] is None for e in m)  # every shipped entity is unlearned: no other entity to ask
    assert m["average"]["TA"] == sum(m[e]["TA"] for e in ENTITIES) / 4
    assert set(_stored_metrics(tmp_path / "res", r.json["run_id"])[0]) == set(ENTITIES)


def test_sequential_mode_stores_and_prints_metrics_after_each_step(cli, tmp_path):
    seq = ENTITIES[:3]
    r = cli(*_args("sequential", seq, tmp_path / "res"), "--json")
    assert r.code == 0, r.err
    steps = r.json["steps"]
    # After step k the model is scored on every entity unlearned so far.
    assert [sorted(s["metrics"]) for s in steps] == [sorted(seq[:k + 1]) for k in range(3)]
    assert [s["trained_on"] for s in steps] == [[e] for e in seq]
    stored = _stored_metrics(tmp_path / "res", r.json["run_id"])
    assert {k: sorted(v) for k, v in stored.items()} == {k: sorted(seq[:k + 1]) for k in range(3)}
    assert r.json["train"]["steps"] == 3  # --max-steps caps each step

    text = cli(*_args("sequential", seq[:2], tmp_path / "res2"))
    assert text.code == 0, text.err
    assert "after step 1 (peter_parker)" in text.err and "after step 2 (peter_parker, black_panther)" in text.err
