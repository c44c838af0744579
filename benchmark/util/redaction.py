"""One place that strips secrets from text before it is printed, stored or raised.

A secret is the OpenAI/judge API key or the value of ANY environment variable whose name ends
in ``_KEY`` or ``_TOKEN`` (``HF_TOKEN``, ``ANTHROPIC_API_KEY``, ...), plus anything shaped like
an ``sk-...`` key or an ``Authorization: Bearer ...`` header that a server echoed back. The CLI's
error lines, ``Store.fail_run`` reasons and every message the API clients raise pass through
:func:`redact`, so a failing server that echoes the key cannot put it in a log, the store, a
report or an exception.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

MASK = "***"
# Values shorter than this are not treated as secrets: masking "1" or "on" everywhere would
# mangle messages and protect nothing.
MIN_SECRET_LEN = 6
_SECRET_NAME = re.compile(r"(?:_KEY|_TOKEN)$", re.I)
_ALWAYS = ("OPENAI_API_KEY", "SNAP_BENCH_JUDGE_API_KEY")


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    """Current secret values, longest first (so a key that contains another is masked whole)."""
    vals = {v.strip() for k, v in os.environ.items() if (_SECRET_NAME.search(k) or k in _ALWAYS) and v}
    vals |= {s.strip() for s in extra if s}
    return sorted((v for v in vals if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret value, ``sk-...`` token, echoed ``api key: ...`` and bearer token masked."""
    text = str(text)
    for s in secret_values(extra):
        text = text.replace(s, MASK)
    text = re.sub(r"\bsk-[A-Za-z0-9_\-*.]{4,}", "sk-" + MASK, text)
    text = re.sub(r"(?i)(api[ _-]?key(?: provided)?\s*[:=]\s*)\S+", r"\1" + MASK, text)
    text = re.sub(r"(?i)(bearer\s+)\S+", r"\1" + MASK, text)
    return text
