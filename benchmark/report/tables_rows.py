"""What every metric table is made of: cells (mean ± std over seeds), :class:`Row` (the runs behind one
(label, entity) row, or an "all entities" row), :class:`Extra` columns, and :func:`_metric_table`, which
lays out Tables 1, 3 and 4: one block of rows per entity, an "all entities" block, "—" rows with the
command that makes them for what the store lacks, and runs of different sizes kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from snap_bench.report.data import (ALL_METRICS, COUNTS, LOWER_IS_BETTER, METHOD_LABELS, METRIC_HEADERS, UNTRAINED, Run,
                                    budget_diff, default_lambda, fmt_lambda, mean, seed_entity_means, seed_values, std)
from snap_bench.report.items import ITEM_METRICS, cell_interval, item_values
from snap_bench.report.render import MISSING, Cell, Table

_LABEL_TO_METHOD = {v: k for k, v in METHOD_LABELS.items()}
ALL_ENTITIES = "all entities"
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
    """The shown cell and its csv values: mean and std over seeds; for a metric over items (report/items.py)
    also the 95 % interval, shown as "mean [lo, hi]" (one entity's rows; an all-entities row has none)."""
    if metric in _COUNT_KEYS:
        c = row.count_text(metric)
        return Cell(c.text), [None if c is MISSING else c.text]
    vals = list(row.values(metric).values())
    cell, csv = stat_cell(vals), [mean(vals), std(vals)]
    if metric not in ITEM_METRICS:
        return cell, csv
    ci = item_interval(row, metric)
    if ci is None or cell is MISSING:
        return cell, csv + [None, None]
    return Cell(f"{cell.value:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]", cell.value), csv + [ci[0], ci[1]]


def item_interval(row: Row, metric: str) -> tuple[float, float] | None:
    """The 95 % interval of a metric over items (report/items.py) on one entity's row; None on an all-entities row."""
    if row.entity is None:
        return None
    per_seed = [[v for r in row.runs if r.seed == s and (v := item_values(r.items, row.entity, metric))]
                for s in row.seeds]
    if any(not runs for runs in per_seed):
        return None
    return cell_interval(per_seed, f"{row.model}|{row.label}|{row.entity}|{metric}")


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


@dataclass
class _Layout:
    """A metric table's columns: the shown metrics and extras, its models, and what its csv rows hold."""

    metrics: tuple[str, ...]
    extra: list[Extra]
    models: list[str]
    csv_metrics: list[str] = field(default_factory=list)  # mean and std of each, whether shown or not
    counts: list[str] = field(default_factory=list)  # item counts among the shown metrics (csv: one value)


def _metric_frame(key: str, title: str, lay: _Layout) -> Table:
    """The empty table: header, ranked and lower-is-better columns, csv header; fills ``lay``'s csv columns."""
    metrics, extra = lay.metrics, lay.extra
    header = (["Method", "Entity"] + [METRIC_HEADERS.get(m, m) for m in metrics] + [x.header for x in extra]
              + ["steps", "n"])
    ranked = [2 + i for i, m in enumerate(metrics) if m not in _COUNT_KEYS]
    ranked += [2 + len(metrics) + i for i, x in enumerate(extra) if x.ranked]
    t = Table(key, title, header, [], rank_cols=ranked,
              lower_better={2 + i for i, m in enumerate(metrics) if m in LOWER_IS_BETTER})
    lay.csv_metrics = [m for m in dict.fromkeys(tuple(metrics) + ALL_METRICS) if m not in _COUNT_KEYS]
    lay.counts = [m for m in metrics if m in _COUNT_KEYS]
    t.csv_header = (["model", "label", "entity", "n_seeds", "seeds", "n_runs", "steps"]
                    + [f"{m}_{s}" for m in lay.csv_metrics
                       for s in ("mean", "std") + (("lo", "hi") if m in ITEM_METRICS else ())] + lay.counts
                    + [c for x in extra for c in x.csv] + ["budget", "run_ids"])
    return t


def _add_row(t: Table, lay: _Layout, row: Row, block: Any) -> None:
    """One row of runs (ranked within ``block``), its csv row, and a note when its runs differ in size."""
    if row.label == UNTRAINED:
        t.reference_rows.add(len(t.rows))
    t.rank_groups[len(t.rows)] = block
    shown = [_metric_cell(row, m)[0] for m in lay.metrics]
    extras = [x.cell(row) for x in lay.extra]
    seeds = row.seeds
    ent = row.entity if row.entity is not None else f"{ALL_ENTITIES} ({len(row.entities)})"
    t.rows.append([Cell(row.display_label(lay.models)), Cell(ent)] + shown + [c for c, _ in extras]
                  + [Cell(steps_text(row.runs)), Cell(str(len(seeds)))])
    t.csv_rows.append([row.model, row.label, row.entity if row.entity is not None else ALL_ENTITIES, len(seeds),
                       " ".join(map(str, seeds)), len(row.runs), steps_text(row.runs)]
                      + [v for m in lay.csv_metrics for v in _metric_cell(row, m)[1]]
                      + [_metric_cell(row, m)[1][0] for m in lay.counts]
                      + [v for _, vals in extras for v in vals]
                      + [" | ".join(sorted({r.budget for r in row.runs})), " ".join(r.run_id for r in row.runs)])
    budgets = sorted({r.budget for r in row.runs})
    if len(budgets) > 1 and row.entity is not None:
        t.notes.append(f"{row.label} on {row.model}/{row.entity} mixes runs of different sizes: " + "; ".join(budgets))


def _add_missing(t: Table, lay: _Layout, model: str, label: str, entity: str | None, entity_hint: str) -> None:
    """An expected row the store lacks: "—" cells, and a note with the command that makes it."""
    t.rank_groups[len(t.rows)] = (model, entity)
    t.rows.append([Cell(_row_label(model, label, lay.models)), MISSING] + [MISSING] * (len(t.header) - 2))
    t.notes.append(f"missing: {label} on {model} — no finished run; "
                   f"`{_how_to(label, model, entity or entity_hint)}` makes one")
    t.csv_rows.append([model, label, "", 0, "", 0, ""] + [None] * (len(t.csv_header) - 7))


def _model_rows(t: Table, lay: _Layout, model: str, labelled: list[tuple[str, Run]], expected: tuple[str, ...],
                entity_hint: str) -> None:
    """``model``'s rows: a block per entity, then an "all entities" block when it ran several."""
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
                _add_missing(t, lay, model, label, entity, entity_hint)
                continue
            _add_row(t, lay, Row(model, label, entity, [entity], here[label]), (model, entity))
    if len(entities) > 1:
        for label in _order({lab for lab, _ in mine}, expected):
            rs = [r for lab, r in mine if lab == label]
            ents = sorted({r.entities[0] for r in rs})
            if len(ents) > 1:
                _add_row(t, lay, Row(model, label, None, ents, rs), (model, ALL_ENTITIES))
        t.notes.append(f"{ALL_ENTITIES} (k): per seed the mean over the row's k entities, then mean ± std over "
                       "the seeds that ran every one of them (n); entities are never pooled into a std")


def _metric_table(key: str, title: str, runs: list[Run], all_runs: list[Run], *, row_label: Callable[[Run], str | None],
                  expected: tuple[str, ...], metrics: tuple[str, ...], entity_hint: str,
                  extra: list[Extra] | None = None) -> Table:
    """Rows = (label, entity) per model, columns = metric means ± std over seeds, then steps and n (seeds).

    A table covering several entities gets one block of rows per entity (ranked within the block) and
    a block of "all entities" rows; expected rows the store lacks show "—" once, with a note."""
    lay = _Layout(metrics, extra or [], _models(runs, all_runs))
    labelled = [(row_label(r), r) for r in runs]
    kept = [(lab, r) for lab, r in labelled if lab is not None]
    labelled = _split_budgets(kept)
    t = _metric_frame(key, title, lay)
    for model in lay.models:
        _model_rows(t, lay, model, labelled, expected, entity_hint)
    if labelled != kept:
        t.notes.append("[knob=value]: runs of the row above at another size (e.g. a stratified eval_limit sample "
                       "instead of the full held-out sets), kept apart because they score different samples")
    if not runs:
        t.notes.append("the store holds no finished run for this table")
    return t


def single(runs: list[Run], kinds: dict[str, str], real: bool) -> list[Run]:
    """Single-entity runs on fictional (real=False) or real (real=True) entities."""
    return [r for r in runs if r.mode == "single" and (kinds.get(r.entities[0], "fictional") == "real") == real]

