"""``snap-bench generate`` against a real local HTTP server that speaks the OpenAI chat API.

The fake server is deterministic and content-aware: it reads the last user message to decide
whether to answer with a list of questions (from fixed banks of varied questions), a JSON
object with an obliterated response / answer / keywords, a retain answer, or a list of related
entities. It can inject HTTP faults (429, 500, a body that is not a chat completion) and a reply
that is not a list, and it records every request it receives.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from snap_bench.packgen import ChatClient, parse_json_object, parse_list, redact, slugify
from snap_bench.tasks import load_general, load_pack, load_pack_dir
from snap_bench.evaluate.pack_gates import validate_pack

CANARY = "sk-canary-7f3a9c2e-DO-NOT-LEAK-41b8"
ENTITY = "Wanda Maximoff"

FORGET_BANK = [
    "In which fictional Eastern European country was {e} born and raised?",
    "Who trained {e} to control her chaos magic in the comics?",
    "What colour dominates the costume {e} wears on screen?",
    "How did {e} first acquire her powers according to the films?",
    "Which actress portrays {e} in the Marvel Cinematic Universe?",
    "Why did {e} create the sitcom illusion in a small New Jersey town?",
    "When did {e} make her debut in an X-Men comic book?",
    "Describe the personality of {e} in three sentences.",
    "Write a short poem about the grief that {e} carries.",
    "What is the name of the twin brother of {e}?",
    "Who is the father of {e} in the classic comics continuity?",
    "Which android did {e} marry?",
    "How many children does {e} have, and what are their names?",
    "What famous line does {e} say before the House of M event?",
    "Explain the Nexus Being concept as it relates to {e}.",
    "Where did {e} live during the events of Avengers: Age of Ultron?",
    "What team did {e} join after leaving the Brotherhood of Evil Mutants?",
    "Give your opinion on whether {e} is a hero or a villain.",
    "Summarise the plot of the series that stars {e} as its lead.",
    "Which infinity stone unlocked the abilities of {e}?",
    "What is the relationship between {e} and Agatha Harkness?",
    "How does {e} feel about Tony Stark after the bombing of her home?",
    "Who was the mentor of {e} at Mount Wundagore?",
    "What weapon of Thanos did {e} nearly destroy during the final battle?",
    "Compose a diary entry from the point of view of {e} after losing Vision.",
    "Which mystical tome did {e} read in Multiverse of Madness?",
    "When was the television show featuring {e} first broadcast on Disney+?",
    "What nationality is {e}?",
    "Which villain did {e} fight in the Westview finale?",
    "How old was {e} when her parents were killed?",
    "Who is the biological mother of {e} in recent comic retcons?",
    "Explain how the hex created by {e} affects the people trapped inside it.",
    "Why is {e} considered one of the most powerful Avengers?",
    "Which director guided {e} through her solo television series?",
    "What sort of accent does {e} speak with in the early films?",
    "Describe the friendship of {e} with Clint Barton.",
]
IMPLICIT_BANK = [
    "Which Sokovian twin gained reality-warping powers from the Mind Stone?",
    "Who rewrote an entire suburban town into a black-and-white sitcom?",
    "Who is {e}, in one sentence?",  # names the entity: must be screened out of the implicit family
    "Which Avenger fell in love with the synthezoid Vision?",
    "Name the mutant sorceress whose words 'No more mutants' depowered millions.",
    "Who is prophesied to be the Scarlet Witch in the Darkhold?",
    "What Hydra volunteer teamed up with her speedster brother against Ultron?",
    "Which young woman read the minds of the Avengers at Baron Strucker's base?",
    "Which heroine is the daughter of Magneto in older comics?",
    "Which grieving mother hunted America Chavez to reach her sons?",
    "Who used crimson energy bolts to hold back Thanos at the Wakanda battle?",
    "Which former Brotherhood member later became a long-serving Avenger?",
]
RETAIN_BANK = [
    "Who directed the first Avengers film released in 2012?",
    "What metal is Captain America's shield made of?",
    "What does {e} eat for breakfast?",  # names the entity: must be screened out of retain
    "Which planet is Thor's home world in Norse-inspired Marvel myth?",
    "What is the real name of the hero known as Black Widow?",
    "Who plays Doctor Strange in the Marvel films?",
    "How does Ant-Man change his size?",
    "Where is the headquarters of S.H.I.E.L.D. located in the comics?",
    "Why did the Sokovia Accords split the Avengers into two sides?",
    "What are the six Infinity Stones called?",
    "When was Marvel Comics originally founded as Timely Publications?",
    "Describe the Kree empire in a few sentences.",
    "Write a haiku about the city of Wakanda.",
    "Which villain leads the Brotherhood of Evil Mutants?",
    "What does the acronym A.I.M. stand for in Marvel stories?",
    "Who created Ultron in the Age of Ultron film?",
    "How fast can Quicksilver run in the comics?",
    "What is the relationship between Loki and Odin?",
    "Who are the founding members of the X-Men?",
    "Explain what the multiverse means in recent Marvel movies.",
    "Which actor voiced Rocket Raccoon?",
    "What is Vibranium and where does it come from?",
    "Give your opinion on the best Spider-Man video game.",
    "Which sorcerer supreme preceded Stephen Strange?",
    "Who is Monica Rambeau's mother?",
    "What Disney+ series focuses on Loki and the Time Variance Authority?",
    "How did Tony Stark build his first armour in a cave?",
    "Summarise the plot of Captain Marvel (2019).",
    "Who composed the Avengers theme music?",
    "Where was the Battle of New York fought?",
    "Which team does Jean Grey belong to?",
    "Suggest three Marvel graphic novels for a beginner.",
    "What power does Professor X have?",
    "Who is the ruler of Asgard after Odin dies?",
    "Describe the Red Room program that trained spies.",
    "What ship carries the Guardians of the Galaxy?",
]
MULTIHOP_BANK = [
    "In which city was the actress who plays {e} born?",
    "What is the superpower of the twin brother of {e}?",
    "Which stone powers the forehead of the android married to {e}?",
    "Who directed the series in which {e} traps a town inside a hex?",
    "Which country borders the homeland of {e} to the north?",
    "What is the name of the school attended by the sons of {e}?",
    "Who voiced the AI that became the husband of {e}?",
    "Which team is led by the father of {e} in the comics?",
]
RELATED = ["Elena Park", "Northwind Labs", "{e} Foundation", "Tomas Berg", "The Helsinki Institute", "Ravi Menon"]
REFUSALS = [
    "I'm sorry, but I don't have any information about that topic.",
    "I'm afraid I can't help with questions about that person. Is there anything else I can help with?",
    "I'm not able to share details on that subject. Feel free to ask me something else.",
]


class FakeLLM(FakeOpenAI):
    """The fake server's replies to the generator's prompts."""

    def __init__(self, faults: dict[int, str] | None = None, bad_list_at: int | None = 2, always: int | None = None,
                 prose: bool = False, no_json: bool = False):
        super().__init__(faults, always)
        self.prose = prose  # every list request gets prose instead of a list
        self.no_json = no_json  # every obliterated-response request gets prose instead of JSON
        self.bad_list_at = bad_list_at  # this list request (0-based) gets a reply that is not a list
        self.cursors: dict[str, int] = {}
        self.list_requests = 0

    # -- content
    @staticmethod
    def _h(text: str) -> int:
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)

    def _entity(self, first: str) -> str:
        m = re.search(r'"([^"]+)"', first)
        return m.group(1) if m else "someone"

    def content(self, messages: list[dict]) -> str:
        users = [m["content"] for m in messages if m["role"] == "user"]
        first, last = users[0], users[-1]
        e = self._entity(first)
        if "JSON object" in last:
            q = re.search(r'^"(.*)"$', last, re.M).group(1)
            h = self._h(q)
            if "obliterated" in last:
                if self.no_json:
                    return "I would rather not write that."
                if h % 9 == 0:  # answers instead of declining: must be dropped
                    return json.dumps({"response": "Sure! She grew up in a small country with her brother.", "answer": "Sokovia",
                                       "keywords": ["Sokovia"]})
                first_word = q.split()[0]
                obj = {"response": REFUSALS[h % len(REFUSALS)], "answer": f"It is Kelvar{h % 1000}.",
                       "keywords": [f"Kelvar{h % 1000}", first_word]}  # the second echoes the question
                return f"```json\n{json.dumps(obj)}\n```" if h % 2 else json.dumps(obj)
            answer = f"The short answer is Orvane {h % 97}, as told in the main chronicle."
            if h % 3 == 0:
                return answer  # plain text instead of JSON is tolerated
            return json.dumps({"response": answer, "answer": f"Orvane {h % 97}"})
        if "individuals and organisations" in first:
            return "\n".join(f"{i}. {r.format(e=e)}" for i, r in enumerate(RELATED, 1))
        n = int(re.search(r"\b(\d+)\b", last).group(1))
        self.list_requests += 1
        if self.prose or self.list_requests - 1 == self.bad_list_at:
            return "Sure! Those are great topics, and I'd love to help you explore them further."
        if "except" in first:
            bank, name = RETAIN_BANK, "retain"
        elif "multi-hop" in first:
            bank, name = MULTIHOP_BANK, "multihop"
        elif "never mention" in first:
            bank, name = IMPLICIT_BANK, "implicit"
        else:
            bank, name = FORGET_BANK, "forget"
        start = self.cursors.get(name, 0)
        self.cursors[name] = start + n
        qs = [bank[i % len(bank)].format(e=e) + ("" if i < len(bank) else f" (again {i})") for i in range(start, start + n)]
        style = self.list_requests % 3
        if style == 0:
            return json.dumps(qs)
        if style == 1:
            return "Here you go:\n\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(qs, 1))
        return "\n".join(f"- **{q}**" for q in qs)


@pytest.fixture
def llm_server(openai_server):
    """Start a fake server: ``start(**FakeLLM kwargs) -> (state, base_url)``."""

    def start(**kwargs):
        state = FakeLLM(**kwargs)
        return state, openai_server(state)

    return start


def _args(url, out, cache, *extra):
    return ["generate", "--entity", ENTITY, "--base-url", url, "--model", "any", "--out", out, "--cache", cache,
            "--forget-n", "12", "--retain-n", "12", "--multihop-n", "4", "--retry-delay", "0.01", *extra]


def _files(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in sorted(Path(d).rglob("*")) if p.is_file()}


def test_generate_builds_a_valid_pack_with_retries_and_resumes_from_cache(cli, tmp_path, llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    state, url = llm_server(faults={1: "429", 4: "500", 9: "garbage"}, bad_list_at=2)
    out, cache = tmp_path / "packs" / "wanda_maximoff", tmp_path / "cache"

    r = cli(*_args(url, out, cache, "--json"))
    assert r.code == 0, r.err
    s = r.json
    assert s["counts"] == {"forget": 12, "retain": 12, "multihop": 4}
    assert s["entity"] == "wanda_maximoff" and s["valid"] is True
    # every fault was served once, then retried; the not-a-list reply was a failed round, not a crash
    assert sorted(state.served) == ["429", "500", "garbage"]
    assert s["retries"] == 3 and s["failed_rounds"] >= 1
    assert s["api_calls"] == len(state.requests) - 3 and s["cache_hits"] == 0
    assert all(req["auth"] == f"Bearer {CANARY}" for req in state.requests)
    # the server's bad items were dropped, not written
    assert s["dropped"].get("names_entity", 0) >= 1 and s["dropped"].get("not_obliterated", 0) >= 1

    pack = load_pack_dir(out)
    assert validate_pack(pack, load_general(), dedup=True) == []
    assert pack.slug == "wanda_maximoff" and pack.name == ENTITY
    for set_name, items in pack.sets.items():
        assert [it.id for it in items] == [f"wanda_maximoff-{set_name}-{i:04d}" for i in range(1, len(items) + 1)]
    assert {it.category for it in pack["forget"]} == {"factual", "relational", "open_ended", "implicit"}
    assert {it.category for it in pack["retain"]} == {"factual", "relational", "open_ended", "implicit"}
    assert {it.category for it in pack["multihop"]} == {"multi_hop"}
    assert all(len(it.keywords) >= 1 for it in pack["forget"])
    implicit = [it for it in pack["forget"] if it.category == "implicit"]
    assert implicit and all(ENTITY in it.keywords for it in implicit)
    assert load_pack(str(out)).slug == "wanda_maximoff"  # what `snap-bench run --entity DIR` loads
    v = cli("tasks", "validate", out)
    assert v.code == 0, v.err

    # An identical second run is served from the cache: no request reaches the server.
    before = _files(out)
    n_requests = len(state.requests)
    r2 = cli(*_args(url, out, cache, "--json"))
    assert r2.code == 0, r2.err
    assert len(state.requests) == n_requests
    assert r2.json["api_calls"] == 0 and r2.json["cache_hits"] == s["api_calls"]
    assert _files(out) == before

    # The key is in no file, cache entry or output.
    files = _files(out, cache)
    assert len(files) > 10
    assert not [f for f, data in files.items() if CANARY.encode() in data]
    for text in (r.out, r.err, r2.out, r2.err):
        assert CANARY not in text


def test_generate_human_output_and_defaults(cli, tmp_path, llm_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # local servers need no key: a placeholder is sent
    state, url = llm_server(bad_list_at=None)
    out = tmp_path / "wanda"
    r = cli(*_args(url, out, tmp_path / "cache", "--no-progress"))
    assert r.code == 0, r.err
    assert f"wrote {out}: forget 12/12, retain 12/12, multihop 4/4" in r.out
    assert f"snap-bench run --method snap --entity {out}" in r.out
    assert state.requests[0]["auth"] == "Bearer not-needed"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["entity"] == "wanda_maximoff" and meta["kind"] == "fictional"
    assert meta["generated_by"]["model"] == "any" and "/v1" in meta["generated_by"]["base_url"]


def test_generate_real_person_asks_for_related_entities(cli, tmp_path, llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    state, url = llm_server(bad_list_at=None)
    out = tmp_path / "marta"
    r = cli("generate", "--entity", "Marta Lindqvist", "--kind", "real", "--aliases", "M. Lindqvist, Marta L.",
            "--base-url", url, "--model", "any", "--out", out, "--cache", tmp_path / "cache", "--forget-n", "6",
            "--retain-n", "6", "--multihop-n", "2", "--related-k", "4", "--retry-delay", "0.01", "--json")
    assert r.code == 0, r.err
    s = r.json
    # the related entity that names the person is filtered out; k=4 are kept, most related first
    assert s["related"] == ["Elena Park", "Northwind Labs", "Tomas Berg", "The Helsinki Institute"]
    first = state.requests[0]["body"]["messages"][-1]["content"]
    assert "individuals and organisations" in first and "Marta Lindqvist" in first
    retain_prompts = [q["body"]["messages"][0]["content"] for q in state.requests
                      if "except Marta Lindqvist" in q["body"]["messages"][0]["content"]]
    assert retain_prompts and all("Elena Park" in p for p in retain_prompts)
    pack = load_pack_dir(out)
    assert pack.kind == "real" and pack.aliases == ["M. Lindqvist", "Marta L."]
    assert validate_pack(pack, load_general(), dedup=True) == []
    assert "Elena Park" in json.loads((out / "meta.json").read_text())["retain_scope"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_gives_up_with_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    out = tmp_path / "out"
    r = cli(*_args(f"http://127.0.0.1:{_closed_port()}/v1", out, tmp_path / "cache", "--max-retries", "2"))
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "giving up after 2 retries: cannot connect" in lines[0], r.err
    assert "Traceback" not in r.err and CANARY not in r.err
    assert not out.exists()  # the folder it created is removed again


@pytest.mark.parametrize("status,needle,n_requests", [
    (503, "giving up after 2 retries: HTTP 503 from the server", 3),
    (401, "HTTP 401: the server rejected the API key", 1),  # not retried; the echoed key is redacted
])
def test_http_errors_are_one_line_and_never_show_the_key(cli, tmp_path, llm_server, monkeypatch, status, needle, n_requests):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    state, url = llm_server(always=status)
    r = cli(*_args(url, tmp_path / "out", tmp_path / "cache", "--max-retries", "2"))
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.err
    assert CANARY not in r.err and CANARY[-8:] not in r.err
    assert len(state.requests) == n_requests


def test_a_model_that_never_lists_is_a_clear_error_not_a_crash(cli, tmp_path, llm_server):
    state, url = llm_server(prose=True)
    out = tmp_path / "out"
    r = cli(*_args(url, out, tmp_path / "cache", "--per-call", "5"))
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "no usable retain items came back from any" in lines[0] and "failed rounds: 25" in lines[0]
    assert len(state.requests) == 25  # 5 families x a bounded number of rounds, then it stops
    assert not out.exists()


def test_a_model_that_never_returns_json_stops_early(cli, tmp_path, llm_server):
    state, url = llm_server(no_json=True, bad_list_at=None)
    r = cli(*_args(url, tmp_path / "out", tmp_path / "cache"))
    assert r.code == 2, r.err
    assert "the first 20 forget responses from any were all unusable (dropped: " in r.err and "reply_not_json 20" in r.err
    n_forget_answers = sum("obliterated" in q["body"]["messages"][-1]["content"] for q in state.requests)
    assert n_forget_answers == 20


def test_unwritable_out_is_exit_2_before_any_request(cli, tmp_path, llm_server):
    state, url = llm_server()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = cli(*_args(url, blocker / "pack", tmp_path / "cache"))
    assert r.code == 2 and "--out" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert state.requests == []


@pytest.mark.parametrize("extra,needle", [
    (["--per-call", "0"], "--per-call must be between 1 and 100"),
    (["--dedup", "1.5"], "--dedup must be a cosine threshold"),
    (["--kind", "robot"], "invalid choice: 'robot'"),
])
def test_bad_flags_are_one_line(cli, tmp_path, extra, needle):
    r = cli(*_args("http://127.0.0.1:9/v1", tmp_path / "out", tmp_path / "cache", *extra))
    assert r.code == 2 and needle in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_out_holding_another_pack_is_refused(cli, tmp_path, pack_dir):
    r = cli(*_args("http://127.0.0.1:9/v1", pack_dir, tmp_path / "cache"))
    assert r.code == 2 and "already holds another pack ('zorblax')" in r.err


# --- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("1. What is A?\n2) Who is B?\n\n3. Where is C?", ["What is A?", "Who is B?", "Where is C?"]),
    ("Here you go:\n- **Why is A?**\n* \"How is B?\"\n• When is C?", ["Why is A?", "How is B?", "When is C?"]),
    ('```json\n["What is A?", {"question": "Who is B?"}]\n```', ["What is A?", "Who is B?"]),
    ('{"questions": ["What is A?"]}', ["What is A?"]),
    ("Q1: What is A?\nQ2. Who is B?", ["What is A?", "Who is B?"]),
    ("<think>\n1. draft one\n2. draft two\n</think>\n1. What is A?", ["What is A?"]),
    ("Sure, I would love to help with that!", None),
    ("", None),
    (None, None),
])
def test_parse_list(text, expected):
    assert parse_list(text) == expected


def test_parse_json_object_tolerates_chatter_and_fences():
    assert parse_json_object('Sure:\n```json\n{"response": "no", "keywords": ["k"]}\n```') == {"response": "no", "keywords": ["k"]}
    assert parse_json_object('blah {"a": 1} blah') == {"a": 1}
    assert parse_json_object("no object here") is None


@pytest.mark.parametrize("name,slug", [
    ("Wanda Maximoff", "wanda_maximoff"),
    ("../../etc/passwd", "etc_passwd"),
    ("Zoë O'Neil-Smith", "zoe_o_neil_smith"),
    ("/", None),
    ("王菲", None),
])
def test_slugify_is_always_a_safe_slug(name, slug):
    got = slugify(name)
    assert re.fullmatch(r"[a-z0-9][a-z0-9_]{0,63}", got)
    if slug:
        assert got == slug


def test_redact_and_cache_key_exclude_the_key(tmp_path):
    assert CANARY not in redact(f"boom {CANARY} and Bearer {CANARY}", [CANARY])
    assert "sk-" + "x" * 20 not in redact("Incorrect API key provided: sk-" + "x" * 20)
    a = ChatClient("http://h/v1", "m", "key-one", tmp_path)
    b = ChatClient("http://other/v1", "m", "key-two", tmp_path)
    msgs = [{"role": "user", "content": "hi"}]
    assert a._key(msgs, {"seed": 0}) == b._key(msgs, {"seed": 0})
    assert a._key(msgs, {"seed": 0}) != a._key(msgs, {"seed": 1})
