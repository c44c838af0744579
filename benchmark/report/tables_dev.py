"""``table_dev``: settings compared on the dev split alone, from dev-only runs (``--set heldout=false``).

A dev-only run trains as any run does and scores the dev split (items carved from TRAINING data, never trained
on); it asks no held-out question, so nothing held out can steer the choice of a default (issue 26). Each row is
one setting (method, regularizer, lr, retain data, λ) on one entity: the dev metrics of the checkpoint
``select=dev`` kept and the dev score (``evaluate/dev_score.py``; the run's own criterion), as the mean over
seeds ± the sample std, n the seeds. Rows are compared only within a block of equal sizes (model, entity, dev
set sizes, seeds, steps); the block's highest mean dev score is marked ``chosen``, and the note says by how
much it leads, against the spread of the seeds, so a lead inside the noise reads as one.

Dev-only runs never enter the held-out tables (``report.build_report`` keeps them apart).
"""

from __future__ import annotations

import statistics

from snap_bench.evaluate.dev_score import dev_score
from snap_bench.report.data import METRIC_HEADERS, Run, fmt_lambda, mean, std
from snap_bench.report.render import Cell, Table
from snap_bench.report.tables_rows import stat_cell, steps_text

DEV_METRICS = ("UA", "RA", "TA", "cross_RA")
SETTING_KEYS = ("lr", "retain_data", "lambda_reg")


def dev_metrics(run: Run, entity: str) -> dict[str, float]:
    return (((run.analyses.get("dev") or {}).get("metrics") or {}).get(entity)) or {}


def run_dev_score(run: Run, entity: str) -> float | None:
    m = dev_metrics(run, entity)
    return dev_score({entity: m}, run.cfg.get("select_criterion", "mean4")) if m else None


def _sizes(run: Run) -> str:
    s = (run.analyses.get("dev") or {}).get("sizes") or {}
    return " / ".join(str(s.get(k, "?")) for k in ("forget", "retain", "general", "cross"))


def _setting(run: Run) -> tuple[str, str, str, str]:
    c = run.cfg
    return (run.label, f"{c.get('lr', '?'):g}" if isinstance(c.get("lr"), float) else str(c.get("lr", "?")),
            str(c.get("retain_data", "?")), fmt_lambda(run.lam))


def _seed_means(runs: list[Run], value) -> list[float]:
    """One value per seed (runs of one seed averaged first)."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        v = value(r)
        if v is not None:
            by_seed.setdefault(r.seed, []).append(v)
    return [statistics.fmean(v) for _, v in sorted(by_seed.items())]


def _blocks(runs: list[Run]) -> dict[tuple, dict[tuple, list[Run]]]:
    """(model, entity, dev sizes, seeds, steps) -> setting -> runs. The seeds and steps are a row's own, so a
    setting run at other seeds or steps falls in another block and is never ranked against these."""
    rows: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.mode == "single":
            rows.setdefault((r.model, r.entities[0], _sizes(r), _setting(r)), []).append(r)
    out: dict[tuple, dict[tuple, list[Run]]] = {}
    for (model, entity, sizes, setting), rs in rows.items():
        key = (model, entity, sizes, ",".join(str(s) for s in sorted({r.seed for r in rs})), steps_text(rs))
        out.setdefault(key, {})[setting] = rs
    return out


def table_dev(runs: list[Run]) -> Table | None:
    """None when the store holds no dev-only run."""
    if not runs:
        return None
    header = ["Model", "Setting", "lr", "Retain data", "λ", "Entity", "n", "Steps", "Dev sizes",
              *(METRIC_HEADERS.get(m, m) for m in DEV_METRICS), "Dev score", "Choice"]
    csv_header = ["model", "label", "lr", "retain_data", "lambda", "entity", "n_seeds", "steps", "dev_sizes",
                  *(x for m in DEV_METRICS for x in (m, f"{m}_std")), "dev_score", "dev_score_std", "chosen"]
    t = Table("table_dev", "Settings compared on the dev split only (dev-only runs)", header, [], csv_header=csv_header)
    notes = []
    for (model, entity, sizes, seeds, steps), settings in sorted(_blocks(runs).items()):
        scores = {s: _seed_means(rs, lambda r: run_dev_score(r, entity)) for s, rs in settings.items()}
        ranked = sorted(settings, key=lambda s: -(mean(scores[s]) if scores[s] else float("-inf")))
        best = ranked[0]
        for s in sorted(settings, key=lambda s: s[1:] + s[:1]):
            rs = settings[s]
            cells = [stat_cell(_seed_means(rs, lambda r, m=m: dev_metrics(r, entity).get(m))) for m in DEV_METRICS]
            chosen = s == best and len(settings) > 1
            t.rows.append([Cell(model), Cell(s[0]), Cell(s[1]), Cell(s[2]), Cell(s[3]), Cell(entity),
                           Cell(str(len(scores[s]))), Cell(steps), Cell(sizes), *cells, stat_cell(scores[s]),
                           Cell("chosen" if chosen else "")])
            vals = [[_seed_means(rs, lambda r, m=m: dev_metrics(r, entity).get(m)) for m in DEV_METRICS], [scores[s]]]
            t.csv_rows.append([model, s[0], s[1], s[2], s[3], entity, len(scores[s]), steps, sizes,
                               *(x for v in vals[0] for x in (mean(v), std(v))), mean(scores[s]), std(scores[s]),
                               chosen])
        if len(ranked) > 1 and scores[best] and scores[ranked[1]]:
            lead = mean(scores[best]) - mean(scores[ranked[1]])
            stds = [std(scores[s]) for s in ranked[:2]]
            head = (f"{entity} ({model}; seeds {seeds}; {steps} steps): chosen {best[0]} (lr {best[1]}, {best[2]}) "
                    f"leads the next ({ranked[1][0]}) by {lead:.1f} dev-score points; ")
            if any(v is None for v in stds):
                notes.append(head + "one seed: the spread between seeds is not measured, so the lead is not yet "
                                    "shown to exceed it")
            else:
                spread = max(stds)
                notes.append(head + f"the larger of their seed stds is {spread:.1f}"
                             + (" — within the noise" if lead <= spread else ""))
    t.notes = ["dev metrics (%) of the checkpoint select=dev kept, on the dev split carved from training data; "
               "dev score: the run's select criterion; mean ± sample std over seeds (n = seeds); dev sizes: forget / "
               "retain / general / cross items; rows are compared only within equal model, entity, sizes, seeds and "
               "steps", *notes]
    return t
