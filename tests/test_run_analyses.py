"""`run --set probes=true --set eval_nlp=true`: the analyses reach the JSON and the store."""

from snap_bench.evaluate.probes import FRAMINGS
from snap_bench.store import Store


def test_probes_and_nlp_are_printed_and_stored(cli, tmp_path):
    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "1",
            "--eval-limit", "6", "--set", "probes=true", "--set", "probe_limit=4", "--set", "relearn_n=2",
            "--set", "relearn_steps=1", "--set", "eval_nlp=true", "--set", "nlp_tasks=mmlu", "--set", "nlp_limit=4",
            "--results", res, "--no-progress", "--json")
    assert r.code == 0, r.err
    out = r.json
    pr = out["probes"]["peter_parker"]
    assert pr["items"] == 4
    assert set(pr["extraction_UA"]) == set(FRAMINGS)
    assert all(0 <= v <= 100 for v in pr["extraction_UA"].values())
    lp = pr["answer_logprob"]
    # "before" is the untrained model on the same items, so the pairing must cover all of them.
    assert lp["n_paired"] == 4 and lp["before"] < 0 and lp["after"] < 0
    assert pr["retain_answer_logprob"]["n_paired"] == 4 and pr["retain_answer_logprob"]["after"] < 0
    assert pr["relearning"]["n_relearn"] == 2 and pr["relearning"]["steps"] == 1
    assert set(pr["fluency"]["eval_sets"]) == {"forget", "multihop", "retain", "general"}
    assert out["nlp"]["tasks"]["mmlu"]["n"] == 4 and 0 <= out["nlp"]["tasks"]["mmlu"]["acc"] <= 1

    store = Store(res)
    try:
        stored = store.analyses(out["run_id"])
    finally:
        store.close()
    assert stored["probes"]["peter_parker"]["extraction_UA"] == pr["extraction_UA"]
    assert stored["nlp"]["tasks"]["mmlu"]["acc"] == out["nlp"]["tasks"]["mmlu"]["acc"]


def test_analyses_are_off_by_default(cli, tmp_path):
    r = cli("run", "--method", "prompting", "--entity", "peter_parker", "--model", "tiny-random", "--eval-limit", "2",
            "--results", tmp_path / "res", "--no-progress", "--json")
    assert r.code == 0, r.err
    assert "probes" not in r.json and "nlp" not in r.json
