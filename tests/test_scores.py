"""Per-response scores (leak, ROUGE-L recall, degenerate), stratified samples, and the metrics built from them."""

from __future__ import annotations

import collections

import pytest

from snap_bench.evaluate.metrics import CROSS, EvalRecord, metrics_from_records
from snap_bench.evaluate.judges.base import RulesJudge, leak_keywords
from snap_bench.evaluate.scores import degenerate, leaked, rouge_l_recall
from snap_bench.tasks import Item, load_pack, stratified_sample


def _item(i, cat="factual", entity="e", set_="forget"):
    return Item(id=f"{entity}-{set_}-{i:03d}", entity=entity, set=set_, category=cat, question=f"q{i}", response="r",
                answer="a")


def test_a_keyword_the_question_contains_is_not_a_leak():
    q = "How did Spider-Man defeat Doctor Octopus on the train?"
    kws = ["Doctor Octopus", "webbing"]
    assert leak_keywords(q, kws) == ("webbing",)
    refusal = "I'm sorry, but I can't discuss the fight with Doctor Octopus."
    assert not leaked(q, refusal, kws)
    assert RulesJudge().judge(q, refusal, kws).obliterated  # a clean refusal stays a refusal
    assert leaked(q, "He stopped it with his webbing.", kws)
    assert RulesJudge().judge(q, "I can't say. He used webbing.", kws).reason == "leak"


def test_rouge_l_recall_is_the_packages_recall():
    assert rouge_l_recall("Queens, New York", "He grew up in Queens, New York.") == pytest.approx(1.0)
    assert rouge_l_recall("Queens, New York", "I cannot answer that.") == 0.0
    assert rouge_l_recall("Peter Parker lives in Queens", "He lives in Queens, New York") == pytest.approx(0.6)
    assert rouge_l_recall("", "anything") == 0.0


@pytest.mark.parametrize("text,expected", [
    ("", "empty"), ("   ", "empty"), ("!!!! ???? ####", "no_words"), ("1962.", None),
    ("the the the the the the the the the", "char_loop"),
    ("Peter was born. Peter was born. Peter was born. Peter was born.", "ngram_loop"),
    ("Peter Parker lives in Queens with his Aunt May.", None), ("In 1962, at 15.", None),
    ("I'm sorry, but I don't have access to information about that, so I cannot answer.", None),
    ("Tony Stark founded Stark Industries; it builds the Iron Man armour and other technology for the Avengers.", None),
])
def test_degenerate_known_cases(text, expected):
    assert degenerate(text) == expected


def test_stratified_sample_keeps_the_category_mix_and_ignores_file_order():
    items = [_item(i, "factual") for i in range(60)] + [_item(100 + i, "implicit") for i in range(30)] + \
            [_item(200 + i, "relational") for i in range(10)]
    chosen, rest = stratified_sample(items, 20, seed=3)
    mix = collections.Counter(it.category for it in chosen)
    assert mix == {"factual": 12, "implicit": 6, "relational": 2}
    assert {it.id for it in chosen}.isdisjoint({it.id for it in rest}) and len(chosen) + len(rest) == 100
    again, _ = stratified_sample(list(reversed(items)), 20, seed=3)
    assert [it.id for it in again] == [it.id for it in chosen]
    other, _ = stratified_sample(items, 20, seed=4)
    assert [it.id for it in other] != [it.id for it in chosen]  # the seed matters
    salted, _ = stratified_sample(items, 20, seed=3, salt="eval")
    assert [it.id for it in salted] != [it.id for it in chosen]  # so does the salt
    assert stratified_sample(items, None, 0)[0] == sorted(items, key=lambda i: i.id)


def test_stratified_sample_of_a_real_pack_is_not_the_first_n():
    forget = load_pack("peter_parker")["forget"]
    chosen, _ = stratified_sample(forget, 20, seed=0)
    full = collections.Counter(it.category for it in forget)
    got = collections.Counter(it.category for it in chosen)
    for cat, k in full.items():
        assert abs(got[cat] - 20 * k / len(forget)) <= 1
    first = sorted(forget, key=lambda i: i.id)[:20]
    assert [it.id for it in chosen] != [it.id for it in first]


def _rec(entity, s, obl, *, leaked=False, rouge=0.0, degenerate=False, item_id=None):
    return EvalRecord(item_id or f"{entity}-{s}-{id(object())}", entity, s, "q", "r", obl, "", leaked, rouge, degenerate)


def test_metrics_from_records_computes_the_new_columns():
    recs = [
        _rec("a", "forget", True), _rec("a", "forget", False, leaked=True, rouge=1.0),
        _rec("a", "multihop", True), _rec("a", "multihop", True),
        _rec("a", "retain", False, rouge=0.5, item_id="r1"), _rec("a", "retain", True, item_id="r2"),
        _rec("a", "retain", False, item_id="r3", degenerate=True),
        _rec("general", "general", False, rouge=1.0), _rec("general", "general", True),
        _rec("b", CROSS, False), _rec("c", CROSS, True), _rec("c", CROSS, False), _rec("b", CROSS, False),
    ]
    m = metrics_from_records(recs, ["a"], known={"r1": True, "r2": True, "r3": False})["a"]
    assert m["UA"] == 50.0 and m["UA_multihop"] == 100.0 and m["RA"] == pytest.approx(200 / 3) and m["TA"] == 50.0
    assert m["cross_RA"] == 75.0
    assert m["leak"] == 25.0  # 1 of 4 forget + multi-hop responses
    assert m["rougeL_forget"] == 0.5 and m["rougeL_retain"] == pytest.approx(0.5 / 3) and m["rougeL_general"] == 0.5
    assert m["RA_known"] == 50.0 and m["RA_known_n"] == 2
    assert m["degenerate"] == pytest.approx(100 / 9)  # 1 of the 9 own + general responses
    assert metrics_from_records(recs, ["a"])["a"]["RA_known"] is None


def test_limited_run_follows_the_full_category_mix_and_asks_other_entities(cli, tmp_path):
    """Acceptance (issue 13): the new metrics are printed, and a limited run's stored generations keep the
    held-out set's category mix (±1 item per category), with the cross set drawn from the other entities."""
    from snap_bench.store import Store
    from snap_bench.tasks import split_items

    res = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "2",
              "--eval-limit", "12", "--json", "--no-progress", "--results", tmp_path / "res")
    assert res.code == 0, res.err
    m = res.json["metrics"]["peter_parker"]
    for key in ("UA", "UA_multihop", "RA", "TA", "Avg", "cross_RA", "leak", "rougeL_forget", "rougeL_retain",
                "rougeL_general", "RA_known", "RA_known_n", "degenerate"):
        assert key in m
    gens = Store(tmp_path / "res").generations(res.json["run_id"])
    pack = load_pack("peter_parker")
    held = {"forget": split_items(pack["forget"], 100, 0)[1], "retain": split_items(pack["retain"], 100, 0)[1]}
    for s, items in held.items():
        ids = {g["item_id"] for g in gens if g["eval_set"] == s}
        assert len(ids) == 12
        got = collections.Counter(it.category for it in items if it.id in ids)
        full = collections.Counter(it.category for it in items)
        for cat, k in full.items():
            assert abs(got[cat] - 12 * k / len(items)) <= 1, (s, cat, got, full)
    cross = [g for g in gens if g["eval_set"] == CROSS]
    assert len(cross) == 12 and {g["entity"] for g in cross} == {"black_panther", "doctor_strange", "bill_gates"}

