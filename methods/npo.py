"""NPO (Zhang et al. 2024): Negative Preference Optimization on the forget answers, plus retain NLL.

"Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning" (Zhang,
Lin, Bai and Mei, COLM 2024, arXiv 2404.05868), eq. (3): DPO with only a rejected response, which
makes gradient ascent's update adaptive and bounded:

    L_NPO = −(2/β) · E_(x,y)∈forget [ log σ( −β · (log πθ(y|x) − log π_ref(y|x)) ) ]

y is the TRUE answer to the forget question x, log π(y|x) the summed log-probability of its tokens
and π_ref the initial model, frozen (``needs_reference = True``: the runner hands a copy in
``ctx.reference``). At θ = θ_ref the loss is (2/β)·log 2; as πθ(y|x) → 0 it decays to 0, so unlike
gradient ascent it stops pushing once an answer is unlikely. β = 0.1 as in the paper.

The paper's best TOFU variant, NPO+RT, adds the retain NLL: L = L_NPO + w·NLL(retain), w = 1
(``retain_weight``; 0 gives plain NPO); with ``retain_data=hard+general`` the general set D_g adds
its own term ``general``, w·NLL(general). No regularizer by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snap_bench.config import MethodConfig
from snap_bench.methods.base import (RETAIN_STREAMS, StepContext, UnlearnData, as_examples, nll_per_stream,
                                     retain_terms, sequence_logprob)
from snap_bench.registry import register_method


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """−(2/β)·mean(log σ(−β·(logp − ref_logp))) over sequences (1-D tensors of summed log-probs)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


@dataclass
class NpoConfig(MethodConfig):
    """NPO's settings: the shared fields plus β and the retain weight."""

    regularizer: str = "none"
    """Zhang et al. use no parameter regularizer (the reference model anchors the loss)."""
    beta: float = 0.1
    """Inverse temperature β of the NPO loss (paper: 0.1)."""
    retain_weight: float = 1.0
    """Weight of the retain (and general) NLL terms: 1 = NPO+RT (the paper's TOFU variant), 0 = plain NPO."""

    def validate(self) -> None:
        super().validate()
        self.require_positive("beta")
        self.require_nonnegative("retain_weight")


@register_method("npo")
class Npo:
    config_cls = NpoConfig
    trains = True
    needs_reference = True

    def __init__(self, cfg: NpoConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        streams = {"forget": as_examples(data.forget, "answer")}
        if self.cfg.retain_weight > 0:
            for name, items in data.retain_streams(self.cfg.retain_data).items():  # "retain", "general"
                streams[name] = as_examples(items, "response")
        return streams

    def loss(self, model, batches, ctx: StepContext):
        if ctx.reference is None:
            raise RuntimeError("npo needs the frozen initial model in ctx.reference (needs_reference = True)")
        forget = batches["forget"]
        logp = sequence_logprob(model, forget)
        with torch.no_grad():
            ref_logp = sequence_logprob(ctx.reference, forget)
        terms = {"forget": npo_loss(logp, ref_logp, self.cfg.beta)}
        keep = {k: batches[k] for k in RETAIN_STREAMS if k in batches}
        if keep:  # one forward pass over the retain and general streams
            terms.update(retain_terms(nll_per_stream(model, keep), self.cfg.retain_weight))
        return terms
