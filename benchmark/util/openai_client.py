"""A chat-completions client for any OpenAI-compatible endpoint: on-disk reply cache and retries.

Two commands talk to an LLM the same way: ``snap-bench generate`` (packgen) writes task packs
with it, and the ``llm`` judge (evaluate) asks it for verdicts. Both use this one client, so the
cache format, the retry policy and the key handling cannot drift apart, and the judge does not
depend on the pack generator.

Every request is cached under a hash of (model, messages, params), written atomically, so an
interrupted run resumes for free and an identical re-run makes no API call. API keys come from
the environment only (:func:`api_key_from_env`); a key is never part of the cache key, the cache
file or any message, and every error this module raises passes through
:func:`~snap_bench.util.redaction.redact`. Error advice is phrased in ``snap-bench generate``'s
flags (``--base-url``, ``--model``, ``--timeout``); the judge rewrites it to its env vars.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from snap_bench.errors import SnapBenchError
from snap_bench.util.fsutil import atomic_write_text as _atomic_write
from snap_bench.util.redaction import redact

RETRY_STATUS = {408, 409, 429}
MAX_BACKOFF_S = 60.0
PLACEHOLDER_KEY = "not-needed"  # local servers want some key; this one is no secret


def api_key_from_env(*names: str) -> str:
    """The first non-empty of the environment variables ``names``, else :data:`PLACEHOLDER_KEY`.
    Keys are read from the environment only, never from a flag, a config file or the store."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return PLACEHOLDER_KEY


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters (server errors can be whole HTML pages)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: str) -> str:
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


def strip_fences(text: str) -> str:
    """The reply without a reasoning model's <think> block and without a surrounding code fence."""
    t = re.sub(r"<think>.*?(?:</think>|$)", "", text, flags=re.S).strip()
    m = re.match(r"^```[\w-]*\s*\n?(.*?)\n?```\s*$", t, re.S)
    return m.group(1).strip() if m else t


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
        return SnapBenchError(redact(f"{safe_url(self.base_url)}: {one_line(message)}", [self._api_key]))

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
                what = f"cannot connect ({one_line(str(cause), 160) or type(cause).__name__})"
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
