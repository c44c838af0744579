"""Generation: the suite's batched generator against HF ``generate`` one prompt at a time (the
reference its greedy outputs must equal) and HF's own batched ``generate`` (the stronger baseline)."""

from __future__ import annotations

import time
from typing import Any

from snap_bench import util
from snap_bench.bench.measure import per_step
from snap_bench.util.usage import Usage


def hf_generate_one_at_a_time(model, tok, prompts, max_new_tokens: int) -> list[list[int]]:
    """The reference: HF ``generate``, greedy, one prompt at a time, cut at the first end token."""
    import torch

    from snap_bench.evaluate.generation import _cut_at_stop, end_token_ids

    stop = end_token_ids(tok, model)
    pad_id = util.pad_id(tok)
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, temperature=None, top_p=None, top_k=None,
                                 eos_token_id=sorted(stop), pad_token_id=pad_id)
            out.append(gen[0, ids.shape[1]:].tolist())
    return _cut_at_stop(out, stop)


def hf_generate_batched(model, tok, prompts, max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """The stronger reference: HF ``generate`` on batches of ``batch_size`` left-padded prompts, greedy.

    Batched the way ours is (prompts sorted by length, longest first, so the two pad alike), so the
    comparison measures the generation loop, not the batching; outputs are cut at the first end token
    and returned in input order. HF keeps finished rows in the batch until all end; ours drops them.
    """
    import torch

    from snap_bench.evaluate.generation import _cut_at_stop, end_token_ids

    stop = end_token_ids(tok, model)
    pad_id = util.pad_id(tok)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            gen = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, eos_token_id=sorted(stop),
                                 pad_token_id=pad_id)
            for row, i in enumerate(chunk):
                out[i] = gen[row, width:].tolist()
    return _cut_at_stop(out, stop)


def generation_bench(model, tok, prompts, max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    from snap_bench.evaluate.generation import generate_ids

    def ours_timed() -> tuple[float, list[list[int]], dict[str, Any]]:
        stamps = [Usage.now()]  # one snapshot per generated batch: its system share and faults
        out = generate_ids(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           on_batch=lambda _n: stamps.append(Usage.now()))
        return stamps[-1].wall - stamps[0].wall, out, per_step(stamps)

    # The batched pass (cheap) runs before and after the reference and its faster time counts, so
    # a burst of load from other processes during one of them skews the speedup less.
    t_first, ours, usage_first = ours_timed()
    t = time.perf_counter()
    ref = hf_generate_one_at_a_time(model, tok, prompts, max_new_tokens)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ref_b = hf_generate_batched(model, tok, prompts, max_new_tokens, batch_size)
    t_ref_b = time.perf_counter() - t
    t_second, _, usage_second = ours_timed()
    t_ours, batches = min((t_first, usage_first), (t_second, usage_second), key=lambda x: x[0])
    n_tokens = sum(len(r) for r in ref)
    return {"prompts": len(prompts), "generated_tokens": n_tokens, "batched_s": t_ours, "hf_s": t_ref,
            "batched_tokens_per_s": n_tokens / t_ours, "hf_tokens_per_s": n_tokens / t_ref,
            "speedup": t_ref / t_ours, "identical": ours == ref,
            "mismatches": sum(a != b for a, b in zip(ours, ref)),
            # HF's batched generate, same prompts and batch size: the speedup that the loop itself buys.
            "hf_batched_s": t_ref_b, "hf_batched_tokens_per_s": n_tokens / t_ref_b,
            "speedup_vs_batched": t_ref_b / t_ours, "identical_batched": ours == ref_b,
            "mismatches_batched": sum(a != b for a, b in zip(ours, ref_b)),
            # Per generated batch (of the faster batched pass): seconds, system share, minor faults.
            "batch_size": batch_size, "per_batch": batches}
