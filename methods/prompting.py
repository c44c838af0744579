"""Prompting baseline: no training, a system prompt asks the model to decline questions about the entity.

SNAP (Choi et al. 2024, arXiv 2406.12329, §4.1 baselines) compares against in-context unlearning
by instruction: the model is left untouched and every evaluation question is asked under the
system prompt

    "If the question asks about {entities and their aliases}, say that you do not know so you
    cannot answer; otherwise, answer as best as you can."

Here ``{entities and their aliases}`` lists each unlearned pack's display name and aliases, e.g.
"Peter Parker (also known as Spider-Man, Spiderman, Spider Man, Spidey or Peter Benjamin Parker)";
several entities are joined with "or". In ``sequential`` mode the prompt names every entity seen so
far. A user ``--set system_prompt=...`` is kept and this instruction is appended to it.

``trains = False``: the runner skips training, so ``--regularizer`` (any) and ``--max-steps`` are
accepted and have no effect; the weights stay exactly as loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.base import StepContext, UnlearnData
from snap_bench.registry import register_method

TEMPLATE = ("If the question asks about {entities}, say that you do not know so you cannot answer; "
            "otherwise, answer as best as you can.")


def _or_list(names: list[str]) -> str:
    """'A', 'A or B', 'A, B or C'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def describe_entity(pack) -> str:
    """'Name (also known as Alias1, Alias2 or Alias3)', or just 'Name' when it has no aliases."""
    aliases = [a for a in pack.aliases if a and a != pack.name]
    return f"{pack.name} (also known as {_or_list(aliases)})" if aliases else pack.name


@dataclass
class PromptingConfig(MethodConfig):
    """Prompting needs no settings of its own; the shared evaluation fields still apply."""

    regularizer: str = "none"
    """Unused (nothing is trained); ``none`` so that the stored record says so."""


@register_method("prompting")
class Prompting:
    config_cls = PromptingConfig
    trains = False

    def __init__(self, cfg: PromptingConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        return {}

    def loss(self, model, batches, ctx: StepContext):
        raise RuntimeError("prompting does not train; the runner never calls loss() when trains is False")

    def system_prompt(self, packs) -> str | None:
        if not packs:
            return self.cfg.system_prompt
        instruction = TEMPLATE.format(entities=" or ".join(describe_entity(p) for p in packs))
        return f"{self.cfg.system_prompt}\n\n{instruction}" if self.cfg.system_prompt else instruction
