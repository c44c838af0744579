"""SKU (Liu et al. 2024): learn the entity's knowledge into a copy, then subtract that task vector.

Selective Knowledge negation Unlearning ("Towards Safer Large Language Models through Machine
Unlearning", Liu, Dou, Tan, Tian and Jiang, Findings of ACL 2024, arXiv 2402.10058; official code
github.com/franciscoliu/SKU) was written to remove harmful knowledge; here the "harmful" data is
the entity's forget set, with its TRUE answers.

Stage 1, harmful knowledge acquisition: a COPY θ_1 of the model (starting at θ_o) is fine-tuned on

    L = ε1·L_GD + ε2·L_RD + ε3·L_PD
    L_GD  guided distortion: NLL of the forget questions' true answers;
    L_RD  random disassociation: NLL of forget questions paired with answers of OTHER forget
          questions (K = ``random_answers`` per question, a seeded draw);
    L_PD  preservation divergence: −KL(π_o ‖ πθ) on the retain questions (prompt and answer tokens),
          π_o the original model; with ``retain_data=hard+general`` the general set D_g is a second
          stream with its own term ``preserve_general``, the same −ε3·KL on it. The official code (``utils.compute_reverse_kl``) *minimises the
          negative* KL, i.e. pushes θ_1 away from θ_o on normal data, so that the task vector holds
          the entity's knowledge and not general skill; we keep that sign. A negative
          ``preserve_weight`` turns it into a keep-close term instead.

Stage 2, knowledge negation: θ = θ_o − α·(θ_1 − θ_o), the task vector of Ilharco et al. 2023
(arXiv 2212.04089) negated.

Defaults from the official ``harmful_unlearn/unlearn_harm_new.py``: ε1 = 0.5 (``bad_weight``),
ε2 = 1, ε3 = 1, K = 5, and α = 1 (``TaskVector.apply_to(scaling_coef=1.0)`` on the negated
vector). The paper's optimisation (lr 2e-5, batch 2, 1000 steps, OPT-2.7B / Llama-2 with LoRA) is
replaced by this suite's shared fields (``lr``, ``batch_size``, ``epochs``/``max_steps``; full
fine-tuning), so SKU gets the same step budget as every other method.

Stage 1 runs through the shared trainer like every method: ``trains_copy`` makes it train a copy
with the original model as ``ctx.reference``; the regularizer (any; none by default) is applied
there, i.e. it bounds the task vector, and hence how far stage 2 moves the model. Stage 2 is the
``finish`` hook; the trainer's result holds stage 1's per-step losses and counts stage 2's time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snap_bench.config import MethodConfig
from snap_bench.data import Example
from snap_bench.errors import SnapBenchError
from snap_bench.methods.base import StepContext, UnlearnData, as_examples, nll_per_stream
from snap_bench.registry import register_method


@dataclass
class SkuConfig(MethodConfig):
    """SKU's settings: the three stage-1 loss weights, K and the negation scale α."""

    regularizer: str = "none"
    """SKU has no parameter regularizer; one given with ``--regularizer`` applies to stage 1 (bounds the task vector)."""
    distort_weight: float = 0.5
    """ε1, weight of guided distortion (NLL of the true answers). Official code: 0.5."""
    random_weight: float = 1.0
    """ε2, weight of random disassociation (NLL of other questions' answers). Official code: 1."""
    preserve_weight: float = 1.0
    """ε3, weight of preservation divergence −KL(π_o ‖ πθ) on retain data (and on D_g, term ``preserve_general``).
    Official code: 1 (negative = keep close)."""
    random_answers: int = 5
    """K, mismatched answers drawn per forget question for random disassociation. Official code: 5."""
    alpha: float = 1.0
    """Negation scale α in θ = θ_o − α·(θ_1 − θ_o). Official code: 1 (plain negation)."""

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("distort_weight", "random_weight", "alpha")
        if not math.isfinite(self.preserve_weight):
            raise SnapBenchError(f"--set preserve_weight={self.preserve_weight}: must be finite")
        if self.random_answers < 0:
            raise SnapBenchError(f"--set random_answers={self.random_answers}: must be >= 0")


def mismatched_answers(items, k: int, seed: int) -> list[Example]:
    """Each question paired with ``k`` true answers of OTHER questions (fewer if there are not enough)."""
    rng = random.Random(seed)
    out = []
    for i, it in enumerate(items):
        others = [o.answer for j, o in enumerate(items) if j != i and o.answer != it.answer]
        for ans in rng.sample(others, min(k, len(others))):
            out.append(Example(it.question, ans, it.id))
    return out


def reverse_kl(model, reference, batch) -> torch.Tensor:
    """KL(π_ref ‖ πθ) per next-token distribution, averaged over the non-padding positions."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    sel = mask.bool()
    logq = F.log_softmax(model(input_ids=ids, attention_mask=mask).logits[sel].float(), dim=-1)
    with torch.no_grad():
        logp = F.log_softmax(reference(input_ids=ids, attention_mask=mask).logits[sel].float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).mean()


@register_method("sku")
class Sku:
    """Stage 1 is this method's data and loss, trained by the shared trainer on a copy of the model
    (``trains_copy``); stage 2 is ``finish``, which negates the copy's task vector into the model.
    Streams: ``forget``, ``shuffled``, ``retain``, ``general``."""

    config_cls = SkuConfig
    trains_copy = True  # the trainer trains θ_1, a copy, with the original θ_o frozen as ctx.reference

    def __init__(self, cfg: SkuConfig):
        self.cfg = cfg
        self.seed = 0

    def prepare(self, tokenizer, data: UnlearnData, seed: int) -> None:
        self.seed = seed  # seeds the draw of mismatched answers (random disassociation)

    def streams(self, data: UnlearnData):
        cfg = self.cfg
        streams = {}
        if cfg.distort_weight > 0:
            streams["forget"] = as_examples(data.forget, "answer")
        if cfg.random_weight > 0 and cfg.random_answers > 0:
            streams["shuffled"] = mismatched_answers(data.forget, cfg.random_answers, self.seed)
        if cfg.preserve_weight != 0:
            for name, items in data.retain_streams(cfg.retain_data).items():  # "retain" (D_r), "general" (D_g)
                streams[name] = as_examples(items, "response")
        return streams

    def loss(self, model, batches, ctx: StepContext):
        cfg = self.cfg
        lm = {k: b for k, b in batches.items() if k in ("forget", "shuffled")}
        nll = nll_per_stream(model, lm) if lm else {}
        terms = {}
        if "forget" in nll:
            terms["distort"] = cfg.distort_weight * nll["forget"]
        if "shuffled" in nll:
            terms["disassociate"] = cfg.random_weight * nll["shuffled"]
        if "retain" in batches:
            terms["preserve"] = -cfg.preserve_weight * reverse_kl(model, ctx.reference, batches["retain"])
        if "general" in batches:
            terms["preserve_general"] = -cfg.preserve_weight * reverse_kl(model, ctx.reference, batches["general"])
        return terms

    def finish(self, model, trained) -> None:
        """Stage 2, knowledge negation: θ ← θ − α·(θ_1 − θ)."""
        negate(model, trained, self.cfg.alpha)


@torch.no_grad()
def negate(model, harmful, alpha: float) -> None:
    """Stage 2, in place: θ ← θ − α·(θ_harmful − θ) for every parameter."""
    theirs = dict(harmful.named_parameters())
    for name, p in model.named_parameters():
        p.sub_(alpha * (theirs[name].to(p.dtype) - p))
