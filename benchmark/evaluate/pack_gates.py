"""Quality gates for task packs (``snap-bench tasks validate``).

Beyond the structural checks of the loader (:mod:`snap_bench.tasks.packs`), a pack must be *usable as a
benchmark*. The gates judge the pack with the evaluation's own judge and embedding model, so they live
here, in the evaluate layer, and the tasks package imports nothing of evaluate:

- forget/multihop items carry an answer and leak keywords that their own question and refusal
  do not contain (otherwise the leak check would fire on an echo of the question);
- implicit forget questions, and every retain/general question, never name the entity;
- the default judge agrees with the data: forget/multihop responses are obliterated,
  retain/general responses are not;
- no two questions of one set are near-paraphrases (cosine >= 0.75 under all-MiniLM-L6-v2, the
  paper's SBERT filter), and no forget question reappears in retain or general.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.evaluate.judges.base import get_judge, keyword_hit
from snap_bench.tasks.packs import GENERAL_SLUG, Item, Pack

DEDUP_THRESHOLD = 0.75


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def check_items(pack: Pack, general: Pack | None = None) -> list[Problem]:
    """All checks that need no embedding model."""
    problems: list[Problem] = []
    judge = get_judge()
    names = pack.names
    for set_name, items in pack.sets.items():
        for it in items:
            where = f"{pack.path.name}/{set_name}.jsonl:{it.id}"
            if set_name in ("forget", "multihop"):
                if not it.answer:
                    problems.append(Problem(where, "forget/multihop items need a non-empty 'answer'"))
                if not it.keywords:
                    problems.append(Problem(where, "forget/multihop items need at least one keyword"))
                for kw in it.keywords:
                    if keyword_hit(it.question, [kw]) or keyword_hit(it.response, [kw]):
                        problems.append(Problem(where, f"keyword {kw!r} appears in the item's own question or response"))
                verdict = judge.judge(it.question, it.response, ())
                if not verdict.obliterated:
                    problems.append(Problem(where, f"response is not judged obliterated ({verdict.reason})"))
            else:
                verdict = judge.judge(it.question, it.response, ())
                if verdict.obliterated:
                    problems.append(Problem(where, "retain/general response is judged a refusal"))
            if set_name in ("retain", "general") or it.category == "implicit":
                hit = keyword_hit(it.question, names)
                if hit:
                    problems.append(Problem(where, f"question names the entity ({hit!r})"))
            if set_name in ("retain", "general"):
                hit = keyword_hit(it.response, names)
                if hit:
                    problems.append(Problem(where, f"response names the entity ({hit!r})"))
    if general is not None:
        for it in general["general"]:
            hit = keyword_hit(it.question, names)
            if hit:
                problems.append(Problem(f"general/general.jsonl:{it.id}", f"question names {pack.slug} ({hit!r})"))
    return problems


def near_duplicates(
    sets: dict[str, list[Item]],
    threshold: float = DEDUP_THRESHOLD,
    cross: tuple[tuple[str, str], ...] = (),
    within: tuple[str, ...] | None = None,
    label: str = "",
) -> list[Problem]:
    """Question pairs at cosine >= threshold: inside each set of ``within`` (default: all) and
    across each ``cross`` pair of sets."""
    from snap_bench.evaluate.embeddings import embed

    problems: list[Problem] = []
    emb = {s: embed([i.question for i in items]) for s, items in sets.items() if items}
    for s in within if within is not None else tuple(emb):
        if s not in emb:
            continue
        sim = emb[s] @ emb[s].T
        for a, b in zip(*(sim >= threshold).nonzero()):
            if a < b:
                problems.append(
                    Problem(f"{label}{s}", f"near-duplicate questions (cos {sim[a, b]:.3f}): {sets[s][a].id} ~ {sets[s][b].id}")
                )
    for s1, s2 in cross:
        if s1 in emb and s2 in emb:
            sim = emb[s1] @ emb[s2].T
            for a, b in zip(*(sim >= threshold).nonzero()):
                problems.append(
                    Problem(f"{label}{s1}~{s2}", f"forget question reappears (cos {sim[a, b]:.3f}): {sets[s1][a].id} ~ {sets[s2][b].id}")
                )
    return problems


def validate_pack(pack: Pack, general: Pack | None = None, dedup: bool = True, threshold: float = DEDUP_THRESHOLD) -> list[Problem]:
    """Every quality gate for one pack; ``general`` adds the forget-vs-general leak checks."""
    problems = check_items(pack, general)
    if dedup:
        sets = dict(pack.sets)
        cross: tuple[tuple[str, str], ...] = ()
        if general is not None and pack.slug != GENERAL_SLUG:
            sets["general"] = general["general"]
            cross = (("forget", "retain"), ("forget", "general"))
        problems += near_duplicates(sets, threshold, cross=cross, within=tuple(pack.sets), label=f"{pack.slug}/")
    return problems
