"""Refusal vs removal, on one page: every method as a row, per entity, with what says whether it hides an
answer or removes the knowledge behind it.

``table_refusal``: UA, leak, ROUGE-L on the forget set, the answer log-prob Δ (probes), the Min-K%++
membership-inference AUC after unlearning with its change (``mia``), UA after the relearning attack
(probes), RA, cross-RA, TA and degenerate %. ``table_mia``: the four MIA attacks (loss, zlib, Min-K%,
Min-K%++), only when a run stored them. The figure (``figures_refusal.fig_refusal``) draws the same rows.

Rows are the methods at their defaults (Table 1's labels, sizing and analysis knobs aside) on single
entities, one block of rows per entity, never pooled over entities: a cell is the mean over the row's
SEEDS (runs of one seed averaged first) ± the sample std over seeds when there are two or more, and
``n`` counts the seeds. Every registered method gets a row on every entity the table shows; one the
store lacks shows "—", as does a cell whose run did not store that analysis (probes, mia): never a
made-up value. Per entity, the size (steps, eval_limit, ...) most methods ran keeps the plain rows; runs at
another size make their own "[knob=value]" rows, never averaged with them (see ``_sized_labels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from snap_bench.report.data import METHOD_LABELS, METRIC_HEADERS, UNTRAINED, Run, mean, std
from snap_bench.report.render import MISSING, Cell, Table
from snap_bench.report.items import ITEM_METRICS
from snap_bench.report.tables_rows import Row, _is_method_row, _order, item_interval, stat_cell, steps_text

# How a method makes the model stop answering, read from its loss in methods/ (kept here, not on the
# methods: it is the report's reading of them). "refusal": the model is taught (or, for prompting, told)
# to answer forget questions with an obliterated response ("I don't have any information about ..."),
# so the knowledge can stay in the weights behind the refusal; idk_dpo prefers that refusal over the
# true answer. "removal": no refusal is taught; the true answers' likelihood is pushed down (gradient
# ascent, gradient difference, NPO, SimNPO), the entity's hidden states are scrambled (RMU) or a task
# vector that learned the entity is subtracted (SKU). A method missing here shows as "?".
METHOD_KINDS = {
    "snap": "refusal", "prompting": "refusal", "euclidean": "refusal", "fisher": "refusal", "idk_dpo": "refusal",
    "gradient_ascent": "removal", "grad_diff": "removal", "npo": "removal", "simnpo": "removal", "rmu": "removal",
    "sku": "removal",
}
KINDS = ("refusal", "removal")
MIA_ATTACKS = ("loss", "zlib", "mink", "minkpp")
MIA_HEADERS = {"loss": "loss", "zlib": "zlib", "mink": "Min-K%", "minkpp": "Min-K%++"}
_METHOD_OF_LABEL = {v: k for k, v in METHOD_LABELS.items()}


def method_kind(method: str | None) -> str:
    return METHOD_KINDS.get(method or "", "?")


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _dig(obj: Any, *path: str) -> float | None:
    """A number at ``path`` in nested dicts; None wherever the path is absent or not a finite number."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return _number(obj)


def probe_value(run: Run, entity: str, *path: str) -> float | None:
    """``analyses["probes"][entity][path...]`` (e.g. "answer_logprob", "delta"), None when the run has none."""
    return _dig(run.analyses.get("probes"), entity, *path)


def mia_value(run: Run, entity: str, attack: str, key: str) -> float | None:
    """``analyses["mia"][entity][attack][key]`` (key: before | after | delta), None when the run has none."""
    return _dig(run.analyses.get("mia"), entity, attack, key)


@dataclass(frozen=True)
class Col:
    """A column: ``value(run, entity)`` per run, averaged per seed, then mean ± std over seeds. ``delta``
    adds "(Δ …)" to the cell; ``rank``: "max" or "min" marks best / second per entity; ``shown`` False: csv only."""

    header: str
    key: str
    value: Callable[[Run, str], float | None]
    digits: int = 1
    rank: str | None = None
    delta: Callable[[Run, str], float | None] | None = None
    shown: bool = True
    count: bool = False  # an item count: its distinct values ("80", "80/100"), never a mean ± std


def _metric(name: str, rank: str, digits: int = 1, header: str | None = None) -> Col:
    return Col(header or METRIC_HEADERS[name], name, lambda r, e: r.entity_value(e, name), digits, rank)


def _mia_col(attack: str, shown: bool = True) -> Col:
    return Col(f"MIA {MIA_HEADERS[attack]} AUC (Δ)", f"mia_{attack}_after",
               lambda r, e: mia_value(r, e, attack, "after"), 2,
               delta=lambda r, e: mia_value(r, e, attack, "delta"), shown=shown)


REFUSAL_COLS = (
    _metric("UA", "max"), _metric("leak", "min"), _metric("rougeL_forget", "min", 2),
    Col("answer log-prob Δ", "answer_logprob_delta", lambda r, e: probe_value(r, e, "answer_logprob", "delta"), 2),
    _mia_col("minkpp"),
    Col("UA after relearning", "relearn_UA_after", lambda r, e: probe_value(r, e, "relearning", "UA_after"), 1, "max"),
    Col("UA after Q4_1", "quant_q4_1_UA", lambda r, e: _dig(r.analyses.get("quant"), e, "q4_1", "UA", "quantized"), 1, "max"),
    _metric("RA", "max"), _metric("RA_correct", "max"), _metric("cross_RA", "max"), _metric("TA", "max"), _metric("degenerate", "min"),
    # csv only: what the shown Δ and "after" columns are measured against
    Col("", "answer_logprob_before", lambda r, e: probe_value(r, e, "answer_logprob", "before"), shown=False),
    Col("", "relearn_UA_before", lambda r, e: probe_value(r, e, "relearning", "UA_before"), shown=False),
    Col("", "mia_minkpp_before", lambda r, e: mia_value(r, e, "minkpp", "before"), shown=False),
)
MIA_COLS = tuple(_mia_col(a) for a in MIA_ATTACKS) + tuple(
    Col("", f"mia_{a}_before", lambda r, e, a=a: mia_value(r, e, a, "before"), shown=False) for a in MIA_ATTACKS) + (
    Col("members", "mia_n_members", lambda r, e: _dig(r.analyses.get("mia"), e, "n_members"), count=True),
    Col("non-members", "mia_n_nonmembers", lambda r, e: _dig(r.analyses.get("mia"), e, "n_nonmembers"), count=True))


def expected_labels() -> tuple[str, ...]:
    """Untrained first, then every registered method's row label: refusal-style, removal-style, unclassified."""
    from snap_bench.registry import METHODS

    names = sorted(METHODS.names(), key=lambda m: (KINDS.index(method_kind(m)) if m in METHOD_KINDS else 2, m))
    return (UNTRAINED,) + tuple(METHOD_LABELS.get(m, m) for m in names)


def row_kind(row: Row) -> str:
    if row.label == UNTRAINED:
        return "reference"
    method = row.runs[0].method if row.runs else _METHOD_OF_LABEL.get(row.label, row.label)
    return method_kind(method)


def _eval_size(budget: str) -> str:
    """A budget without its training length: what the untrained reference shares with the trained rows."""
    return ", ".join(kv for kv in budget.split(", ") if not kv.startswith(("epochs=", "max_steps=")))


def _size_diff(budget: str, main: str) -> str:
    """The knobs in which ``budget`` differs from ``main`` ("eval_limit=60")."""
    parse = lambda b: dict(kv.split("=", 1) for kv in b.split(", ") if "=" in kv)  # noqa: E731
    mine, ref = parse(budget), parse(main)
    return ", ".join(f"{k}={v}" for k, v in sorted(mine.items()) if ref.get(k) != v) or budget


def _sized_labels(sel: list[Run]) -> list[tuple[str, Run]]:
    """(row label, run). Per model and entity, the size (budget) most methods ran keeps the plain labels, so the
    rows compare (one store may hold a methods-cpu sweep and other suites' runs of some methods); runs at
    another size become "SNAP [eval_limit=60, …]" rows. The untrained reference keeps its label at the same
    evaluation size (its training length is 0 by definition)."""
    by_entity: dict[tuple[str, str], list[Run]] = {}
    for r in sel:
        by_entity.setdefault((r.model, r.entities[0]), []).append(r)
    out = []
    for rs in by_entity.values():
        trained = [r for r in rs if r.label != UNTRAINED] or rs
        labels: dict[str, set[str]] = {}
        for r in trained:
            labels.setdefault(r.budget, set()).add(r.label)
        main = max(sorted(labels), key=lambda b: (len(labels[b]), sum(r.budget == b for r in trained)))
        for r in rs:
            if r.label == UNTRAINED:  # its training length (0) is not a size difference
                diff = _size_diff(_eval_size(r.budget), _eval_size(main))
                plain = _eval_size(r.budget) == _eval_size(main)
            else:
                diff, plain = _size_diff(r.budget, main), r.budget == main
            out.append((r.label if plain else f"{r.label} [{diff}]", r))
    return out


def refusal_rows(runs: list[Run]) -> list[Row]:
    """One row per (model, entity, method label): every expected label (rows without runs included), and the
    size variants of a row ("SNAP [eval_limit=60]") after it; one block per entity, the most-run first."""
    sel = [r for r in runs if r.mode == "single" and _is_method_row(r.label)]
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for lab, r in _sized_labels(sel):
        groups.setdefault((r.model, r.entities[0], lab), []).append(r)
    models = sorted({r.model for r in sel}) or sorted({r.model for r in runs}) or ["smollm2-135m"]
    expected = expected_labels()
    rows = []
    for model in models:
        ran = {e: len(rs) for (m, e, _), rs in groups.items() if m == model}  # the entity with most runs first
        entities = sorted(ran, key=lambda e: (-ran[e], e)) or ["peter_parker"]
        for entity in entities:
            labels = {lab for m, e, lab in groups if (m, e) == (model, entity)} | set(expected)
            rows += [Row(model, lab, entity, [entity], groups.get((model, entity, lab), []))
                     for lab in _order(labels, expected)]
    return rows


def _cell(row: Row, col: Col) -> tuple[Cell, list[Any]]:
    """The shown cell and its csv values (mean, std[, Δ mean, Δ std]); "(n=k)" when fewer seeds than the row's have it."""
    vals = list(row.values(lambda r: col.value(r, row.entity)).values())
    out = [mean(vals), std(vals)]
    if col.count:
        counts = sorted({int(v) for r in row.runs if (v := col.value(r, row.entity)) is not None})
        return (Cell("/".join(map(str, counts))) if counts else MISSING), out
    cell = stat_cell(vals, digits=col.digits)
    if col.delta is not None:
        deltas = list(row.values(lambda r: col.delta(r, row.entity)).values())
        d = mean(deltas)
        out += [d, std(deltas)]
        if cell is not MISSING and d is not None:
            cell = Cell(f"{cell.text} (Δ {d:+.{col.digits}f})", cell.value)
    if col.key in ITEM_METRICS and col.delta is None:  # a 95 % interval over items and seeds (docs/statistics.md)
        ci = item_interval(row, col.key) if cell is not MISSING else None
        out += [None, None] if ci is None else [ci[0], ci[1]]
        if ci is not None:
            cell = Cell(f"{cell.value:.{col.digits}f} [{ci[0]:.{col.digits}f}, {ci[1]:.{col.digits}f}]", cell.value)
    if cell is not MISSING and len(vals) < len(row.seeds):
        cell = Cell(f"{cell.text} (n={len(vals)})", cell.value)
    return cell, out


def _csv_names(col: Col) -> list[str]:
    names = [f"{col.key}_mean", f"{col.key}_std"]
    if col.key in ITEM_METRICS and col.delta is None:
        names += [f"{col.key}_lo", f"{col.key}_hi"]
    if col.delta is not None:
        names += [f"{col.key.removesuffix('_after')}_delta_mean", f"{col.key.removesuffix('_after')}_delta_std"]
    return names


def _build(key: str, title: str, cols: tuple[Col, ...], rows: list[Row]) -> Table:
    """The table of ``rows`` x ``cols``: Method, Kind, Entity, the shown columns, steps, n; csv: every column."""
    shown = [c for c in cols if c.shown]
    first = 3
    t = Table(key, title, ["Method", "Kind", "Entity"] + [c.header for c in shown] + ["steps", "n"], [],
              rank_cols=[first + i for i, c in enumerate(shown) if c.rank],
              lower_better={first + i for i, c in enumerate(shown) if c.rank == "min"})
    t.csv_header = (["model", "label", "method", "kind", "entity", "n_seeds", "seeds", "n_runs", "steps"]
                    + [n for c in cols for n in _csv_names(c)] + ["budget", "run_ids"])
    models = sorted({r.model for r in rows})
    for row in rows:
        if row.label == UNTRAINED:
            t.reference_rows.add(len(t.rows))
        # a size variant is scored on another sample: it never competes with the rows it differs from
        t.rank_groups[len(t.rows)] = (row.model, row.entity) if " [" not in row.label else ("size", len(t.rows))
        cells = {c.key: _cell(row, c) for c in cols}
        kind = row_kind(row)
        t.rows.append([Cell(row.display_label(models)), Cell(kind), Cell(row.entity or "—")]
                      + [cells[c.key][0] for c in shown] + [Cell(steps_text(row.runs)), Cell(str(len(row.seeds)))])
        method = row.runs[0].method if row.runs else _METHOD_OF_LABEL.get(row.label, "")
        t.csv_rows.append([row.model, row.label, method, kind, row.entity, len(row.seeds),
                           " ".join(map(str, row.seeds)), len(row.runs), steps_text(row.runs)]
                          + [v for c in cols for v in cells[c.key][1]]
                          + [" | ".join(sorted({r.budget for r in row.runs})), " ".join(r.run_id for r in row.runs)])
    return t


def _missing_notes(rows: list[Row]) -> list[str]:
    """One "missing:" note per (model, entity) with rows the store lacks, naming the suite that makes them."""
    out: dict[tuple[str, str | None], list[str]] = {}
    for row in rows:
        if not row.runs:
            out.setdefault((row.model, row.entity), []).append(row.label)
    return [f"missing: {', '.join(labels)} on {model}/{entity} — no finished run; `snap-bench sweep --suite "
            "methods-cpu` makes every row on peter_parker and bill_gates (or `snap-bench run --method NAME "
            f"--entity {entity} --set probes=true --set mia=true`)" for (model, entity), labels in out.items()]


_KIND_NOTE = ("kind: refusal = taught (or prompted) to decline, so the knowledge may stay behind the refusal; "
              "removal = pushes the true answers down or scrambles / subtracts what encodes them, no refusal "
              "taught (report.tables_refusal.METHOD_KINDS); reference = the untrained model")
_COLS_NOTE = ("leak↓: % of held-out forget and multi-hop responses that contain an answer keyword absent from the "
              "question (a refusal that leaks the answer counts); R-L forget↓: ROUGE-L recall (0-1) of the true "
              "answer on the forget set; answer log-prob Δ: change in the true answers' mean token log-probability "
              "from the untrained model (probes; negative = less likely: removed, not only hidden); UA after "
              "relearning: UA once a copy is fine-tuned a few steps on OTHER forget facts (probes; knowledge only "
              "hidden comes back); UA after Q4_1: UA of a Q4_1 copy of the model on the quantization probe's sample "
              "(quant_probe; table_quant has the rest); MIA: AUC with which Min-K%++ tells the forget items trained "
              "on (members) from "
              "the held-out ones, after unlearning (Δ: change from the untrained model); 0.5 = no trace, "
              "below 0.5 = the members stand out the other way; (n=k): only k of the row's seeds stored it; "
              "— where no run stored that analysis")


def table_refusal(runs: list[Run]) -> Table:
    rows = refusal_rows(runs)
    t = _build("table_refusal", "Refusal vs removal: every method on one page", REFUSAL_COLS, rows)
    t.notes += ["mean ± sample std over seeds (n = seeds; runs of one seed are averaged first), one block of rows "
                "per entity, never pooled over entities; best in bold, second underlined within an entity's rows "
                "(↓: lower is better); the untrained row is the reference", _KIND_NOTE, _COLS_NOTE]
    if not any(mia_value(r, e, "minkpp", "after") is not None for row in rows for r in row.runs for e in r.entities):
        t.notes.append("MIA: no run in this store has it (`--set mia=true`); all four attacks go to table_mia")
    if any(" [" in row.label for row in rows):
        t.notes.append("[knob=value]: runs of that method at another size than the entity's other rows (e.g. "
                       "another suite's eval_limit); scored on another sample, so shown apart and never ranked")
    t.notes += _missing_notes(rows)
    return t


def table_mia(runs: list[Run]) -> Table | None:
    """The four membership-inference attacks per method and entity; None when no run stored MIA."""
    if not any(r.analyses.get("mia") for r in runs):
        return None
    rows = [Row(row.model, row.label, row.entity, row.entities, [r for r in row.runs if r.analyses.get("mia")])
            for row in refusal_rows(runs)]
    rows = [row for row in rows if row.runs]  # n: the seeds that ran it
    t = _build("table_mia", "Membership inference: AUC of forget vs held-out answers, four attacks", MIA_COLS, rows)
    t.notes += ["AUC after unlearning with which each attack tells the forget items trained on (members) from "
                "the entity's held-out forget items (non-members), scored on the true answers; mean ± sample std "
                "over the seeds that ran it (n), (Δ: mean change from the untrained model's AUC); 0.5 = no "
                "trace, below 0.5 = the members stand out the other way; loss: mean token log-likelihood; zlib: "
                "the same over the answer's zlib entropy; Min-K%: mean of the lowest 20% token log-probs; "
                "Min-K%++: the same on log-probs standardised by the next-token distribution "
                "(evaluate/mia.py); members / non-members: items scored per run"]
    return t
