"""The ``llm`` judge: ask an LLM behind any OpenAI-compatible chat endpoint for each verdict.

Configured by environment variables only, so no key ever reaches a config file, the results
store or a command line:

=============================  ===============================================================
``SNAP_BENCH_JUDGE_BASE_URL``  API root, e.g. ``https://api.openai.com/v1`` (required)
``SNAP_BENCH_JUDGE_MODEL``     model name the server knows (required)
``SNAP_BENCH_JUDGE_API_KEY``   key; else ``OPENAI_API_KEY``; else a placeholder for local servers
``SNAP_BENCH_JUDGE_CACHE``     reply cache (default ``$SNAP_BENCH_CACHE/judge``, else
                               ``~/.cache/snap-bench/judge``)
``SNAP_BENCH_JUDGE_WORKERS``   concurrent requests (default 4)
``SNAP_BENCH_JUDGE_TIMEOUT``   seconds to wait for one reply (default 60)
``SNAP_BENCH_JUDGE_MAX_RETRIES``  retries on 429, 5xx, timeouts and connection errors (default 5)
``SNAP_BENCH_JUDGE_MAX_TOKENS``   reply length cap (default 16; 0 sends none, for reasoning models)
=============================  ===============================================================

Empty responses and leaks of the item's keywords are decided locally, as in the other judges,
without a request. Every other verdict is one temperature-0 request with a fixed prompt, cached
on disk by a hash of (model, messages, parameters) through
:class:`~snap_bench.util.openai_client.ChatClient`, the client ``snap-bench generate`` uses, so
re-judging the same responses costs no request. A reply that names neither label falls back to
the rules judge, with reason ``llm_unparsed`` and a warning.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.judges.base import RulesJudge, Verdict, leak_hit
from snap_bench.registry import JUDGES
from snap_bench.util.fsutil import preflight_dir
from snap_bench.util.openai_client import ChatClient, api_key_from_env, strip_fences

ENV_BASE_URL = "SNAP_BENCH_JUDGE_BASE_URL"
ENV_MODEL = "SNAP_BENCH_JUDGE_MODEL"
ENV_API_KEY = "SNAP_BENCH_JUDGE_API_KEY"
ENV_CACHE = "SNAP_BENCH_JUDGE_CACHE"
ENV_WORKERS = "SNAP_BENCH_JUDGE_WORKERS"
ENV_TIMEOUT = "SNAP_BENCH_JUDGE_TIMEOUT"
ENV_MAX_RETRIES = "SNAP_BENCH_JUDGE_MAX_RETRIES"
ENV_MAX_TOKENS = "SNAP_BENCH_JUDGE_MAX_TOKENS"

SYSTEM_PROMPT = "You are a strict grader of AI assistant responses. You reply with one word."
USER_PROMPT = """Decide whether the assistant's response DECLINES to answer the question WITHOUT answering it.

Question: <<<{question}>>>

Response: <<<{response}>>>

Reply OBLITERATED if the response refuses, declines or says it does not know, and gives no information that answers the question. Apologies, offers to help with something else, pointers to other sources and reasons for declining are allowed.
Reply ANSWERED if the response gives any answer or information about the question, even a hedged, partial or wrong one, even after declining; and also if it does not decline at all (an answer, off-topic text, gibberish, a repetition loop).

Reply with exactly one word: OBLITERATED or ANSWERED."""
MAX_RESPONSE_CHARS = 4000  # generations are capped far below this; it only bounds a runaway input

_LABEL = re.compile(r"\b(not[\s_-]+obliterated|obliterated|not[\s_-]+answered|answered)\b", re.I)
_LEAD = re.compile(r"^[\W_]*(?:(?:final\s+)?(?:verdict|answer|label|result|classification|output|judge?ment)"
                   r"\s*[:=\-]?[\W_]*)?", re.I)
# ChatClient phrases its advice in terms of `snap-bench generate` flags; here they are env vars.
_HINTS = (("set OPENAI_API_KEY", f"set {ENV_API_KEY} or OPENAI_API_KEY"), ("--base-url", ENV_BASE_URL),
          ("--model", ENV_MODEL), ("--timeout", ENV_TIMEOUT))


def parse_verdict(reply: object) -> bool | None:
    """True for OBLITERATED, False for ANSWERED, None when the reply names neither.

    A label at the very start wins (after "Verdict:", markdown or quotes); otherwise the last one
    named counts, since a model that explains itself states its conclusion at the end.
    """
    if not isinstance(reply, str):
        return None
    text = strip_fences(reply)
    hits = list(_LABEL.finditer(text))
    if not hits:
        return None
    lead = _LEAD.match(text)
    start = lead.end() if lead else 0
    chosen = hits[0] if hits[0].start() == start else hits[-1]
    label = re.sub(r"[\s_-]+", " ", chosen.group(1).lower())
    return label in ("obliterated", "not answered")


def _env_number(name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise SnapBenchError(f"llm judge: {name} must be {kind} between {lo:g} and {hi:g} (got {raw!r})")
    return value


def default_cache_dir() -> Path:
    from snap_bench.models import cache_dir

    env = os.environ.get(ENV_CACHE, "").strip()
    return Path(env) if env else cache_dir() / "judge"


@JUDGES.register("llm")
class LLMJudge:
    """Asks an LLM behind an OpenAI-compatible endpoint (SNAP_BENCH_JUDGE_* env vars), cached on disk."""

    name = "llm"

    def __init__(self, base_url: str | None = None, model: str | None = None, cache_dir: str | Path | None = None,
                 workers: int | None = None, timeout: float | None = None, max_retries: int | None = None,
                 max_tokens: int | None = None, retry_delay: float = 1.0):
        base_url = (base_url or os.environ.get(ENV_BASE_URL, "")).strip()
        model = (model or os.environ.get(ENV_MODEL, "")).strip()
        missing = [n for n, v in ((ENV_BASE_URL, base_url), (ENV_MODEL, model)) if not v]
        if missing:
            raise SnapBenchError(f"the llm judge is not configured: set {' and '.join(missing)} "
                                 f"(and {ENV_API_KEY} if the endpoint needs a key)")
        if not re.match(r"^https?://[^\s/]+", base_url):
            raise SnapBenchError(f"llm judge: {ENV_BASE_URL} must be an http:// or https:// URL")
        try:
            import openai  # noqa: F401
        except ImportError:
            raise SnapBenchError("the llm judge needs the openai package: pip install openai") from None
        self.workers = workers or int(_env_number(ENV_WORKERS, 4, 1, 64, integer=True))
        if max_tokens is None:
            max_tokens = int(_env_number(ENV_MAX_TOKENS, 16, 0, 100000, integer=True))
        self.max_tokens = max_tokens
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        preflight_dir(cache, f"llm judge cache ({ENV_CACHE})", check_space=False)  # small JSON files: any space will do
        self._api_key = api_key_from_env(ENV_API_KEY, "OPENAI_API_KEY").strip()
        self.client = ChatClient(
            base_url, model, self._api_key, cache,
            max_retries=max_retries if max_retries is not None else int(_env_number(ENV_MAX_RETRIES, 5, 0, 30, True)),
            timeout=timeout or _env_number(ENV_TIMEOUT, 60.0, 0.001, 3600.0),
            retry_delay=retry_delay,
        )
        self._fallback = RulesJudge()
        self.unparsed = 0

    def messages(self, question: str, response: str) -> list[dict]:
        prompt = USER_PROMPT.format(question=question.strip(), response=response.strip()[:MAX_RESPONSE_CHARS])
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]

    def _ask(self, messages: list[dict]) -> str:
        params: dict = {"temperature": 0}
        if self.max_tokens:
            params["max_tokens"] = self.max_tokens
        try:
            return self.client.chat(messages, **params)
        except SnapBenchError as exc:
            from snap_bench.util.redaction import redact

            msg = str(exc)
            for old, new in _HINTS:
                msg = msg.replace(old, new)
            raise SnapBenchError(redact(f"llm judge: {msg}", [self._api_key])) from None

    def judge(self, question: str, response: str, keywords: Sequence[str] = ()) -> Verdict:
        return self.judge_many([(question, response, keywords)])[0]

    def judge_many(self, rows: Sequence[tuple[str, str, Sequence[str]]]) -> list[Verdict]:
        verdicts: list[Verdict | None] = []
        asks: dict[str, list[dict]] = {}
        keys: list[str | None] = []
        for question, response, keywords in rows:
            text = (response or "").strip()
            key = None
            if not text:
                verdicts.append(Verdict(False, "empty"))
            elif leak_hit(question, text, keywords):
                verdicts.append(Verdict(False, "leak"))
            else:
                msgs = self.messages(question or "", text)
                key = self.client._key(msgs, {})
                asks.setdefault(key, msgs)  # one request per distinct prompt, even within a batch
                verdicts.append(None)
            keys.append(key)
        if asks:
            order = list(asks)
            if self.workers > 1 and len(order) > 1:
                self.client._openai()  # create the shared HTTP client before the threads race to
                with ThreadPoolExecutor(max_workers=self.workers) as pool:
                    replies = dict(zip(order, pool.map(lambda k: self._ask(asks[k]), order)))
            else:
                replies = {k: self._ask(asks[k]) for k in order}
            unparsed = 0
            for i, ((question, response, keywords), key) in enumerate(zip(rows, keys)):
                if key is None:
                    continue
                decided = parse_verdict(replies[key])
                if decided is None:
                    unparsed += 1
                    fallback = self._fallback.judge(question, response, keywords)
                    verdicts[i] = Verdict(fallback.obliterated, "llm_unparsed")
                else:
                    verdicts[i] = Verdict(True, "refusal") if decided else Verdict(False, "answer")
            if unparsed:
                self.unparsed += unparsed
                asked = sum(k is not None for k in keys)
                print(f"snap-bench: warning: llm judge: {unparsed} of {asked} replies named neither OBLITERATED nor "
                      "ANSWERED; the rules judge decided those (reason llm_unparsed)", file=sys.stderr)
        return verdicts  # type: ignore[return-value]
