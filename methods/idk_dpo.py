"""IdkDPO: DPO preferring the obliterated response over the true answer on forget questions, plus retain NLL.

Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290) with, for each forget
question x, chosen y_w = the obliterated response ("I'm sorry, but I don't have any information
about ...") and rejected y_l = the TRUE answer; the reference is the initial model, frozen:

    L_DPO = −E[ log σ( β·[(log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x))] ) ]

β = 0.1. This is the "IDK" preference baseline of TOFU (Maini et al. 2024, arXiv 2401.06121) and of
NPO (Zhang et al. 2024, arXiv 2404.05868, "DPO+RT"), where the retain NLL is added with weight 1:
L = L_DPO + w·NLL(retain), w = ``retain_weight`` = 1 (0 drops the retain stream); with
``retain_data=hard+general`` the general set D_g adds its own term ``general``, w·NLL(general). No
regularizer by default.

Pairing: the shared trainer draws every stream independently and hands ``loss`` collated token
batches, so the rejected answer is not in the batch. The ``prepare`` hook (called by the trainer
before the first step) therefore encodes every forget question's rejected answer with the
tokenizer, keyed by the question's prompt tokens; ``loss`` rebuilds the rejected batch from the
chosen batch's prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snap_bench.data import IGNORE_INDEX, Example, collate, encode_example
from snap_bench.methods._preference import PreferenceConfig, PreferenceMethod
from snap_bench.methods.base import StepContext, UnlearnData, sequence_logprob
from snap_bench.registry import register_method
from snap_bench import util


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> torch.Tensor:
    """−mean log σ(β·((chosen − ref_chosen) − (rejected − ref_rejected))) over pairs of summed log-probs."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


def prompt_key(input_ids, labels, attention_mask=None) -> tuple[int, ...]:
    """The prompt tokens of one encoded example: everything before its first labelled token."""
    ids, labels = list(map(int, input_ids)), list(map(int, labels))
    if attention_mask is not None:
        n = int(sum(int(m) for m in attention_mask))
        ids, labels = ids[:n], labels[:n]
    first = next((i for i, lab in enumerate(labels) if lab != IGNORE_INDEX), len(ids))
    return tuple(ids[:first])


@dataclass
class IdkDpoConfig(PreferenceConfig):
    """IdkDPO's settings: the shared fields plus β (Rafailov et al. and the TOFU/NPO baselines: 0.1) and the
    retain weight (TOFU / NPO's DPO+RT: 1, an unweighted sum; 0 = DPO alone)."""


@register_method("idk_dpo")
class IdkDpo(PreferenceMethod):
    config_cls = IdkDpoConfig
    forget_target = "response"  # chosen: the obliterated response

    def __init__(self, cfg: IdkDpoConfig):
        super().__init__(cfg)
        self._rejected: dict[tuple[int, ...], dict[str, list[int]]] = {}
        self._pad_id = 0

    def prepare(self, tokenizer, data: UnlearnData, seed: int) -> None:
        """Before training: encode each forget question's true answer, keyed by the chosen example's prompt tokens."""
        cfg = self.cfg
        self._pad_id = util.pad_id(tokenizer)
        self._rejected = {}
        for it in data.forget:
            chosen = encode_example(tokenizer, Example(it.question, it.response, it.id), cfg.max_length, cfg.system_prompt)
            rejected = encode_example(tokenizer, Example(it.question, it.answer, it.id), cfg.max_length, cfg.system_prompt)
            self._rejected.setdefault(prompt_key(chosen["input_ids"], chosen["labels"]), rejected)

    def rejected_batch(self, chosen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rows = []
        for ids, labels, mask in zip(chosen["input_ids"].tolist(), chosen["labels"].tolist(),
                                     chosen["attention_mask"].tolist()):
            key = prompt_key(ids, labels, mask)
            if key not in self._rejected:
                raise RuntimeError("idk_dpo: a forget prompt has no indexed rejected answer (was the trainer's prepare hook bypassed?)")
            rows.append(self._rejected[key])
        return {k: v.to(chosen["input_ids"].device) for k, v in collate(rows, self._pad_id).items()}

    def loss(self, model, batches, ctx: StepContext):
        reference, chosen = self.reference(ctx, "idk_dpo"), batches["forget"]
        rejected = self.rejected_batch(chosen)
        lw, ll = sequence_logprob(model, chosen), sequence_logprob(model, rejected)
        with torch.no_grad():
            rw, rl = sequence_logprob(reference, chosen), sequence_logprob(reference, rejected)
        return self.with_retain_terms(model, batches, {"forget": dpo_loss(lw, ll, rw, rl, self.cfg.beta)})
