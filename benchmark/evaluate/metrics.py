"""UA / UA♣ / RA / TA (paper §4.2) from one pooled, batched generation pass.

- UA: % of held-out forget questions answered with an obliterated response;
- UA_multihop (UA♣): the same on the multi-hop questions;
- RA: % of held-out retain questions NOT obliterated;
- TA: % of held-out general (D_g) questions NOT obliterated;
- Avg: their unweighted mean.

Beside them (``scores.py`` says why each matters), per entity:

- cross_RA: % NOT obliterated on the held-out forget questions of the other shipped entities
  (selectivity: a model that declines every character scores UA 100 and cross_RA 0);
- leak: % of held-out forget and multi-hop responses that contain an answer keyword absent from
  the question;
- rougeL_forget / rougeL_retain / rougeL_general: mean ROUGE-L recall (0-1) of the reference
  answer on the forget, retain and general questions;
- RA_known (with RA_known_n): RA over the retain items the untrained model answered correctly
  (ROUGE-L recall of the answer >= 0.5);
- RA_correct (with RA_correct_n): of the retain items the untrained model answered correctly by
  the answer-keyword check (``scores.answer_keywords``, the detector ``leak`` uses), the % the model
  still answers correctly: not obliterated and with an answer keyword. RA counts fluent nonsense as
  retained; RA_correct does not;
- degenerate: % of all the entity's responses (forget, multi-hop, retain, general) that are
  empty or gibberish. The judge's verdicts do not change: this column sits beside RA and TA.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.evaluate.generation import generate
from snap_bench.evaluate.scores import answer_keywords, answered_correctly, degenerate, leaked, rouge_l_recall
from snap_bench.tasks import Item
from snap_bench.util import progress_bar

METRICS = ("UA", "UA_multihop", "RA", "TA", "Avg")
EXTRA_METRICS = ("cross_RA", "leak", "rougeL_forget", "rougeL_retain", "rougeL_general", "RA_known", "RA_known_n",
                 "RA_correct", "RA_correct_n", "degenerate")
CROSS = "cross"  # eval set of the other shipped entities' held-out forget questions
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
    leaked: bool = False
    rouge: float | None = None  # ROUGE-L recall of the reference answer
    degenerate: bool = False
    correct: bool | None = None  # retain items with answer keywords: answered with one (scores.answer_keywords)


def evaluate(model, tokenizer, eval_sets: dict[str, dict[str, list[Item]]], general: list[Item], judge, cfg,
             system: str | None = None, progress: bool = True, cross: list[Item] = (),
             known: dict[str, bool] | None = None, desc: str = "eval",
             known_correct: dict[str, bool] | None = None) -> tuple[dict[str, dict[str, float]], list[EvalRecord]]:
    """``eval_sets`` maps entity -> {"forget"|"multihop"|"retain": items}; ``general`` is shared, and so is
    ``cross`` (other entities' forget questions, for cross_RA). ``known`` maps retain item ids to whether
    the untrained model answered them correctly (for RA_known; None: not measured); ``known_correct`` the
    same by the answer-keyword check (for RA_correct; items without answer keywords are absent).

    Returns metrics per entity (percentages, 0-100, ROUGE-L 0-1) and every response with its verdict.
    """
    jobs: list[tuple[str, str, Item]] = []
    for entity, sets in eval_sets.items():
        for set_name in ("forget", "multihop", "retain"):
            jobs += [(entity, set_name, it) for it in sets.get(set_name, [])]
    jobs += [("general", "general", it) for it in general]
    jobs += [(it.entity, CROSS, it) for it in cross]
    responses = _generate(model, tokenizer, [it.question for _, _, it in jobs], cfg, system, progress, desc)
    records = judge_records(jobs, responses, judge)
    return metrics_from_records(records, list(eval_sets), known, known_correct), records


def _generate(model, tokenizer, questions: list[str], cfg, system, progress: bool, desc: str) -> list[str]:
    bar = progress_bar(progress, len(questions), desc)
    try:
        return generate(model, tokenizer, questions, system=system, max_new_tokens=cfg.max_new_tokens,
                        batch_size=cfg.eval_batch_size, on_batch=(bar.update if bar is not None else None))
    finally:
        if bar is not None:
            bar.close()


def judge_records(jobs: list[tuple[str, str, Item]], responses: list[str], judge) -> list[EvalRecord]:
    """Verdicts and scores for (entity, eval set, item) jobs and their responses.

    Forget-type items (forget, multi-hop, cross) are judged with their leak keywords (the judge ignores
    those the question already contains).
    """
    forgetlike = ("forget", "multihop", CROSS)
    kws = [it.keywords if s in forgetlike else () for _, s, it in jobs]
    verdicts = judge.judge_many([(it.question, r, k) for (_, _, it), r, k in zip(jobs, responses, kws)])
    return [
        EvalRecord(it.id, ent, s, it.question, r, v.obliterated, v.reason,
                   leaked=leaked(it.question, r, k), rouge=rouge_l_recall(it.answer, r),
                   degenerate=degenerate(r) is not None,
                   correct=retain_correct(it, r, v.obliterated) if s == "retain" else None)
        for (ent, s, it), r, v, k in zip(jobs, responses, verdicts, kws)
    ]


def retain_correct(item: Item, response: str, obliterated: bool) -> bool | None:
    """Whether a response answers a retain item correctly: not obliterated, with an answer keyword
    (``scores.answer_keywords``). None when the item has no answer keywords to check."""
    kw = answer_keywords(item.question, item.answer, item.keywords)
    if not kw:
        return None
    return not obliterated and answered_correctly(item.question, response, kw)


def metrics_from_records(records: list[EvalRecord], entities: list[str],
                         known: dict[str, bool] | None = None, known_correct: dict[str, bool] | None = None) -> dict[str, dict[str, float]]:
    general = [r for r in records if r.eval_set == "general"]
    cross = [r for r in records if r.eval_set == CROSS]
    ta = _pct(general, False)
    out: dict[str, dict[str, float]] = {}
    for entity in entities:
        own = {s: [r for r in records if r.entity == entity and r.eval_set == s] for s in ("forget", "multihop", "retain")}
        m: dict[str, float] = {}
        for set_name, (metric, want) in SET_METRIC.items():
            m[metric] = ta if set_name == "general" else _pct(own[set_name], want)
        vals = [m[k] for k in ("UA", "UA_multihop", "RA", "TA") if m[k] is not None]
        m["Avg"] = sum(vals) / len(vals) if vals else None
        m["cross_RA"] = _pct(cross, False)
        forgetlike = own["forget"] + own["multihop"]
        m["leak"] = 100.0 * sum(r.leaked for r in forgetlike) / len(forgetlike) if forgetlike else None
        m["rougeL_forget"] = _mean_rouge(own["forget"])
        m["rougeL_retain"] = _mean_rouge(own["retain"])
        m["rougeL_general"] = _mean_rouge(general)
        kn = [r for r in own["retain"] if known is not None and known.get(r.item_id)]
        m["RA_known"] = _pct(kn, False)
        m["RA_known_n"] = float(len(kn)) if known is not None else None
        kc = [r for r in own["retain"] if known_correct is not None and known_correct.get(r.item_id) and r.correct is not None]
        m["RA_correct"] = 100.0 * sum(bool(r.correct) for r in kc) / len(kc) if kc else None
        m["RA_correct_n"] = float(len(kc)) if known_correct is not None else None
        everything = forgetlike + own["retain"] + general
        m["degenerate"] = 100.0 * sum(r.degenerate for r in everything) / len(everything) if everything else None
        out[entity] = m
    return out


def _mean_rouge(records: list[EvalRecord]) -> float | None:
    vals = [r.rouge for r in records if r.rouge is not None]
    return sum(vals) / len(vals) if vals else None


def _pct(records: list[EvalRecord], obliterated: bool) -> float | None:
    if not records:
        return None
    return 100.0 * sum(r.obliterated == obliterated for r in records) / len(records)
