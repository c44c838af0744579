"""The paper's tables, built from labelled runs (``report_data``).

Table 1: UA, UA♣, RA, TA, Avg, cross-RA, leak, RA on known items, degenerate per method on the
fictional entities, untrained row first. Table 2: zero-shot NLP accuracy per task, its average
and the relative change from untrained. Table 3: SNAP at every λ the store holds and its
ablations, with each row's regularizer share of the loss. Table 4: the real person. Table 5:
dataset statistics. λ table: SNAP (swd) and the L2 regularizer (SNAP +l2 / Euclidean) over λ.
Probes: the knowledge probes of runs that ran them.

Rows are (label, entity): one entity's runs never share a ± with another's. A cell is the mean
over the row's SEEDS (runs of one seed averaged first) with the sample std over seeds when there
are two or more (never a fake ±0), and the ``n`` column counts those seeds. A table covering
several entities adds "all entities" rows: per seed the mean over the entities, then mean and
std over seeds of that. Every row shows the optimiser steps its runs trained ("38", or "38/60"
when they differ). A row the paper has but the store lacks shows "—" and a note says how to
make it; a metric a run predates shows "—".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from snap_bench.report.data import (ABLATIONS, ALL_METRICS, COUNTS, LOWER_IS_BETTER, METHOD_LABELS, METRIC_HEADERS,
                                    METRICS, TABLE1_EXPECTED, UNTRAINED, Run, budget_diff, default_lambda, fmt_lambda,
                                    group, mean, seed_entity_means, seed_values, std)
from snap_bench.report.render import MISSING, Cell, Table

_LABEL_TO_METHOD = {v: k for k, v in METHOD_LABELS.items()}
ALL_ENTITIES = "all entities"
TABLE1_METRICS = METRICS + ("cross_RA", "leak", "RA_known", "RA_known_n", "degenerate")
TABLE3_METRICS = METRICS + ("cross_RA", "leak")
TABLE4_METRICS = ("UA", "RA", "TA", "cross_RA", "leak", "RA_known", "RA_known_n", "degenerate")
_COUNT_KEYS = frozenset(COUNTS.values())


def stat_cell(values: Iterable[float], scale: float = 1.0, digits: int = 1) -> Cell:
    values = list(values)
    m, s = mean(values), std(values)
    if m is None:
        return MISSING
    text = f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")
    return Cell(text, m * scale)


def steps_text(runs: Iterable[Run]) -> str:
    """The optimiser steps of a row's runs: "38", "38/60" when they differ, "?" for a run that stored none."""
    vals = {r.steps for r in runs}
    if not vals:
        return "—"
    return "/".join("?" if v is None else str(v) for v in sorted(vals, key=lambda v: (v is None, v or 0)))


@dataclass
class Row:
    """The runs behind one table row: one label on one entity (``entity`` None: the mean over ``entities``)."""

    model: str
    label: str
    entity: str | None
    entities: list[str]
    runs: list[Run] = field(default_factory=list)

    def values(self, value: str | Callable[[Run], float | None]) -> dict[int, float]:
        """seed -> the row's value for that seed (a metric name, or a per-run function)."""
        if self.entity is not None:
            fn = (lambda r: r.entity_value(self.entity, value)) if isinstance(value, str) else value
            return seed_values(self.runs, fn)
        if isinstance(value, str):
            return seed_entity_means(self.runs, self.entities, value)
        return seed_entity_means(self.runs, self.entities, lambda r, e: value(r) if e in r.entities else None)

    @property
    def seeds(self) -> list[int]:
        if self.entity is not None:
            return sorted({r.seed for r in self.runs})
        return [s for s in sorted({r.seed for r in self.runs})
                if set(self.entities) <= {e for r in self.runs if r.seed == s for e in r.entities}]

    def count_text(self, key: str) -> Cell:
        """An item count (RA_known_n): the distinct values, summed over the entities for an all-entities row."""
        if self.entity is not None:
            vals = {int(v) for r in self.runs if (v := r.entity_value(self.entity, key)) is not None}
        else:
            vals = {int(round(v * len(self.entities)))
                    for v in seed_entity_means(self.runs, self.entities, key).values()}
        return Cell("/".join(str(v) for v in sorted(vals))) if vals else MISSING

    def display_label(self, models: list[str]) -> str:
        return self.label if len(models) == 1 else f"{self.model} · {self.label}"


@dataclass
class Extra:
    """A column beyond the metrics: ``cell(row)`` -> (shown cell, csv values under ``csv``)."""

    header: str
    csv: list[str]
    cell: Callable[[Row], tuple[Cell, list[Any]]]
    ranked: bool = False


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
    if label.startswith("SNAP (λ=") and label.endswith(")"):
        lam = label[len("SNAP (λ="):-1]
        return f"{base} --method snap" + ("" if lam == fmt_lambda(default_lambda()) else f" --set lambda_reg={lam}")
    return f"{base} --method {_LABEL_TO_METHOD.get(label, label)}"


def _models(runs: list[Run], fallback: Iterable[Run]) -> list[str]:
    return sorted({r.model for r in runs}) or sorted({r.model for r in fallback}) or ["smollm2-135m"]


def _row_label(model: str, label: str, models: list[str]) -> str:
    return label if len(models) == 1 else f"{model} · {label}"


def _is_method_row(label: str) -> bool:
    return label == UNTRAINED or label in METHOD_LABELS.values()


def _order(labels: Iterable[str], expected: tuple[str, ...]) -> list[str]:
    """Expected labels in their order, then the others sorted; a size variant ("SNAP [eval_limit=60]", see
    _split_budgets) follows the row it was split from."""
    labels = set(labels)
    variants = {x for x in labels if " [" in x and x.split(" [", 1)[0] in labels}
    base = [x for x in expected if x in labels] + sorted(labels - set(expected) - variants)
    out = []
    for x in base:
        out.append(x)
        out += sorted(v for v in variants if v.split(" [", 1)[0] == x)
    return out


def _metric_cell(row: Row, metric: str) -> tuple[Cell, list[Any]]:
    if metric in _COUNT_KEYS:
        c = row.count_text(metric)
        return Cell(c.text), [None if c is MISSING else c.text]
    vals = list(row.values(metric).values())
    return stat_cell(vals), [mean(vals), std(vals)]


def _split_budgets(labelled: list[tuple[str, Run]]) -> list[tuple[str, Run]]:
    """Runs of one row that differ in size (e.g. eval_limit=60 and the full held-out sets) are different
    samples, so they are never averaged: the budget with the most seeds (then runs) keeps the row's label,
    each other budget becomes its own row, labelled by the knobs in which it differs ("SNAP [eval_limit=60]")."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for lab, r in labelled:
        groups.setdefault((r.model, lab, r.entities[0]), []).append(r)
    renamed: dict[str, str] = {}
    for (_, lab, _), rs in groups.items():
        budgets = {r.budget for r in rs}
        if len(budgets) < 2:
            continue
        main = max(sorted(budgets), key=lambda b: (len({r.seed for r in rs if r.budget == b}),
                                                   sum(r.budget == b for r in rs)))
        diff = budget_diff(rs)
        for r in rs:
            if r.budget != main:
                renamed[r.run_id] = f"{lab} [{diff[r.budget]}]"
    return [(renamed.get(r.run_id, lab), r) for lab, r in labelled]


def _metric_table(key: str, title: str, runs: list[Run], all_runs: list[Run], *, row_label: Callable[[Run], str | None],
                  expected: tuple[str, ...], metrics: tuple[str, ...], entity_hint: str,
                  extra: list[Extra] | None = None) -> Table:
    """Rows = (label, entity) per model, columns = metric means ± std over seeds, then steps and n (seeds).

    A table covering several entities gets one block of rows per entity (ranked within the block) and
    a block of "all entities" rows; expected rows the store lacks show "—" once, with a note."""
    extra = extra or []
    models = _models(runs, all_runs)
    labelled = [(row_label(r), r) for r in runs]
    kept = [(lab, r) for lab, r in labelled if lab is not None]
    labelled = _split_budgets(kept)
    split_note = labelled != kept
    header = (["Method", "Entity"] + [METRIC_HEADERS.get(m, m) for m in metrics] + [x.header for x in extra]
              + ["steps", "n"])
    ranked = [2 + i for i, m in enumerate(metrics) if m not in _COUNT_KEYS]
    ranked += [2 + len(metrics) + i for i, x in enumerate(extra) if x.ranked]
    t = Table(key, title, header, [], rank_cols=ranked,
              lower_better={2 + i for i, m in enumerate(metrics) if m in LOWER_IS_BETTER})
    csv_metrics = [m for m in dict.fromkeys(tuple(metrics) + ALL_METRICS) if m not in _COUNT_KEYS]
    counts = [m for m in metrics if m in _COUNT_KEYS]
    t.csv_header = (["model", "label", "entity", "n_seeds", "seeds", "n_runs", "steps"]
                    + [f"{m}_{s}" for m in csv_metrics for s in ("mean", "std")] + counts
                    + [c for x in extra for c in x.csv] + ["budget", "run_ids"])
    n_csv = len(t.csv_header)

    def add(row: Row, block: Any) -> None:
        if row.label == UNTRAINED:
            t.reference_rows.add(len(t.rows))
        t.rank_groups[len(t.rows)] = block
        shown = [_metric_cell(row, m)[0] for m in metrics]
        extras = [x.cell(row) for x in extra]
        seeds = row.seeds
        ent = row.entity if row.entity is not None else f"{ALL_ENTITIES} ({len(row.entities)})"
        t.rows.append([Cell(row.display_label(models)), Cell(ent)] + shown + [c for c, _ in extras]
                      + [Cell(steps_text(row.runs)), Cell(str(len(seeds)))])
        t.csv_rows.append([row.model, row.label, row.entity if row.entity is not None else ALL_ENTITIES, len(seeds),
                           " ".join(map(str, seeds)), len(row.runs), steps_text(row.runs)]
                          + [v for m in csv_metrics for v in _metric_cell(row, m)[1]]
                          + [_metric_cell(row, m)[1][0] for m in counts]
                          + [v for _, vals in extras for v in vals]
                          + [" | ".join(sorted({r.budget for r in row.runs})), " ".join(r.run_id for r in row.runs)])
        budgets = sorted({r.budget for r in row.runs})
        if len(budgets) > 1 and row.entity is not None:
            t.notes.append(f"{row.label} on {row.model}/{row.entity} mixes runs of different sizes: " + "; ".join(budgets))

    for model in models:
        mine = [(lab, r) for lab, r in labelled if r.model == model]
        # The entity with the most rows first: the expected rows no entity has are shown once, in its block.
        n_labels = {e: len({lab for lab, r in mine if r.entities[0] == e}) for e in {r.entities[0] for _, r in mine}}
        entities = sorted(n_labels, key=lambda e: (-n_labels[e], e))
        absent = set(expected) - {lab for lab, _ in mine}
        for b, entity in enumerate(entities or [None]):
            here = {lab: [r for lab2, r in mine if lab2 == lab and r.entities[0] == entity] for lab, _ in mine}
            here = {lab: rs for lab, rs in here.items() if rs}
            for label in _order(set(here) | (absent if b == 0 else set()), expected):
                if label not in here:
                    t.rank_groups[len(t.rows)] = (model, entity)
                    t.rows.append([Cell(_row_label(model, label, models)), MISSING] + [MISSING] * (len(header) - 2))
                    t.notes.append(f"missing: {label} on {model} — no finished run; "
                                   f"`{_how_to(label, model, entity or entity_hint)}` makes one")
                    t.csv_rows.append([model, label, "", 0, "", 0, ""] + [None] * (n_csv - 7))
                    continue
                add(Row(model, label, entity, [entity], here[label]), (model, entity))
        if len(entities) > 1:
            for label in _order({lab for lab, _ in mine}, expected):
                rs = [r for lab, r in mine if lab == label]
                ents = sorted({r.entities[0] for r in rs})
                if len(ents) > 1:
                    add(Row(model, label, None, ents, rs), (model, ALL_ENTITIES))
            t.notes.append(f"{ALL_ENTITIES} (k): per seed the mean over the row's k entities, then mean ± std over "
                           "the seeds that ran every one of them (n); entities are never pooled into a std")
    if split_note:
        t.notes.append("[knob=value]: runs of the row above at another size (e.g. a stratified eval_limit sample "
                       "instead of the full held-out sets), kept apart because they score different samples")
    if not runs:
        t.notes.append("the store holds no finished run for this table")
    return t


def single(runs: list[Run], kinds: dict[str, str], real: bool) -> list[Run]:
    """Single-entity runs on fictional (real=False) or real (real=True) entities."""
    return [r for r in runs if r.mode == "single" and (kinds.get(r.entities[0], "fictional") == "real") == real]


_STATS_NOTE = ("mean ± sample std over seeds (n = seeds; runs of one seed are averaged first), one row per entity; "
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


LAMBDA_METRICS = ("UA", "RA", "cross_RA", "TA")
LAMBDA_CSV = ["regularizer", "lambda", "reg_share", *LAMBDA_METRICS, "n"]


def lambda_runs(runs: list[Run]) -> list[Run]:
    """Single-entity SNAP (swd or l2) and Euclidean runs that differ from their method's defaults in λ at most
    (sizing knobs aside), default-λ runs included."""
    return [r for r in runs if r.mode == "single" and r.sweep == "lambda" and r.regularizer in ("swd", "l2")
            and r.lam is not None]


def lambda_rows(runs: list[Run]) -> list[tuple[tuple[str, str, float, str], Row]]:
    """((model, regularizer, λ, budget), row) for the λ table, sorted by regularizer, λ, model, budget, entity
    ("all" last).

    One row per entity, plus an all-entities row per (regularizer, λ, budget) when several entities ran it.
    Runs of different sizes (e.g. a sweep's eval_limit=60 and a full evaluation) are never averaged together:
    they are different samples of the held-out sets, so they make separate rows."""
    by_key: dict[tuple[str, str, float, str], list[Run]] = {}
    for r in lambda_runs(runs):
        by_key.setdefault((r.model, r.regularizer, r.lam, r.budget), []).append(r)
    out = []
    for key in sorted(by_key, key=lambda k: (k[1], k[2], k[0], k[3])):
        rs = by_key[key]
        ents = sorted({r.entities[0] for r in rs})
        for e in ents:
            out.append((key, Row(key[0], " / ".join(sorted({r.label for r in rs if r.entities[0] == e})), e, [e],
                                 [r for r in rs if r.entities[0] == e])))
        if len(ents) > 1:
            out.append((key, Row(key[0], " / ".join(sorted({r.label for r in rs})), None, ents, rs)))
    return out


def table_lambda(runs: list[Run]) -> Table:
    rows = lambda_rows(runs)
    models = sorted({k[0] for k, _ in rows})
    sizes = budget_diff(lambda_runs(runs))
    sized = any(sizes.values())  # a "size" column only when the runs differ in size
    header = (["Regularizer", "λ", "Entity"] + (["size"] if sized else []) + ["reg share"]
              + [METRIC_HEADERS[m] for m in LAMBDA_METRICS] + ["steps", "n"])
    t = Table("table_lambda", "λ sweep: SNAP's SWD and the L2 regularizer (SNAP +l2 / Euclidean) at each λ", header, [])
    t.csv_header = LAMBDA_CSV + ["reg_share_std"] + [f"{m}_std" for m in LAMBDA_METRICS] + \
        ["entity", "model", "steps", "labels", "budget", "run_ids"]
    for (model, reg, lam, budget), row in rows:
        share = list(row.values(lambda r: r.reg_share).values())
        ms = {m: list(row.values(m).values()) for m in LAMBDA_METRICS}
        ent = row.entity if row.entity is not None else f"{ALL_ENTITIES} ({len(row.entities)})"
        sm, ss = mean(share), std(share)
        share_cell = MISSING if sm is None else Cell(f"{sm:.3g}" + (f" ± {ss:.2g}" if ss is not None else ""), sm)
        reg_text = reg if len(models) == 1 else f"{model} · {reg}"
        t.rows.append([Cell(reg_text), Cell(fmt_lambda(lam)), Cell(ent)]
                      + ([Cell(sizes.get(budget) or "—")] if sized else []) + [share_cell]
                      + [stat_cell(ms[m]) for m in LAMBDA_METRICS]
                      + [Cell(steps_text(row.runs)), Cell(str(len(row.seeds)))])
        t.csv_rows.append([reg, lam, sm] + [mean(ms[m]) for m in LAMBDA_METRICS] + [len(row.seeds), ss]
                          + [std(ms[m]) for m in LAMBDA_METRICS]
                          + [row.entity if row.entity is not None else ALL_ENTITIES, model, steps_text(row.runs),
                             row.label, budget, " ".join(r.run_id for r in row.runs)])
    t.notes.append("runs of SNAP (swd), SNAP --regularizer l2 and Euclidean (l2 by default) that differ from their "
                   "method's defaults only in λ (and sizing knobs), on single entities; sorted by regularizer, then λ")
    if sized:
        t.notes.append("size: the sizing knobs in which rows differ; runs of different sizes are separate rows, "
                       "never averaged (eval_limit=N scores a stratified sample of N per held-out set)")
    t.notes.append("reg share: λ·penalty / total loss at the last optimiser step of the last phase; mean ± sample "
                   "std over seeds (n); " + ALL_ENTITIES + " (k): per seed the mean over k entities, then over seeds")
    if not rows:
        t.notes.append("missing: λ sweep — no SNAP/Euclidean run varies λ; `snap-bench run --method snap "
                       "--set lambda_reg=1` makes one")
    return t


def all_tables(runs: list[Run], kinds: dict[str, str], stats: dict[str, Any]) -> list[Table]:
    tables = [table1(runs, kinds), table2(runs, kinds), table3(runs, kinds), table4(runs, kinds), table5(stats),
              table_lambda(runs)]
    probes = table_probes(runs)
    return tables + ([probes] if probes else [])
