"""The ``snap-bench generate`` pipeline: ask for questions family by family, then respond to each.

For each prompt family (General, 5W1H, Relational, Open-Ended, Implicit, and Multi-Hop for the
multihop set) one continuing chat asks for N questions as a numbered list and then "N more,
different from the above" until the family's share of the target is reached; families that come
up short leave their share to the others. The retain set is filled first (the forget screen
compares against it), using the same families about related things "except <entity>"; for a
real person it first asks for the top-k related individuals and organisations.

Screening (:mod:`.screening`) and responses (:mod:`.responses`) are parts of
:class:`PackGenerator` kept in their own modules.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from snap_bench.errors import SnapBenchError
from snap_bench.packgen.parsing import parse_list
from snap_bench.packgen.prompts import (FAILED_PROMPT, FAILED_RELATED_PROMPT, FAMILIES, FAMILY_CATEGORY,
                                        FORGET_PROMPTS, LIST_FORMAT, LIST_PARAMS, MORE_PROMPT, MORE_RELATED_PROMPT,
                                        RELATED_PROMPT, RETAIN_PROMPTS, RETAIN_RULE, SCOPE_FICTIONAL, SCOPE_REAL,
                                        SCOPE_REAL_FALLBACK, SETS)
from snap_bench.packgen.responses import Responding
from snap_bench.packgen.screening import Screening
from snap_bench.util.openai_client import ChatClient

HISTORY_EXCHANGES = 4  # earlier list replies kept in a continuing chat (bounds the context length)
GIVE_UP_AFTER = 20  # responses in a row, none usable, before a set is declared hopeless


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


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


class PackGenerator(Screening, Responding):
    """Fills the retain, forget and multihop sets for one entity; :meth:`run` returns the items by set."""

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

