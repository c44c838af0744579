"""``snap-bench report``: tables, figures and the HTML page, checked against what the store holds."""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import subprocess

import pytest

from snap_bench.records import StepResult
from snap_bench.report.data import label_run
from snap_bench.run.execute import RunSpec, plan
from snap_bench.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(ua, uam, ra, ta, **new):
    """Today's five metrics, plus any of issue 13's (cross_RA, leak, RA_known, RA_known_n, degenerate, rougeL_*)."""
    return {"UA": ua, "UA_multihop": uam, "RA": ra, "TA": ta, "Avg": (ua + uam + ra + ta) / 4, **new}


def _new(cross, leak, known, degen, known_n=12):
    return dict(cross_RA=cross, leak=leak, RA_known=known, RA_known_n=known_n, degenerate=degen,
                rougeL_forget=leak / 100, rougeL_retain=0.5, rougeL_general=0.6)


def _loss(lam, steps=6):
    """A loss log whose last step has reg = λ·0.05 and total = 3 + reg."""
    return [{"forget": 2.0 - 0.1 * i, "retain": 1.5, "reg": lam * 0.01 * i, "total": 3.5 - 0.1 * i + lam * 0.01 * i,
             "lr": 1e-4} for i in range(steps)]


def _store_run(store, spec: RunSpec, steps, analyses=None, losses=None):
    """Write one finished run with the given per-step metrics, as the runner would."""
    p = plan(spec)
    run_id = store.start_run(config_hash=p.config_hash, method=spec.method, regularizer=p.regularizer, mode=spec.mode,
                             entities=[pk.slug for pk in p.packs], model=spec.model, seed=spec.seed, config=p.record,
                             versions={"snap_bench": "test", "torch": "x"})
    step_results = [StepResult(k, [], m, [], losses if k == len(steps) - 1 else None) for k, m in enumerate(steps)]
    store.finish_run(run_id, {"total": 1.0}, step_results, judge="rules", analyses=analyses)
    return run_id


def _nlp(acc):
    return {"requested": ["hellaswag", "mmlu"], "tasks": {"mmlu": {"acc": acc, "n": 10}},
            "unavailable": {"hellaswag": "dataset not reachable offline"}, "average": acc, "limit": 10}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A store with known metrics: SNAP over two seeds on two entities, baselines, ablations, a real person, batch +
    sequential, a λ sweep (SNAP at five λ, Euclidean at two) and a retain-share variant. The baselines and the
    ablations are "old" runs, stored before issue 13's metrics existed."""
    root = tmp_path_factory.mktemp("report")
    store = Store(root / "res")
    S = lambda method, ent="peter_parker", **kw: RunSpec(method=method, entities=[ent] if isinstance(ent, str) else ent,  # noqa: E731
                                                        model="tiny-random", progress=False, **kw)
    loss = [{"forget": 2.0 - 0.1 * i, "retain": 1.5, "reg": 0.01 * i, "total": 3.5 - 0.1 * i, "lr": 1e-4} for i in range(6)]
    ids = {}
    ids["untrained"] = _store_run(store, S("snap", overrides={"max_steps": "0"}), [{"peter_parker": _metrics(0, 0, 100, 100)}],
                                  analyses={"nlp": _nlp(0.40)})
    ids["snap0"] = _store_run(store, S("snap", seed=0), [{"peter_parker": _metrics(80, 90, 40, 88, **_new(70, 10, 60, 2))}],
                              analyses={"nlp": _nlp(0.38)}, losses=loss)
    ids["snap1"] = _store_run(store, S("snap", seed=1), [{"peter_parker": _metrics(90, 70, 50, 92, **_new(90, 20, 80, 4))}],
                              analyses={"nlp": _nlp(0.36)}, losses=loss)
    # The same method on a second entity: its seeds make its own ±, never pooled with peter_parker's.
    ids["bp0"] = _store_run(store, S("snap", "black_panther", seed=0),
                            [{"black_panther": _metrics(60, 50, 30, 80, **_new(50, 30, 40, 6, known_n=9))}], losses=loss)
    ids["bp1"] = _store_run(store, S("snap", "black_panther", seed=1),
                            [{"black_panther": _metrics(64, 56, 36, 84, **_new(60, 40, 44, 8, known_n=9))}], losses=loss)
    ids["eucl"] = _store_run(store, S("euclidean"), [{"peter_parker": _metrics(70, 60, 45, 95, **_new(80, 30, 70, 1))}],
                             losses=loss)
    ids["prompt"] = _store_run(store, S("prompting"), [{"peter_parker": _metrics(5, 0, 100, 100, **_new(100, 80, 100, 0))}])
    ids["nowass"] = _store_run(store, S("snap", regularizer="none"), [{"peter_parker": _metrics(85, 80, 30, 80)}])
    ids["nohard"] = _store_run(store, S("snap", overrides={"retain_data": "none"}), [{"peter_parker": _metrics(99, 99, 5, 10)}])
    ids["noneg"] = _store_run(store, S("grad_diff", regularizer="swd"), [{"peter_parker": _metrics(0, 0, 100, 100)}])
    ids["dr"] = _store_run(store, S("snap", overrides={"retain_data": "hard"}), [{"peter_parker": _metrics(86, 88, 50, 52)}])
    ids["dg"] = _store_run(store, S("snap", overrides={"retain_data": "general"}), [{"peter_parker": _metrics(84, 80, 20, 90)}])
    ids["bg_un"] = _store_run(store, S("snap", "bill_gates", overrides={"max_steps": "0"}), [{"bill_gates": _metrics(0, 0, 100, 100)}])
    ids["bg_snap"] = _store_run(store, S("snap", "bill_gates"), [{"bill_gates": _metrics(75, 60, 55, 90)}],
                                analyses={"nlp": _nlp(0.30)})
    two = ["peter_parker", "black_panther"]
    ids["batch"] = _store_run(store, S("snap", two, mode="batch"),
                              [{"peter_parker": _metrics(80, 80, 40, 90), "black_panther": _metrics(60, 60, 50, 90)}])
    ids["seq"] = _store_run(store, S("snap", two, mode="sequential"),
                            [{"peter_parker": _metrics(85, 80, 40, 90, cross_RA=90)},
                             {"peter_parker": _metrics(70, 70, 30, 85, cross_RA=80),
                              "black_panther": _metrics(80, 75, 35, 85, cross_RA=85)}],
                            losses=loss)
    # The λ sweep: SNAP (swd) at λ 0.01..100 besides the default 0.1 runs above, Euclidean (l2) at λ 1 and 10.
    for lam, seeds in ((0.01, (0,)), (1, (0,)), (10, (0, 1)), (100, (0,))):
        for seed in seeds:
            ids[f"snap_l{lam}_s{seed}"] = _store_run(
                store, S("snap", seed=seed, overrides={"lambda_reg": str(lam)}),
                [{"peter_parker": _metrics(90 - 10 * seed - 5 * len(str(lam)), 80, 40 + 5 * seed, 90,
                                           **_new(80 + seed, 10, 60, 2))}],
                losses=_loss(lam))
    for lam in (1, 10):
        ids[f"eucl_l{lam}"] = _store_run(store, S("euclidean", overrides={"lambda_reg": str(lam)}),
                                         [{"peter_parker": _metrics(60, 50, 50, 90, **_new(85, 20, 65, 1))}],
                                         losses=_loss(lam))
    ids["ratio2"] = _store_run(store, S("snap", overrides={"retain_ratio": "2"}),
                               [{"peter_parker": _metrics(70, 60, 60, 90, **_new(85, 15, 75, 1))}], losses=loss)
    # A failed run never reaches a table, but is listed in runs.csv with its reason.
    failed = store.start_run(config_hash="f", method="fisher", regularizer="fisher", mode="single", entities=["peter_parker"],
                             model="tiny-random", seed=0, config={"config": {}}, versions={})
    store.fail_run(failed, "non-finite loss at step 3")
    store.close()
    return root, ids


@pytest.fixture(scope="module")
def report(synthetic):
    from snap_bench.report import build_report

    root, ids = synthetic
    summary = build_report(root / "res", root / "out", progress=False)
    return root / "out", ids, summary


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_labels_come_from_the_config_not_the_suite():
    def cfg(method, **kw):
        return plan(RunSpec(method=method, entities=["peter_parker"], model="tiny-random", **kw)).record["config"]

    assert label_run("snap", cfg("snap"), "cpu")[0] == "SNAP"
    assert label_run("snap", cfg("snap", overrides={"max_steps": "0"}), "cpu")[0] == "Untrained"
    assert label_run("snap", cfg("snap", overrides={"epochs": "1.2", "eval_limit": "20"}), "cpu")[0] == "SNAP"
    assert label_run("snap", cfg("snap", regularizer="none"), "cpu")[0] == "SNAP −Wasserstein"
    assert label_run("snap", cfg("snap", regularizer="l2"), "cpu")[0] == "SNAP (+l2)"
    assert label_run("snap", cfg("snap", overrides={"lr": "5e-5"}), "cpu")[0] == "SNAP (lr=5e-05)"
    assert label_run("prompting", cfg("prompting", overrides={"lr": "1"}), "cpu")[0] == "Prompting"
    assert label_run("grad_diff", cfg("grad_diff", regularizer="swd"), "cpu")[0] == "SNAP −Negative instructions"
    # A run that changes only λ is named by it, not by an opaque "lambda_reg=..." (and is no Table 1 "SNAP" row).
    assert label_run("snap", cfg("snap", overrides={"lambda_reg": "1"}), "cpu")[0] == "SNAP λ=1"
    assert label_run("snap", cfg("snap", overrides={"lambda_reg": "0.01", "max_steps": "60"}), "cpu")[0] == "SNAP λ=0.01"
    assert label_run("euclidean", cfg("euclidean", overrides={"lambda_reg": "10"}), "cpu")[0] == "Euclidean λ=10"
    assert label_run("snap", cfg("snap", regularizer="l2", overrides={"lambda_reg": "1"}), "cpu")[0] == "SNAP (+l2) λ=1"
    assert label_run("snap", cfg("snap", overrides={"lambda_reg": "0.1"}), "cpu")[0] == "SNAP"  # the default λ
    # Without a regularizer λ weighs nothing: still the −Wasserstein ablation.
    assert label_run("snap", cfg("snap", regularizer="none", overrides={"lambda_reg": "1"}), "cpu")[0] == \
        "SNAP −Wasserstein"


def _by_label(path, entity="peter_parker"):
    """A table's csv rows on one entity (missing rows have entity ""), keyed by label."""
    return {r["label"]: r for r in _csv(path) if r["entity"] in (entity, "")}


def test_table1_csv_equals_the_means_of_the_stored_metrics(report, synthetic):
    out, ids, _ = report
    rows = _by_label(out / "table1.csv")
    assert list(rows)[0] == "Untrained"
    store = Store(synthetic[0] / "res")
    try:
        for label, keys in {"SNAP": ["snap0", "snap1"], "Euclidean": ["eucl"], "Prompting": ["prompt"]}.items():
            for metric in ("UA", "UA_multihop", "RA", "TA", "Avg", "cross_RA", "leak", "RA_known", "degenerate",
                           "rougeL_forget", "rougeL_retain", "rougeL_general"):
                stored = [store.metrics(ids[k])[0]["peter_parker"][metric] for k in keys]
                assert float(rows[label][f"{metric}_mean"]) == pytest.approx(statistics.mean(stored)), (label, metric)
                if len(stored) > 1:
                    assert float(rows[label][f"{metric}_std"]) == pytest.approx(statistics.stdev(stored))
                else:
                    assert rows[label][f"{metric}_std"] == ""  # one seed: no std, never a fake 0
    finally:
        store.close()
    assert rows["SNAP"]["n_runs"] == "2" and rows["SNAP"]["seeds"] == "0 1" and rows["SNAP"]["n_seeds"] == "2"
    assert rows["SNAP"]["RA_known_n"] == "12"  # an item count, shown as is, not a mean ± std
    # Ablations, D_r/D_g, λ variants, the retain-share variant and the real person stay out of Table 1.
    assert not any(k.startswith("SNAP ") for k in rows)
    assert rows["Fisher"]["n_runs"] == "0" and rows["Fisher"]["UA_mean"] == ""


def test_std_is_over_seeds_per_entity_never_pooled(report, synthetic):
    """Two entities × two seeds: each entity's row has the std of its own seeds; the all-entities row's std is
    over the seeds' entity means; no row has the std of the four runs pooled."""
    out, ids, _ = report
    snap = {r["entity"]: r for r in _csv(out / "table1.csv") if r["label"] == "SNAP"}
    assert set(snap) == {"peter_parker", "black_panther", "all entities"}
    store = Store(synthetic[0] / "res")
    try:
        ua = {k: store.metrics(ids[k])[0][e]["UA"] for k, e in
              (("snap0", "peter_parker"), ("snap1", "peter_parker"), ("bp0", "black_panther"), ("bp1", "black_panther"))}
    finally:
        store.close()
    assert float(snap["peter_parker"]["UA_std"]) == pytest.approx(statistics.stdev([ua["snap0"], ua["snap1"]]))
    assert float(snap["black_panther"]["UA_std"]) == pytest.approx(statistics.stdev([ua["bp0"], ua["bp1"]]))
    per_seed = [(ua["snap0"] + ua["bp0"]) / 2, (ua["snap1"] + ua["bp1"]) / 2]
    assert float(snap["all entities"]["UA_mean"]) == pytest.approx(statistics.mean(per_seed))
    assert float(snap["all entities"]["UA_std"]) == pytest.approx(statistics.stdev(per_seed))
    pooled = statistics.stdev(ua.values())
    assert all(float(r["UA_std"]) != pytest.approx(pooled) for r in snap.values())
    assert {r["n_seeds"] for r in snap.values()} == {"2"}
    assert snap["all entities"]["RA_known_n"] == "21"  # items over both entities (12 + 9)
    md = (out / "table1.md").read_text()
    assert "| SNAP | black_panther | 62.0 ± 2.8 |" in md  # alone in its entity's block: nothing to rank against
    assert "all entities (2)" in md and "never pooled" in md


def _md_line(md, label, entity="peter_parker"):
    return next(line for line in md.splitlines() if line.startswith(f"| {label} | {entity} |"))


def test_markdown_marks_best_and_second_and_dashes_missing(report):
    out, _, summary = report
    md = (out / "table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:2] == ["Method", "Entity"] and cols[-2:] == ["steps", "n"]
    assert {"cross-RA", "leak↓", "RA known", "n known", "degen.↓"} <= set(cols)
    snap_line = _md_line(md, "SNAP")
    assert "**85.0 ± 7.1**" in snap_line  # best UA among methods (80, 90 over two seeds)
    assert snap_line.endswith("| 6 | 2 |")  # 6 optimiser steps (the loss log), two seeds
    eucl_line = _md_line(md, "Euclidean")
    assert "<u>70.0</u>" in eucl_line  # second-best UA
    assert "<u>95.0</u>" in eucl_line  # second-best TA, after prompting's 100
    prompting = _md_line(md, "Prompting")
    assert "**100.0**" in prompting
    untrained = _md_line(md, "Untrained")
    assert "**" not in untrained  # the reference row never competes
    fisher = next(line for line in md.splitlines() if line.startswith("| Fisher "))
    assert fisher.count("—") == len(cols) - 1
    assert "missing: Fisher on tiny-random" in md and "--method fisher" in md
    assert any("Fisher" in m for m in summary["missing"])


def test_lower_is_better_columns_bold_the_smallest(report):
    md = (report[0] / "table1.md").read_text()
    cols = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| Method")).strip("|").split("|")]
    leak, degen = cols.index("leak↓"), cols.index("degen.↓")

    def cell(label, col):
        return _md_line(md, label).strip("|").split("|")[col].strip()

    # leak: SNAP 15 ± 7.1 (10, 20), Euclidean 30, Prompting 80 -> SNAP best, Euclidean second.
    assert cell("SNAP", leak) == "**15.0 ± 7.1**" and cell("Euclidean", leak) == "<u>30.0</u>"
    assert cell("Prompting", leak) == "80.0"
    # degenerate: Prompting 0 best, Euclidean 1 second, SNAP 3 neither.
    assert cell("Prompting", degen) == "**0.0**" and cell("Euclidean", degen) == "<u>1.0</u>"
    assert cell("SNAP", degen) == "3.0 ± 1.4"
    # cross-RA is higher-is-better: Prompting 100 best.
    assert cell("Prompting", cols.index("cross-RA")) == "**100.0**"


def test_old_runs_without_the_new_metrics_show_a_dash(report):
    out = report[0]
    md = (out / "table3.md").read_text()
    cols = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| Method")).strip("|").split("|")]
    nowass = _md_line(md, "SNAP −Wasserstein").strip("|").split("|")
    assert nowass[cols.index("cross-RA")].strip() == "—" and nowass[cols.index("leak↓")].strip() == "—"
    assert "85.0" in nowass[cols.index("UA")]  # its old metrics still show (ranked)
    t3 = _by_label(out / "table3.csv")
    assert t3["SNAP −Wasserstein"]["cross_RA_mean"] == "" and t3["SNAP −Wasserstein"]["leak_std"] == ""
    runs = {r["run_id"]: r for r in _csv(out / "runs.csv")}
    nowass_run = next(r for r in runs.values() if r["label"] == "SNAP −Wasserstein")
    assert nowass_run["cross_RA"] == "" and float(nowass_run["UA"]) == 85.0


def test_latex_is_booktabs_with_bold_and_underline(report):
    tex = (report[0] / "table1.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{85.0 $\pm$ 7.1}", r"\underline{70.0}",
                  r"UA$^{\clubsuit}$", r"\label{tab:table1}"):
        assert token in tex, token


def test_table2_marks_unavailable_tasks_and_relative_change(report):
    out = report[0]
    rows = {r["label"]: r for r in _csv(out / "table2.csv")}
    assert float(rows["Untrained"]["mmlu_mean"]) == pytest.approx(0.40)
    assert float(rows["SNAP"]["mmlu_mean"]) == pytest.approx(0.37)
    assert float(rows["SNAP"]["avg_rel_change_pct"]) == pytest.approx(100 * (0.37 - 0.40) / 0.40)
    md = (out / "table2.md").read_text()
    snap = next(line for line in md.splitlines() if line.startswith("| SNAP "))
    assert "| n/a |" in snap and "-7.5%" in snap  # hellaswag unavailable, not zero
    assert "unavailable, never scored: hellaswag" in md


def test_table3_ablations_and_table4_real_person(report):
    out = report[0]
    t3 = _by_label(out / "table3.csv")
    # SNAP at every λ the store holds (0.1 is the default), then the ablations.
    assert list(t3) == ["SNAP (λ=0.01)", "SNAP (λ=0.1)", "SNAP (λ=1)", "SNAP (λ=10)", "SNAP (λ=100)",
                        "SNAP −Wasserstein", "SNAP −HardRDA", "SNAP −Negative instructions"]
    assert float(t3["SNAP −HardRDA"]["RA_mean"]) == 5.0
    assert float(t3["SNAP (λ=0.1)"]["UA_mean"]) == 85.0 and t3["SNAP (λ=0.1)"]["n_seeds"] == "2"
    assert float(t3["SNAP (λ=0.1)"]["reg_share"]) == pytest.approx(0.05 / 3.0)
    assert float(t3["SNAP (λ=10)"]["reg_share"]) == pytest.approx(0.5 / 3.5)
    assert t3["SNAP −Wasserstein"]["reg_share"] == ""  # an old run without a loss log: unknown, not 0
    md3 = (out / "table3.md").read_text()
    assert "reg share" in md3 and "| SNAP (λ=10) | peter_parker |" in md3
    t4 = _by_label(out / "table4.csv", "bill_gates")
    assert float(t4["SNAP"]["UA_mean"]) == 75.0 and float(t4["SNAP"]["NLP Avg"]) == pytest.approx(30.0)
    # The untrained row's NLP comes from the untrained run on another entity: same weights.
    assert float(t4["Untrained"]["NLP Avg"]) == pytest.approx(40.0)
    assert t4["Prompting"]["n_runs"] == "0"
    t5 = _csv(out / "table5.csv")
    assert {r["entity"] for r in t5} >= {"peter_parker", "bill_gates", "general (D_g)"}
    pp_forget = next(r for r in t5 if r["entity"] == "peter_parker" and r["set"] == "forget")
    from snap_bench.tasks import load_pack

    assert int(pp_forget["total"]) == len(load_pack("peter_parker")["forget"])


def test_figures_are_real_images_and_runs_csv_lists_failures(report):
    out = report[0]
    for stem in ("fig3", "fig4", "fig5", "fig_lambda", "fig_tradeoff", "fig_losses"):
        png = (out / f"{stem}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000, stem
        svg = (out / f"{stem}.svg").read_text()
        assert "<svg" in svg[:2000] and len(svg) > 5_000, stem
    runs = _csv(out / "runs.csv")
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "non-finite loss at step 3"
    assert len(runs) == 25
    done = {r["label"]: r for r in runs if r["status"] == "done"}
    assert done["SNAP λ=10"]["lambda_reg"] == "10.0" and done["SNAP λ=10"]["steps"] == "6"
    assert float(done["SNAP λ=10"]["reg_share"]) == pytest.approx(0.5 / 3.5)
    assert done["Untrained"]["steps"] == "0" and done["Prompting"]["steps"] == "0"
    assert {"cross_RA", "leak", "RA_known", "RA_known_n", "degenerate", "rougeL_forget"} <= set(runs[0])


def test_html_is_self_contained(report):
    html = (report[0] / "index.html").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Figure 3", "Figure 4", "Figure 5", "Environment",
                  'id="table_lambda"', 'id="fig_lambda"', 'id="fig_tradeoff"', 'href="table_lambda.csv"'):
        assert title in html, title
    assert html.count("data:image/png;base64,") >= 6
    assert 'href="table1.csv"' in html and "tiny-random" in html
    assert "they are not the SNAP paper" in html and 'href="runs.md"' not in html
    for external in ("<script", "src=\"http", "href=\"http", "@import", "url(http"):
        assert external not in html, external


def test_lambda_table_columns_order_and_reg_share(report, synthetic):
    out, ids, _ = report
    with open(out / "table_lambda.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:8] == ["regularizer", "lambda", "reg_share", "UA", "RA", "cross_RA", "TA", "n"]
    assert all(h.endswith("_std") for h in header[8:13])
    all_rows = _csv(out / "table_lambda.csv")
    assert [(r["regularizer"], float(r["lambda"])) for r in all_rows] == \
        sorted((r["regularizer"], float(r["lambda"])) for r in all_rows)  # by regularizer, then λ
    # SNAP's default-λ runs also ran black_panther (and bill_gates): one row per entity, entities never pooled.
    assert {r["entity"] for r in all_rows if r["regularizer"] == "swd" and float(r["lambda"]) == 0.1} == \
        {"peter_parker", "black_panther", "bill_gates"}
    rows = [r for r in all_rows if r["entity"] == "peter_parker"]
    keys = [(r["regularizer"], float(r["lambda"])) for r in rows]
    assert keys == [("l2", 0.1), ("l2", 1.0), ("l2", 10.0),
                    ("swd", 0.01), ("swd", 0.1), ("swd", 1.0), ("swd", 10.0), ("swd", 100.0)]
    store = Store(synthetic[0] / "res")
    try:
        for r in rows:  # one entity: the mean over seeds of each run's reg / total at its last logged step
            shares = []
            for run_id in r["run_ids"].split():
                losses = store.losses(run_id)
                last = losses[max(losses)][-1]
                shares.append(last["reg"] / last["total"])
            assert float(r["reg_share"]) == pytest.approx(statistics.mean(shares)), r
    finally:
        store.close()
    swd10 = next(r for r in rows if r["regularizer"] == "swd" and float(r["lambda"]) == 10)
    assert swd10["n"] == "2" and float(swd10["UA_std"]) == pytest.approx(statistics.stdev([80, 70]))
    assert swd10["labels"] == "SNAP λ=10"
    # Only λ variants (and the default-λ runs): no ablation, retain-share variant or untrained run.
    assert not any(lab in r["labels"] for r in rows for lab in ("−", "retain", "Untrained", "D_r"))
    md = (out / "table_lambda.md").read_text()
    assert "| swd | 100 | peter_parker |" in md
    assert r"$\lambda$" in (out / "table_lambda.tex").read_text()


def test_lambda_figure_draws_every_lambda(report):
    from snap_bench.report.data import load_runs
    from snap_bench.report.figures_lambda import _lambda_points

    out = report[0]
    png = (out / "fig_lambda.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert "<svg" in (out / "fig_lambda.svg").read_text()[:2000]
    store = Store(out.parent / "res")
    try:
        pts = _lambda_points(load_runs(store))
    finally:
        store.close()
    ents, swd, note = pts[("tiny-random", "swd")]
    assert note == ""  # one sizing budget: nothing to name
    assert [lam for lam, _ in swd] == [0.01, 0.1, 1.0, 10.0, 100.0]
    assert ents == ["peter_parker"]  # the entity every λ ran: each point averages the same entities
    at = dict(swd)
    assert at[10.0]["UA"] == (pytest.approx(75.0), pytest.approx(statistics.stdev([80, 70])))
    assert at[0.1]["reg_share"][0] == pytest.approx(0.05 / 3.0) and at[100.0]["cross_RA"][0] == 80.0
    assert [lam for lam, _ in pts[("tiny-random", "l2")][1]] == [0.1, 1.0, 10.0]


def test_lambda_rows_of_different_sizes_are_never_averaged(tmp_path):
    """A sweep at eval_limit=60 and a full evaluation at the same λ and seed are different samples of the
    held-out sets: separate rows with a size column, and the figures draw the budget with the most λ values."""
    from snap_bench.report import build_report
    from snap_bench.report.data import load_runs
    from snap_bench.report.figures_lambda import _lambda_points, _tradeoff_points

    store = Store(tmp_path / "res")
    S = lambda seed=0, **o: RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", progress=False,  # noqa: E731
                                    seed=seed, overrides={k: str(v) for k, v in o.items()})
    for lam, ua in ((0.1, 80), (1, 70), (10, 60)):
        _store_run(store, S(lambda_reg=lam, eval_limit=60), [{"peter_parker": _metrics(ua, 80, 50, 90, **_new(40, 1, 60, 0))}],
                   losses=_loss(lam))
    for seed, ua in ((0, 90), (1, 94)):
        _store_run(store, S(seed), [{"peter_parker": _metrics(ua, 80, 50, 90, **_new(40, 1, 60, 0))}], losses=_loss(0.1))
    try:
        runs = load_runs(store)
    finally:
        store.close()
    build_report(tmp_path / "res", tmp_path / "out", progress=False)
    rows = _csv(tmp_path / "out" / "table_lambda.csv")
    at01 = sorted((r for r in rows if float(r["lambda"]) == 0.1), key=lambda r: r["n"])
    assert [(r["n"], float(r["UA"])) for r in at01] == [("1", 80.0), ("2", 92.0)]  # not (80 + 92) / 2, not 3 seeds
    assert "eval_limit=60" in at01[0]["budget"] and "eval_limit=60" not in at01[1]["budget"]
    md = (tmp_path / "out" / "table_lambda.md").read_text()
    assert "| size |" in md and "eval_limit=60" in md and "eval_limit=None" in md
    t1 = {r["label"]: r for r in _csv(tmp_path / "out" / "table1.csv")}
    assert t1["SNAP"]["n_seeds"] == "2" and float(t1["SNAP"]["UA_mean"]) == pytest.approx(92.0)  # the full runs
    assert t1["SNAP [eval_limit=60]"]["n_seeds"] == "1" and float(t1["SNAP [eval_limit=60]"]["UA_mean"]) == 80.0
    t1md = (tmp_path / "out" / "table1.md").read_text()
    assert t1md.index("| SNAP |") < t1md.index("| SNAP [eval_limit=60] |") and "kept apart" in t1md
    ents, pts, note = _lambda_points(runs)[("tiny-random", "swd")]
    assert [lam for lam, _ in pts] == [0.1, 1.0, 10.0] and note == "eval_limit=60"
    assert dict(pts)[0.1]["UA"][0] == pytest.approx(80.0)
    assert sorted(p[1] for p in _tradeoff_points(runs)) == ["swd λ=0.1", "swd λ=1", "swd λ=10"]
    assert next(p for p in _tradeoff_points(runs) if p[1] == "swd λ=0.1")[2]["UA"] == pytest.approx(80.0)


def test_fig5_adds_cross_ra_when_stored(report):
    from snap_bench.report.data import load_runs
    from snap_bench.report.figures import FIG_METRICS, fig5_metrics

    store = Store(report[0].parent / "res")
    try:
        runs = load_runs(store)
    finally:
        store.close()
    assert fig5_metrics(runs) == FIG_METRICS + ("cross_RA",)
    assert fig5_metrics([r for r in runs if r.mode == "batch"]) == FIG_METRICS  # the batch run predates it


def test_tradeoff_points_per_lambda_and_retain_share(report):
    from snap_bench.report.data import load_runs
    from snap_bench.report.figures_lambda import _tradeoff_points

    out = report[0]
    store = Store(out.parent / "res")
    try:
        keys = {p[1] for p in _tradeoff_points(load_runs(store))}
    finally:
        store.close()
    assert {"swd λ=0.1", "swd λ=100", "l2 λ=1", "SNAP (retain_ratio=2)", "SNAP (D_r)", "SNAP (D_g)"} <= keys
    assert not any("−" in k or "Untrained" in k for k in keys)


def test_report_without_a_store_is_a_one_line_error(cli, tmp_path):
    r = cli("report", "--results", tmp_path / "nothing", "--out", tmp_path / "o")
    assert r.code == 2 and "no results store" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_smoke_sweep_then_report(cli, tmp_path):
    """The issue's acceptance: sweep --suite smoke, then report, then every file, and table1.csv = stored means."""
    res, out = tmp_path / "res", tmp_path / "out"
    sweep = cli("sweep", "--suite", "smoke", "--results", res, "--no-progress", "--json")
    assert sweep.code == 0, sweep.err
    rep = cli("report", "--results", res, "--out", out, "--json")
    assert rep.code == 0, rep.err
    files = set(rep.json["files"])
    for n in range(1, 6):
        assert {f"table{n}.md", f"table{n}.tex", f"table{n}.csv"} <= files
    for n in range(3, 6):
        assert {f"fig{n}.png", f"fig{n}.svg"} <= files
    assert "index.html" in files
    store = Store(res)
    try:
        by_label: dict[str, list[float]] = {}
        from snap_bench.report.data import load_runs

        for run in load_runs(store):
            if run.mode == "single" and run.entities == ["peter_parker"]:
                by_label.setdefault(run.label, []).append(store.metrics(run.run_id)[0]["peter_parker"]["UA"])
    finally:
        store.close()
    rows = {r["label"]: r for r in _csv(out / "table1.csv")}
    assert {"Untrained", "SNAP", "Prompting", "Euclidean", "Fisher", "Gradient ascent"} <= set(rows)
    for label, row in rows.items():
        assert float(row["UA_mean"]) == pytest.approx(statistics.mean(by_label[label])), label


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# Skipped only outside CI: .ci/run installs chromium, and under CI a missing browser is a failure.
@pytest.mark.skipif(_chromium() is None and not os.environ.get("CI"),
                    reason="Chromium not installed (Debian package `chromium`); HTML not rendered")
def test_html_renders_in_headless_chromium(report, tmp_path):
    assert _chromium() is not None, "CI must render the HTML report: install Debian's chromium (.ci/run does as root)"
    shot = tmp_path / "shot.png"
    page = (report[0] / "index.html").resolve()
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000  # a rendered page, not a blank canvas
    from PIL import Image

    with Image.open(shot) as img:  # tables, text and figures: many colours; an error page or blank: a handful
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, len(colours or [])
