"""Gradient difference: gradient ascent on the forget answers plus gradient descent on retain data.

"Continual Learning and Private Unlearning" (Liu, Liu and Stone, CoLLAs 2022, arXiv 2203.12817)
and TOFU's "Grad. Diff." baseline (Maini et al. 2024, arXiv 2401.06121, §4):

    L = −NLL(forget questions → their TRUE answers) + w·NLL(retain questions → their answers)

with w = 1 as in TOFU (the two terms are summed with equal weight) and no regularizer. Which
retain data is used follows ``retain_data`` (default the entity's hard retain set D_r); with
``hard+general`` the general set D_g is a second stream whose NLL is its own term ``general``,
weighted by the same w; with ``retain_data=none`` or ``retain_weight=0`` only the ascent term remains, i.e. plain
``gradient_ascent``.

It is gradient ascent with a retain weight of 1: the streams and the loss are
``methods/gradient_ascent.py``'s; only the defaults differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.gradient_ascent import GradientAscent
from snap_bench.registry import register_method


@dataclass
class GradDiffConfig(MethodConfig):
    """Gradient difference's settings: the shared fields plus the retain weight."""

    regularizer: str = "none"
    """TOFU's baseline has no regularizer; ``--regularizer`` adds one."""
    retain_weight: float = 1.0
    """Weight w of the retain NLL term, and of the general (D_g) term when there is one (TOFU: 1, an unweighted
    sum). 0 leaves plain gradient ascent (no retain stream is built)."""

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("retain_weight")


@register_method("grad_diff")
class GradDiff(GradientAscent):
    """Gradient ascent's streams and loss (forget answers pushed away, retain terms weighted by
    ``retain_weight``) under TOFU's defaults."""

    config_cls = GradDiffConfig
