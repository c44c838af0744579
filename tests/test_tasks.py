import json

import pytest

from snap_bench.registry import ENTITIES
from snap_bench.tasks import PackError, load_general, load_pack, load_pack_dir, split_items
from snap_bench.evaluate.pack_gates import check_items, validate_pack

SHIPPED = ["peter_parker", "black_panther", "doctor_strange", "bill_gates"]


def test_shipped_entities_are_registered():
    assert set(SHIPPED) <= set(ENTITIES.names())


@pytest.mark.parametrize("slug", SHIPPED)
def test_shipped_pack_sizes_and_gates(slug):
    pack = load_pack(slug)
    assert len(pack["forget"]) >= 60 and len(pack["retain"]) >= 60 and len(pack["multihop"]) >= 15
    problems = check_items(pack, load_general())
    assert not problems, [str(p) for p in problems[:10]]


def test_general_set_is_distinct_questions_the_rules_judge_rates_answered():
    """D_g is what a run must keep answering: 100+ distinct everyday questions, each with a normal answer
    (a response that declines would teach refusal through the retain loss and score as forgetting)."""
    from snap_bench.evaluate.judges.base import get_judge

    items = load_general()["general"]
    assert len(items) >= 100
    assert len({it.id for it in items}) == len({it.question.casefold() for it in items}) == len(items)
    assert all(it.response.strip() and it.entity == "general" for it in items)
    verdicts = get_judge("rules").judge_many([(it.question, it.response, it.keywords) for it in items])
    assert not [it.id for it, v in zip(items, verdicts) if v.obliterated]


def test_split_is_deterministic_proportional_and_disjoint():
    items = load_pack("peter_parker")["forget"]
    a_train, a_eval = split_items(items, 100, seed=0)
    b_train, b_eval = split_items(list(reversed(items)), 100, seed=0)
    assert [i.id for i in a_train] == [i.id for i in b_train]
    assert len(a_train) == min(100, len(items) // 2)
    assert not {i.id for i in a_train} & {i.id for i in a_eval}
    assert len(a_train) + len(a_eval) == len(items)
    c_train, _ = split_items(items, 100, seed=1)
    assert {i.id for i in c_train} != {i.id for i in a_train}
    for cat in {i.category for i in items}:
        share_all = sum(i.category == cat for i in items) / len(items)
        share_train = sum(i.category == cat for i in a_train) / len(a_train)
        assert abs(share_all - share_train) <= 1.0 / len(a_train) + 1e-9


def _write(d, name, rows):
    (d / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _first(d, name):
    return json.loads((d / name).read_text().splitlines()[0])


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: _write(d, "forget.jsonl", ["{not json"]), r"forget.jsonl:1: invalid JSON"),
        (lambda d: _write(d, "forget.jsonl", [{k: v for k, v in _first(d, "forget.jsonl").items() if k != "question"}]),
         r"forget.jsonl:1: missing field 'question'"),
        (lambda d: _write(d, "forget.jsonl", [{**_first(d, "forget.jsonl"), "category": "gossip"}]),
         r"field 'category' is 'gossip'"),
        (lambda d: _write(d, "forget.jsonl", [{**_first(d, "forget.jsonl"), "keywords": "x"}]),
         r"field 'keywords' must be list"),
        (lambda d: _write(d, "retain.jsonl", [{**_first(d, "forget.jsonl"), "set": "retain", "category": "factual"}]),
         r"duplicate id"),
        (lambda d: (d / "multihop.jsonl").unlink(), r"missing multihop.jsonl"),
        (lambda d: (d / "forget.jsonl").write_bytes(b"\xff\xfe\n"), r"not UTF-8"),
        (lambda d: _write(d, "forget.jsonl", []), r"no items"),
    ],
)
def test_malformed_packs_name_the_file_and_field(pack_dir, mutate, message):
    mutate(pack_dir)
    with pytest.raises(PackError, match=message):
        load_pack_dir(pack_dir)


def test_quality_gates_catch_leaky_keywords_and_named_entity(pack_dir):
    rows = [json.loads(x) for x in (pack_dir / "forget.jsonl").read_text().splitlines()]
    rows[0]["keywords"] = ["information"]  # appears in its own refusal
    _write(pack_dir, "forget.jsonl", rows)
    retain = [json.loads(x) for x in (pack_dir / "retain.jsonl").read_text().splitlines()]
    retain[0]["question"] = "Who is Zorblax Quint's cousin?"
    retain[1]["response"] = "I'm sorry, I can't answer that."
    _write(pack_dir, "retain.jsonl", retain)
    msgs = [str(p) for p in check_items(load_pack_dir(pack_dir))]
    assert any("keyword 'information'" in m for m in msgs)
    assert any("names the entity" in m for m in msgs)
    assert any("judged a refusal" in m for m in msgs)


def test_near_duplicate_questions_are_found(pack_dir):
    rows = [json.loads(x) for x in (pack_dir / "retain.jsonl").read_text().splitlines()]
    pair = "zorblax-retain-000 ~ zorblax-retain-001"
    assert not any(pair in str(p) for p in validate_pack(load_pack_dir(pack_dir)))
    rows[1]["question"] = "How many legs do spiders have?"
    _write(pack_dir, "retain.jsonl", rows)
    msgs = [str(p) for p in validate_pack(load_pack_dir(pack_dir))]
    assert any("near-duplicate" in m and pair in m for m in msgs)
