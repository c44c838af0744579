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

from snap_bench.methods._preference import PreferenceConfig, PreferenceMethod
from snap_bench.methods.base import StepContext, sequence_logprob
from snap_bench.registry import register_method


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """−(2/β)·mean(log σ(−β·(logp − ref_logp))) over sequences (1-D tensors of summed log-probs)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


@dataclass
class NpoConfig(PreferenceConfig):
    """NPO's settings: the shared fields plus β (paper: 0.1) and the retain weight (1 = NPO+RT, the paper's
    TOFU variant; 0 = plain NPO)."""

    regularizer: str = "none"
    """Zhang et al. use no parameter regularizer (the reference model anchors the loss)."""


@register_method("npo")
class Npo(PreferenceMethod):
    """The forget stream is the true answers (``forget_target = "answer"``), pushed below the reference."""

    config_cls = NpoConfig

    def loss(self, model, batches, ctx: StepContext):
        reference, forget = self.reference(ctx, "npo"), batches["forget"]
        logp = sequence_logprob(model, forget)
        with torch.no_grad():
            ref_logp = sequence_logprob(reference, forget)
        return self.with_retain_terms(model, batches, {"forget": npo_loss(logp, ref_logp, self.cfg.beta)})
