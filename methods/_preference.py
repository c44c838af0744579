"""What the two reference-anchored preference methods, NPO and IdK-DPO, share: β and the retain weight,
the frozen-reference check, the forget stream plus weighted retain streams, and the retain terms.

Not a method itself (the leading underscore keeps the registry from importing it as one): ``npo.py``
and ``idk_dpo.py`` subclass :class:`PreferenceConfig` and :class:`PreferenceMethod` and add their loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from snap_bench.config import MethodConfig
from snap_bench.methods.base import RETAIN_STREAMS, StepContext, UnlearnData, as_examples, nll_per_stream, retain_terms


@dataclass
class PreferenceConfig(MethodConfig):
    """The shared fields plus β and the retain weight (both methods: β = 0.1, retain weight 1)."""

    regularizer: str = "none"
    """No parameter regularizer by default (the reference model anchors the loss)."""
    beta: float = 0.1
    """Inverse temperature β of the preference loss (NPO's and DPO's baselines: 0.1)."""
    retain_weight: float = 1.0
    """Weight of the retain (and general) NLL terms: 1 = an unweighted sum (NPO+RT, TOFU's DPO+RT); 0 = the
    preference loss alone (no retain stream is built)."""

    def validate(self) -> None:
        super().validate()
        self.require_positive("beta")
        self.require_nonnegative("retain_weight")


class PreferenceMethod:
    """A method whose forget loss compares the model with the frozen initial model (``needs_reference``),
    with the retain and general NLL terms added with weight ``retain_weight``."""

    trains = True
    needs_reference = True
    forget_target = "answer"
    """Which text of a forget item the forget stream trains on: ``answer`` (the truth) or ``response``."""

    def __init__(self, cfg: PreferenceConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        streams = {"forget": as_examples(data.forget, self.forget_target)}
        if self.cfg.retain_weight > 0:
            for name, items in data.retain_streams(self.cfg.retain_data).items():  # "retain", "general"
                streams[name] = as_examples(items, "response")
        return streams

    def reference(self, ctx: StepContext, name: str):
        """The frozen initial model the trainer hands in ``ctx.reference``."""
        if ctx.reference is None:
            raise RuntimeError(f"{name} needs the frozen initial model in ctx.reference (needs_reference = True)")
        return ctx.reference

    def with_retain_terms(self, model, batches: Mapping[str, dict[str, torch.Tensor]],
                          terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``terms`` plus the weighted NLL of each retain and general stream in ``batches``."""
        keep = {k: batches[k] for k in RETAIN_STREAMS if k in batches}
        if keep:  # one forward pass over the retain and general streams
            terms.update(retain_terms(nll_per_stream(model, keep), self.cfg.retain_weight))
        return terms
