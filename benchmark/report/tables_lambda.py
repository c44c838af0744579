"""The λ table: SNAP's SWD and the L2 regularizer (SNAP +l2 / Euclidean) at each λ, one row per entity
and per sizing budget, with each row's regularizer share of the loss. The λ figure draws these rows.

Where the runs stored the Q4_1 quantization probe (``quant_probe=q4_1``, issue 25), a column says how much of
the unlearning effect on UA a Q4_1 copy undoes at each λ: does a stronger pull towards θ_init make the
forgetting more fragile under quantization?"""

from __future__ import annotations

from snap_bench.report.data import METRIC_HEADERS, Run, budget_diff, fmt_lambda, mean, std
from snap_bench.report.render import MISSING, Cell, Table
from snap_bench.report.tables_refusal import _dig
from snap_bench.report.tables_rows import ALL_ENTITIES, Row, stat_cell, steps_text


LAMBDA_METRICS = ("UA", "RA", "cross_RA", "TA")
LAMBDA_CSV = ["regularizer", "lambda", "reg_share", *LAMBDA_METRICS, "n"]
QUANT_CSV = ["q4_1_recovered_UA", "q4_1_recovered_UA_std"]


def q4_1_recovered(run: Run) -> float | None:
    """The share of the UA effect a Q4_1 copy undoes (``quant[entity]["q4_1"]["recovered"]["UA"]``), averaged over
    the run's entities; None when the run has no Q4_1 probe."""
    vals = [v for e in run.entities if (v := _dig(run.analyses.get("quant"), e, "q4_1", "recovered", "UA")) is not None]
    return sum(vals) / len(vals) if vals else None


def lambda_runs(runs: list[Run]) -> list[Run]:
    """Single-entity SNAP (swd or l2) and Euclidean runs that differ from their method's defaults in λ at most
    (sizing knobs aside), default-λ runs included."""
    return [r for r in runs if r.mode == "single" and r.sweep == "lambda" and r.regularizer in ("swd", "l2")
            and r.lam is not None]


def lambda_rows(runs: list[Run]) -> list[tuple[tuple[str, str, float, str], Row]]:
    """((model, regularizer, λ, budget), row) for the λ table, sorted by regularizer, λ, model, budget, entity
    ("all" last).

    One row per entity, never a row pooling entities: they are different populations, and a fictional entity's
    numbers averaged with a real person's describe neither (issue 26). Runs of different sizes (e.g. a sweep's eval_limit=60 and a full evaluation) are never averaged together:
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
    return out


def table_lambda(runs: list[Run]) -> Table:
    rows = lambda_rows(runs)
    models = sorted({k[0] for k, _ in rows})
    sizes = budget_diff(lambda_runs(runs))
    sized = any(sizes.values())  # a "size" column only when the runs differ in size
    quant = any(q4_1_recovered(r) is not None for r in lambda_runs(runs))  # a Q4_1 column only when some run has it
    header = (["Regularizer", "λ", "Entity"] + (["size"] if sized else []) + ["reg share"]
              + [METRIC_HEADERS[m] for m in LAMBDA_METRICS] + (["Q4_1 recovers UA"] if quant else []) + ["steps", "n"])
    t = Table("table_lambda", "λ sweep: SNAP's SWD and the L2 regularizer (SNAP +l2 / Euclidean) at each λ", header, [])
    t.csv_header = LAMBDA_CSV + ["reg_share_std"] + [f"{m}_std" for m in LAMBDA_METRICS] + \
        ["entity", "model", "steps", "labels", "budget", "run_ids"] + QUANT_CSV
    for (model, reg, lam, budget), row in rows:
        share = list(row.values(lambda r: r.reg_share).values())
        ms = {m: list(row.values(m).values()) for m in LAMBDA_METRICS}
        rec = list(row.values(q4_1_recovered).values())
        ent = row.entity if row.entity is not None else f"{ALL_ENTITIES} ({len(row.entities)})"
        sm, ss = mean(share), std(share)
        share_cell = MISSING if sm is None else Cell(f"{sm:.3g}" + (f" ± {ss:.2g}" if ss is not None else ""), sm)
        reg_text = reg if len(models) == 1 else f"{model} · {reg}"
        t.rows.append([Cell(reg_text), Cell(fmt_lambda(lam)), Cell(ent)]
                      + ([Cell(sizes.get(budget) or "—")] if sized else []) + [share_cell]
                      + [stat_cell(ms[m]) for m in LAMBDA_METRICS] + ([stat_cell(rec, digits=2)] if quant else [])
                      + [Cell(steps_text(row.runs)), Cell(str(len(row.seeds)))])
        t.csv_rows.append([reg, lam, sm] + [mean(ms[m]) for m in LAMBDA_METRICS] + [len(row.seeds), ss]
                          + [std(ms[m]) for m in LAMBDA_METRICS]
                          + [row.entity if row.entity is not None else ALL_ENTITIES, model, steps_text(row.runs),
                             row.label, budget, " ".join(r.run_id for r in row.runs), mean(rec), std(rec)])
    t.notes.append("runs of SNAP (swd), SNAP --regularizer l2 and Euclidean (l2 by default) that differ from their "
                   "method's defaults only in λ (and sizing knobs), on single entities; sorted by regularizer, then λ")
    if sized:
        t.notes.append("size: the sizing knobs in which rows differ; runs of different sizes are separate rows, "
                       "never averaged (eval_limit=N scores a stratified sample of N per held-out set)")
    t.notes.append("reg share: λ·penalty / total loss at the last optimiser step of the last phase; mean ± sample "
                   "std over seeds (n); one row per entity, entities never pooled")
    if quant:
        t.notes.append("Q4_1 recovers UA: the share of the unlearning effect on UA that a Q4_1 copy of the model undoes "
                       "(quant_probe, on its own sample of probe_limit forget items; 0 = the forgetting survives, 1 = "
                       "quantization undoes it; table_quant has the rest)")
    if not rows:
        t.notes.append("missing: λ sweep — no SNAP/Euclidean run varies λ; `snap-bench run --method snap "
                       "--set lambda_reg=1` makes one")
    return t

