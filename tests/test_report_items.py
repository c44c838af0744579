"""report/items.py: the per-item values rebuild the stored metrics exactly, and every table cell over items carries
a 95 % interval around its mean (issue 26)."""

from __future__ import annotations

import csv

import pytest

from snap_bench.report.items import ITEM_METRICS, cell_interval, item_values


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    import subprocess
    import sys

    res = tmp_path_factory.mktemp("items") / "res"
    for seed in ("0", "1"):
        r = subprocess.run([sys.executable, "-m", "snap_bench", "run", "--method", "snap", "--entity", "peter_parker",
                            "--model", "tiny-random", "--max-steps", "1", "--eval-limit", "6", "--seed", seed,
                            "--no-progress", "--results", str(res), "--set", "max_new_tokens=4"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    return res


def test_item_values_rebuild_the_stored_metrics(two_seeds):
    from snap_bench.report.data import load_runs
    from snap_bench.store.reader import StoreReader

    store = StoreReader(two_seeds)
    try:
        runs = load_runs(store)
    finally:
        store.close()
    assert len(runs) == 2
    for run in runs:
        for metric in ITEM_METRICS:
            vals = item_values(run.items, "peter_parker", metric)
            assert vals, metric
            assert sum(vals.values()) / len(vals) == pytest.approx(run.entity_value("peter_parker", metric)), metric


def test_table1_has_lo_and_hi_around_every_item_metric(two_seeds, tmp_path, cli):
    rep = cli("report", "--results", two_seeds, "--out", tmp_path / "rep", "--json")
    assert rep.code == 0, rep.err
    rows = [r for r in csv.DictReader((tmp_path / "rep" / "table1.csv").open()) if r["n_seeds"] not in ("", "0")]
    assert rows
    for r in rows:
        for m in ITEM_METRICS:
            lo, mean, hi = float(r[f"{m}_lo"]), float(r[f"{m}_mean"]), float(r[f"{m}_hi"])
            assert 0.0 <= lo <= mean <= hi <= 100.0, (m, lo, mean, hi)
    md = (tmp_path / "rep" / "table1.md").read_text()
    assert "[" in md and "95 % interval" in md
    refusal = [r for r in csv.DictReader((tmp_path / "rep" / "table_refusal.csv").open()) if r["n_seeds"] not in ("", "0")]
    assert refusal
    for r in refusal:
        for m in ("UA", "RA", "TA", "cross_RA"):
            lo, mean, hi = float(r[f"{m}_lo"]), float(r[f"{m}_mean"]), float(r[f"{m}_hi"])
            assert 0.0 <= lo <= mean <= hi <= 100.0, (m, lo, mean, hi)


def test_cell_interval_is_wilson_for_one_seed_and_seeded_for_more():
    one = cell_interval([[{"a": 100.0, "b": 0.0, "c": 100.0, "d": 100.0}]], "k")
    assert one == pytest.approx((30.06, 95.44), abs=0.01)  # Wilson for 3 of 4
    two = [[{"a": 100.0, "b": 0.0}], [{"a": 100.0, "b": 100.0}]]
    assert cell_interval(two, "k") == cell_interval(two, "k") and cell_interval(two, "k") is not None
    assert cell_interval([[{"a": 100.0}], []], "k") is None  # a seed without items: no interval


def _run(rid, entity, seed, retain, budget, ua):
    from snap_bench.report.data import Run

    return Run(run_id=rid, method="snap", regularizer="swd", mode="single", entities=[entity], model="m", seed=seed,
               record={"config": {}}, metrics={0: {entity: {"UA": ua}}}, analyses={}, losses={}, versions={},
               created_at=0.0, finished_at=None, label="SNAP" if retain == "hard+general" else "SNAP (D_r)",
               retain_data=retain, budget=budget)


def test_fig4_never_pools_entities_or_sizes():
    """Issue 26: one entity and one size per panel; n counts seeds, not runs."""
    from snap_bench.report.figures import _fig4_runs

    runs = [_run("a0", "peter_parker", 0, "hard+general", "full", 80), _run("a1", "peter_parker", 1, "hard+general", "full", 90),
            _run("a2", "peter_parker", 0, "hard", "full", 70), _run("b0", "peter_parker", 0, "hard+general", "eval_limit=60", 10),
            _run("c0", "black_panther", 0, "hard+general", "full", 20)]
    entity, budget, series = _fig4_runs(runs, {})["m"]
    assert (entity, budget) == ("peter_parker", "full") and set(series) == {"hard", "hard+general"}
    assert sorted(r.run_id for r in series["hard+general"]) == ["a0", "a1"]  # neither the 60-item run nor another entity
