"""Log-probabilities of response tokens: the primitives that methods' losses, regularizers and probes share.

They sit outside the layers (like ``data``), so a regularizer (``fisher``) can take a stream's NLL without
importing the methods. ``snap_bench.methods.base`` re-exports them for method authors.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from snap_bench.data import IGNORE_INDEX


def _supports_hidden_path(model) -> bool:
    cfg = getattr(model, "config", None)
    return (
        hasattr(model, "base_model")
        and model.get_output_embeddings() is not None
        and getattr(cfg, "final_logit_softcapping", None) is None
        and getattr(cfg, "logit_scale", None) is None
    )


def labelled_logits(model, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predict each labelled token (one row per labelled position, full vocabulary),
    those tokens, and the batch row each belongs to.

    The LM head runs only on positions that carry a label (the responses), which skips the
    vocabulary projection for every prompt and padding token.
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    targets = labels[:, 1:]
    sel = targets != IGNORE_INDEX
    if _supports_hidden_path(model):
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        logits = model.get_output_embeddings()(hidden[sel])
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1][sel]
    return logits, targets[sel], sel.nonzero()[:, 0]


def token_logprobs(model, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the labelled tokens and the row each belongs to (see :func:`labelled_logits`)."""
    logits, targets, rows = labelled_logits(model, batch)
    logp = -F.cross_entropy(logits.float(), targets, reduction="none")
    return logp, rows


def merge_streams(batches: Mapping[str, dict[str, torch.Tensor]], names: list[str]) -> dict[str, torch.Tensor]:
    """The named streams' batches as one right-padded batch (padding: token 0, mask 0, no label), rows in
    ``names`` order, so one forward pass serves them all."""
    width = max(batches[n]["input_ids"].shape[1] for n in names)
    fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {k: torch.cat([F.pad(batches[n][k], (0, width - batches[n][k].shape[1]), value=v) for n in names])
            for k, v in fill.items()}


def nll_per_stream(model, batches: Mapping[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean token NLL of each stream's responses, from ONE forward pass over all streams."""
    names = list(batches)
    logp, rows = token_logprobs(model, merge_streams(batches, names))
    out: dict[str, torch.Tensor] = {}
    start = 0
    for n in names:
        k = batches[n]["input_ids"].shape[0]
        in_stream = (rows >= start) & (rows < start + k)
        out[n] = -logp[in_stream].mean() if bool(in_stream.any()) else logp.sum() * 0.0
        start += k
    return out


def sequence_logprob(model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum of labelled-token log-probabilities per row (for preference losses such as NPO/DPO)."""
    logp, rows = token_logprobs(model, batch)
    out = torch.zeros(batch["input_ids"].shape[0], dtype=logp.dtype, device=logp.device)
    return out.index_add(0, rows, logp)
