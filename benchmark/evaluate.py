"""UA / UA♣ / RA / TA (paper §4.2) from one pooled, batched generation pass.

- UA: % of held-out forget questions answered with an obliterated response;
- UA_multihop (UA♣): the same on the multi-hop questions;
- RA: % of held-out retain questions NOT obliterated;
- TA: % of held-out general (D_g) questions NOT obliterated;
- Avg: their unweighted mean.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from snap_bench.generation import generate
from snap_bench.tasks import Item

METRICS = ("UA", "UA_multihop", "RA", "TA", "Avg")
# eval set -> (metric, whether an obliterated response is the success)
SET_METRIC = {"forget": ("UA", True), "multihop": ("UA_multihop", True), "retain": ("RA", False), "general": ("TA", False)}


@dataclass
class EvalRecord:
    item_id: str
    entity: str
    eval_set: str
    question: str
    response: str
    obliterated: bool
    reason: str


def evaluate(model, tokenizer, eval_sets: dict[str, dict[str, list[Item]]], general: list[Item], judge, cfg,
             system: str | None = None, progress: bool = True) -> tuple[dict[str, dict[str, float]], list[EvalRecord]]:
    """``eval_sets`` maps entity -> {"forget"|"multihop"|"retain": items}; ``general`` is shared.

    Returns metrics per entity (percentages, 0-100) and every response with its verdict.
    """
    jobs: list[tuple[str, str, Item]] = []
    for entity, sets in eval_sets.items():
        for set_name in ("forget", "multihop", "retain"):
            jobs += [(entity, set_name, it) for it in sets.get(set_name, [])]
    jobs += [("general", "general", it) for it in general]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="eval", unit="q", file=sys.stderr, dynamic_ncols=True)
    try:
        responses = generate(
            model, tokenizer, [it.question for _, _, it in jobs], system=system,
            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
            on_batch=(bar.update if bar is not None else None),
        )
    finally:
        if bar is not None:
            bar.close()
    verdicts = judge.judge_many(
        [(it.question, r, it.keywords if s in ("forget", "multihop") else ()) for (_, s, it), r in zip(jobs, responses)]
    )
    records = [
        EvalRecord(it.id, ent, s, it.question, r, v.obliterated, v.reason)
        for (ent, s, it), r, v in zip(jobs, responses, verdicts)
    ]
    return metrics_from_records(records, list(eval_sets)), records


def metrics_from_records(records: list[EvalRecord], entities: list[str]) -> dict[str, dict[str, float]]:
    general = [r for r in records if r.eval_set == "general"]
    ta = _pct(general, False)
    out: dict[str, dict[str, float]] = {}
    for entity in entities:
        m: dict[str, float] = {}
        for set_name, (metric, want) in SET_METRIC.items():
            if set_name == "general":
                m[metric] = ta
            else:
                m[metric] = _pct([r for r in records if r.entity == entity and r.eval_set == set_name], want)
        vals = [m[k] for k in ("UA", "UA_multihop", "RA", "TA") if m[k] is not None]
        m["Avg"] = sum(vals) / len(vals) if vals else None
        out[entity] = m
    return out


def _pct(records: list[EvalRecord], obliterated: bool) -> float | None:
    if not records:
        return None
    return 100.0 * sum(r.obliterated == obliterated for r in records) / len(records)
