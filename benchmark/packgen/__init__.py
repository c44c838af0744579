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

Every chat-completions request goes through :class:`~snap_bench.util.openai_client.ChatClient`,
cached on disk under a hash of (model, messages, params), written atomically, so an interrupted
run resumes for free and an identical re-run makes no API call at all. The API key is never part
of the cache key, the cache, the pack or any message.

The modules, in the order a run uses them: :mod:`.command` (flags, the run, the summary),
:mod:`.prompts` (what is asked), :mod:`.generator` (questions family by family),
:mod:`.parsing` (lenient reading of replies), :mod:`.screening` (names and duplicates),
:mod:`.responses` (obliterated responses, answers, keywords) and :mod:`.pack` (``meta.json`` and
the ``.jsonl`` files). This package re-exports their public names.
"""

from __future__ import annotations

from snap_bench.packgen.command import add_parser, cmd_generate, default_cache_dir
from snap_bench.packgen.generator import GIVE_UP_AFTER, HISTORY_EXCHANGES, Options, PackGenerator
from snap_bench.packgen.pack import pack_meta, slugify, write_pack
from snap_bench.packgen.parsing import parse_json_object, parse_list
from snap_bench.packgen.prompts import (ANSWER_PARAMS, FAILED_PROMPT, FAILED_RELATED_PROMPT, FAMILIES, FAMILY_CATEGORY,
                                        FORGET_PROMPTS, FORGET_RESPONSE_PROMPT, IMPLICIT_NOTE, LIST_FORMAT, LIST_PARAMS,
                                        MORE_PROMPT, MORE_RELATED_PROMPT, RELATED_PROMPT, RETAIN_PROMPTS,
                                        RETAIN_RESPONSE_PROMPT, RETAIN_RULE, SCOPE_FICTIONAL, SCOPE_REAL,
                                        SCOPE_REAL_FALLBACK, SETS)
from snap_bench.packgen.screening import DEDUP_MARGIN
from snap_bench.util.openai_client import MAX_BACKOFF_S, PLACEHOLDER_KEY, RETRY_STATUS, ChatClient
from snap_bench.util.redaction import redact  # re-exported: tests import it from here

__all__ = [
    "ANSWER_PARAMS", "DEDUP_MARGIN", "FAILED_PROMPT", "FAILED_RELATED_PROMPT", "FAMILIES", "FAMILY_CATEGORY",
    "FORGET_PROMPTS", "FORGET_RESPONSE_PROMPT", "GIVE_UP_AFTER", "HISTORY_EXCHANGES", "IMPLICIT_NOTE", "LIST_FORMAT",
    "LIST_PARAMS", "MAX_BACKOFF_S", "MORE_PROMPT", "MORE_RELATED_PROMPT", "PLACEHOLDER_KEY", "RELATED_PROMPT",
    "RETAIN_PROMPTS", "RETAIN_RESPONSE_PROMPT", "RETAIN_RULE", "RETRY_STATUS", "SCOPE_FICTIONAL", "SCOPE_REAL",
    "SCOPE_REAL_FALLBACK", "SETS", "ChatClient", "Options", "PackGenerator", "add_parser", "cmd_generate",
    "default_cache_dir", "pack_meta", "parse_json_object", "parse_list", "redact", "slugify", "write_pack",
]
