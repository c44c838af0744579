"""Probe 1: the log-probability of the TRUE answer, before and after unlearning.

The mean per-token log-probability of each forget item's true answer as the assistant's reply,
under the same chat template as training. Unlearning that only teaches a refusal leaves it
close to where it was; unlearning that removes the knowledge lowers it.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch

from snap_bench import util
from snap_bench.data import IGNORE_INDEX, batches, collate, prompt_ids
from snap_bench.evaluate.probes.stats import _mean
from snap_bench.methods.base import token_logprobs
from snap_bench.tasks import Item


def answer_encoding(tokenizer, question: str, answer: str, system: str | None) -> dict[str, list[int]]:
    """Prompt (chat template, ``system``) + ``answer`` as the assistant's reply; only the answer carries labels."""
    # Unlike encode_example, no end-of-turn token is scored: the probe measures whether the model
    # knows the answer, not whether it would stop right after it. Never truncated, so every
    # answer token counts.
    p = prompt_ids(tokenizer, question, system)
    r = tokenizer(answer.strip(), add_special_tokens=False)["input_ids"]
    return {"input_ids": p + r, "labels": [IGNORE_INDEX] * len(p) + r}


def answer_batches(model, tokenizer, items: Sequence[Item], system: str | None,
                   batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices into ``items``, their batch on the model's device) of the items' :func:`answer_encoding`,
    batched by length and right-padded, with the model in eval mode until the last batch (then restored).
    Shared by this probe and the membership-inference attacks (``evaluate/mia.py``)."""
    encoded = [answer_encoding(tokenizer, it.question, it.answer, system) for it in items]
    order = sorted(range(len(items)), key=lambda i: (len(encoded[i]["input_ids"]), i))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for chunk in batches(order, batch_size):
            batch = collate([encoded[i] for i in chunk], util.pad_id(tokenizer))
            yield chunk, {k: v.to(device) for k, v in batch.items()}
    finally:
        model.train(was_training)


@torch.no_grad()
def answer_logprob(model, tokenizer, items: Sequence[Item], *, system: str | None = None,
                   batch_size: int = 16) -> list[float]:
    """Mean per-token log-probability (nats, <= 0) of each item's ``answer`` as the reply to its ``question``.

    In input order; NaN for an item whose answer has no tokens. Items are batched by length and
    right-padded with the padding masked, so a value does not depend on the batch it lands in
    (up to float rounding, ~1e-6) and repeated calls give identical results.
    """
    out = [float("nan")] * len(items)
    for chunk, batch in answer_batches(model, tokenizer, items, system, batch_size):
        logp, rows = token_logprobs(model, batch)
        sums = torch.zeros(len(chunk), dtype=torch.float64, device=logp.device).index_add(0, rows, logp.double())
        counts = torch.bincount(rows, minlength=len(chunk))
        for j, i in enumerate(chunk):
            if counts[j] > 0:
                out[i] = float(sums[j] / counts[j])
    return out


def answer_logprob_by_id(model, tokenizer, items: Sequence[Item], *, system: str | None = None,
                         batch_size: int = 16) -> dict[str, float]:
    """:func:`answer_logprob` keyed by item id (the form ``run_probes(before_logprobs=...)`` takes)."""
    return {it.id: lp for it, lp in zip(items, answer_logprob(model, tokenizer, items, system=system,
                                                              batch_size=batch_size))}



def logprob_change(before: Mapping[str, float] | None, after: Mapping[str, float]) -> dict[str, Any]:
    """Mean log-probabilities before and after (item id -> value), and their mean paired change
    over the ids present in both."""
    common = [i for i in after if before is not None and i in before]
    return {"before": _mean([before[i] for i in common]) if common else None, "after": _mean(list(after.values())),
            "delta": _mean([after[i] - before[i] for i in common]) if common else None, "n_paired": len(common)}
