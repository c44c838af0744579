"""Lenient parsing of LLM replies for ``snap-bench generate``.

Models answer "a numbered list" with numbers, bullets, JSON, bold, quotes, code fences or a
reasoning block first; every parser here accepts all of those and returns ``None`` (a failed
round, asked again) rather than raising when a reply is not what was asked for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from snap_bench.util.openai_client import strip_fences

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
    t = strip_fences(text)
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
    t = strip_fences(text)
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


def as_text(v: Any) -> str:
    """A JSON field as one string: numbers as text, lists joined, anything else empty."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, list):
        return ", ".join(as_text(x) for x in v if as_text(x))
    return v.strip() if isinstance(v, str) else ""


def as_keywords(v: Any) -> list[str]:
    """Leak keywords from a JSON field (a list or a comma-separated string), de-duplicated, 2-60 chars."""
    if isinstance(v, str):
        v = v.split(",")
    if not isinstance(v, list):
        return []
    out: list[str] = []
    for k in v:
        k = as_text(k).strip(" \"'.;:")
        if 2 <= len(k) <= 60 and k.lower() not in {x.lower() for x in out}:
            out.append(k)
    return out


def norm_question(q: str) -> str:
    """The question reduced to lower-case words, for exact-duplicate checks."""
    return re.sub(r"[\W_]+", " ", q.lower()).strip()
