"""Question screening for ``snap-bench generate``: names, length, exact and near duplicates.

The paper's SBERT filter (all-MiniLM-L6-v2, cosine >= ``--dedup`` inside a set) plus removal of
forget questions that reappear in the retain set or the general set D_g. Screening runs as
questions arrive, so a rejected question costs no response request; a last pass re-checks the
finished sets with exactly the validator's embedding calls.

:class:`Screening` is a part of :class:`~snap_bench.packgen.generator.PackGenerator`, kept apart
because it is the one piece that embeds; it uses the generator's ``o`` (options), ``names``,
``items``, ``general_questions``, ``_seen``, ``_block``, ``_general_emb``, ``_retain_emb`` and
``_drop``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snap_bench.packgen.parsing import norm_question
from snap_bench.packgen.prompts import SETS

if TYPE_CHECKING:
    from snap_bench.packgen.generator import _Family

DEDUP_MARGIN = 2e-3  # keep a little below the threshold: batch composition moves cosines by ~1e-6


class Screening:
    """The generator's question filters (a mixin: it holds no state of its own)."""

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
            norm = norm_question(q)
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

