"""What a run measures besides the refusal metrics, and the data it prepares before training:
which retain items the untrained model knew, its answer log-likelihoods and membership-inference scores
(so probes and MIA report a change), the knowledge probes, membership inference and NLP utility of the
final model, and ``retain_targets=self``."""

from __future__ import annotations

import sys
import time
from typing import Any

from snap_bench.run.spec import Plan
from snap_bench.run.splits import Splits

def known_retain(p: Plan, model, tok, judge, sp: Splits, timings) -> tuple[dict[str, bool], dict[str, bool]]:
    """Which held-out retain items the untrained model answers correctly, from its greedy answers (cached
    per model weights and prompt settings), by two checks: ROUGE-L recall of the answer >= KNOWN_ROUGE
    (RA_known), and not obliterated with an answer keyword (RA_correct; ``metrics.retain_correct``;
    items without answer keywords are left out). Both are decided on the items of the evaluated sample,
    so a limited sample (``eval_limit``) defines "known" within that sample."""
    from snap_bench.run.untrained import untrained_responses
    from snap_bench.evaluate.scores import KNOWN_ROUGE, rouge_l_recall

    t = time.perf_counter()
    items = [it for pk in p.packs for it in sp.per_entity[pk.slug]["eval"]["retain"]]
    answers = untrained_responses(model, tok, items, p.cfg, system=p.cfg.system_prompt, progress=p.spec.progress)
    timings["known"] = time.perf_counter() - t
    by_rouge = {it.id: rouge_l_recall(it.answer, answers[it.id]) >= KNOWN_ROUGE for it in items}
    return by_rouge, correct_by_keyword(judge, items, answers)


def correct_by_keyword(judge, items, answers: dict[str, str]) -> dict[str, bool]:
    """item id -> ``answers[id]`` answers the item correctly (``metrics.retain_correct``, with the run's judge
    deciding obliterated), for the items that have answer keywords."""
    from snap_bench.evaluate.metrics import retain_correct

    verdicts = judge.judge_many([(it.question, answers[it.id], ()) for it in items])
    out: dict[str, bool] = {}
    for it, v in zip(items, verdicts):
        ok = retain_correct(it, answers[it.id], v.obliterated)
        if ok is not None:
            out[it.id] = ok
    return out


def before_logprobs(p: Plan, model, tok, per_entity, timings) -> dict[str, dict[str, float]]:
    """The untrained model's answer log-likelihoods on the probe items, so probes can report the change."""
    from snap_bench.evaluate.probes import answer_logprob_by_id, probe_items

    from snap_bench.run.untrained import cached_measurement

    t = time.perf_counter()
    items = {pk.slug: {s: probe_items(per_entity[pk.slug]["eval"][s], p.cfg.probe_limit, p.spec.seed)
                       for s in ("forget", "retain")} for pk in p.packs}
    out = cached_measurement(
        "probes_before", model, tok, {"items": _ids(items), "system": p.cfg.system_prompt,
                                      "batch_size": p.cfg.eval_batch_size},
        lambda: {slug: {s: answer_logprob_by_id(model, tok, its, system=p.cfg.system_prompt,
                                                batch_size=p.cfg.eval_batch_size) for s, its in sets.items()}
                 for slug, sets in items.items()})
    timings["probes_before"] = time.perf_counter() - t
    return out


def _ids(tree):
    """The item ids of a nest of dicts and lists of items, in the same shape: what a cached measurement is of."""
    if isinstance(tree, dict):
        return {k: _ids(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_ids(v) for v in tree]
    return tree.id


def _mia_sets(p: Plan, per_entity, slug: str):
    """The entity's members (forget items trained on) and non-members (held-out forget items), balanced and capped."""
    from snap_bench.evaluate.mia import mia_items

    split = per_entity[slug]
    return mia_items(split["train"]["forget"], split["eval"]["forget"], p.cfg.mia_limit, p.spec.seed)


def mia_scores(p: Plan, model, tok, per_entity, system, timings, key: str) -> dict[str, dict[str, dict[str, float]]]:
    """Membership-inference scores (``evaluate/mia.py``) of each entity's members and non-members: entity ->
    item id -> attack -> score. Timed as ``timings[key]``."""
    from snap_bench.evaluate.mia import mia_scores as scores

    from snap_bench.run.untrained import cached_measurement

    t = time.perf_counter()
    items = {pk.slug: [it for side in _mia_sets(p, per_entity, pk.slug) for it in side] for pk in p.packs}
    compute = lambda: {slug: scores(model, tok, its, system=system, batch_size=p.cfg.eval_batch_size)  # noqa: E731
                       for slug, its in items.items()}
    before = key.endswith("_before")  # the untrained reference: the same for every run of the entity and seed
    out = cached_measurement(key, model, tok, {"items": _ids(items), "system": system,
                                               "batch_size": p.cfg.eval_batch_size}, compute) if before else compute()
    timings[key] = time.perf_counter() - t
    return out


def _mia(p: Plan, model, tok, per_entity, system, before, timings) -> dict[str, Any]:
    """Per entity, each attack's AUC before and after unlearning and its change, with the sample sizes."""
    from snap_bench.evaluate.mia import mia_result

    after = mia_scores(p, model, tok, per_entity, system, timings, "mia")
    return {pk.slug: mia_result((before or {}).get(pk.slug), after[pk.slug], *_mia_sets(p, per_entity, pk.slug))
            for pk in p.packs}


def _retain_logprob(p: Plan, model, tok, items, before: dict[str, float], system) -> dict[str, Any]:
    """The same likelihood probe on retain items. RA counts any non-refusal as retained, so a model
    that answers retain questions with fluent nonsense scores RA 100; this shows it."""
    from snap_bench.evaluate.probes import answer_logprob_by_id, logprob_change, probe_items

    return logprob_change(before, answer_logprob_by_id(model, tok, probe_items(items, p.cfg.probe_limit, p.spec.seed), system=system,
                                                       batch_size=p.cfg.eval_batch_size))


def _quant_sets(p: Plan, per_entity) -> dict[str, dict[str, list]]:
    from snap_bench.evaluate.quant_probe import probe_sets

    return {pk.slug: probe_sets(per_entity[pk.slug]["eval"], p.cfg.probe_limit, p.spec.seed) for pk in p.packs}


def quant_measurements(p: Plan, model, tok, judge, per_entity, system, known_correct, timings, key: str):
    """The quantization probe's measurements of ``model`` at full precision and at each ``quant_probe`` scheme
    (``evaluate/quant_probe.py``): entity -> scheme -> metric. Timed as ``timings[key]``."""
    from snap_bench.models.quant_schemes import parse_schemes
    from snap_bench.evaluate.quant_probe import measure_schemes

    from snap_bench.run.untrained import cached_measurement

    t = time.perf_counter()
    sets, schemes, before = _quant_sets(p, per_entity), parse_schemes(p.cfg.quant_probe), key.endswith("_before")
    compute = lambda: measure_schemes(model, tok, judge, p.cfg, sets, schemes, system=system,  # noqa: E731
                                      known_correct=known_correct, progress=p.spec.progress,
                                      label="untrained" if before else "final")
    settings = {"items": _ids(sets), "schemes": schemes, "system": system, "judge": p.spec.judge,
                "known_correct": known_correct, "max_new_tokens": p.cfg.max_new_tokens,
                "batch_size": p.cfg.eval_batch_size}
    out = cached_measurement(key, model, tok, settings, compute) if before else compute()
    timings[key] = time.perf_counter() - t
    return out


def final_analyses(p: Plan, model, tok, judge, per_entity, records, system, before_logprobs, timings,
                   mia_before=None, quant_before=None, known_correct=None) -> dict[str, Any]:
    """Knowledge probes, membership inference, the quantization probe and NLP utility of the final model, when the
    config asks for them. ``mia_before``, ``quant_before``: the untrained model's :func:`mia_scores` and
    :func:`quant_measurements`; ``known_correct``: the retain items it answered correctly (RA_correct)."""
    cfg, out = p.cfg, {}
    if cfg.mia:
        out["mia"] = _mia(p, model, tok, per_entity, system, mia_before, timings)
    if cfg.quant_probe:
        from snap_bench.models.quant_schemes import parse_schemes
        from snap_bench.evaluate.quant_probe import quant_result

        after = quant_measurements(p, model, tok, judge, per_entity, system, known_correct, timings, "quant")
        out["quant"] = quant_result(after, quant_before, parse_schemes(cfg.quant_probe), _quant_sets(p, per_entity))
    if cfg.probes:
        from snap_bench.evaluate.probes import run_probes
        from snap_bench.train.trainer import train

        t = time.perf_counter()
        out["probes"] = {}
        for pk in p.packs:
            responses: dict[str, list[str]] = {}
            for r in records:
                if r.entity in (pk.slug, "general"):
                    responses.setdefault(r.eval_set, []).append(r.response)
            out["probes"][pk.slug] = run_probes(
                model, tok, per_entity[pk.slug]["eval"]["forget"], judge, cfg, system=system,
                before_logprobs=before_logprobs[pk.slug]["forget"], relearn=cfg.relearn_n > 0 and cfg.relearn_steps > 0,
                seed=p.spec.seed, progress=p.spec.progress, probe_limit=cfg.probe_limit, n_relearn=cfg.relearn_n,
                relearn_steps=cfg.relearn_steps, entity_names={pk.slug: pk.names}, eval_responses=responses,
                train=train,  # the relearning attack trains through the run's own trainer
            )
            out["probes"][pk.slug]["retain_answer_logprob"] = _retain_logprob(
                p, model, tok, per_entity[pk.slug]["eval"]["retain"], before_logprobs[pk.slug]["retain"], system)
        timings["probes"] = time.perf_counter() - t
    if cfg.eval_nlp:
        from snap_bench.evaluate.nlp import evaluate_nlp, parse_tasks

        t = time.perf_counter()
        out["nlp"] = evaluate_nlp(model, tok, parse_tasks(cfg.nlp_tasks), limit=cfg.nlp_limit, seed=p.spec.seed,
                                  progress=p.spec.progress, model_name=p.spec.model)
        timings["nlp"] = time.perf_counter() - t
    return out


def self_retain_targets(p: Plan, model, tok, judge, per_entity, g_train, timings):
    """Swap the retain (and general) training responses for the untrained model's own answers."""
    from snap_bench.run.retain_targets import self_targets

    t = time.perf_counter()
    hard = p.cfg.retain_data in ("hard", "hard+general")
    general = p.cfg.retain_data in ("general", "hard+general")
    items = [it for pk in p.packs for it in per_entity[pk.slug]["train"]["retain"]] if hard else []
    items += g_train if general else []
    new, kept = self_targets(model, tok, items, judge, p.cfg, system=p.cfg.system_prompt, progress=p.spec.progress)
    by_id = {it.id: it for it in new}
    out = {}
    for slug, split in per_entity.items():
        train = dict(split["train"], retain=[by_id.get(it.id, it) for it in split["train"]["retain"]])
        out[slug] = dict(split, train=train)
    if p.spec.progress and kept:
        print(f"snap-bench: {kept}/{len(items)} retain questions kept the pack's answer (the model declined them)",
              file=sys.stderr)
    timings["retain_targets"] = time.perf_counter() - t
    return out, [by_id.get(it.id, it) for it in g_train]
