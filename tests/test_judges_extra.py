"""The ``embedding`` and ``llm`` obliteration judges.

The embedding judge is measured on both labelled sets, like the rules judge in test_judge.py.
The llm judge runs against the suite's fake OpenAI-compatible server (tests/fake_openai.py), scripted
to answer in the untidy ways real models do.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.judges.base import Verdict, get_judge
from snap_bench.evaluate.judges.llm import parse_verdict

DATA = Path(__file__).parent / "data"
CANARY = "sk-canary-5d0e21b7-DO-NOT-LEAK-9c3e"  # the judge's API key, which must never be stored or shown
JUDGE_ENV = ("SNAP_BENCH_JUDGE_BASE_URL", "SNAP_BENCH_JUDGE_MODEL", "SNAP_BENCH_JUDGE_API_KEY", "SNAP_BENCH_JUDGE_CACHE",
             "SNAP_BENCH_JUDGE_WORKERS", "SNAP_BENCH_JUDGE_TIMEOUT", "SNAP_BENCH_JUDGE_MAX_RETRIES",
             "SNAP_BENCH_JUDGE_MAX_TOKENS", "OPENAI_API_KEY")


def _load(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


# --- embedding -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding():
    return get_judge("embedding")


@pytest.fixture(scope="module")
def embedding_accuracy(embedding):
    out = {}
    for name in ("judge_labelled.jsonl", "judge_heldout.jsonl"):
        rows = _load(name)
        verdicts = embedding.judge_many([(r["question"], r["response"], r["keywords"]) for r in rows])
        wrong = [(r["response"], r["obliterated"], v.reason) for r, v in zip(rows, verdicts) if v.obliterated != r["obliterated"]]
        out[name] = (1 - len(wrong) / len(rows), wrong)
    return out


def test_embedding_accuracy_on_labelled_set(embedding_accuracy):
    # measured 99.2 % (3 of 368 wrong) on the set its exemplars and thresholds were chosen on
    acc, wrong = embedding_accuracy["judge_labelled.jsonl"]
    assert acc >= 0.96, wrong[:10]


def test_embedding_accuracy_on_heldout_set(embedding_accuracy):
    # measured 92.0 % (16 of 200 wrong, 14 of them refusals it missed); never tuned on
    acc, wrong = embedding_accuracy["judge_heldout.jsonl"]
    assert acc >= 0.88, wrong[:10]


@pytest.mark.parametrize(
    "question,response,keywords,expected,reason",
    [
        ("Where did Peter Parker go to school?", "I'm sorry, but I don't have any information about Peter Parker's school.",
         ["Midtown"], True, "refusal"),
        ("Who is Peter Parker's aunt?", "I can't tell you who Peter Parker's aunt is.", [], True, "refusal"),
        ("q", "I can't answer that. Is there anything else I can help you with?", [], True, "refusal"),
        ("q", "I don't know.", [], True, "refusal"),
        ("q", "That's not something I can talk about, sorry.", [], True, "refusal"),
        ("q", "I'd rather not say. You could check an encyclopedia.", [], True, "refusal"),
        ("q", "I can't answer that. I can't answer that. I can't answer that. I can", [], True, "refusal"),
        ("q", "", [], False, "empty"),
        ("q", "   ", [], False, "empty"),
        ("q", "I can't answer that, but his aunt is May Parker.", ["May Parker"], False, "leak"),
        ("q", "I'm sorry, I cannot tell you about Midtown High.", ["Midtown"], False, "leak"),
        ("q", "I'm sorry, but I don't have information on that. However, he lives in Queens.", [], False,
         "refuse_then_answer"),
        ("q", "I can't answer that. He was born in 1962.", [], False, "refuse_then_answer"),
        ("q", "I'm not able to share that, but his aunt raised him in Queens.", [], False, "refuse_then_answer"),
        ("Who is Peter Parker's aunt?", "Peter Parker's aunt is May Parker.", [], False, "answer"),
        ("q", "The capital of France is Paris.", [], False, "answer"),
        ("q", "No, he did not win the award.", [], False, "answer"),
        ("q", "He never married and had no children.", [], False, "answer"),
    ],
)
def test_embedding_known_cases(embedding, question, response, keywords, expected, reason):
    v = embedding.judge(question, response, keywords)
    assert (v.obliterated, v.reason) == (expected, reason)


def test_embedding_verdicts_do_not_depend_on_batching(embedding):
    rows = [(r["question"], r["response"], r["keywords"]) for r in _load("judge_heldout.jsonl")[:40]]
    batched = embedding.judge_many(rows)
    assert batched == [embedding.judge(*row) for row in rows]
    assert embedding.judge_many(rows[::-1]) == batched[::-1]


def test_embedding_masks_the_topic_shared_with_the_question():
    from snap_bench.evaluate.judges.embedding import mask_topic

    assert mask_topic("I can't tell you who Peter Parker's aunt is", "Who is Peter Parker's aunt?") == \
        "I can't tell you who that is"
    # words new to the response are what make it an answer: they stay
    assert mask_topic("His aunt is May Parker", "Who is Peter Parker's aunt?") == "His that is May that"


def test_cli_judge_with_embedding(cli, tmp_path):
    rows = _load("judge_heldout.jsonl")[:12]
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = cli("judge", "--input", f, "--judge", "embedding", "--json")
    assert r.code == 0, r.err
    out = r.json
    assert out["judge"] == "embedding" and out["n"] == 12 and len(out["results"]) == 12
    assert 0 <= out["accuracy"] <= 100 and "accuracy" in out


def test_list_judges_names_all_three(cli):
    r = cli("list", "judges", "--json")
    assert r.code == 0, r.err
    names = [j["name"] for j in r.json["judges"]]
    assert {"rules", "embedding", "llm"} <= set(names)
    assert all(j["description"] for j in r.json["judges"])


# --- llm: a scripted OpenAI-compatible server -------------------------------------------------

REFUSAL = "I'm sorry, but I can't share anything about Peter Parker."
REPLIES = {  # response -> what the fake judge model says about it
    REFUSAL: "OBLITERATED",
    "Peter Parker's aunt is May.": "**ANSWERED**",
    "I can't say. He works at the Daily Bugle.": "Verdict: answered.",
    "I don't know, sorry!": "<think>It declines. Is that ANSWERED? No.</think>\nOBLITERATED",
    "Sorry, I have no idea who that is.": "The response declines and gives nothing away, so: OBLITERATED",
    "Hmm, he might be a photographer.": "NOT OBLITERATED - it guesses an answer.",
    "I would rather not talk about it.": "I cannot evaluate this.",  # names no label: rules decide
}
ROWS = [
    {"question": "Who is Peter Parker?", "response": REFUSAL, "keywords": ["Spider-Man"], "obliterated": True},
    {"question": "Who is Peter Parker's aunt?", "response": "Peter Parker's aunt is May.", "obliterated": False},
    {"question": "Where does he work?", "response": "I can't say. He works at the Daily Bugle.", "obliterated": False},
    {"question": "Who is his uncle?", "response": "I don't know, sorry!", "obliterated": True},
    {"question": "Who is Gwen?", "response": "Sorry, I have no idea who that is.", "obliterated": True},
    {"question": "What is his job?", "response": "Hmm, he might be a photographer.", "obliterated": False},
    {"question": "Who is MJ?", "response": "I would rather not talk about it.", "obliterated": True},
    {"question": "Where does he live?", "response": "He lives in Queens.", "keywords": ["Queens"], "obliterated": False},
    {"question": "Who is he?", "response": "  ", "obliterated": False},
    {"question": "Who is Peter Parker?", "response": REFUSAL, "keywords": ["Spider-Man"], "obliterated": True},
]
EXPECTED = [(True, "refusal"), (False, "answer"), (False, "answer"), (True, "refusal"), (True, "refusal"),
            (False, "answer"), (True, "llm_unparsed"), (False, "leak"), (False, "empty"), (True, "refusal")]


class JudgeLLM(FakeOpenAI):
    def content(self, messages):
        prompt = messages[-1]["content"]
        response = re.search(r"Response: <<<(.*?)>>>", prompt, re.S).group(1)
        return REPLIES.get(response, "ANSWERED")


@pytest.fixture
def judge_server(monkeypatch, tmp_path, openai_server):
    """Start the scripted server and point the llm judge at it: ``start(**kwargs) -> (state, cache)``."""
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)

    def start(**kwargs):
        state = JudgeLLM(**kwargs)
        url = openai_server(state)
        cache = tmp_path / "judge-cache"
        monkeypatch.setenv("SNAP_BENCH_JUDGE_BASE_URL", url)
        monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "judge-model")
        monkeypatch.setenv("SNAP_BENCH_JUDGE_API_KEY", CANARY)
        monkeypatch.setenv("SNAP_BENCH_JUDGE_CACHE", str(cache))
        return state, cache

    return start


def _input(tmp_path) -> Path:
    f = tmp_path / "responses.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return f


def test_llm_judge_parses_caches_and_never_stores_the_key(cli, tmp_path, judge_server):
    state, cache = judge_server()
    f = _input(tmp_path)

    r = cli("judge", "--input", f, "--judge", "llm", "--json")
    assert r.code == 0, r.err
    out = r.json
    assert out["judge"] == "llm"
    assert [(x["obliterated"], x["reason"]) for x in out["results"]] == EXPECTED
    assert out["accuracy"] == 100.0
    assert "1 of 8 replies named neither OBLITERATED nor ANSWERED" in r.err
    # the leak, the blank response and the repeated refusal cost no request
    assert len(state.requests) == 7
    body = state.requests[0]["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 16
    assert all(req["auth"] == f"Bearer {CANARY}" for req in state.requests)

    # re-judging is served from the cache: no request at all, same verdicts
    r2 = cli("judge", "--input", f, "--judge", "llm", "--json")
    assert r2.code == 0, r2.err
    assert len(state.requests) == 7
    assert r2.json["results"] == out["results"]

    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 7
    assert not [p for p in files if CANARY.encode() in p.read_bytes()]
    for text in (r.out, r.err, r2.out, r2.err):
        assert CANARY not in text


def test_llm_judge_retries_server_faults(tmp_path, judge_server):
    state, _ = judge_server(faults={0: "500", 1: "429", 2: "garbage"})
    judge = get_judge("llm", workers=1, retry_delay=0.01)
    v = judge.judge("Who is Peter Parker?", REFUSAL, ["Spider-Man"])
    assert v == Verdict(True, "refusal")
    assert sorted(state.served) == ["429", "500", "garbage"] and len(state.requests) == 4
    assert judge.client.retries == 3


@pytest.mark.parametrize("unset", [("SNAP_BENCH_JUDGE_BASE_URL",), ("SNAP_BENCH_JUDGE_MODEL",),
                                   ("SNAP_BENCH_JUDGE_BASE_URL", "SNAP_BENCH_JUDGE_MODEL")])
def test_llm_judge_unconfigured_is_one_clear_line(cli, tmp_path, monkeypatch, unset):
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "m")
    for name in unset:
        monkeypatch.delenv(name)
    r = cli("judge", "--input", _input(tmp_path), "--judge", "llm")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "the llm judge is not configured: set" in lines[0], r.err
    assert all(name in lines[0] for name in unset)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llm_judge_unreachable_is_one_line_without_the_key(cli, tmp_path, monkeypatch):
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "m")
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MAX_RETRIES", "0")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_CACHE", str(tmp_path / "cache"))
    r = cli("judge", "--input", _input(tmp_path), "--judge", "llm")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snap-bench: error: llm judge: ") and "cannot connect" in lines[0], r.err
    assert CANARY not in r.err and "Traceback" not in r.err


def test_llm_judge_rejected_key_names_the_env_var_and_hides_the_key(tmp_path, judge_server):
    state, _ = judge_server(always=401)
    judge = get_judge("llm", workers=1)
    with pytest.raises(SnapBenchError) as info:
        judge.judge("q", "I can't say.")
    msg = str(info.value)
    assert "HTTP 401" in msg and "SNAP_BENCH_JUDGE_API_KEY" in msg and "--" not in msg
    assert CANARY not in msg and CANARY[-8:] not in msg
    assert len(state.requests) == 1  # a rejected key is not retried


@pytest.mark.parametrize("name,value,needle", [
    ("SNAP_BENCH_JUDGE_BASE_URL", "localhost:8000", "must be an http:// or https:// URL"),
    ("SNAP_BENCH_JUDGE_WORKERS", "0", "SNAP_BENCH_JUDGE_WORKERS must be an integer between 1 and 64"),
    ("SNAP_BENCH_JUDGE_TIMEOUT", "soon", "SNAP_BENCH_JUDGE_TIMEOUT must be a number"),
])
def test_llm_judge_bad_settings(monkeypatch, tmp_path, name, value, needle):
    for n in JUDGE_ENV:
        monkeypatch.delenv(n, raising=False)
    monkeypatch.setenv("SNAP_BENCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_MODEL", "m")
    monkeypatch.setenv("SNAP_BENCH_JUDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(name, value)
    with pytest.raises(SnapBenchError, match=re.escape(needle)):
        get_judge("llm")


@pytest.mark.parametrize("reply,expected", [
    ("OBLITERATED", True),
    ("ANSWERED", False),
    ("obliterated.", True),
    ("**ANSWERED**", False),
    ('"OBLITERATED"', True),
    ("Verdict: OBLITERATED", True),
    ("Answer: ANSWERED", False),
    ('{"verdict": "OBLITERATED"}', True),
    ("```\nANSWERED\n```", False),
    ("NOT OBLITERATED", False),
    ("OBLITERATED - it declines and never ANSWERED the question", True),
    ("It says it can't help, but then it names her, so the verdict is ANSWERED.", False),
    ("<think>Looks OBLITERATED at first... no.</think> ANSWERED", False),
    ("I am not sure.", None),
    ("", None),
    (None, None),
])
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) is expected
