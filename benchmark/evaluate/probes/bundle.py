"""Every probe on one unlearned model, on at most ``probe_limit`` forget items per probe.

:func:`run_probes` is what a run calls when its config asks for the probes; the limit keeps
them to minutes, not hours, on SmolLM2-135M on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

from snap_bench.evaluate.probes.fluency import fluency, fluency_by_set
from snap_bench.evaluate.probes.framings import FRAMINGS, FramedRecord, Framing, extraction_probe, summarise_extraction
from snap_bench.evaluate.probes.logprob import answer_logprob_by_id, logprob_change
from snap_bench.evaluate.probes.relearning import Trainer, _draw, _relearning_with, relearning_attack
from snap_bench.evaluate.probes.stats import _pct
from snap_bench.tasks import Item, stratified_sample

DEFAULT_PROBE_LIMIT = 40


def probe_items(forget_eval_items: Sequence[Item], probe_limit: int | None = DEFAULT_PROBE_LIMIT,
                seed: int = 0) -> list[Item]:
    """The items the log-probability and framing probes use: ``probe_limit`` held-out forget items, a seeded
    sample stratified by category (never the first N in file order)."""
    return stratified_sample(list(forget_eval_items), probe_limit, seed, "probe")[0]


def run_probes(model, tokenizer, forget_eval_items: Sequence[Item], judge, cfg, *, system: str | None = None,
               before_logprobs: Mapping[str, float] | None = None, relearn: bool = True, seed: int = 0,
               progress: bool = True, probe_limit: int | None = DEFAULT_PROBE_LIMIT, n_relearn: int = 10,
               relearn_steps: int = 5, relearn_lr: float | None = None,
               framings: Mapping[str, Framing] | Sequence[Framing] = FRAMINGS,
               entity_names: Mapping[str, Sequence[str]] | None = None,
               eval_responses: Mapping[str, Sequence[str]] | None = None,
               train: Trainer | None = None, return_records: bool = False) -> dict[str, Any]:
    """Every probe on the (unlearned) ``model``; JSON-ready.

    ``before_logprobs`` maps item id -> :func:`answer_logprob` of the model BEFORE unlearning
    (see :func:`answer_logprob_by_id` and :func:`probe_items`); ``before`` and ``delta`` are
    computed on the ids present in both. The relearning attack draws its ``n_relearn`` items from
    the held-out forget items AFTER the first ``probe_limit`` when there are enough, so that it is
    scored on the same items as the other probes; otherwise it splits the probe items. It
    fine-tunes with ``train``, the training entry point (see :class:`Trainer`), which ``relearn``
    requires. ``eval_responses`` (eval set -> the responses from
    :func:`snap_bench.evaluate.metrics.evaluate`) adds their fluency at no generation cost.
    """
    if relearn and train is None:
        raise ValueError("run_probes(relearn=True) needs train=, the training entry point "
                         "(snap_bench.train.trainer.train)")
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    items = probe_items(forget_eval_items, probe_limit, seed)
    bs = max(1, min(len(items), cfg.eval_batch_size)) if items else 1

    t = time.perf_counter()
    logprob = logprob_change(before_logprobs, answer_logprob_by_id(model, tokenizer, items, system=system, batch_size=bs))
    seconds["logprob"] = time.perf_counter() - t

    t = time.perf_counter()
    records = extraction_probe(model, tokenizer, items, judge, cfg, framings=framings, system=system,
                               entity_names=entity_names, progress=progress)
    summary = summarise_extraction(records)
    seconds["extraction"] = time.perf_counter() - t

    relearning = None
    if relearn:
        t = time.perf_counter()
        relearning = _relearning_probe(model, tokenizer, forget_eval_items, items, records, logprob["after"], judge,
                                       cfg, train=train, n_relearn=n_relearn, steps=relearn_steps, lr=relearn_lr,
                                       seed=seed, system=system, progress=progress)
        seconds["relearning"] = time.perf_counter() - t

    flu = _fluency_summary(records, summary, eval_responses)
    seconds["total"] = time.perf_counter() - t0
    out: dict[str, Any] = {
        "items": len(items),
        "answer_logprob": logprob,
        "extraction_UA": {n: s["UA"] for n, s in summary.items()},
        "extraction_leak": {n: s["leak"] for n, s in summary.items()},
        "relearning": relearning,
        "fluency": flu,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    if return_records:
        out["records"] = [dataclasses.asdict(r) for r in records]
    return out


def _relearning_probe(model, tokenizer, forget_eval_items: Sequence[Item], items: list[Item],
                      records: Sequence[FramedRecord], lp_after: float | None, judge, cfg, *, train: Trainer,
                      n_relearn: int, steps: int, lr: float | None, seed: int, system: str | None,
                      progress: bool) -> dict[str, Any]:
    """The relearning attack of :func:`run_probes`, scored on the probe ``items`` whenever it can be."""
    probed = {it.id for it in items}
    extra = [it for it in forget_eval_items if it.id not in probed]
    if n_relearn > 0 and len(extra) >= n_relearn:
        # Relearn on items outside the probe set and score on the probe set itself, so the
        # model's "before" numbers are the plain-framing UA and the logprob already measured.
        chosen, _ = _draw(extra, n_relearn, seed)
        plain = [r for r in records if r.framing == "plain"]
        before = (_pct([r.obliterated for r in plain]), lp_after) if len(plain) == len(items) else None
        return _relearning_with(model, tokenizer, chosen, items, judge, cfg, train=train, steps=steps, lr=lr,
                                seed=seed, system=system, progress=progress, before=before)
    return relearning_attack(model, tokenizer, items, judge, cfg, train=train, n_relearn=n_relearn, steps=steps,
                             lr=lr, seed=seed, system=system, progress=progress)


def _fluency_summary(records: Sequence[FramedRecord], summary: Mapping[str, Any],
                     eval_responses: Mapping[str, Sequence[str]] | None) -> dict[str, Any]:
    """Fluency of the framed forget responses, overall and per framing, and of the eval sets when given."""
    flu: dict[str, Any] = {
        "forget_framed": fluency([r.response for r in records]),
        "by_framing": {n: fluency([r.response for r in records if r.framing == n]) for n in summary},
    }
    if eval_responses:
        flu["eval_sets"] = fluency_by_set(eval_responses)
    return flu
