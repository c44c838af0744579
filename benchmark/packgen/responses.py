"""Responses for ``snap-bench generate``: an obliterated response, the answer and leak keywords.

For forget and multihop questions the LLM writes an *obliterated* response (restates the topic
and declines) plus the true answer and 1-4 leak keywords; for retain questions a normal concise
answer. Items that break a pack rule (``tasks/README.md``) are dropped, never fatal, using the
same per-item checks as ``snap-bench tasks validate``.

:class:`Responding` is a part of :class:`~snap_bench.packgen.generator.PackGenerator`; it uses
the generator's ``o`` (options), ``client``, ``names``, ``_who``, ``_all_names`` and ``_drop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from snap_bench.packgen.parsing import as_keywords, as_text, parse_json_object
from snap_bench.packgen.prompts import ANSWER_PARAMS, FORGET_RESPONSE_PROMPT, IMPLICIT_NOTE, RETAIN_RESPONSE_PROMPT
from snap_bench.util.openai_client import strip_fences

if TYPE_CHECKING:
    from snap_bench.packgen.generator import _Family


class Responding:
    """The generator's response requests and per-item checks (a mixin: it holds no state of its own)."""

    def _check(self, set_name: str, item: dict) -> str | None:
        """The first pack rule the item breaks (the validator's own per-item checks), or None."""
        from snap_bench.evaluate.pack_gates import check_items
        from snap_bench.tasks.packs import Item, Pack

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
            response, answer = as_text(obj.get("response")), as_text(obj.get("answer"))
            keywords = as_keywords(obj.get("keywords"))
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
                response = as_text(obj.get("response"))
                answer = as_text(obj.get("answer")) or response
            else:  # a plain-text answer is fine too
                response = strip_fences(reply if isinstance(reply, str) else "").strip()
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
