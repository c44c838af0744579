"""Gradient ascent (Jang et al. 2023): maximise the NLL of the true answers to the forget questions.

"Knowledge Unlearning for Mitigating Privacy Risks in Language Models" (Jang et al., ACL 2023,
arXiv 2210.01504) unlearns a sequence by gradient *ascent* on its language-modelling loss:

    L = −NLL(forget questions → their TRUE answers)  [+ w·NLL(retain questions → their answers)]

Unlike SNAP it never shows the model what to say instead: it only pushes probability away from
the answers, so a long run degrades the model (the loss is unbounded below; gradient clipping,
``max_grad_norm``, keeps each step finite). Paper defaults: pure GA (no retain term), no
regularizer; they train GPT-Neo with lr 5e-5 until the target sequences' extraction likelihood
drops, which this suite replaces with its shared step budget (``epochs``/``max_steps``).

``retain_weight`` > 0 adds a retain NLL term (the forget and retain streams then split
``batch_size``; with ``retain_data=hard+general`` the general set is a third stream and term,
``general``, with the same weight); ``retain_weight = 1`` is the gradient-difference baseline
(``grad_diff``).
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.base import StepContext, UnlearnData, nll_per_stream, retain_terms
from snap_bench.registry import register_method


@dataclass
class GradientAscentConfig(MethodConfig):
    """Gradient ascent's settings: the shared fields plus the retain weight."""

    regularizer: str = "none"
    """Jang et al. use no regularizer; ``--regularizer`` adds one (e.g. ``swd``, ``l2``, ``fisher``)."""
    retain_weight: float = 0.0
    """Weight of the retain (and general) NLL terms. 0 = pure gradient ascent as in Jang et al. 2023 (no retain
    stream is built)."""

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("retain_weight")


@register_method("gradient_ascent")
class GradientAscent:
    config_cls = GradientAscentConfig
    trains = True

    def __init__(self, cfg: GradientAscentConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        # the truth, to be pushed away, and the data to keep ("retain", "general")
        return data.truth_streams(self.cfg.retain_data, keep=self.cfg.retain_weight > 0)

    def loss(self, model, batches, ctx: StepContext):
        nll = nll_per_stream(model, batches)
        return {"forget": -nll["forget"], **retain_terms(nll, self.cfg.retain_weight)}
