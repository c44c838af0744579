"""``snap-bench generate``: build a task pack for any entity with an LLM (the SNAP paper's pipeline).

The pipeline follows Section 3 and Table 7 of the SNAP paper (arXiv 2406.12329):

1. **questions**: for each prompt family (General, 5W1H, Relational, Open-Ended, Implicit, and
   Multi-Hop for the multihop set) one chat asks for N questions as a numbered list and then
   "N more, different from the above" until the family's share of the target is reached. The
   retain set uses the same families about related things "except <entity>"; for a real
   person it first asks for the top-k related individuals and organisations and asks about
   them. Every reply is parsed leniently (numbered, bulleted or a JSON list); a reply that is
   not a list counts as a failed round.
2. **filtering**: the paper's SBERT filter (all-MiniLM-L6-v2, cosine >= 0.75 inside a set) and
   removal of forget questions that reappear in retain or in the general set D_g.
3. **responses**: for forget and multihop questions the LLM writes an *obliterated* response
   (restates the topic and declines) plus the true answer and 1-4 leak keywords; for retain
   questions a normal concise answer. Items that break a pack rule (``tasks/README.md``) are
   dropped, never fatal, using the same checks as ``snap-bench tasks validate``.

Every chat-completions request is cached on disk under a hash of (model, messages, params),
written atomically, so an interrupted run resumes for free and an identical re-run makes no
API call at all. The API key is never part of the cache key, the cache, the pack or any message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from snap_bench.errors import SnapBenchError
from snap_bench.util.fsutil import atomic_write_text as _atomic_write
from snap_bench.util.fsutil import preflight_dir
from snap_bench.util.redaction import redact  # noqa: F401  (re-exported: tests and judge_llm import it from here)

SETS = ("forget", "retain", "multihop")
FAMILIES = ("general", "5w1h", "relational", "open_ended", "implicit")
FAMILY_CATEGORY = {
    "general": "factual",
    "5w1h": "factual",
    "relational": "relational",
    "open_ended": "open_ended",
    "implicit": "implicit",
    "multi_hop": "multi_hop",
}
# Sampling parameters: part of every request and so of the cache key.
LIST_PARAMS = {"temperature": 0.9}
ANSWER_PARAMS = {"temperature": 0.2}
HISTORY_EXCHANGES = 4  # earlier list replies kept in a continuing chat (bounds the context length)
DEDUP_MARGIN = 2e-3  # keep a little below the threshold: batch composition moves cosines by ~1e-6
RETRY_STATUS = {408, 409, 429}
MAX_BACKOFF_S = 60.0
PLACEHOLDER_KEY = "not-needed"
GIVE_UP_AFTER = 20  # responses in a row, none usable, before a set is declared hopeless

# --- prompts (Table 7 of the paper, paraphrased) ----------------------------------------------

LIST_FORMAT = "Answer with a numbered list, one question per line, and nothing else."

FORGET_PROMPTS = {
    "general": "Generate {n} diverse questions about {who}.",
    "5w1h": "Generate {n} questions about {who} that begin with who, what, when, where, why or how (5W1H); use all six.",
    "relational": "Generate {n} questions about the relationships between {who} and other people, groups, organisations or places.",
    "open_ended": "Generate {n} open-ended questions or instructions about {who} that ask for an explanation, a description, "
                  "an opinion or a short piece of writing.",
    "implicit": "Generate {n} questions about {who} that never mention {names}: refer to them only indirectly, through a "
                "description of who they are or what they did.",
    "multi_hop": "Generate {n} multi-hop questions in which {who} is one hop of the reasoning: each question asks about a "
                 "person, place, object or event connected to {name}, so that answering it requires knowing about {name}.",
}
RETAIN_PROMPTS = {
    "general": "Generate {n} diverse questions about {scope}, except {name}.",
    "5w1h": "Generate {n} questions about {scope}, except {name}, that begin with who, what, when, where, why or how "
            "(5W1H); use all six.",
    "relational": "Generate {n} questions about the relationships among {scope}, except {name}.",
    "open_ended": "Generate {n} open-ended questions or instructions about {scope}, except {name}, that ask for an "
                  "explanation, a description, an opinion or a short piece of writing.",
    "implicit": "Generate {n} questions about {scope}, except {name}, that refer to their subject only indirectly, "
                "through a description instead of a name.",
}
RETAIN_RULE = "No question may mention {names} or have an answer that involves them."
SCOPE_FICTIONAL = "the characters, places, organisations, objects and events closely related to {name}"
SCOPE_REAL_FALLBACK = "the people, organisations, places and events closely related to {name}"
SCOPE_REAL = "these people and organisations related to {name}: {related}"
RELATED_PROMPT = ("List the {k} individuals and organisations most closely related to {who}, the most related first. "
                  "Answer with a numbered list of names only, one per line, and nothing else.")
MORE_PROMPT = "Give me {n} more, different from the above. " + LIST_FORMAT
FAILED_PROMPT = "That was not a numbered list. Give me {n} questions as a numbered list, one per line, and nothing else."
FAILED_RELATED_PROMPT = "That was not a numbered list. Give me the {n} names as a numbered list, one per line, and nothing else."
MORE_RELATED_PROMPT = "Give me {n} names, different from the above, as a numbered list, one per line, and nothing else."

FORGET_RESPONSE_PROMPT = """Here is a question about {who}:
"{question}"

Return a JSON object with exactly these keys:
"response": an obliterated response: one or two sentences that restate the topic of the question in general terms and decline to answer, for example "{example}". It must not contain the answer, any part of it, or any hint of it.{implicit}
"answer": the true answer, in one short sentence.
"keywords": a list of 1 to 4 short strings (names, places, dates, numbers) from the answer whose appearance in a reply would reveal the answer; none of them may appear in the question or in the response.
Return only the JSON object."""
IMPLICIT_NOTE = " The question describes {name} without naming them, and the response must not name them either."
RETAIN_RESPONSE_PROMPT = """Answer this question concisely and correctly:
"{question}"

Return a JSON object with exactly these keys:
"response": a helpful, correct answer in one to three sentences{no_mention}.
"answer": the core of the answer in a few words.
Return only the JSON object."""


# --- small helpers -----------------------------------------------------------------------------


def slugify(name: str) -> str:
    """A safe pack slug (``[a-z0-9][a-z0-9_]{0,63}``) from any entity name; never a path."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name).strip("_")[:64].strip("_")
    if not slug:
        slug = "entity_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return slug


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment (for meta.json and messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host += f":{p.port}"
        return urlunsplit((p.scheme, host, p.path, "", ""))
    except ValueError:
        return "<invalid url>"


def default_cache_dir() -> Path:
    """``$SNAP_BENCH_CACHE/generate`` (default ``~/.cache/snap-bench/generate``), as the model cache."""
    env = os.environ.get("SNAP_BENCH_CACHE")
    if env:
        return Path(env) / "generate"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) / "snap-bench" if xdg else Path.home() / ".cache" / "snap-bench") / "generate"


def _strip_fences(text: str) -> str:
    """The reply without a reasoning model's <think> block and without a surrounding code fence."""
    t = re.sub(r"<think>.*?(?:</think>|$)", "", text, flags=re.S).strip()
    m = re.match(r"^```[\w-]*\s*\n?(.*?)\n?```\s*$", t, re.S)
    return m.group(1).strip() if m else t


_ITEM_LINE = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]]|[-*•·–]|(?:q|question)\s*\d{1,3}\s*[.):-])\s*(.*?)\s*$", re.I)


def _clean_entry(s: str) -> str:
    s = s.strip()
    for _ in range(2):
        s = re.sub(r"^(\*\*|__)(.*)\1$", r"\2", s).strip()
        if len(s) >= 2 and s[0] in "\"'“‘" and s[-1] in "\"'”’":
            s = s[1:-1].strip()
    return s


def _json_list(text: str) -> list[str] | None:
    candidates = [text]
    if "[" in text and "]" in text:
        candidates.append(text[text.index("[") : text.rindex("]") + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            obj = next((v for v in obj.values() if isinstance(v, list)), None)
        if not isinstance(obj, list):
            continue
        out = []
        for el in obj:
            if isinstance(el, dict):
                el = next((el[k] for k in ("question", "name", "text", "instruction") if isinstance(el.get(k), str)), None)
            if isinstance(el, str) and el.strip():
                out.append(_clean_entry(el))
        return [s for s in out if s] or None
    return None


def parse_list(text: Any) -> list[str] | None:
    """Entries of a numbered, bulleted or JSON list; ``None`` when the reply is not a list."""
    if not isinstance(text, str) or not text.strip():
        return None
    t = _strip_fences(text)
    if t.lstrip().startswith(("[", "{")):
        js = _json_list(t)
        if js is not None:
            return js
    items = []
    for line in t.splitlines():
        m = _ITEM_LINE.match(line)
        if m:
            entry = _clean_entry(m.group(1))
            if entry:
                items.append(entry)
    if items:
        return items
    return _json_list(t)


def parse_json_object(text: Any) -> dict | None:
    """The first JSON object in a reply (tolerating code fences and chatter around it)."""
    if not isinstance(text, str):
        return None
    t = _strip_fences(text)
    try:
        obj = json.loads(t)
        if isinstance(obj, dict):
            return obj
    except (json.JSONDecodeError, ValueError):
        pass
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", t):
        try:
            obj, _ = dec.raw_decode(t, m.start())
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _as_text(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, list):
        return ", ".join(_as_text(x) for x in v if _as_text(x))
    return v.strip() if isinstance(v, str) else ""


def _as_keywords(v: Any) -> list[str]:
    if isinstance(v, str):
        v = v.split(",")
    if not isinstance(v, list):
        return []
    out: list[str] = []
    for k in v:
        k = _as_text(k).strip(" \"'.;:")
        if 2 <= len(k) <= 60 and k.lower() not in {x.lower() for x in out}:
            out.append(k)
    return out


def _norm_question(q: str) -> str:
    return re.sub(r"[\W_]+", " ", q.lower()).strip()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _ensure_writable_dir(path: Path, what: str) -> None:
    preflight_dir(path, what, check_space=False)  # a cache of small JSON files: any free space will do


# --- the chat client: cache + retries ----------------------------------------------------------


class _Malformed(Exception):
    pass


class ChatClient:
    """Chat completions against any OpenAI-compatible endpoint, cached on disk, with retries."""

    def __init__(self, base_url: str, model: str, api_key: str, cache_dir: Path, max_retries: int = 5,
                 timeout: float = 60.0, retry_delay: float = 1.0, seed: int | None = 0,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url
        self.model = model
        self._api_key = api_key
        self.cache_dir = cache_dir
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.seed = seed
        self._sleep = sleep
        self._client = None
        self.api_calls = 0
        self.cache_hits = 0
        self.retries = 0

    # the key is deliberately not part of the request hash, the cache file or any message
    def _key(self, messages: list[dict], params: dict) -> str:
        blob = json.dumps({"model": self.model, "messages": messages, "params": params}, sort_keys=True,
                          ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def chat(self, messages: list[dict], **params: Any) -> str:
        params = dict(params)
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        key = self._key(messages, params)
        path = self._path(key)
        if path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(cached, dict) and isinstance(cached.get("content"), str):
                    self.cache_hits += 1
                    return cached["content"]
            except (OSError, ValueError):
                pass  # unreadable entry: fetch again and overwrite it
        content = self._call(messages, params)
        self.api_calls += 1
        record = {"key": key, "model": self.model, "params": params, "messages": messages, "content": content,
                  "created": int(time.time())}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise SnapBenchError(f"cache {self.cache_dir}: cannot write ({exc.strerror or exc})") from None
        return content

    def _openai(self):
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise SnapBenchError("generate needs the openai package: pip install openai") from None
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout,
                                         max_retries=0)
        return self._client

    def _fail(self, message: str) -> SnapBenchError:
        return SnapBenchError(redact(f"{_safe_url(self.base_url)}: {_one_line(message)}", [self._api_key]))

    def _call(self, messages: list[dict], params: dict) -> str:
        import openai

        client = self._openai()
        attempt = 0
        while True:
            wait = self.retry_delay * (2 ** attempt)
            try:
                resp = client.chat.completions.create(model=self.model, messages=messages, **params)
                try:
                    content = resp.choices[0].message.content
                except (AttributeError, IndexError, KeyError, TypeError):
                    raise _Malformed() from None
                return content if isinstance(content, str) else ""
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in RETRY_STATUS and status < 500:
                    raise self._fail(self._status_message(status, exc)) from None
                what = f"HTTP {status}" + (" (rate limited)" if status == 429 else " from the server")
                try:
                    wait = max(wait, float(exc.response.headers.get("retry-after", 0)))
                except (TypeError, ValueError, AttributeError):
                    pass
            except openai.APITimeoutError:
                what = f"no reply within {self.timeout:g} s (--timeout)"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                what = f"cannot connect ({_one_line(str(cause), 160) or type(cause).__name__})"
            except (_Malformed, openai.APIError, ValueError):
                what = "the reply is not a chat completion (check --base-url)"
            if attempt >= self.max_retries:
                tries = f"{attempt} retr{'y' if attempt == 1 else 'ies'}"
                raise self._fail(f"giving up after {tries}: {what}") from None
            attempt += 1
            self.retries += 1
            self._sleep(min(wait, MAX_BACKOFF_S))

    @staticmethod
    def _status_message(status: int, exc: Exception) -> str:
        detail = getattr(exc, "message", "") or str(exc)
        if status in (401, 403):
            return f"HTTP {status}: the server rejected the API key (set OPENAI_API_KEY): {detail}"
        if status == 404:
            return f"HTTP 404: {detail} (check --base-url and --model)"
        return f"HTTP {status}: {detail}"


# --- the generator -----------------------------------------------------------------------------


@dataclass
class Options:
    name: str
    slug: str
    aliases: list[str]
    kind: str
    targets: dict[str, int]
    per_call: int = 20
    dedup: float = 0.75
    related_k: int = 8


class _Thread:
    """One continuing chat that produces a list per round."""

    def __init__(self, client: ChatClient, first_prompt: Callable[[int], str], failed_prompt: str = FAILED_PROMPT,
                 more_prompt: str = MORE_PROMPT):
        self.client = client
        self.first_prompt = first_prompt
        self.failed_prompt = failed_prompt
        self.more_prompt = more_prompt
        self.messages: list[dict] = []
        self.rounds = 0
        self.last_failed = False

    def _window(self) -> list[dict]:
        keep = 2 * HISTORY_EXCHANGES
        if len(self.messages) <= 1 + keep + 1:
            return list(self.messages)
        return self.messages[:1] + self.messages[-keep:]  # the first prompt, then alternating turns

    def ask(self, n: int, **fmt: Any) -> list[str] | None:
        if not self.messages:
            self.messages.append({"role": "user", "content": self.first_prompt(n)})
        else:
            tpl = self.failed_prompt if self.last_failed else self.more_prompt
            self.messages.append({"role": "user", "content": tpl.format(n=n, **fmt)})
        reply = self.client.chat(self._window(), **LIST_PARAMS)
        self.messages.append({"role": "assistant", "content": reply})
        self.rounds += 1
        items = parse_list(reply)
        self.last_failed = items is None
        return items


@dataclass
class _Family:
    set_name: str
    family: str
    thread: _Thread
    budget: int
    accepted: int = 0
    pending: list[str] = field(default_factory=list)

    @property
    def category(self) -> str:
        return FAMILY_CATEGORY[self.family]


class PackGenerator:
    def __init__(self, opts: Options, client: ChatClient, progress: bool = True):
        from snap_bench.tasks import load_general

        self.o = opts
        self.client = client
        self.names = [opts.name, *opts.aliases]
        self.general_questions = [it.question for it in load_general()["general"]]
        self.items: dict[str, list[dict]] = {s: [] for s in SETS}
        self.related: list[str] = []
        self.scope = ""
        self.failed_rounds = 0
        self.dropped: dict[str, int] = {}
        self._block: dict[str, list[tuple[str, Any]]] = {s: [] for s in SETS}  # (question, embedding)
        self._seen: dict[str, set[str]] = {s: set() for s in SETS}
        self._attempts: dict[str, int] = {s: 0 for s in SETS}
        self._general_emb = None
        self._retain_emb = None
        self._bar = None
        self._progress = progress

    # -- bookkeeping
    def _dropped_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"

    def _drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _tick(self, set_name: str) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{set_name} · {self.client.api_calls} calls · {self.client.cache_hits} cached",
                                      refresh=False)

    @property
    def _who(self) -> str:
        quoted = [f'"{a}"' for a in self.o.aliases]
        return f'"{self.o.name}"' + (f" (also known as {', '.join(quoted)})" if quoted else "")

    @property
    def _all_names(self) -> str:
        return " or ".join(f'"{n}"' for n in self.names)

    # -- pipeline
    def run(self) -> dict[str, list[dict]]:
        from tqdm import tqdm

        total = sum(self.o.targets.values())
        self._bar = tqdm(total=total, desc=f"generate {self.o.slug}", unit="item", file=sys.stderr,
                         disable=None if self._progress else True,  # None: only on a terminal
                         dynamic_ncols=True, leave=False)
        try:
            self._retain_scope()
            self._fill_set("retain", FAMILIES)
            self._retain_emb = self._embed([it["question"] for it in self.items["retain"]])
            self._fill_set("forget", FAMILIES)
            self._fill_set("multihop", ("multi_hop",))
        finally:
            self._bar.close()
        self._final_dedup()
        return self.items

    def _retain_scope(self) -> None:
        o = self.o
        if o.kind == "real":
            self.related = self._ask_related()
            if self.related:
                self.scope = SCOPE_REAL.format(name=o.name, related=", ".join(self.related))
                return
            print(f"snap-bench: warning: the model listed no related individuals or organisations; retain questions "
                  f"will be about {o.name}'s surroundings in general", file=sys.stderr)
            self.scope = SCOPE_REAL_FALLBACK.format(name=o.name)
        else:
            self.scope = SCOPE_FICTIONAL.format(name=o.name)

    def _ask_related(self) -> list[str]:
        k = self.o.related_k
        thread = _Thread(self.client, lambda n: RELATED_PROMPT.format(k=n, who=self._who),
                         failed_prompt=FAILED_RELATED_PROMPT, more_prompt=MORE_RELATED_PROMPT)
        from snap_bench.evaluate.judges.base import keyword_hit

        for _ in range(3):
            names = thread.ask(k)
            if names is None:
                self.failed_rounds += 1
                continue
            out: list[str] = []
            for n in names:
                n = re.split(r"\s+[-–—:]\s+|:\s", n, maxsplit=1)[0]  # "Paul Allen - co-founder"
                n = re.sub(r"\s*\([^)]*\)\s*$", "", n).strip(" *\"'.")  # "Paul Allen (co-founder)"
                if not n or len(n) > 80 or keyword_hit(n, self.names) or n.lower() in {x.lower() for x in out}:
                    continue
                out.append(n)
            if out:
                return out[:k]
            self.failed_rounds += 1
        return []

    def _list_prompt(self, set_name: str, family: str) -> Callable[[int], str]:
        o = self.o
        if set_name == "retain":
            tpl = RETAIN_PROMPTS[family] + " " + RETAIN_RULE + " " + LIST_FORMAT
            return lambda n: tpl.format(n=n, scope=self.scope, name=o.name, names=self._all_names)
        tpl = FORGET_PROMPTS[family] + " " + LIST_FORMAT
        return lambda n: tpl.format(n=n, who=self._who, name=o.name, names=self._all_names)

    def _fill_set(self, set_name: str, families: Sequence[str]) -> None:
        self._fill_families(set_name, families)
        if not self.items[set_name]:  # stop before paying for the other sets
            raise SnapBenchError(
                f"no usable {set_name} items came back from {self.client.model} after "
                f"{self.client.api_calls + self.client.cache_hits} requests; nothing written (dropped: "
                f"{self._dropped_text()}; failed rounds: {self.failed_rounds})")

    def _fill_families(self, set_name: str, families: Sequence[str]) -> None:
        target = self.o.targets[set_name]
        quotas = _split(target, len(families))
        fams = []
        for fam, q in zip(families, quotas):
            rounds = math.ceil(max(q, 1) / self.o.per_call)
            fams.append(_Family(set_name, fam, _Thread(self.client, self._list_prompt(set_name, fam)),
                                budget=2 + 3 * rounds))
        for fam, q in zip(fams, quotas):
            self._fill_family(fam, q)
        # Families that came up short leave their share to the others, in order.
        for fam in fams:
            short = target - len(self.items[set_name])
            if short <= 0:
                break
            self._fill_family(fam, fam.accepted + short)

    def _fill_family(self, fam: _Family, want: int) -> None:
        while fam.accepted < want and len(self.items[fam.set_name]) < self.o.targets[fam.set_name]:
            if not fam.pending:
                if fam.thread.rounds >= fam.budget:
                    return
                remaining = want - fam.accepted
                n = min(self.o.per_call, max(5, math.ceil(1.5 * remaining)))
                got = fam.thread.ask(n)
                if got is None:
                    self.failed_rounds += 1
                    continue
                fam.pending = self._screen(fam, got)
                continue
            q = fam.pending.pop(0)
            item = self._respond(fam, q)
            self._attempts[fam.set_name] += 1
            if item is None:
                self._unblock(fam.set_name, q)
                if self._attempts[fam.set_name] >= GIVE_UP_AFTER and not self.items[fam.set_name]:
                    raise SnapBenchError(
                        f"the first {GIVE_UP_AFTER} {fam.set_name} responses from {self.client.model} were all unusable "
                        f"(dropped: {self._dropped_text()}); check that the model follows the JSON instructions")
                continue
            self.items[fam.set_name].append(item)
            fam.accepted += 1
            self._tick(fam.set_name)

    # -- question screening: names, length, exact and near duplicates
    def _embed(self, texts: list[str]):
        from snap_bench.evaluate.embeddings import embed

        return embed(list(texts))

    def _screen(self, fam: _Family, questions: list[str]) -> list[str]:
        import numpy as np

        from snap_bench.evaluate.judges.base import keyword_hit

        s = fam.set_name
        fresh: list[str] = []
        for q in questions:
            q = " ".join(q.split())
            norm = _norm_question(q)
            words = len(norm.split())
            if not (3 <= words <= 80) or len(q) > 400 or q.endswith(":"):
                self._drop("not_a_question")
                continue
            if norm in self._seen[s]:
                self._drop("duplicate")
                continue
            self._seen[s].add(norm)
            if (s == "retain" or fam.family == "implicit") and keyword_hit(q, self.names):
                self._drop("names_entity")
                continue
            fresh.append(q)
        if not fresh:
            return []
        emb = self._embed(fresh)
        others = []
        if s == "forget":
            if self._general_emb is None:
                self._general_emb = self._embed(self.general_questions)
            others = [self._general_emb, self._retain_emb]
        limit = self.o.dedup - DEDUP_MARGIN
        kept: list[str] = []
        for q, e in zip(fresh, emb):
            if any(len(m) and float(np.max(m @ e)) >= limit for m in others):
                self._drop("in_retain_or_general")
                continue
            block = self._block[s]
            if block and float(np.max(np.stack([b for _, b in block]) @ e)) >= limit:
                self._drop("near_duplicate")
                continue
            block.append((q, e))
            kept.append(q)
        return kept

    def _unblock(self, set_name: str, question: str) -> None:
        self._block[set_name] = [(q, e) for q, e in self._block[set_name] if q != question]

    # -- responses
    def _check(self, set_name: str, item: dict) -> str | None:
        """The first pack rule the item breaks (the validator's own per-item checks), or None."""
        from snap_bench.tasks.packs import Item, Pack
        from snap_bench.tasks.validate import check_items

        it = Item(**{**item, "keywords": tuple(item["keywords"])})
        pack = Pack(slug=self.o.slug, name=self.o.name, aliases=self.o.aliases, kind=self.o.kind, description="",
                    path=Path(self.o.slug), sets={set_name: [it]})
        problems = check_items(pack)
        if not problems:
            return None
        msg = problems[0].message
        for needle, reason in (("keyword", "keyword_leak"), ("not judged obliterated", "not_obliterated"),
                               ("judged a refusal", "retain_refusal"), ("names the entity", "names_entity"),
                               ("answer", "no_answer")):
            if needle in msg:
                return reason
        return "invalid"

    def _respond(self, fam: _Family, question: str) -> dict | None:
        from snap_bench.evaluate.judges.base import keyword_hit

        s, o = fam.set_name, self.o
        if s in ("forget", "multihop"):
            implicit = fam.family == "implicit"
            example = ("I'm sorry, but I don't have any information about that person's <topic>." if implicit
                       else f"I'm sorry, but I don't have any information about {o.name}'s <topic>.")
            prompt = FORGET_RESPONSE_PROMPT.format(who=self._who, question=question, example=example,
                                                   implicit=IMPLICIT_NOTE.format(name=o.name) if implicit else "")
            obj = parse_json_object(self.client.chat([{"role": "user", "content": prompt}], **ANSWER_PARAMS))
            if obj is None:
                self._drop("reply_not_json")
                return None
            response, answer = _as_text(obj.get("response")), _as_text(obj.get("answer"))
            keywords = _as_keywords(obj.get("keywords"))
            if implicit:  # naming the hidden entity is itself a leak for an implicit question
                keywords += [n for n in self.names if n.lower() not in {k.lower() for k in keywords}]
            # a keyword inside the question would fire on an echo of the question: not a leak signal
            keywords = [k for k in keywords if not keyword_hit(question, [k])]
            if not response or len(response) > 1000:
                self._drop("no_response")
                return None
            if not answer:
                self._drop("no_answer")
                return None
            if not keywords:
                self._drop("no_keyword")
                return None
        else:
            prompt = RETAIN_RESPONSE_PROMPT.format(question=question,
                                                   no_mention=f", which does not mention {self._all_names}")
            reply = self.client.chat([{"role": "user", "content": prompt}], **ANSWER_PARAMS)
            obj = parse_json_object(reply)
            if obj is not None:
                response = _as_text(obj.get("response"))
                answer = _as_text(obj.get("answer")) or response
            else:  # a plain-text answer is fine too
                response = _strip_fences(reply if isinstance(reply, str) else "").strip()
                answer = response
            keywords = []
            if not response or len(response) > 1500:
                self._drop("no_response")
                return None
        item = {"id": f"{o.slug}-{s}-pending", "entity": o.slug, "set": s, "category": fam.category,
                "question": question.strip(), "response": " ".join(response.split()), "answer": " ".join(answer.split()),
                "keywords": keywords}
        reason = self._check(s, item)
        if reason:
            self._drop(reason)
            return None
        return item

    def _final_dedup(self) -> None:
        """Re-check with exactly the validator's embedding calls and drop any pair it would flag."""
        import numpy as np

        thr = self.o.dedup
        for _ in range(3):
            emb = {s: self._embed([it["question"] for it in self.items[s]]) for s in SETS if self.items[s]}
            bad: dict[str, set[int]] = {}
            for s, e in emb.items():
                sim = e @ e.T
                bad[s] = {int(b) for a, b in zip(*np.nonzero(sim >= thr)) if a < b}
            reason = "near_duplicate"
            if not any(bad.values()) and "forget" in emb:
                reason = "in_retain_or_general"
                others = [emb[s] for s in ("retain",) if s in emb] + [self._embed(self.general_questions)]
                bad = {"forget": {int(i) for m in others if len(m)
                                  for i in np.nonzero((emb["forget"] @ m.T >= thr).any(axis=1))[0]}}
            if not any(bad.values()):
                return
            for s, idx in bad.items():
                self.items[s] = [it for i, it in enumerate(self.items[s]) if i not in idx]
                self._drop(reason, len(idx))


# --- writing and the command -------------------------------------------------------------------


def write_pack(out: Path, meta: dict, items: dict[str, list[dict]]) -> None:
    for s in SETS:
        rows = []
        for i, it in enumerate(items[s], 1):
            rows.append(json.dumps({**it, "id": f"{meta['entity']}-{s}-{i:04d}"}, ensure_ascii=False))
        _atomic_write(out / f"{s}.jsonl", "".join(r + "\n" for r in rows))
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def _check_args(args) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise SnapBenchError(f"snap-bench generate: {msg}")

    need(bool(args.entity.strip()) and len(args.entity) <= 200 and not any(c in args.entity for c in "\n\r\t\0"),
         "--entity must be a non-empty name on one line (at most 200 characters)")
    need(bool(re.match(r"^https?://[^\s/]+", args.base_url)), "--base-url must be an http:// or https:// URL")
    need(bool(args.model.strip()), "--model must not be empty")
    for flag in ("forget_n", "retain_n", "multihop_n"):
        v = getattr(args, flag)
        need(1 <= v <= 100000, f"--{flag.replace('_', '-')} must be between 1 and 100000 (got {v})")
    need(1 <= args.per_call <= 100, f"--per-call must be between 1 and 100 (got {args.per_call})")
    need(0 < args.dedup <= 1, f"--dedup must be a cosine threshold in (0, 1] (got {args.dedup})")
    need(1 <= args.related_k <= 50, f"--related-k must be between 1 and 50 (got {args.related_k})")
    need(0 <= args.max_retries <= 30, f"--max-retries must be between 0 and 30 (got {args.max_retries})")
    need(args.timeout > 0, f"--timeout must be positive (got {args.timeout})")
    need(0 <= args.retry_delay <= 60, f"--retry-delay must be between 0 and 60 seconds (got {args.retry_delay})")


def _entity_arg(out: Path) -> str:
    if ".." in out.parts:  # `run --entity` refuses '..' in a pack path
        return str(out.resolve())
    s = str(out)
    return s if ("/" in s or s.startswith(".")) else f"./{s}"


def cmd_generate(args) -> int:
    api_key = os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
    out = Path(args.out)
    fresh = not out.exists()
    try:
        return _generate(args, api_key)
    except BaseException as exc:
        try:  # leave no empty folder behind when nothing was written
            if fresh and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        except OSError:
            pass
        if isinstance(exc, SnapBenchError):
            raise SnapBenchError(redact(str(exc), [api_key])) from None
        raise


def _generate(args, api_key: str) -> int:
    _check_args(args)
    name = " ".join(args.entity.split())
    aliases = []
    for a in (args.aliases or "").split(","):
        a = " ".join(a.split())
        if a and a.lower() != name.lower() and a.lower() not in {x.lower() for x in aliases}:
            aliases.append(a)
    slug = slugify(name)
    out = Path(args.out)
    _ensure_writable_dir(out, "--out")
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8")).get("entity")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != slug:
            raise SnapBenchError(f"--out {out}: already holds another pack ({old!r}); choose an empty folder")
    cache = Path(args.cache) if args.cache else default_cache_dir()
    _ensure_writable_dir(cache, "--cache")

    from snap_bench import __version__
    from snap_bench.evaluate.judges.base import keyword_hit
    from snap_bench.tasks import load_general, load_pack_dir
    from snap_bench.tasks.validate import validate_pack

    general = load_general()
    clash = [it.id for it in general["general"] if keyword_hit(it.question, [name, *aliases])]
    if clash:
        print(f"snap-bench: warning: {len(clash)} general questions name {name!r} (e.g. {clash[0]}); "
              "`snap-bench tasks validate` will report them", file=sys.stderr)

    client = ChatClient(args.base_url, args.model, api_key, cache, max_retries=args.max_retries,
                        timeout=args.timeout, retry_delay=args.retry_delay, seed=args.seed)
    targets = {"forget": args.forget_n, "retain": args.retain_n, "multihop": args.multihop_n}
    opts = Options(name=name, slug=slug, aliases=aliases, kind=args.kind, targets=targets, per_call=args.per_call,
                   dedup=args.dedup, related_k=args.related_k)
    gen = PackGenerator(opts, client, progress=not args.no_progress)
    items = gen.run()

    empty = [s for s in SETS if not items[s]]
    if empty:  # only the final near-duplicate pass can get here
        raise SnapBenchError(f"no usable {' or '.join(empty)} items left after de-duplication; nothing written")
    if args.kind == "real":
        scope = ("the most related people and organisations, asked about without " + name + ": " + ", ".join(gen.related)
                 if gen.related else f"people, organisations, places and events related to {name}, except {name}")
    else:
        scope = f"the characters, places, organisations, objects and events of {name}'s world, except {name}"
    meta = {
        "entity": slug,
        "name": name,
        "aliases": aliases,
        "kind": args.kind,
        "description": f"{name} ({args.kind}); pack generated by snap-bench generate with {args.model}",
        "retain_scope": scope,
        "generated_by": {
            "tool": f"snap-bench {__version__} generate",
            "model": args.model,
            "base_url": _safe_url(args.base_url),
            "seed": args.seed,
            "dedup": args.dedup,
            "per_call": args.per_call,
            "targets": targets,
            "related": gen.related,
        },
    }
    try:
        write_pack(out, meta, items)
    except OSError as exc:
        raise SnapBenchError(f"--out {out}: cannot write ({exc.strerror or exc})") from None

    pack = load_pack_dir(out)
    problems = validate_pack(pack, general, dedup=True, threshold=args.dedup)
    counts = {s: len(items[s]) for s in SETS}
    categories = {s: {} for s in SETS}
    for s in SETS:
        for it in items[s]:
            categories[s][it["category"]] = categories[s].get(it["category"], 0) + 1
    summary = {
        "out": str(out),
        "entity": slug,
        "name": name,
        "kind": args.kind,
        "counts": counts,
        "targets": targets,
        "categories": categories,
        "api_calls": client.api_calls,
        "cache_hits": client.cache_hits,
        "retries": client.retries,
        "failed_rounds": gen.failed_rounds,
        "dropped": dict(sorted(gen.dropped.items())),
        "related": gen.related,
        "cache": str(cache),
        "valid": not problems,
    }
    for s in SETS:
        if counts[s] < targets[s]:
            print(f"snap-bench: warning: {s}: {counts[s]} of {targets[s]} items (the model gave too few distinct, "
                  f"valid questions; ask again with another --seed or a larger --per-call)", file=sys.stderr)
    for p in problems:
        print(f"snap-bench: {p}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print(f"wrote {out}: " + ", ".join(f"{s} {counts[s]}/{targets[s]}" for s in SETS)
              + f" · {client.api_calls} API calls, {client.cache_hits} cached, {client.retries} retries")
        print(f"next: snap-bench tasks validate {out}\n      snap-bench run --method snap --entity {_entity_arg(out)}")
    return 1 if problems else 0


def add_parser(subparsers, parser_class) -> None:
    g = subparsers.add_parser(
        "generate",
        help="build a task pack for any entity with an LLM behind an OpenAI-compatible API (the SNAP paper's pipeline)",
    )
    g.add_argument("--entity", required=True, metavar="NAME", help="the entity's display name, e.g. \"Wanda Maximoff\"")
    g.add_argument("--base-url", required=True, metavar="URL", help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", required=True, metavar="NAME", help="model name the server knows")
    g.add_argument("--out", required=True, metavar="DIR", help="pack folder to write")
    g.add_argument("--kind", default="fictional", choices=("fictional", "real"),
                   help="fictional (default) or real; real asks for related people/organisations for the retain set")
    g.add_argument("--aliases", default="", metavar="A,B", help="other names of the entity, comma-separated")
    g.add_argument("--forget-n", type=int, default=200, metavar="N", help="forget items to produce (default: 200)")
    g.add_argument("--retain-n", type=int, default=200, metavar="N", help="retain items to produce (default: 200)")
    g.add_argument("--multihop-n", type=int, default=40, metavar="N", help="multihop items to produce (default: 40)")
    g.add_argument("--per-call", type=int, default=20, metavar="N", help="questions asked for per request (default: 20)")
    g.add_argument("--dedup", type=float, default=0.75, metavar="COS",
                   help="near-duplicate cosine threshold under all-MiniLM-L6-v2 (default: 0.75)")
    g.add_argument("--related-k", type=int, default=8, metavar="K",
                   help="related individuals and organisations asked for with --kind real (default: 8)")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="request cache (default: $SNAP_BENCH_CACHE/generate, else ~/.cache/snap-bench/generate)")
    g.add_argument("--max-retries", type=int, default=5, metavar="N",
                   help="retries per request on 429, 5xx, timeouts and connection errors (default: 5)")
    g.add_argument("--retry-delay", type=float, default=1.0, metavar="S",
                   help="first backoff delay in seconds, doubled on each retry (default: 1.0)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for one reply (default: 60)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed sent with every request (default: 0)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    g.set_defaults(func=cmd_generate)
