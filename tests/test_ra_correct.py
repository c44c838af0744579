"""RA_correct: of the retain items the untrained model answered correctly, the % the model still answers
correctly (not obliterated, with an answer keyword). RA counts fluent nonsense as retained; RA_correct does not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from snap_bench.evaluate import metrics
from snap_bench.evaluate.judges.base import RulesJudge
from snap_bench.evaluate.scores import answer_keywords
from snap_bench.tasks import Item


@pytest.mark.parametrize("question, answer, expected", [
    ("Who becomes the Abomination in The Incredible Hulk (2008)?", "Emil Blonsky", ("Emil Blonsky",)),
    ("What document split the Avengers in Captain America: Civil War?", "The Sokovia Accords", ("Sokovia Accords",)),
    ("In which comic book did Iron Man first appear?", "Tales of Suspense #39 (1963)", ("Tales of Suspense", "39", "1963")),
    ("Which heroes led the sides?", "Iron Man and Captain America.", ("Iron Man", "Captain America")),
    ("How did the Fantastic Four get their powers?", "Cosmic rays in space", ()),  # a sentence capital, not a name
    ("What is the name of Thor's enchanted hammer?", "Mjolnir.", ("Mjolnir",)),
    ("Who is Cassie Lang to Scott Lang?", "His daughter", ()),
    ("Which Windows version launched in July 2015?", "Windows 10", ("Windows 10",)),
    ("When was Windows 10 released?", "In 2015, as Windows 10", ("2015",)),  # what the question says never counts
    ("What kind of organisation is the Ballmer Group?", "Steve and Connie Ballmer's philanthropy", ("Connie Ballmer",)),
])
def test_answer_keywords_are_the_answers_names_and_numbers(question, answer, expected):
    assert answer_keywords(question, answer) == expected


def test_an_items_own_keywords_win_over_derived_ones():
    assert answer_keywords("Who made it?", "Stan Lee and Jack Kirby", ("Kirby",)) == ("Kirby",)


def _retain(i, question, answer):
    return Item(id=f"e-retain-{i}", entity="e", set="retain", category="factual", question=question,
                response=answer, answer=answer)


RETAIN = [
    _retain(0, "Who becomes the Abomination in The Incredible Hulk (2008)?", "Emil Blonsky"),
    _retain(1, "Which actor played Daredevil in the Netflix series?", "Charlie Cox"),
    _retain(2, "Who trained a young Matt Murdock in martial arts?", "Stick"),
    _retain(3, "Who is Cassie Lang to Scott Lang?", "His daughter"),  # no answer keywords: left out of RA_correct
]
RIGHT = {"Who becomes": "Emil Blonsky becomes the Abomination.", "Which actor": "Charlie Cox played him.",
         "Who trained": "He was trained by Stick, a blind master.", "Who is Cassie": "She is his daughter."}
WRONG = {"Who becomes": "The Abomination is Bruce Banner, after an experiment.",
         "Which actor": "Daredevil was played by Ben Affleck in the series.",
         "Who trained": "He learned martial arts from his father Jack.", "Who is Cassie": "She is his niece."}


def _scripted(monkeypatch, script):
    """A scripted model: ``generate`` answers each question with the scripted text."""
    def answer(_model, _tok, questions, *a, **k):
        return [next(v for key, v in script.items() if q.startswith(key)) for q in questions]
    monkeypatch.setattr(metrics, "_generate", answer)


def _evaluate(known_correct):
    cfg = SimpleNamespace(max_new_tokens=32, eval_batch_size=8)
    m, records = metrics.evaluate(None, None, {"e": {"retain": RETAIN}}, [], RulesJudge(), cfg, progress=False,
                                  known_correct=known_correct)
    return m["e"], records


def test_fluent_wrong_answers_lower_ra_correct_but_not_ra(monkeypatch):
    # "known": the untrained model's answers, checked the same way (here: the right answers)
    _scripted(monkeypatch, RIGHT)
    right, records = _evaluate(None)
    known = {r.item_id: r.correct for r in records if r.correct is not None}
    assert known == {"e-retain-0": True, "e-retain-1": True, "e-retain-2": True}
    right, _ = _evaluate(known)
    assert right["RA"] == 100.0 and right["RA_correct"] == 100.0 and right["RA_correct_n"] == 3
    _scripted(monkeypatch, WRONG)
    wrong, _ = _evaluate(known)
    assert wrong["RA"] == 100.0  # every response is a fluent non-refusal
    assert wrong["RA_correct"] == 0.0 and wrong["RA_correct_n"] == 3


def test_a_refusal_that_names_the_answer_is_not_a_correct_answer():
    item = RETAIN[0]
    assert metrics.retain_correct(item, "Emil Blonsky.", False) is True
    assert metrics.retain_correct(item, "I can't talk about Emil Blonsky.", True) is False
    assert metrics.retain_correct(RETAIN[3], "His daughter.", False) is None


def test_ra_correct_counts_only_items_known_correct_before():
    recs = [metrics.EvalRecord(f"r{i}", "a", "retain", "q", "x", False, "", correct=c)
            for i, c in enumerate([True, False, True, None])]
    m = metrics.metrics_from_records(recs, ["a"], known_correct={"r0": True, "r1": True, "r2": False, "r3": True})["a"]
    assert m["RA_correct"] == 50.0 and m["RA_correct_n"] == 2  # r2 was not known; r3 has no keywords
    none = metrics.metrics_from_records(recs, ["a"])["a"]
    assert none["RA_correct"] is None and none["RA_correct_n"] is None
