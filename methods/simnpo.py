"""SimNPO (Fan et al. 2024): NPO without the reference model, length-normalised, with a margin γ.

"Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning" (Fan, Liu, Lin,
Jia, Zhang, Mei and Liu, arXiv 2410.07163; the objective as the paper and the authors' model cards write
it). NPO compares πθ with a frozen reference; SimNPO argues that reference is a bias (it spends the same
effort on answers the model already finds unlikely) and drops it, normalising by the answer's length
instead, as SimPO does for DPO:

    L_SimNPO = −(2/β) · E_(x,y)∈forget [ log σ( −(β/|y|) · log πθ(y|x) − γ ) ]

y is the TRUE answer to the forget question x (the forget stream of the NPO family), log πθ(y|x) the
summed log-probability of its |y| tokens, so −(1/|y|)·log πθ(y|x) is the answer's mean token NLL: the
loss falls towards 0 as that NLL grows past γ/β, and, like NPO's, its gradient is gradient ascent's
reweighted by σ(·), which fades once an answer is unlikely. No reference model (``needs_reference``
False): one forward pass fewer than NPO, and no second copy of the weights.

The full objective adds the retain NLL (the authors' ``simnpo_grad_diff``, the variant they report):

    L = w_f · L_SimNPO + w_r · NLL(retain)      [+ w_r · NLL(general) with ``retain_data=hard+general``]

Defaults: the authors' TOFU forget05 setting, the benchmark closest to ours (question-answer pairs about
one fictitious person each). Their README (github.com/OPTML-Group/Unlearn-Simple, ``TOFU/README.md``)
runs ``forget.py split=forget05 npo_coeff=0.1375 beta=2.5``; ``TOFU/config/forget.yaml`` leaves
``gamma: 0.0`` and ``grad_diff_coeff: 1.0``; and the released model card
(huggingface.co/OPTML-Group/SimNPO-TOFU-forget05-Llama-2-7b-chat) lists lr 1e-5, β 2.5, γ 0.0 and 0.1375.
So β = 2.5, γ = 0, w_f = 0.1375 (``npo_coeff``), w_r = 1 (``grad_diff_coeff``). Forget10 uses β = 4.5,
w_f = 0.125; MUSE's README commands use β 0.7–0.75, the code's gamma 0–3, ``npo_coeff 1.0`` and ``coeff 0.1``
(``MUSE/baselines/baselines/iterative.py`` applies its SimNPO line to raw logits, so TOFU's code is the
reference here).

What the defaults do on a model that never learned the forget answers: TOFU's models are fine-tuned on the
forget set first, so its answers' NLL starts near 0 and the loss near (2/β)·log 2. SmolLM2-135M's mean
token NLL on peter_parker's true answers is 4.4 nats, so with β = 2.5 and γ = 0 the loss starts at
≈ (2/β)·e^(−β·4.4) ≈ 1.5e-5 (2e-6 after w_f) and its gradient weight 2·(1 − σ(β·NLL − γ)) is ≈ 4e-5: the
run is then little more than the retain NLL (``--set gamma=...`` or a smaller β keeps it pushing).

Two conventions differ between the paper and the code, both recorded in docs/deviations.md:

- γ: the paper's formula puts γ outside β, as above; the code (``TOFU/dataloader.py``, ``simnpo_grad_diff``:
  ``-logsigmoid(beta * (nll / |y| - gamma))``) and open-unlearning (``delta``) put it inside, so their γ is
  the paper's γ/β. This module follows the paper. They agree at the TOFU default γ = 0.
- 0.1375: the model card writes it as λ on the retain term; the code multiplies the forget term by it
  (``npo_coeff * forget_loss + grad_diff_coeff * retain_loss``). This module follows the code, which made
  the released model: ``forget_weight`` = 0.1375, ``retain_weight`` = 1.

The paper's optimisation (lr 1e-5, 10–20 epochs, batch 32 on 8 GPUs) is replaced by the suite's shared
fields, so SimNPO gets the same step budget as every other method. No regularizer by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snap_bench.errors import SnapBenchError
from snap_bench.methods._preference import PreferenceConfig, PreferenceMethod
from snap_bench.methods.base import StepContext, token_logprobs
from snap_bench.registry import register_method


def mean_token_logprob(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean log-probability of each row's labelled tokens, whether the row has any): (1/|y|)·log π(y|x)."""
    logp, rows = token_logprobs(model, batch)
    n = batch["input_ids"].shape[0]
    total = torch.zeros(n, dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)
    count = torch.bincount(rows, minlength=n).to(logp.dtype)
    return total / count.clamp(min=1), count > 0


def simnpo_loss(mean_logp: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """−(2/β)·mean(log σ(−β·mean_logp − γ)) over sequences; ``mean_logp`` is (1/|y|)·log πθ(y|x) per row."""
    return -(2.0 / beta) * F.logsigmoid(-beta * mean_logp - gamma).mean()


@dataclass
class SimNpoConfig(PreferenceConfig):
    """SimNPO's settings: the shared fields plus β, γ and the two weights (the authors' TOFU forget05 values)."""

    regularizer: str = "none"
    """Fan et al. use no parameter regularizer (the retain NLL keeps utility)."""
    beta: float = 2.5
    """Inverse temperature β of the length-normalised loss. 2.5: the authors' TOFU forget05 command
    (``TOFU/README.md``: ``beta=2.5``; model card OPTML-Group/SimNPO-TOFU-forget05-Llama-2-7b-chat); 4.5 for
    forget10, 0.7–0.75 on MUSE."""
    gamma: float = 0.0
    """Reward margin γ ≥ 0, in the paper's form −(β/|y|)·log π − γ (the authors' code and open-unlearning's
    ``delta`` are γ/β). 0: ``TOFU/config/forget.yaml`` ``gamma: 0.0`` and the forget05 model card; MUSE-News
    uses the code's 3.0 at β 0.75 (γ = 2.25 here)."""
    forget_weight: float = 0.1375
    """Weight w_f of the SimNPO term. 0.1375: ``npo_coeff`` of the authors' TOFU forget05 command, which their
    code (``TOFU/dataloader.py``, ``simnpo_grad_diff``) multiplies the forget loss by (the model card calls it
    λ); 0.125 for forget10."""
    retain_weight: float = 1.0
    """Weight w_r of the retain (and general) NLL terms: ``grad_diff_coeff`` = 1.0 in ``TOFU/config/forget.yaml``.
    0 = SimNPO alone (no retain stream is built)."""

    def validate(self) -> None:
        super().validate()
        self.require_positive("forget_weight")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise SnapBenchError(f"--set gamma={self.gamma}: must be >= 0 (SimNPO's reward margin)")


@register_method("simnpo")
class SimNpo(PreferenceMethod):
    """Reference-free NPO on the true forget answers, length-normalised, with margin γ, plus retain NLL."""

    config_cls = SimNpoConfig
    needs_reference = False

    def loss(self, model, batches, ctx: StepContext):
        mean_logp, has_answer = mean_token_logprob(model, batches["forget"])
        if bool(has_answer.any()):  # a row whose answer was cut away entirely has no tokens to score
            forget = simnpo_loss(mean_logp[has_answer], self.cfg.beta, self.cfg.gamma)
        else:
            forget = mean_logp.sum() * 0.0
        return self.with_retain_terms(model, batches, {"forget": self.cfg.forget_weight * forget})
