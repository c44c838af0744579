"""What a report is made of: the store's finished runs, each named by what it varies.

A run's row label comes from its stored config, not from the suite that launched it, so
``snap-bench report`` works on any store: runs made by ``run``, by ``sweep`` or by hand. The
label is the method's name plus whatever the run changes against that method's defaults under
its preset (its regularizer, retain data, ...); a run that changes only λ is "SNAP λ=1"
("Euclidean λ=1", "SNAP (+l2) λ=1"). Knobs that only size a run (steps, eval limits, analyses)
do not make a new row; a row that mixes runs of different sizes says so, and every row shows
the optimiser steps its runs trained.

Statistics: a table row is one label on one entity, and its ± is the sample std over SEEDS
(runs of the same seed are averaged first), never over entities. A mean over entities is taken
per seed first, and its ± is the std over seeds of those per-seed entity means.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

METRICS = ("UA", "UA_multihop", "RA", "TA", "Avg")
# Added by issue 13; a run stored before them simply lacks them (its cells show "—").
NEW_METRICS = ("cross_RA", "leak", "RA_known", "degenerate")
# Added by issue 25 (RA_correct): older runs lack it and show "—".
CORRECT_METRICS = ("RA_correct",)
ROUGE_METRICS = ("rougeL_forget", "rougeL_retain", "rougeL_general")
ALL_METRICS = METRICS + NEW_METRICS + CORRECT_METRICS + ROUGE_METRICS
LOWER_IS_BETTER = frozenset({"leak", "degenerate", "rougeL_forget"})
# Item counts stored beside the metrics: shown as "n", never averaged as a metric or ranked.
COUNTS = {"RA_known": "RA_known_n", "RA_correct": "RA_correct_n"}
METRIC_HEADERS = {"UA": "UA", "UA_multihop": "UA♣", "RA": "RA", "TA": "TA", "Avg": "Avg", "cross_RA": "cross-RA",
                  "leak": "leak↓", "RA_known": "RA known", "RA_known_n": "n known", "RA_correct": "RA correct", "RA_correct_n": "n correct", "degenerate": "degen.↓",
                  "rougeL_forget": "R-L forget↓", "rougeL_retain": "R-L retain", "rougeL_general": "R-L general"}

METHOD_LABELS = {
    "snap": "SNAP", "prompting": "Prompting", "euclidean": "Euclidean", "fisher": "Fisher",
    "gradient_ascent": "Gradient ascent", "grad_diff": "Grad. diff.", "npo": "NPO", "idk_dpo": "IdK-DPO", "sku": "SKU",
    "simnpo": "SimNPO", "rmu": "RMU",
}
UNTRAINED = "Untrained"
# The paper's Table 1 rows (after the untrained model); other methods follow them when present.
TABLE1_EXPECTED = (UNTRAINED, "Prompting", "Euclidean", "Fisher", "Gradient ascent", "SNAP")
# Table 3: SNAP and what is left when one of its three parts is removed. Without negative
# instructions the forget signal must come from the true answers, i.e. gradient difference
# (ascent on the forget answers, descent on the retain data) keeping SNAP's regularizer.
ABLATIONS = ("SNAP", "SNAP −Wasserstein", "SNAP −HardRDA", "SNAP −Negative instructions")
RETAIN_DATA_LABELS = {"hard": "D_r", "general": "D_g", "hard+general": "D_r + D_g", "none": "none"}

# Config fields that size a run, and those that add analyses to it: neither changes what is
# unlearned, so neither makes a new row. Only the sizing ones are shown as a row's "budget". The
# membership-inference analysis is ``mia`` and any knob of its named ``mia_*`` (see ``is_budget_key``).
SIZE_KEYS = frozenset({"epochs", "max_steps", "eval_limit", "eval_batch_size", "max_new_tokens", "general_eval_size"})
ANALYSIS_KEYS = frozenset({"probes", "probe_limit", "relearn_n", "relearn_steps", "eval_nlp", "nlp_tasks", "nlp_limit",
                           "mia", "quant_probe", "heldout"})
BUDGET_KEYS = SIZE_KEYS | ANALYSIS_KEYS


def is_budget_key(key: str) -> bool:
    """A config field that sizes a run or adds an analysis to it: never part of a row's label."""
    return key in BUDGET_KEYS or key.startswith("mia_")


@dataclass
class Run:
    """One finished run as the report sees it."""

    run_id: str
    method: str
    regularizer: str
    mode: str
    entities: list[str]
    model: str
    seed: int
    record: dict[str, Any]                       # the stored run config (method, preset, config, ...)
    metrics: dict[int, dict[str, dict[str, float]]]  # step -> entity -> metric -> value
    analyses: dict[str, Any]
    losses: dict[int, list[dict[str, float]]]     # phase -> per optimiser step: term -> value
    versions: dict[str, str]
    created_at: float
    finished_at: float | None
    label: str = ""
    trains: bool = True
    retain_data: str | None = None
    budget: str = ""                              # the sizing knobs, as "key=value" text
    sweep: str | None = None                      # "lambda" / "retain": a λ- or retain-share variant (see variant_kind)
    items: list[tuple[str, str, str, bool]] = field(default_factory=list)  # report/items.py: the last step's verdicts

    @property
    def cfg(self) -> dict[str, Any]:
        return self.record.get("config", {})

    @property
    def dev_only(self) -> bool:
        """A run that asked no held-out question (``heldout=false``): it belongs in the dev table alone."""
        return self.cfg.get("heldout", True) is False

    @property
    def lam(self) -> float | None:
        v = self.cfg.get("lambda_reg")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def steps(self) -> int | None:
        """Optimiser steps trained: the logged loss steps over every phase; 0 for a run that never trains."""
        n = sum(len(v) for v in self.losses.values())
        if n:
            return n
        if not self.trains or self.cfg.get("max_steps") == 0:
            return 0
        return None  # trained, but no losses stored: unknown

    @property
    def reg_share(self) -> float | None:
        """``reg / total`` at the last step of the last phase (0 without a reg term); None with no losses."""
        if not self.losses:
            return None
        last_phase = self.losses[max(self.losses)]
        if not last_phase:
            return None
        last = last_phase[-1]
        total = last.get("total")
        if not total:
            return None
        return float(last.get("reg", 0.0)) / float(total)

    def entity_value(self, entity: str, metric: str) -> float | None:
        return (self.final().get(entity) or {}).get(metric)

    def final(self) -> dict[str, dict[str, float]]:
        """Per-entity metrics after the last step."""
        return self.metrics[max(self.metrics)] if self.metrics else {}

    def final_mean(self, metric: str) -> float | None:
        """The run's metric averaged over its entities, after the last step."""
        return mean(m.get(metric) for m in self.final().values())


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def std(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation; None below two values, so one seed never shows a fake ±0."""
    vals = [v for v in values if v is not None]
    return statistics.stdev(vals) if len(vals) >= 2 else None


def seed_values(runs: Iterable[Run], value: Callable[[Run], float | None]) -> dict[int, float]:
    """seed -> ``value`` averaged over that seed's runs (None values skipped; a seed with none is left out)."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        v = value(r)
        if v is not None:
            by_seed.setdefault(r.seed, []).append(v)
    return {s: sum(v) / len(v) for s, v in sorted(by_seed.items())}


def seed_entity_means(runs: Iterable[Run], entities: Iterable[str],
                      value: str | Callable[[Run, str], float | None]) -> dict[int, float]:
    """seed -> the mean over ``entities`` of that seed's value (a metric name, or ``value(run, entity)``);
    only seeds that have a value on every entity, so each seed's mean is over the same entities."""
    runs, entities = list(runs), sorted(set(entities))
    fn = (lambda r, e: r.entity_value(e, value)) if isinstance(value, str) else value
    per_entity = {e: seed_values([r for r in runs if e in r.entities], lambda r, e=e: fn(r, e)) for e in entities}
    seeds = set.intersection(*(set(v) for v in per_entity.values())) if entities else set()
    return {s: sum(per_entity[e][s] for e in entities) / len(entities) for s in sorted(seeds)}


def default_lambda(method: str = "snap", preset: str = "cpu") -> float | None:
    defaults, _ = _method_defaults(method, preset)
    v = (defaults or {}).get("lambda_reg")
    return float(v) if isinstance(v, (int, float)) else None


def fmt_lambda(v: float | None) -> str:
    return "?" if v is None else f"{v:g}"


@functools.lru_cache(maxsize=None)
def _method_defaults(method: str, preset: str) -> tuple[dict[str, Any] | None, bool]:
    """(the method's resolved config under ``preset`` with no overrides, whether it trains). Cached: callers
    must not modify the returned dict."""
    from snap_bench.config import build_config
    from snap_bench.errors import SnapBenchError
    from snap_bench.registry import METHODS

    try:
        cls = METHODS.get(method)
        return build_config(cls.config_cls, preset, {}).to_dict(), bool(cls.trains)
    except SnapBenchError:  # a method or preset this version no longer has: label it by name only
        return None, True


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _diffs(method: str, cfg: dict[str, Any], preset: str) -> tuple[dict[str, Any] | None, bool]:
    """(the run's config fields that differ from its method's defaults, sizing knobs left out; whether it trains).
    None when the method's defaults are unknown to this version."""
    defaults, trains = _method_defaults(method, preset)
    if defaults is None:
        return None, trains
    diffs = {k: v for k, v in cfg.items() if not is_budget_key(k) and k in defaults and v != defaults[k]}
    if not trains:  # weights never change: training knobs cannot make a different row
        diffs = {k: v for k, v in diffs.items() if k in ("system_prompt",)}
    return diffs, trains


# Fields whose variants make a point of the λ / retain-share trade-off (besides sizing knobs).
RETAIN_SHARE_KEYS = frozenset({"retain_data", "retain_ratio", "general_ratio"})


def variant_kind(method: str, cfg: dict[str, Any], preset: str) -> str | None:
    """``"lambda"``: a SNAP (swd or l2) or Euclidean run that differs from its method's defaults in λ at most
    (the default-λ run included): a row of the λ table. ``"retain"``: one that also, or only, differs in its
    retain share (retain_data, retain_ratio, general_ratio): a point of the trade-off figure. Else None."""
    if method not in ("snap", "euclidean") or (cfg.get("max_steps") == 0):
        return None
    diffs, _ = _diffs(method, cfg, preset)
    if diffs is None:
        return None
    reg = diffs.pop("regularizer", None)
    if reg is not None and not (method == "snap" and reg == "l2"):
        return None
    diffs.pop("lambda_reg", None)
    if not diffs:
        return "lambda"
    return "retain" if set(diffs) <= RETAIN_SHARE_KEYS and diffs.get("retain_data") != "none" else None


def label_run(method: str, cfg: dict[str, Any], preset: str) -> tuple[str, bool]:
    """(row label, whether the method trains) for a run's config."""
    base = METHOD_LABELS.get(method, method)
    diffs, trains = _diffs(method, cfg, preset)
    if trains and cfg.get("max_steps") == 0:
        return UNTRAINED, trains
    if diffs is None:
        return base, trains
    reg, retain = diffs.pop("regularizer", None), diffs.pop("retain_data", None)
    lam = diffs.pop("lambda_reg", None)
    if reg == "none":  # no regularizer: λ weighs nothing
        lam = None
    lam_text = f" λ={_fmt_value(float(lam))}" if lam is not None else ""
    if not diffs:
        if method == "snap" and reg == "none" and retain is None and lam is None:
            return "SNAP −Wasserstein", trains
        if method == "snap" and reg is None and retain == "none":
            return "SNAP −HardRDA" + lam_text, trains
        if method == "grad_diff" and reg == "swd" and retain is None:
            return "SNAP −Negative instructions" + lam_text, trains
        if method == "snap" and reg is None and retain is not None:
            return f"SNAP ({RETAIN_DATA_LABELS.get(retain, retain)})" + lam_text, trains
    parts = ([f"+{reg}"] if reg is not None else []) + ([f"retain={retain}"] if retain is not None else [])
    parts += [f"{k}={_fmt_value(v)}" for k, v in sorted(diffs.items())]
    return (f"{base} ({', '.join(parts)})" if parts else base) + lam_text, trains


def load_runs(store) -> list[Run]:
    """Every ``done`` run of the store, labelled."""
    from snap_bench.report.items import item_rows

    out = []
    for row in store.runs(status="done"):
        record = row["config"] or {}
        cfg = record.get("config", {})
        label, trains = label_run(row["method"], cfg, record.get("preset", "cpu"))
        budget = ", ".join(f"{k}={_fmt_value(cfg[k])}" for k in sorted(SIZE_KEYS) if k in cfg)
        out.append(Run(
            run_id=row["run_id"], method=row["method"], regularizer=row["regularizer"], mode=row["mode"],
            entities=list(row["entities"]), model=row["model"], seed=int(row["seed"]), record=record,
            metrics=store.metrics(row["run_id"]), analyses=store.analyses(row["run_id"]),
            losses=store.losses(row["run_id"]), versions=row.get("versions") or {}, created_at=row["created_at"],
            finished_at=row.get("finished_at"), label=label, trains=trains, retain_data=cfg.get("retain_data"),
            budget=budget, sweep=variant_kind(row["method"], cfg, record.get("preset", "cpu")),
            items=item_rows(store.generations(row["run_id"])),
        ))
    return out


@dataclass
class Group:
    """The runs behind one table row: same model and label, any seeds and entities."""

    model: str
    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    @property
    def entities(self) -> list[str]:
        return sorted({e for r in self.runs for e in r.entities})

    @property
    def budgets(self) -> list[str]:
        return sorted({r.budget for r in self.runs})

    def values(self, metric: str) -> list[float]:
        return [v for v in (r.final_mean(metric) for r in self.runs) if v is not None]


def group(runs: Iterable[Run]) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    for r in runs:
        groups.setdefault((r.model, r.label), Group(r.model, r.label)).runs.append(r)
    return groups


def budget_diff(runs: Iterable[Run]) -> dict[str, str]:
    """budget text -> the sizing knobs in which it differs from the other budgets among ``runs`` ("" if one).

    Used where rows that differ only in size are kept apart (λ table and figures): "eval_limit=60" names
    the difference without repeating the knobs every run shares."""
    budgets = sorted({r.budget for r in runs})
    if len(budgets) < 2:
        return {b: "" for b in budgets}
    parsed = {b: dict(kv.split("=", 1) for kv in b.split(", ") if "=" in kv) for b in budgets}
    keys = sorted({k for d in parsed.values() for k in d})
    varying = [k for k in keys if len({d.get(k, "—") for d in parsed.values()}) > 1]
    return {b: ", ".join(f"{k}={parsed[b].get(k, '—')}" for k in varying) for b in budgets}


def entity_kinds() -> dict[str, str]:
    """slug -> ``fictional`` | ``real`` for every registered entity (Table 4 is the real person)."""
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_pack

    return {name: load_pack(name).kind for name in ENTITIES.names()}


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
