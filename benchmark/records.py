"""The typed records a run produces, and the one place they are turned into JSON.

``run.execute`` builds them, the store writes :class:`StepResult` s, and :meth:`RunResult.to_json`
is what the CLI prints with ``--json``, what a sweep collects and what tests read. They sit outside
the layers (like ``data`` and ``errors``) so the store and the runner can share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snap_bench.evaluate.metrics import EvalRecord

Metrics = dict[str, dict[str, float]]  # entity (or "average") -> metric name -> value


@dataclass
class StepResult:
    """One phase of a run (the only one in single and batch mode; one per entity in sequential mode):
    the entities it trained on, the metrics after it, every graded response and the loss terms per step."""

    step: int
    trained_on: list[str]
    metrics: Metrics
    records: list[EvalRecord] = field(default_factory=list)
    losses: list[dict[str, float]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "trained_on": self.trained_on, "metrics": self.metrics}


@dataclass
class TrainTotals:
    """Optimizer steps, seconds and tokens summed over a run's phases."""

    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    checkpointing: list[dict[str, Any]] = field(default_factory=list)  # each phase's decision (train/memory.py)

    def add(self, result) -> None:
        self.steps += result.steps
        self.seconds += result.seconds
        self.tokens += result.tokens
        if result.checkpointing is not None:
            self.checkpointing.append(result.checkpointing)


@dataclass
class RunResult:
    """A finished run, as returned by ``run.execute.execute`` (through :meth:`to_json`)."""

    run_id: str
    method: str
    regularizer: str
    model: str
    seed: int
    mode: str
    entities: list[str]
    config_hash: str
    precision: str
    steps: list[StepResult]
    train: TrainTotals
    timings: dict[str, float]
    eval_sizes: dict[str, dict[str, int]]
    results: str
    analyses: dict[str, Any] = field(default_factory=dict)
    saved: str | None = None

    @property
    def metrics(self) -> Metrics:
        """The last step's metrics; in batch and sequential mode with their ``average`` over entities."""
        return final_metrics(self.mode, self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "method": self.method, "regularizer": self.regularizer, "model": self.model,
            "seed": self.seed, "mode": self.mode, "entities": self.entities, "config_hash": self.config_hash,
            "precision": self.precision, "metrics": self.metrics,
            "steps": [s.to_json() for s in self.steps] if self.mode == "sequential" else None,
            "train": {"steps": self.train.steps, "seconds": self.train.seconds, "tokens": self.train.tokens},
            "timings": self.timings, "eval_sizes": self.eval_sizes, "results": self.results,
            **({"saved": self.saved} if self.saved is not None else {}),
            **self.analyses,
        }


@dataclass
class RunSkipped:
    """A sweep's claim found the run done already, or held by a live process: nothing ran."""

    status: str  # "done" | "busy"
    run_id: str
    config_hash: str

    def to_json(self) -> dict[str, Any]:
        return {"skipped": self.status, "run_id": self.run_id, "config_hash": self.config_hash}


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def final_metrics(mode: str, steps: list[StepResult]) -> Metrics:
    final = steps[-1].metrics
    if mode != "single" and final:  # a dev-only run (heldout=false) has no held-out metric to average
        avg = {m: _mean([final[e][m] for e in final]) for m in next(iter(final.values()))}
        final = {**final, "average": avg}
    return final
