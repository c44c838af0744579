"""Refusal vs removal (issue 16): the one-page table and figure, read from a hand-built store with known
metrics, and the ``methods-cpu`` suite that fills them."""

from __future__ import annotations

import csv
import statistics

import pytest

from snap_bench.records import StepResult
from snap_bench.report.data import label_run, load_runs
from snap_bench.run.execute import RunSpec, plan
from snap_bench.store import Store
from snap_bench.store.reader import StoreReader

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PP, BG = "peter_parker", "bill_gates"


def _metrics(ua, leak, ra, **kw):
    base = {"UA": ua, "UA_multihop": ua, "RA": ra, "TA": 90.0, "cross_RA": 50.0, "leak": leak, "degenerate": 1.0,
            "rougeL_forget": leak / 100}
    return {**base, "Avg": (2 * ua + ra + 90.0) / 4, **kw}


def _probes(entity, delta, ua_after):
    return {entity: {"answer_logprob": {"before": -4.0, "after": -4.0 + delta, "delta": delta},
                     "relearning": {"UA_before": 90.0, "UA_after": ua_after}}}


def _mia(entity, after, delta):
    attacks = {a: {"before": after - delta, "after": after, "delta": delta} for a in ("loss", "zlib", "mink", "minkpp")}
    return {entity: {**attacks, "n_members": 80, "n_nonmembers": 80}}


def _store_run(store, method, entity, seed, metrics, analyses=None, **kw):
    """One finished run, written through the store's writer as the runner would."""
    spec = RunSpec(method=method, entities=[entity], model="tiny-random", progress=False, seed=seed, **kw)
    p = plan(spec)
    run_id = store.start_run(config_hash=p.config_hash, method=method, regularizer=p.regularizer, mode="single",
                             entities=[entity], model=spec.model, seed=seed, config=p.record,
                             versions={"snap_bench": "test"})
    store.finish_run(run_id, {"total": 1.0}, [StepResult(0, [], {entity: metrics})], judge="rules", analyses=analyses)
    return run_id


# SNAP on peter_parker: three seeds, MIA on seeds 0 and 1 only; gradient ascent: two seeds, neither probes nor MIA.
SNAP_PP = {0: (80.0, 2.0, 50.0, -0.1, 10.0, 0.60, 0.02), 1: (90.0, 4.0, 60.0, 0.3, 30.0, 0.64, 0.06),
           2: (70.0, 6.0, 40.0, 0.1, 20.0, None, None)}
GA_PP = {0: (0.0, 0.0, 100.0), 1: (0.0, 0.0, 96.0)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusal")
    store = Store(root / "res")
    for seed, (ua, leak, ra, d, rl, auc, da) in SNAP_PP.items():
        analyses = {"probes": _probes(PP, d, rl)} | ({"mia": _mia(PP, auc, da)} if auc is not None else {})
        _store_run(store, "snap", PP, seed, _metrics(ua, leak, ra), analyses)
    for seed, (ua, leak, ra) in GA_PP.items():
        _store_run(store, "gradient_ascent", PP, seed, _metrics(ua, leak, ra))
    _store_run(store, "snap", PP, 0, _metrics(0.0, 30.0, 100.0), overrides={"max_steps": "0"})
    _store_run(store, "snap", BG, 0, _metrics(60.0, 8.0, 70.0))
    # SNAP at another evaluation size (another suite's run): its own row, never averaged into SNAP's
    _store_run(store, "snap", PP, 0, _metrics(10.0, 50.0, 10.0), overrides={"eval_limit": "60"})
    store.close()
    reader = StoreReader(root / "res")
    try:
        return root, load_runs(reader)
    finally:
        reader.close()


def _row(t, label, entity):
    found = [r for r in t.rows if r[0].text == label and r[2].text == entity]
    assert len(found) == 1, (label, entity, [(r[0].text, r[2].text) for r in t.rows])
    return {h: c.text for h, c in zip(t.header, found[0])}


def test_cells_are_mean_and_sample_std_over_seeds_per_entity(runs):
    from snap_bench.report.tables_refusal import table_refusal

    t = table_refusal(runs[1])
    snap = _row(t, "SNAP", PP)
    assert snap["Kind"] == "refusal" and snap["n"] == "3"
    assert snap["UA"] == "80.0 ± 10.0" and snap["leak↓"] == "4.0 ± 2.0" and snap["RA"] == "50.0 ± 10.0"
    assert snap["R-L forget↓"] == "0.04 ± 0.02"
    assert snap["answer log-prob Δ"] == f"0.10 ± {statistics.stdev([-0.1, 0.3, 0.1]):.2f}"
    assert snap["UA after relearning"] == "20.0 ± 10.0"
    # MIA only where stored: the mean over the two seeds that have it, never a value for seed 2
    assert snap["MIA Min-K%++ AUC (Δ)"] == f"0.62 ± {statistics.stdev([0.60, 0.64]):.2f} (Δ +0.04) (n=2)"
    ga = _row(t, "Gradient ascent", PP)
    assert ga["Kind"] == "removal" and ga["RA"] == "98.0 ± 2.8" and ga["n"] == "2"
    assert ga["MIA Min-K%++ AUC (Δ)"] == "—" and ga["answer log-prob Δ"] == "—" and ga["UA after relearning"] == "—"
    # one seed: a mean without a fake ±0; the entities are separate rows, never pooled
    assert _row(t, "SNAP", BG)["UA"] == "60.0" and _row(t, "SNAP", BG)["n"] == "1"
    assert _row(t, "Untrained", PP)["Kind"] == "reference"
    sized = _row(t, "SNAP [eval_limit=60]", PP)
    assert sized["UA"] == "10.0" and sized["n"] == "1" and sized["Kind"] == "refusal"
    labels = [r[0].text for r in t.rows if r[2].text == PP]
    assert labels.index("SNAP [eval_limit=60]") == labels.index("SNAP") + 1
    assert any(n.startswith("[knob=value]") for n in t.notes)


def test_every_registered_method_is_a_row_on_every_entity(runs):
    from snap_bench.registry import METHODS
    from snap_bench.report.data import METHOD_LABELS
    from snap_bench.report.tables_refusal import METHOD_KINDS, table_refusal

    t = table_refusal(runs[1])
    for entity in (PP, BG):
        labels = {r[0].text for r in t.rows if r[2].text == entity and " [" not in r[0].text}
        assert {METHOD_LABELS.get(m, m) for m in METHOD_KINDS if m in METHODS.names()} <= labels
        assert {METHOD_LABELS.get(m, m) for m in METHODS.names()} | {"Untrained"} == labels
    npo = _row(t, "NPO", PP)
    assert npo["UA"] == "—" and npo["n"] == "0" and npo["Kind"] == "removal"
    assert any(n.startswith("missing:") and "NPO" in n and "methods-cpu" in n for n in t.notes)
    # every registered method has a kind: a new method must be classified here, not left as "?"
    assert not set(METHODS.names()) - set(METHOD_KINDS)


def test_ranking_and_csv_carry_full_precision(runs, tmp_path):
    from snap_bench.report.render import to_csv, to_markdown
    from snap_bench.report.tables_refusal import table_refusal

    t = table_refusal(runs[1])
    marks = t.marks()
    at = {(r[0].text, r[2].text): i for i, r in enumerate(t.rows)}
    ua, leak = t.header.index("UA"), t.header.index("leak↓")
    assert marks[(at[("SNAP", PP)], ua)] == "best" and marks[(at[("Gradient ascent", PP)], ua)] == "second"
    # leak: lower is better; the untrained row (leak 30) is a reference and never ranks
    assert marks[(at[("Gradient ascent", PP)], leak)] == "best" and marks[(at[("SNAP", PP)], leak)] == "second"
    assert not any(i == at[("Untrained", PP)] for i, _ in marks)
    assert "**80.0 ± 10.0**" in to_markdown(t)
    path = tmp_path / "t.csv"
    path.write_text(to_csv(t))
    rows = {(r["label"], r["entity"]): r for r in csv.DictReader(path.open())}
    snap = rows[("SNAP", PP)]
    assert float(snap["UA_mean"]) == 80.0 and float(snap["UA_std"]) == 10.0 and snap["n_seeds"] == "3"
    assert float(snap["mia_minkpp_delta_mean"]) == pytest.approx(0.04)
    assert float(snap["mia_minkpp_before_mean"]) == pytest.approx(0.58)
    assert rows[("Gradient ascent", PP)]["mia_minkpp_after_mean"] == ""
    assert rows[("NPO", PP)]["run_ids"] == "" and rows[("NPO", PP)]["kind"] == "removal"


def test_mia_table_has_the_four_attacks_only_for_runs_that_stored_them(runs):
    from snap_bench.report.tables_refusal import table_mia

    t = table_mia(runs[1])
    assert [r[0].text for r in t.rows] == ["SNAP"]
    cells = _row(t, "SNAP", PP)
    for attack in ("loss", "zlib", "Min-K%", "Min-K%++"):
        assert cells[f"MIA {attack} AUC (Δ)"].startswith("0.62 ± ")
    assert cells["members"] == "80" and cells["n"] == "2"
    assert table_mia([r for r in runs[1] if not r.analyses.get("mia")]) is None


def test_the_figure_is_written_with_one_point_per_method_and_entity(runs, tmp_path):
    from snap_bench.report.figures_refusal import fig_refusal, refusal_points

    pts = refusal_points(runs[1])
    assert sorted(pts) == [BG, PP]
    snap = next((xy, err) for row, xy, err in pts[PP] if row.label == "SNAP")
    assert snap == ((4.0, 50.0), (2.0, 10.0))
    assert {row.label for row, _, _ in pts[PP]} == {"SNAP", "Gradient ascent", "Untrained"}
    written = {}
    names = fig_refusal(runs[1], tmp_path, lambda p, data: written.__setitem__(p.name, data))
    assert names == ["fig_refusal.png", "fig_refusal.svg"]
    assert written["fig_refusal.png"].startswith(PNG_MAGIC) and b"<svg" in written["fig_refusal.svg"]
    empty = {}
    fig_refusal([], tmp_path, lambda p, data: empty.__setitem__(p.name, data))  # no runs: drawn, saying why
    assert empty["fig_refusal.png"].startswith(PNG_MAGIC)


def test_the_report_emits_the_table_and_the_figure(runs):
    from snap_bench.report import build_report

    root, _ = runs
    summary = build_report(root / "res", root / "out", progress=False)
    assert "table_refusal" in summary["tables"] and "table_mia" in summary["tables"]
    for name in ("table_refusal.md", "table_refusal.csv", "table_refusal.tex", "table_mia.md", "fig_refusal.png",
                 "fig_refusal.svg"):
        assert name in summary["files"], name
    page = (root / "out" / "index.html").read_text(encoding="utf-8")
    assert 'id="table_refusal"' in page and 'id="fig_refusal"' in page and 'id="table_mia"' in page


def test_analysis_knobs_make_no_new_row():
    cfg = plan(RunSpec(method="snap", entities=[PP], model="tiny-random")).record["config"]
    knobs = {"probes": True, "probe_limit": 20, "mia": True, "mia_limit": 50, "eval_limit": 40, "max_steps": 16}
    assert label_run("snap", {**cfg, **knobs}, "cpu")[0] == "SNAP"


def test_methods_cpu_suite_names_every_registered_method_on_both_entities_and_three_seeds():
    """Fails when a method is registered but missing from the suite, or the suite names one not registered."""
    from snap_bench.registry import METHODS
    from snap_bench.run.sweep import expand, load_suite

    suite = load_suite("methods-cpu")
    runs = expand(suite)
    trained = [r for r in runs if r["overrides"].get("max_steps") != "0"]
    assert {r["method"] for r in trained} == set(METHODS.names())
    combos = {(r["method"], tuple(r["entities"]), r["seed"]) for r in trained}
    assert combos == {(m, (e,), s) for m in METHODS.names() for e in (PP, BG) for s in (0, 1, 2)}
    assert all(r["model"] == "smollm2-135m" and r["mode"] == "single" for r in runs)
    sizes = {k: trained[0]["overrides"][k] for k in ("probes", "mia", "eval_limit", "max_steps")}
    assert sizes["probes"] == "True" and sizes["mia"] == "True" and int(sizes["eval_limit"]) > 0
    assert {(tuple(r["entities"]), r["seed"]) for r in runs if r not in trained} == {
        ((e,), s) for e in (PP, BG) for s in (0, 1, 2)}  # the untrained reference rows


def test_methods_cpu_suite_plans():
    """Every grid point is a valid run (method, entity and every --set key), as `sweep --dry-run` checks."""
    from snap_bench.run.sweep import expand, load_suite

    for r in expand(load_suite("methods-cpu")):
        if r["seed"] == 0:
            plan(RunSpec(method=r["method"], entities=r["entities"], mode=r["mode"], regularizer=r["regularizer"],
                         model=r["model"], seed=r["seed"], overrides=r["overrides"], progress=False))


def test_the_reports_mia_attacks_are_the_ones_evaluate_stores():
    """The report names the attacks itself (importing evaluate.mia would load torch into every report); this
    keeps the two lists from drifting apart."""
    from snap_bench.evaluate.mia import ATTACKS
    from snap_bench.report.tables_refusal import MIA_ATTACKS, MIA_HEADERS

    assert MIA_ATTACKS == ATTACKS and set(MIA_HEADERS) == set(ATTACKS)
