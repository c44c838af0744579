"""Dev-only runs (``--set heldout=false``, issue 26): settings are chosen on the dev split, and such a run asks no
held-out question, stores no held-out metric and never enters a held-out table."""

from __future__ import annotations

import pytest

from snap_bench.errors import SnapBenchError
from snap_bench.run.spec import RunSpec, plan

DEV = ["--set", "dev_size=4", "--set", "select=dev", "--set", "select_every=2"]


def _run(cli, results, *extra):
    return cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "2",
               "--eval-limit", "4", "--no-progress", "--results", results, *DEV, *extra)


def test_a_dev_only_run_scores_the_dev_split_and_asks_no_held_out_question(cli, tmp_path, monkeypatch):
    from snap_bench.evaluate import metrics

    asked: list[set[str]] = []
    real = metrics.evaluate

    def spy(model, tok, per_entity, general, *a, **kw):
        asked.append({it.id for sets in per_entity.values() for items in sets.values() for it in items}
                     | {it.id for it in general} | {it.id for it in kw.get("cross") or []})
        return real(model, tok, per_entity, general, *a, **kw)

    monkeypatch.setattr(metrics, "evaluate", spy)
    res = _run(cli, tmp_path / "res", "--set", "heldout=false", "--json")
    assert res.code == 0, res.err
    assert res.json["metrics"] == {} and res.json["eval_sizes"] == {}
    assert set(res.json["dev"]["metrics"]["peter_parker"]) >= {"UA", "RA", "TA", "cross_RA"}
    assert res.json["dev"]["selection"][0]["selected_step"] in (2,)
    assert not {"probes", "mia", "quant", "nlp"} & set(res.json)

    # every question evaluated came from the dev split: none of the held-out sets'
    from snap_bench.run.splits import make_splits

    p = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                     overrides={"dev_size": "4", "select": "dev", "max_steps": "2", "eval_limit": "4"}))
    sp = make_splits(p)
    held_out = ({it.id for items in sp.per_entity["peter_parker"]["eval"].values() for it in items}
                | {it.id for it in sp.g_eval} | {it.id for it in sp.cross_eval})
    assert asked and all(not (ids & held_out) for ids in asked)


def test_the_cli_table_says_dev_split_only(cli, tmp_path):
    res = _run(cli, tmp_path / "res", "--set", "heldout=false")
    assert res.code == 0, res.err
    assert "dev split only (heldout=false)" in res.out and "peter_parker (dev)" in res.out


def test_heldout_true_keeps_every_stored_hash_and_false_makes_a_new_one():
    base = {"dev_size": "4", "select": "dev"}
    a = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", overrides=base))
    b = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", overrides={**base, "heldout": "true"}))
    c = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", overrides={**base, "heldout": "false"}))
    assert "heldout" not in a.record["config"] and a.config_hash == b.config_hash != c.config_hash
    assert c.record["config"]["heldout"] is False


@pytest.mark.parametrize("extra,match", [
    ({"dev_size": "0"}, "needs a dev split"),
    ({"dev_size": "4", "probes": "true"}, "probes measure held-out items"),
    ({"dev_size": "4", "mia": "true", "quant_probe": "q4_1"}, "mia, quant_probe measure held-out items"),
])
def test_a_dev_only_run_without_a_dev_split_or_with_an_analysis_is_refused(extra, match):
    with pytest.raises(SnapBenchError, match=match):
        plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                     overrides={"heldout": "false", **extra}))


def test_report_keeps_dev_only_runs_out_of_the_held_out_tables_and_ranks_them_in_table_dev(cli, tmp_path):
    import csv

    res_dir, out = tmp_path / "res", tmp_path / "rep"
    for lr in ("1e-4", "2e-4"):
        r = _run(cli, res_dir, "--set", "heldout=false", "--set", f"lr={lr}")
        assert r.code == 0, r.err
    held = _run(cli, res_dir)
    assert held.code == 0, held.err
    rep = cli("report", "--results", res_dir, "--out", out, "--json")
    assert rep.code == 0, rep.err
    assert rep.json["runs"] == 3 and "table_dev" in rep.json["tables"]
    rows = list(csv.DictReader((out / "table_dev.csv").open()))
    assert sorted(r["lr"] for r in rows) == ["0.0001", "0.0002"]
    assert sum(r["chosen"] == "True" for r in rows) == 1
    best = max(rows, key=lambda r: float(r["dev_score"]))
    assert best["chosen"] == "True" and all(r["n_seeds"] == "1" for r in rows)
    table1 = list(csv.DictReader((out / "table1.csv").open()))
    # the held-out run is Table 1's SNAP row alone: the dev-only runs (lr variants) make no row there
    assert not any("lr=" in (r.get("label") or r.get("Method") or "") for r in table1)
    runs = list(csv.DictReader((out / "runs.csv").open()))
    assert len(runs) == 3
