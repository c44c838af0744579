"""Retain targets written by the model itself (``--set retain_targets=self``).

A pack's retain answers are facts a 135M model mostly does not know, so L_r on them spends the
few CPU steps teaching new facts instead of holding the model to *answering* related questions,
and refusal bleeds into the rest of the domain. Distilling the untrained model's own greedy
answers keeps L_r low at the start and makes any drift towards declining expensive, which is
what RA measures. The paper uses the pack answers (``retain_targets=pack``, the default of the
``paper`` presets).
"""

from __future__ import annotations

import dataclasses

from snap_bench.evaluate.generation import generate
from snap_bench.tasks.packs import Item
from snap_bench.util import progress_bar


def self_targets(model, tokenizer, items: list[Item], judge, cfg, *, system: str | None = None,
                 progress: bool = True) -> tuple[list[Item], int]:
    """``items`` with ``response`` replaced by the model's own greedy answer.

    An answer the judge calls obliterated keeps the pack's response, so the retain stream never
    teaches declining. Returns the new items and how many kept the pack's response.
    """
    if not items:
        return [], 0
    bar = progress_bar(progress, len(items), "retain targets")
    try:
        answers = generate(model, tokenizer, [it.question for it in items], system=system,
                           max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
                           on_batch=(bar.update if bar is not None else None))
    finally:
        if bar is not None:
            bar.close()
    verdicts = judge.judge_many([(it.question, a, ()) for it, a in zip(items, answers)])
    out, kept = [], 0
    for it, a, v in zip(items, answers, verdicts):
        if v.obliterated or not a:
            out.append(it)
            kept += 1
        else:
            out.append(dataclasses.replace(it, response=a))
    return out, kept
