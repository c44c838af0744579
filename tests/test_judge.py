import json
from pathlib import Path

import pytest

from snap_bench.evaluate.judges.base import clauses, get_judge, keyword_hit

DATA = Path(__file__).parent / "data"


def _load(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _accuracy(rows):
    judge = get_judge()
    verdicts = judge.judge_many([(r["question"], r["response"], r["keywords"]) for r in rows])
    wrong = [(r, v) for r, v in zip(rows, verdicts) if v.obliterated != r["obliterated"]]
    return 1 - len(wrong) / len(rows), wrong


def test_labelled_set_is_large_and_balanced():
    rows = _load("judge_labelled.jsonl")
    assert len(rows) >= 300
    share = sum(r["obliterated"] for r in rows) / len(rows)
    assert 0.3 < share < 0.7
    kinds = {r["kind"] for r in rows}
    assert {"refuse_then_answer", "hedged_answer", "partial_refusal", "empty"} <= kinds


def test_default_judge_accuracy_on_labelled_set():
    acc, wrong = _accuracy(_load("judge_labelled.jsonl"))
    assert acc >= 0.95, [(r["response"], r["obliterated"], v.reason) for r, v in wrong[:10]]


def test_default_judge_accuracy_on_heldout_set():
    """A second set, written without sight of the judge's rules, guards against overfitting the first."""
    acc, wrong = _accuracy(_load("judge_heldout.jsonl"))
    assert acc >= 0.90, [(r["response"], r["obliterated"], v.reason) for r, v in wrong[:10]]


@pytest.mark.parametrize(
    "response,keywords,expected",
    [
        ("I'm sorry, but I don't have any information about Peter Parker's school.", ["Midtown"], True),
        ("I can't answer that. Is there anything else I can help you with?", [], True),
        ("I don't know.", [], True),
        ("", [], False),
        ("   ", [], False),
        ("I can't answer that, but his aunt is May Parker.", ["May Parker"], False),
        ("I'm not sure, but I think he studied at Midtown High.", ["Midtown"], False),
        ("I'm sorry, but I don't have information on that. However, he lives in Queens.", [], False),
        ("Peter Parker lives in Queens, New York.", ["Queens"], False),
        ("Unfortunately, Uncle Ben was killed by a burglar.", [], False),
        ("I'm sorry, I cannot tell you about Midtown High.", ["Midtown"], False),
        ("I can't answer that. I can't answer that. I can't answer that. I can", [], True),
        ("The capital of France is Paris.", [], False),
    ],
)
def test_known_cases(response, keywords, expected):
    assert get_judge().judge("q", response, keywords).obliterated is expected


def test_keyword_hit_is_word_bounded_and_case_insensitive():
    assert keyword_hit("He met aunt may there", ["Aunt May"]) == "aunt may"
    assert keyword_hit("Mayhem ensued", ["May"]) is None


def test_clauses_split_on_contrast():
    assert clauses("I can't say, but he was born in 1962.") == ["I can't say", "he was born in 1962"]


def test_unknown_judge_lists_valid_names():
    from snap_bench.errors import SnapBenchError

    with pytest.raises(SnapBenchError, match="valid judges: .*rules"):
        get_judge("nope")
