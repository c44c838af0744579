"""The paper's tables, built from labelled runs (``report.data``).

Table 1: UA, UA♣, RA, TA, Avg, cross-RA, leak, RA on known items, degenerate per method on the
fictional entities, untrained row first. Table 2: zero-shot NLP accuracy per task, its average
and the relative change from untrained. Table 3: SNAP at every λ the store holds and its
ablations, with each row's regularizer share of the loss. Table 4: the real person. Table 5:
dataset statistics. λ table: SNAP (swd) and the L2 regularizer (SNAP +l2 / Euclidean) over λ.
Probes: the knowledge probes of runs that ran them. Refusal vs removal (:mod:`.tables_refusal`): every
method on one page, with its probes and membership inference (MIA: all four attacks when runs have it).

Rows are (label, entity): one entity's runs never share a ± with another's. A cell is the mean
over the row's SEEDS (runs of one seed averaged first) with the sample std over seeds when there
are two or more (never a fake ±0), and the ``n`` column counts those seeds. A table covering
several entities adds "all entities" rows: per seed the mean over the entities, then mean and
std over seeds of that. Every row shows the optimiser steps its runs trained ("38", or "38/60"
when they differ). A row the paper has but the store lacks shows "—" and a note says how to
make it; a metric a run predates shows "—".

Rows, cells and the layout of Tables 1, 3 and 4 live in :mod:`.tables_rows`, the λ table in
:mod:`.tables_lambda`; this module builds the paper's tables and re-exports their public names.
"""

from __future__ import annotations

from typing import Any

from snap_bench.report.data import (ABLATIONS, METRICS, TABLE1_EXPECTED, UNTRAINED, Run, default_lambda, fmt_lambda,
                                    group, mean, seed_values, std)
from snap_bench.report.render import MISSING, Cell, Table
from snap_bench.report.tables_lambda import LAMBDA_CSV, LAMBDA_METRICS, lambda_rows, lambda_runs, table_lambda
from snap_bench.report.tables_quant import table_quant
from snap_bench.report.tables_refusal import table_mia, table_refusal
from snap_bench.report.tables_rows import (ALL_ENTITIES, Extra, Row, _how_to, _is_method_row, _metric_table, _models,
                                           _order, _row_label, single, stat_cell, steps_text)

__all__ = ["ALL_ENTITIES", "TABLE1_METRICS", "TABLE3_METRICS", "TABLE4_METRICS", "LAMBDA_METRICS", "LAMBDA_CSV", "Row",
           "Extra", "stat_cell", "steps_text", "single", "table1", "table2", "table3", "table4", "table5",
           "table_probes", "lambda_runs", "lambda_rows", "table_lambda", "table_refusal", "table_mia", "table_quant",
           "all_tables"]

TABLE1_METRICS = METRICS + ("cross_RA", "leak", "RA_known", "RA_known_n", "RA_correct", "RA_correct_n", "degenerate")
TABLE3_METRICS = METRICS + ("cross_RA", "leak", "RA_correct", "RA_correct_n")
TABLE4_METRICS = ("UA", "RA", "TA", "cross_RA", "leak", "RA_known", "RA_known_n", "RA_correct", "RA_correct_n",
                  "degenerate")


_STATS_NOTE = ("UA, UA♣, RA, TA, cross-RA: mean over seeds [95 % interval: Wilson over items for one seed, a seeded "
               "two-level bootstrap over seeds then items for more; docs/statistics.md]; other metrics: "
               "mean ± sample std over seeds (n = seeds; runs of one seed are averaged first), one row per entity; "
               "best in bold, second underlined within an entity's rows (↓: lower is better); "
               "the untrained row is the reference; steps: optimiser steps trained (a/b: the runs differ)")
_METRIC_NOTE = ("cross-RA: % of the OTHER entities' held-out forget questions still answered (selectivity); "
                "leak: % of held-out forget and multi-hop responses that reveal the answer; RA known: RA over the "
                "retain items the untrained model answered correctly (n known: how many); degen.: % empty or "
                "gibberish responses; ROUGE-L columns are in the csv; — where a run predates a metric")


def table1(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=False)
    ents = sorted({r.entities[0] for r in sel}) or ["peter_parker"]
    t = _metric_table("table1", "Table 1: unlearning (UA, UA♣) and retention (RA, TA), fictional entities",
                      sel, runs, row_label=lambda r: r.label if _is_method_row(r.label) else None,
                      expected=TABLE1_EXPECTED, metrics=TABLE1_METRICS, entity_hint=ents[0])
    t.notes[:0] = [f"{_STATS_NOTE}; entities: {', '.join(ents)}", _METRIC_NOTE]
    return t


def _table3_label(r: Run) -> str | None:
    """SNAP at its λ ("SNAP (λ=0.1)"), or an ablation (at a non-default λ its label says so)."""
    if r.method == "snap" and r.sweep == "lambda" and r.regularizer == "swd" and r.label != UNTRAINED:
        return f"SNAP (λ={fmt_lambda(r.lam)})"
    if any(r.label == a or r.label.startswith(a + " λ=") for a in ABLATIONS[1:]):
        return r.label
    return None


def _reg_share_extra() -> Extra:
    def cell(row: Row) -> tuple[Cell, list[Any]]:
        vals = list(row.values(lambda r: r.reg_share).values())
        m, s = mean(vals), std(vals)
        if m is None:
            return MISSING, [None, None]
        return Cell(f"{m:.3g}" + (f" ± {s:.2g}" if s is not None else "")), [m, s]

    return Extra("reg share", ["reg_share", "reg_share_std"], cell)


def table3(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=False)
    ents = sorted({r.entities[0] for r in sel}) or ["peter_parker"]
    lams = {r.lam for r in sel if (_table3_label(r) or "").startswith("SNAP (λ=")} | {default_lambda()}
    lams = sorted(v for v in lams if v is not None)
    expected = tuple(f"SNAP (λ={fmt_lambda(v)})" for v in lams) + ABLATIONS[1:]
    t = _metric_table("table3", "Table 3: ablations of SNAP, at every λ the store holds", sel, runs,
                      row_label=_table3_label, expected=expected, metrics=TABLE3_METRICS, entity_hint=ents[0],
                      extra=[_reg_share_extra()])
    t.notes[:0] = [_STATS_NOTE,
                   "SNAP (λ=…): plain SNAP at each λ among the store's SNAP runs (the paper's 0.1 and any chosen on "
                   "a dev split); reg share: λ·penalty / total loss at the last optimiser step (0 without a "
                   "regularizer); −Wasserstein: no regularizer; −HardRDA: no retain data; −Negative instructions: "
                   "the forget set is unlearned by gradient ascent on its true answers (gradient difference) instead "
                   "of trained towards obliterated responses, keeping the retain data and SWD"]
    return t


def _nlp(r: Run) -> dict[str, Any] | None:
    return r.analyses.get("nlp")


def _untrained_nlp(runs: list[Run], model: str) -> list[Run]:
    """Untrained runs of ``model`` with NLP scores, on any entity: the weights are the same."""
    return [r for r in runs if r.model == model and r.label == UNTRAINED and _nlp(r)]


def _nlp_avg(g_runs: list[Run]) -> list[float]:
    """Per seed: the NLP average (over that seed's runs, i.e. its entities)."""
    return list(seed_values(g_runs, lambda r: (_nlp(r) or {}).get("average")).values())


def table2(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = [r for r in single(runs, kinds, real=False) if _nlp(r) and _is_method_row(r.label) and r.label != UNTRAINED]
    models = _models(sel + [r for r in runs if _nlp(r)], runs)
    tasks: list[str] = []
    for r in runs:
        for name in (_nlp(r) or {}).get("requested", []):
            if name not in tasks:
                tasks.append(name)
    header = ["Method"] + tasks + ["Avg", "Δ Avg vs untrained"]
    t = Table("table2", "Table 2: zero-shot NLP accuracy (%) through lm-evaluation-harness", header, [],
              rank_cols=list(range(1, len(tasks) + 2)))
    t.csv_header = ["model", "label", "n_runs"] + [f"{x}_{s}" for x in tasks for s in ("mean", "std")] + \
        ["avg_mean", "avg_std", "avg_rel_change_pct", "run_ids"]
    unavailable: dict[str, str] = {}
    for model in models:
        rows: list[tuple[str, list[Run]]] = [(UNTRAINED, _untrained_nlp(runs, model))]
        by_label = group(r for r in sel if r.model == model)
        rows += [(lab, by_label[(model, lab)].runs) for lab in _order([lab for (_, lab) in by_label], TABLE1_EXPECTED)]
        base = mean(_nlp_avg(rows[0][1]))
        for label, g_runs in rows:
            if label == UNTRAINED:
                t.reference_rows.add(len(t.rows))
            if not g_runs:
                t.rows.append([Cell(_row_label(model, label, models))] + [MISSING] * (len(header) - 1))
                t.notes.append(f"missing: {label} on {model} with NLP — `{_how_to(label, model, 'peter_parker')} "
                               f"--set eval_nlp=true` makes one")
                continue
            cells, csv_vals = [], []
            for task in tasks:
                accs = list(seed_values(g_runs, lambda r: (_nlp(r).get("tasks", {}).get(task) or {}).get("acc")).values())
                if accs:
                    cells.append(stat_cell(accs, scale=100))
                else:
                    why = [_nlp(r).get("unavailable", {}).get(task) for r in g_runs]
                    why = [w for w in why if w]
                    cells.append(Cell("n/a") if why else MISSING)
                    if why:
                        unavailable.setdefault(task, why[0])
                csv_vals += [mean(accs), std(accs)]
            avgs = _nlp_avg(g_runs)
            a = mean(avgs)
            rel = None if (a is None or base in (None, 0) or label == UNTRAINED) else 100 * (a - base) / base
            cells.append(stat_cell(avgs, scale=100))
            cells.append(Cell("—" if rel is None else f"{rel:+.1f}%"))
            t.rows.append([Cell(_row_label(model, label, models))] + cells)
            t.csv_rows.append([model, label, len(g_runs)] + csv_vals + [a, std(avgs), rel,
                                                                         " ".join(r.run_id for r in g_runs)])
    limits = sorted({str(_nlp(r).get("limit")) for r in runs if _nlp(r)})
    if limits:
        t.notes.append(f"items per task: {', '.join(limits)} (MMLU stratified by subject); Avg is over the tasks that ran")
    for task, why in unavailable.items():
        t.notes.append(f"n/a = unavailable, never scored: {task}: {why}")
    t.notes.append("the untrained row's NLP comes from untrained runs of the same model on any entity (same weights)")
    t.notes.append("mean ± sample std over seeds: per seed the mean over its runs (entities), then over seeds")
    return t


def table4(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=True)
    ents = sorted({r.entities[0] for r in sel}) or sorted(e for e, k in kinds.items() if k == "real") or ["bill_gates"]
    untrained_nlp = {m: mean(_nlp_avg(_untrained_nlp(runs, m))) for m in {r.model for r in runs}}

    def nlp_cell(row: Row) -> tuple[Cell, list[Any]]:
        vals = list(row.values(lambda r: (_nlp(r) or {}).get("average")).values())
        if not vals and row.label == UNTRAINED and untrained_nlp.get(row.model) is not None:
            v = 100 * untrained_nlp[row.model]
            return Cell(f"{v:.1f}", v), [v]
        c = stat_cell(vals, scale=100)
        return c, [c.value]

    t = _metric_table("table4", f"Table 4: a real person ({', '.join(ents)})", sel, runs,
                      row_label=lambda r: r.label if _is_method_row(r.label) else None,
                      expected=(UNTRAINED, "Prompting", "SNAP"), metrics=TABLE4_METRICS, entity_hint=ents[0],
                      extra=[Extra("NLP Avg", ["NLP Avg"], nlp_cell, ranked=True)])
    t.notes[:0] = [_STATS_NOTE, _METRIC_NOTE,
                   "NLP Avg: mean zero-shot accuracy (%) over the NLP tasks that ran (Table 2); "
                   "— where the run had no NLP evaluation"]
    return t


def table5(stats: dict[str, Any]) -> Table:
    cats = sorted({c for sets in stats["entities"].values() for d in sets.values() for c in d["categories"]}
                  | set(stats["general"]["categories"]))
    t = Table("table5", "Table 5: dataset statistics (items per set and category)", ["Entity", "Set", "Total"] + cats, [])
    t.csv_header = ["entity", "set", "total"] + [f"{c}_{s}" for c in cats for s in ("count", "pct")]

    def add(entity: str, set_name: str, d: dict[str, Any]) -> None:
        cells = []
        csv_vals: list[Any] = []
        for c in cats:
            v = d["categories"].get(c)
            cells.append(Cell(f"{v['count']} ({v['pct']:.1f}%)") if v else Cell("0"))
            csv_vals += [v["count"] if v else 0, v["pct"] if v else 0.0]
        t.rows.append([Cell(entity), Cell(set_name), Cell(str(d["total"]))] + cells)
        t.csv_rows.append([entity, set_name, d["total"]] + csv_vals)

    for entity, sets in stats["entities"].items():
        for set_name, d in sets.items():
            add(entity, set_name, d)
    add("general (D_g)", "general", stats["general"])
    t.notes.append("the paper samples 100 training items per set, proportionally across categories; the rest are "
                   "held out for evaluation; multi-hop items are evaluation-only")
    return t


def table_probes(runs: list[Run]) -> Table | None:
    sel = [r for r in runs if r.analyses.get("probes")]
    if not sel:
        return None
    framings: list[str] = []
    for r in sel:
        for pr in r.analyses["probes"].values():
            framings += [f for f in pr.get("extraction_UA", {}) if f not in framings]
    header = (["Method"] + [f"UA {f}" for f in framings]
              + ["answer log-prob Δ", "retain log-prob Δ", "UA after relearning", "degenerate %"])
    t = Table("table_probes", "Knowledge probes: is the knowledge gone?", header, [])
    t.csv_header = ["model", "label", "n_runs"] + [f"UA_{f}" for f in framings] + \
        ["answer_logprob_before", "answer_logprob_after", "answer_logprob_delta", "retain_logprob_delta",
         "relearn_UA_before", "relearn_UA_after", "degenerate_pct", "run_ids"]
    models = sorted({r.model for r in sel})
    for (model, label), g in sorted(group(sel).items()):
        def vals(fn) -> list[float]:
            """Per seed: fn over the probes of that seed's runs (one per entity), averaged."""
            def per_run(r: Run) -> float | None:
                out = []
                for pr in r.analyses["probes"].values():
                    try:
                        v = fn(pr)
                    except (KeyError, TypeError):
                        continue
                    if v is not None:
                        out.append(v)
                return mean(out)

            return list(seed_values(g.runs, per_run).values())

        ua = [vals(lambda pr, f=f: pr["extraction_UA"][f]) for f in framings]
        lp_b, lp_a = vals(lambda pr: pr["answer_logprob"]["before"]), vals(lambda pr: pr["answer_logprob"]["after"])
        lp_d = vals(lambda pr: pr["answer_logprob"]["delta"])
        rlp_d = vals(lambda pr: pr["retain_answer_logprob"]["delta"])
        rl_b, rl_a = vals(lambda pr: pr["relearning"]["UA_before"]), vals(lambda pr: pr["relearning"]["UA_after"])
        degen = vals(lambda pr: mean(pr["fluency"]["eval_sets"].values()))
        relearn = (Cell(f"{mean(rl_b):.1f} → {mean(rl_a):.1f}", mean(rl_a)) if rl_b and rl_a else MISSING)
        t.rows.append([Cell(_row_label(model, label, models))] + [stat_cell(v) for v in ua]
                      + [stat_cell(lp_d, digits=2), stat_cell(rlp_d, digits=2), relearn, stat_cell(degen)])
        t.csv_rows.append([model, label, len(g.runs)] + [mean(v) for v in ua]
                          + [mean(lp_b), mean(lp_a), mean(lp_d), mean(rlp_d), mean(rl_b), mean(rl_a), mean(degen),
                             " ".join(r.run_id for r in g.runs)])
    t.notes.append("mean ± sample std over seeds (per seed the mean over its runs and entities)")
    t.notes.append("UA under adversarial framings of held-out forget questions; answer log-prob Δ: change in the "
                   "true answers' mean token log-likelihood (negative = less likely, i.e. knowledge removed, not "
                   "just hidden); relearning: UA before → after a few fine-tuning steps on other forget facts")
    return t



def all_tables(runs: list[Run], kinds: dict[str, str], stats: dict[str, Any]) -> list[Table]:
    tables = [table1(runs, kinds), table2(runs, kinds), table3(runs, kinds), table4(runs, kinds), table5(stats),
              table_lambda(runs)]
    optional = [table_probes(runs), table_refusal(runs), table_mia(runs), table_quant(runs)]
    return tables + [t for t in optional if t is not None]
