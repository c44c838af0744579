"""``snap-bench report``: tables, figures and the HTML page, checked against what the store holds."""

from __future__ import annotations

import csv
import shutil
import statistics
import subprocess

import pytest

from snap_bench.report_data import label_run
from snap_bench.runner import RunSpec, plan
from snap_bench.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(ua, uam, ra, ta):
    return {"UA": ua, "UA_multihop": uam, "RA": ra, "TA": ta, "Avg": (ua + uam + ra + ta) / 4}


def _store_run(store, spec: RunSpec, steps, analyses=None, losses=None):
    """Write one finished run with the given per-step metrics, as the runner would."""
    p = plan(spec)
    run_id = store.start_run(config_hash=p.config_hash, method=spec.method, regularizer=p.regularizer, mode=spec.mode,
                             entities=[pk.slug for pk in p.packs], model=spec.model, seed=spec.seed, config=p.record,
                             versions={"snap_bench": "test", "torch": "x"})
    step_results = [(k, m, [], losses if k == len(steps) - 1 else None) for k, m in enumerate(steps)]
    store.finish_run(run_id, {"total": 1.0}, step_results, judge="rules", analyses=analyses)
    return run_id


def _nlp(acc):
    return {"requested": ["hellaswag", "mmlu"], "tasks": {"mmlu": {"acc": acc, "n": 10}},
            "unavailable": {"hellaswag": "dataset not reachable offline"}, "average": acc, "limit": 10}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A store with known metrics: SNAP over two seeds, baselines, ablations, a real person, batch + sequential."""
    root = tmp_path_factory.mktemp("report")
    store = Store(root / "res")
    S = lambda method, ent="peter_parker", **kw: RunSpec(method=method, entities=[ent] if isinstance(ent, str) else ent,  # noqa: E731
                                                        model="tiny-random", progress=False, **kw)
    loss = [{"forget": 2.0 - 0.1 * i, "retain": 1.5, "reg": 0.01 * i, "total": 3.5 - 0.1 * i, "lr": 1e-4} for i in range(6)]
    ids = {}
    ids["untrained"] = _store_run(store, S("snap", overrides={"max_steps": "0"}), [{"peter_parker": _metrics(0, 0, 100, 100)}],
                                  analyses={"nlp": _nlp(0.40)})
    ids["snap0"] = _store_run(store, S("snap", seed=0), [{"peter_parker": _metrics(80, 90, 40, 88)}],
                              analyses={"nlp": _nlp(0.38)}, losses=loss)
    ids["snap1"] = _store_run(store, S("snap", seed=1), [{"peter_parker": _metrics(90, 70, 50, 92)}],
                              analyses={"nlp": _nlp(0.36)}, losses=loss)
    ids["eucl"] = _store_run(store, S("euclidean"), [{"peter_parker": _metrics(70, 60, 45, 95)}], losses=loss)
    ids["prompt"] = _store_run(store, S("prompting"), [{"peter_parker": _metrics(5, 0, 100, 100)}])
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
                            [{"peter_parker": _metrics(85, 80, 40, 90)},
                             {"peter_parker": _metrics(70, 70, 30, 85), "black_panther": _metrics(80, 75, 35, 85)}],
                            losses=loss)
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


def test_table1_csv_equals_the_means_of_the_stored_metrics(report, synthetic):
    out, ids, _ = report
    rows = {r["label"]: r for r in _csv(out / "table1.csv")}
    assert list(rows)[0] == "Untrained"
    store = Store(synthetic[0] / "res")
    try:
        for label, keys in {"SNAP": ["snap0", "snap1"], "Euclidean": ["eucl"], "Prompting": ["prompt"]}.items():
            for metric in ("UA", "UA_multihop", "RA", "TA", "Avg"):
                stored = [store.metrics(ids[k])[0]["peter_parker"][metric] for k in keys]
                assert float(rows[label][f"{metric}_mean"]) == pytest.approx(statistics.mean(stored)), (label, metric)
                if len(stored) > 1:
                    assert float(rows[label][f"{metric}_std"]) == pytest.approx(statistics.stdev(stored))
                else:
                    assert rows[label][f"{metric}_std"] == ""  # one run: no std, never a fake 0
    finally:
        store.close()
    assert rows["SNAP"]["n_runs"] == "2" and rows["SNAP"]["seeds"] == "0 1"
    # Ablations, D_r/D_g and the real person stay out of Table 1.
    assert not any(k.startswith("SNAP ") for k in rows)
    assert rows["Fisher"]["n_runs"] == "0" and rows["Fisher"]["UA_mean"] == ""


def test_markdown_marks_best_and_second_and_dashes_missing(report):
    out, _, summary = report
    md = (out / "table1.md").read_text()
    snap_line = next(line for line in md.splitlines() if line.startswith("| SNAP "))
    assert "**85.0 ± 7.1**" in snap_line  # best UA among methods (80, 90 over two seeds)
    eucl_line = next(line for line in md.splitlines() if line.startswith("| Euclidean "))
    assert "<u>70.0</u>" in eucl_line  # second-best UA
    assert "<u>95.0</u>" in eucl_line  # second-best TA, after prompting's 100
    prompting = next(line for line in md.splitlines() if line.startswith("| Prompting "))
    assert "**100.0**" in prompting
    untrained = next(line for line in md.splitlines() if line.startswith("| Untrained "))
    assert "**" not in untrained  # the reference row never competes
    fisher = next(line for line in md.splitlines() if line.startswith("| Fisher "))
    assert fisher.count("—") == 6
    assert "missing: Fisher on tiny-random" in md and "--method fisher" in md
    assert any("Fisher" in m for m in summary["missing"])


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
    t3 = {r["label"]: r for r in _csv(out / "table3.csv")}
    assert list(t3) == ["SNAP", "SNAP −Wasserstein", "SNAP −HardRDA", "SNAP −Negative instructions"]
    assert float(t3["SNAP −HardRDA"]["RA_mean"]) == 5.0
    t4 = {r["label"]: r for r in _csv(out / "table4.csv")}
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
    for stem in ("fig3", "fig4", "fig5", "fig_losses"):
        png = (out / f"{stem}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000, stem
        svg = (out / f"{stem}.svg").read_text()
        assert "<svg" in svg[:2000] and len(svg) > 5_000, stem
    runs = _csv(out / "runs.csv")
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "non-finite loss at step 3"
    assert len(runs) == 15


def test_html_is_self_contained(report):
    html = (report[0] / "index.html").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Figure 3", "Figure 4", "Figure 5", "Environment"):
        assert title in html, title
    assert html.count("data:image/png;base64,") >= 4
    assert 'href="table1.csv"' in html and "tiny-random" in html
    assert "they are not the SNAP paper" in html and 'href="runs.md"' not in html
    for external in ("<script", "src=\"http", "href=\"http", "@import", "url(http"):
        assert external not in html, external


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
        from snap_bench.report_data import load_runs

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


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (Debian package `chromium`); HTML not rendered")
def test_html_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    page = (report[0] / "index.html").resolve()
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000  # a rendered page, not a blank canvas
