"""The paper's tables, built from labelled runs (``report_data``).

Table 1: UA, UA♣, RA, TA, Avg per method on the fictional entities, untrained row first.
Table 2: zero-shot NLP accuracy per task, its average and the relative change from untrained.
Table 3: SNAP's ablations. Table 4: the real person. Table 5: dataset statistics.
Probes: the knowledge probes of runs that ran them.

Every cell is the mean over the row's runs (seeds × entities) with the sample std when there
are two or more; a row the paper has but the store lacks shows "—" and a note says how to make it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from snap_bench.report_data import (ABLATIONS, METHOD_LABELS, METRIC_HEADERS, METRICS, TABLE1_EXPECTED, UNTRAINED,
                                    Group, Run, group, mean, std)
from snap_bench.report_render import MISSING, Cell, Table

_LABEL_TO_METHOD = {v: k for k, v in METHOD_LABELS.items()}


def stat_cell(values: list[float], scale: float = 1.0, digits: int = 1) -> Cell:
    m, s = mean(values), std(values)
    if m is None:
        return MISSING
    text = f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")
    return Cell(text, m * scale)


def _how_to(label: str, model: str, entity: str) -> str:
    """The command that would produce a missing row."""
    base = f"snap-bench run --entity {entity} --model {model}"
    if label == UNTRAINED:
        return f"{base} --method snap --max-steps 0"
    special = {"SNAP −Wasserstein": "--method snap --regularizer none",
               "SNAP −HardRDA": "--method snap --set retain_data=none",
               "SNAP −Negative instructions": "--method grad_diff --regularizer swd"}
    if label in special:
        return f"{base} {special[label]}"
    return f"{base} --method {_LABEL_TO_METHOD.get(label, label)}"


def _models(runs: list[Run], fallback: Iterable[Run]) -> list[str]:
    return sorted({r.model for r in runs}) or sorted({r.model for r in fallback}) or ["smollm2-135m"]


def _row_label(model: str, label: str, models: list[str]) -> str:
    return label if len(models) == 1 else f"{model} · {label}"


def _is_method_row(label: str) -> bool:
    return label == UNTRAINED or label in METHOD_LABELS.values()


def _order(labels: Iterable[str], expected: tuple[str, ...]) -> list[str]:
    labels = set(labels)
    return [x for x in expected if x in labels] + sorted(labels - set(expected))


def _metric_table(key: str, title: str, runs: list[Run], all_runs: list[Run], *, keep: Callable[[str], bool],
                  expected: tuple[str, ...], metrics: tuple[str, ...], entity_hint: str,
                  extra: dict[str, Callable[[Group], Cell]] | None = None) -> Table:
    """Rows = labels (per model), columns = metric means ± std, with notes for expected rows missing."""
    extra = extra or {}
    models = _models(runs, all_runs)
    groups = group(r for r in runs if keep(r.label))
    header = ["Method"] + [METRIC_HEADERS.get(m, m) for m in metrics] + list(extra) + ["n"]
    t = Table(key, title, header, [], rank_cols=list(range(1, 1 + len(metrics) + len(extra))))
    t.csv_header = (["model", "label", "n_runs", "seeds", "entities"]
                    + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] + list(extra) + ["budget", "run_ids"])
    for model in models:
        for label in _order({lab for (mod, lab) in groups if mod == model} | set(expected), expected):
            g = groups.get((model, label))
            if g is None:
                t.rows.append([Cell(_row_label(model, label, models))] + [MISSING] * (len(header) - 1))
                t.notes.append(f"missing: {label} on {model} — no finished run; "
                               f"`{_how_to(label, model, entity_hint)}` makes one")
                t.csv_rows.append([model, label, 0, "", ""] + [None] * (2 * len(metrics)) + [None] * len(extra) + ["", ""])
                continue
            if label == UNTRAINED:
                t.reference_rows.add(len(t.rows))
            cells = [stat_cell(g.values(m)) for m in metrics]
            extras = [fn(g) for fn in extra.values()]
            t.rows.append([Cell(_row_label(model, label, models))] + cells + extras + [Cell(str(len(g.runs)))])
            t.csv_rows.append([model, label, len(g.runs), " ".join(map(str, g.seeds)), " ".join(g.entities)]
                              + [v for m in metrics for v in (mean(g.values(m)), std(g.values(m)))]
                              + [c.value for c in extras] + [" | ".join(g.budgets), " ".join(r.run_id for r in g.runs)])
            if len(g.budgets) > 1:
                t.notes.append(f"{label} on {model} mixes runs of different sizes: " + "; ".join(g.budgets))
    if not runs:
        t.notes.append("the store holds no finished run for this table")
    return t


def single(runs: list[Run], kinds: dict[str, str], real: bool) -> list[Run]:
    """Single-entity runs on fictional (real=False) or real (real=True) entities."""
    return [r for r in runs if r.mode == "single" and (kinds.get(r.entities[0], "fictional") == "real") == real]


def table1(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=False)
    ents = sorted({r.entities[0] for r in sel}) or ["peter_parker"]
    t = _metric_table("table1", "Table 1: unlearning (UA, UA♣) and retention (RA, TA), fictional entities",
                      sel, runs, keep=_is_method_row, expected=TABLE1_EXPECTED, metrics=METRICS, entity_hint=ents[0])
    t.notes.insert(0, f"mean ± sample std over runs (seeds × entities: {', '.join(ents)}); "
                      "best in bold, second underlined; the untrained row is the reference")
    return t


def table3(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=False)
    ents = sorted({r.entities[0] for r in sel}) or ["peter_parker"]
    t = _metric_table("table3", "Table 3: ablations of SNAP", sel, runs, keep=lambda lab: lab in ABLATIONS,
                      expected=ABLATIONS, metrics=METRICS, entity_hint=ents[0])
    t.notes.insert(0, "−Wasserstein: no regularizer; −HardRDA: no retain data; −Negative instructions: the forget "
                      "set is unlearned by gradient ascent on its true answers (gradient difference) instead of "
                      "trained towards obliterated responses, keeping the retain data and SWD")
    return t


def _nlp(r: Run) -> dict[str, Any] | None:
    return r.analyses.get("nlp")


def _untrained_nlp(runs: list[Run], model: str) -> list[Run]:
    """Untrained runs of ``model`` with NLP scores, on any entity: the weights are the same."""
    return [r for r in runs if r.model == model and r.label == UNTRAINED and _nlp(r)]


def _nlp_avg(g_runs: list[Run]) -> list[float]:
    return [_nlp(r)["average"] for r in g_runs if _nlp(r) and _nlp(r).get("average") is not None]


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
                accs = [_nlp(r)["tasks"][task]["acc"] for r in g_runs if task in _nlp(r).get("tasks", {})]
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
    return t


def table4(runs: list[Run], kinds: dict[str, str]) -> Table:
    sel = single(runs, kinds, real=True)
    ents = sorted({r.entities[0] for r in sel}) or sorted(e for e, k in kinds.items() if k == "real") or ["bill_gates"]
    untrained_nlp = {m: mean(_nlp_avg(_untrained_nlp(runs, m))) for m in {r.model for r in runs}}

    def nlp_cell(g: Group) -> Cell:
        vals = _nlp_avg(g.runs)
        if not vals and g.label == UNTRAINED and untrained_nlp.get(g.model) is not None:
            return Cell(f"{100 * untrained_nlp[g.model]:.1f}", 100 * untrained_nlp[g.model])
        return stat_cell(vals, scale=100)

    t = _metric_table("table4", f"Table 4: a real person ({', '.join(ents)})", sel, runs, keep=_is_method_row,
                      expected=(UNTRAINED, "Prompting", "SNAP"), metrics=("UA", "RA", "TA"), entity_hint=ents[0],
                      extra={"NLP Avg": nlp_cell})
    t.notes.insert(0, "NLP Avg: mean zero-shot accuracy (%) over the NLP tasks that ran (Table 2); "
                      "— where the run had no NLP evaluation")
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
        prs = [pr for r in g.runs for pr in r.analyses["probes"].values()]

        def vals(fn) -> list[float]:
            out = []
            for pr in prs:
                try:
                    v = fn(pr)
                except (KeyError, TypeError):
                    continue
                if v is not None:
                    out.append(v)
            return out

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
    t.notes.append("UA under adversarial framings of held-out forget questions; answer log-prob Δ: change in the "
                   "true answers' mean token log-likelihood (negative = less likely, i.e. knowledge removed, not "
                   "just hidden); relearning: UA before → after a few fine-tuning steps on other forget facts")
    return t


def all_tables(runs: list[Run], kinds: dict[str, str], stats: dict[str, Any]) -> list[Table]:
    tables = [table1(runs, kinds), table2(runs, kinds), table3(runs, kinds), table4(runs, kinds), table5(stats)]
    probes = table_probes(runs)
    return tables + ([probes] if probes else [])
