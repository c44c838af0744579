"""Gradient difference: gradient ascent on the forget answers plus gradient descent on retain data.

"Continual Learning and Private Unlearning" (Liu, Liu and Stone, CoLLAs 2022, arXiv 2203.12817)
and TOFU's "Grad. Diff." baseline (Maini et al. 2024, arXiv 2401.06121, §4):

    L = −NLL(forget questions → their TRUE answers) + w·NLL(retain questions → their answers)

with w = 1 as in TOFU (the two terms are summed with equal weight) and no regularizer. Which
retain data is used follows ``retain_data`` (default the entity's hard retain set D_r); with
``hard+general`` the general set D_g is a second stream whose NLL is its own term ``general``,
weighted by the same w; with ``retain_data=none`` only the ascent term remains, i.e. plain
``gradient_ascent``.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.base import StepContext, UnlearnData, as_examples, nll_per_stream, retain_terms
from snap_bench.registry import register_method


@dataclass
class GradDiffConfig(MethodConfig):
    """Gradient difference's settings: the shared fields plus the retain weight."""

    regularizer: str = "none"
    """TOFU's baseline has no regularizer; ``--regularizer`` adds one."""
    retain_weight: float = 1.0
    """Weight w of the retain NLL term, and of the general (D_g) term when there is one (TOFU: 1, an unweighted sum)."""

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("retain_weight")


@register_method("grad_diff")
class GradDiff:
    config_cls = GradDiffConfig
    trains = True

    def __init__(self, cfg: GradDiffConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        streams = {"forget": as_examples(data.forget, "answer")}
        for name, items in data.retain_streams(self.cfg.retain_data).items():  # "retain" (D_r), "general" (D_g)
            streams[name] = as_examples(items, "response")
        return streams

    def loss(self, model, batches, ctx: StepContext):
        nll = nll_per_stream(model, batches)  # one forward pass over all streams
        return {"forget": -nll["forget"], **retain_terms(nll, self.cfg.retain_weight)}
