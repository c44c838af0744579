"""Per-response scores beside the judge's verdict: leak, ROUGE-L recall, degenerate output.

The paper's metrics (UA, RA, TA) only ask whether a response declines. A user of an unlearned
model also needs to know whether the answer still comes out (``leak``, ``rougeL_forget``),
whether answers about everything else are still right (``rougeL_retain``, ``rougeL_general``,
``RA_known``) and whether "not obliterated" responses are answers at all (``degenerate``).
These put refusal methods (SNAP) and removal methods (gradient ascent, NPO) on common ground: a
removal method never declines, so its UA is 0 by construction, but its leak and ROUGE-L show
what it removed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

from snap_bench.evaluate.judges.base import leak_hit

KNOWN_ROUGE = 0.5
"""An untrained response whose ROUGE-L recall of the reference answer is at least this counts as
"the model knew it" for RA_known (the recall threshold TOFU uses to call an answer correct)."""


def leaked(question: str, response: str, keywords: Sequence[str]) -> bool:
    """The response reveals the answer: a leak keyword absent from the question appears in it."""
    return leak_hit(question, response, keywords) is not None


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    # Stemming as TOFU and MUSE score it; recall of the reference answer, so a long response that
    # contains the answer scores as high as the bare answer.
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, response: str) -> float:
    """ROUGE-L recall (0-1) of ``reference`` in ``response`` (the ``rouge-score`` package)."""
    if not reference.strip():
        return 0.0
    return float(_scorer().score(reference, response or "")["rougeL"].recall)


LOOP_MIN_WORDS = 6
"""Below this many words a text is too short for its repeated 3-grams to mean anything."""
LOOP_3GRAM_REPEAT = 0.5
"""Degenerate when at least this share of a text's word 3-grams repeat an earlier one. A single
sentence repeated twice scores just under 0.5; three times, above it."""
LOOP_SPAN_SHARE = 0.5
LOOP_SPAN_MIN_CHARS = 20
"""Degenerate when one unit of 1-10 characters repeated 6+ times in a row covers at least this
share of the text and at least this many characters ("hahahaha...", "!!!!!!!...", "abcabcabc...")."""

_WORDS = re.compile(r"\w+", re.U)
_CHAR_LOOP = re.compile(r"(.{1,10}?)\1{5,}", re.S)


def degenerate(text: str | None) -> str | None:
    """Why a response is empty or gibberish (``empty``, ``no_words``, ``char_loop``, ``ngram_loop``),
    or None if it is not. Such a response is neither a refusal nor an answer. A short answer is never
    degenerate for being short ("1962." is an answer)."""
    t = (text or "").strip()
    if not t:
        return "empty"
    words = _WORDS.findall(t.lower())
    if not words:
        return "no_words"
    longest = max((m.end() - m.start() for m in _CHAR_LOOP.finditer(t)), default=0)
    if longest >= LOOP_SPAN_MIN_CHARS and longest >= LOOP_SPAN_SHARE * len(t):
        return "char_loop"
    if len(words) >= LOOP_MIN_WORDS:
        grams = list(zip(words, words[1:], words[2:]))
        if 1 - len(set(grams)) / len(grams) >= LOOP_3GRAM_REPEAT:
            return "ngram_loop"
    return None


