"""Batched greedy generation with left padding and a KV cache.

Prompts are sorted by length so a batch pads little; each batch is prefilled once, then
decoded one token per step from the cache. Rows that have emitted an end token are dropped
from the batch (and from the cache), and the batch stops as soon as every row has ended.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Callable, Sequence

import torch

from snap_bench import util

from snap_bench.util import faults, heap
from snap_bench.data import prompt_ids
from snap_bench.errors import SnapBenchError


def end_token_ids(tokenizer, model) -> set[int]:
    ids: set[int] = set()
    for src in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if isinstance(tid, int):
            ids.add(tid)
    return ids


@torch.inference_mode()
def _generate_batch(model, prompts: Sequence[list[int]], pad_id: int, stop_ids: set[int], max_new_tokens: int,
                    on_step: Callable[[list[int], list[int]], None] | None = None) -> list[list[int]]:
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache_kw = _cache_kwarg(model)
    cache = _cache_of(out)
    nxt = out.logits[:, -1].argmax(-1)
    last_pos = pos[:, -1]
    rows = torch.arange(len(prompts))  # which original prompt each live row belongs to
    results: list[list[int]] = [[] for _ in prompts]
    stop = torch.tensor(sorted(stop_ids), device=device) if stop_ids else None
    for step in range(max_new_tokens):
        toks = nxt.tolist()
        for r, t in zip(rows.tolist(), toks):
            results[r].append(t)
        if on_step:
            on_step(rows.tolist(), toks)
        if step == max_new_tokens - 1:
            break
        ended = torch.isin(nxt, stop) if stop is not None else torch.zeros_like(nxt, dtype=torch.bool)
        if bool(ended.all()):
            break
        if bool(ended.any()):
            keep = (~ended).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, nxt, mask, last_pos = rows[keep.cpu()], nxt[keep], mask[keep], last_pos[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        last_pos = last_pos + 1
        out = model(
            input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None],
            use_cache=True, **{cache_kw: cache},
        )
        cache = _cache_of(out)
        nxt = out.logits[:, -1].argmax(-1)
    return _cut_at_stop(results, stop_ids)


def _cache_kwarg(model) -> str:
    """The name under which this model's forward takes the KV cache: ``cache`` (transformers 5.x, where
    ``past_key_values`` is deprecated and goes in 5.40; once gone it would be swallowed by ``**kwargs`` and
    every step would decode without context) or ``past_key_values`` (4.x)."""
    for m in (model, getattr(model, "base_model", None), getattr(model, "model", None)):
        if m is None:
            continue
        params = inspect.signature(m.forward).parameters
        for name in ("cache", "past_key_values"):
            if name in params:
                return name
    raise SnapBenchError(f"{type(model).__name__}.forward takes neither cache nor past_key_values: cannot decode "
                         "with a KV cache")


def _cache_of(out):
    """The KV cache a forward returned, under either name (ModelOutput keeps only the fields that are set)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _cut_at_stop(results: list[list[int]], stop_ids: set[int]) -> list[list[int]]:
    out = []
    for r in results:
        for i, t in enumerate(r):
            if t in stop_ids:
                r = r[:i]
                break
        out.append(r)
    return out


def generate_ids(model, tokenizer, prompts: Sequence[list[int]], *, max_new_tokens: int = 64, batch_size: int = 32,
                 on_batch: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy continuations (token ids, end token excluded) for tokenised prompts, in input order."""
    if not prompts:
        return []
    pad_id = util.pad_id(tokenizer)
    stop_ids = end_token_ids(tokenizer, model)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out: list[list[int] | None] = [None] * len(prompts)
    with _eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            res = _generate_batch(model, [prompts[i] for i in chunk], pad_id, stop_ids, max_new_tokens)
            faults.point("eval_batch")
            heap.step_done()
            for i, r in zip(chunk, res):
                out[i] = r
            if on_batch:
                on_batch(len(chunk))
    return out  # type: ignore[return-value]


def generate_streaming(model, tokenizer, prompt: list[int], on_token: Callable[[int], None], *,
                       max_new_tokens: int = 64) -> list[int]:
    """One greedy continuation through the same decoding loop as :func:`generate_ids`, calling
    ``on_token`` with every token as soon as it is chosen (end tokens included; the caller skips them)."""
    pad_id = util.pad_id(tokenizer)
    with _eval_mode(model):
        return _generate_batch(model, [prompt], pad_id, end_token_ids(tokenizer, model), max_new_tokens,
                               on_step=lambda _rows, toks: on_token(toks[0]))[0]


@contextmanager
def _eval_mode(model):
    """Generate without dropout, then hand the model back in the mode it came in (training may resume)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def generate(model, tokenizer, questions: Sequence[str], *, system: str | None = None, max_new_tokens: int = 64,
             batch_size: int = 32, on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy chat responses to ``questions`` under the model's chat template."""
    prompts = [prompt_ids(tokenizer, q, system) for q in questions]
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, on_batch=on_batch)
    return [tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]
