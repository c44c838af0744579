"""What a report is made of: the store's finished runs, each named by what it varies.

A run's row label comes from its stored config, not from the suite that launched it, so
``snap-bench report`` works on any store: runs made by ``run``, by ``sweep`` or by hand. The
label is the method's name plus whatever the run changes against that method's defaults under
its preset (its regularizer, retain data, ...). Knobs that only size a run (steps, eval limits,
analyses) do not make a new row; a row that mixes runs of different sizes says so.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

METRICS = ("UA", "UA_multihop", "RA", "TA", "Avg")
METRIC_HEADERS = {"UA": "UA", "UA_multihop": "UA♣", "RA": "RA", "TA": "TA", "Avg": "Avg"}

METHOD_LABELS = {
    "snap": "SNAP", "prompting": "Prompting", "euclidean": "Euclidean", "fisher": "Fisher",
    "gradient_ascent": "Gradient ascent", "grad_diff": "Grad. diff.", "npo": "NPO", "idk_dpo": "IdK-DPO", "sku": "SKU",
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
# unlearned, so neither makes a new row. Only the sizing ones are shown as a row's "budget".
SIZE_KEYS = frozenset({"epochs", "max_steps", "eval_limit", "eval_batch_size", "max_new_tokens", "general_eval_size"})
ANALYSIS_KEYS = frozenset({"probes", "probe_limit", "relearn_n", "relearn_steps", "eval_nlp", "nlp_tasks", "nlp_limit"})
BUDGET_KEYS = SIZE_KEYS | ANALYSIS_KEYS


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

    @property
    def cfg(self) -> dict[str, Any]:
        return self.record.get("config", {})

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


def _method_defaults(method: str, preset: str) -> tuple[dict[str, Any] | None, bool]:
    """(the method's resolved config under ``preset`` with no overrides, whether it trains)."""
    from snap_bench.config import build_config
    from snap_bench.errors import SnapBenchError
    from snap_bench.registry import METHODS

    try:
        cls = METHODS.get(method)
        return build_config(cls.config_cls, preset, {}).to_dict(), bool(getattr(cls, "trains", True))
    except SnapBenchError:  # a method or preset this version no longer has: label it by name only
        return None, True


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def label_run(method: str, cfg: dict[str, Any], preset: str) -> tuple[str, bool]:
    """(row label, whether the method trains) for a run's config."""
    defaults, trains = _method_defaults(method, preset)
    base = METHOD_LABELS.get(method, method)
    if trains and cfg.get("max_steps") == 0:
        return UNTRAINED, trains
    if defaults is None:
        return base, trains
    diffs = {k: v for k, v in cfg.items() if k not in BUDGET_KEYS and k in defaults and v != defaults[k]}
    if not trains:  # weights never change: training knobs cannot make a different row
        diffs = {k: v for k, v in diffs.items() if k in ("system_prompt",)}
    reg, retain = diffs.pop("regularizer", None), diffs.pop("retain_data", None)
    if not diffs:
        if method == "snap" and reg == "none" and retain is None:
            return "SNAP −Wasserstein", trains
        if method == "snap" and reg is None and retain == "none":
            return "SNAP −HardRDA", trains
        if method == "grad_diff" and reg == "swd" and retain is None:
            return "SNAP −Negative instructions", trains
        if method == "snap" and reg is None and retain is not None:
            return f"SNAP ({RETAIN_DATA_LABELS.get(retain, retain)})", trains
    parts = ([f"+{reg}"] if reg is not None else []) + ([f"retain={retain}"] if retain is not None else [])
    parts += [f"{k}={_fmt_value(v)}" for k, v in sorted(diffs.items())]
    return (f"{base} ({', '.join(parts)})" if parts else base), trains


def load_runs(store) -> list[Run]:
    """Every ``done`` run of the store, labelled."""
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
            budget=budget,
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


def entity_kinds() -> dict[str, str]:
    """slug -> ``fictional`` | ``real`` for every registered entity (Table 4 is the real person)."""
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_pack

    return {name: load_pack(name).kind for name in ENTITIES.names()}


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
