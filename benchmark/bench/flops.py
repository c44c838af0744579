"""FLOP accounting: the useful arithmetic of a training step and of greedy generation.

Only useful work counts (no padding, causal attention only over the pairs a token may attend to), so
padding and any other waste show up in the bench as a lower fraction of the matmul peak.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP formulas need to know about a decoder-only transformer."""

    body_params: int  # every parameter except the input embedding and the LM head
    all_params: int  # every trainable parameter (what SWD projects), tied weights once
    hidden: int
    vocab: int
    layers: int
    attn_width: int  # n_heads * head_dim (the width of Q, and of softmax(QK^T)V)

    @classmethod
    def of(cls, model) -> "ModelShape":
        cfg = model.config
        emb, head = model.get_input_embeddings(), model.get_output_embeddings()
        skip = {id(m.weight) for m in (emb, head) if m is not None}
        params = {id(p): p for p in model.parameters()}  # tied weights once
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(
            body_params=sum(p.numel() for k, p in params.items() if k not in skip),
            all_params=sum(p.numel() for p in params.values() if p.requires_grad),
            hidden=cfg.hidden_size, vocab=cfg.vocab_size, layers=cfg.num_hidden_layers, attn_width=heads * head_dim,
        )


def causal_pairs(length: int) -> int:
    """(query, key) pairs a causal sequence of ``length`` tokens attends over."""
    return length * (length + 1) // 2


def train_step_flops(shape: ModelShape, lengths: list[int], labelled: int, swd_projections: int = 0,
                     swd_form: str = "authors") -> float:
    """Useful FLOPs of one training step (forward + backward = 3 × forward).

    - body: 6 · body_params · real tokens (2 per multiply-add forward, twice that backward);
    - LM head: 6 · hidden · vocab · labelled positions (the head runs only where a label is);
    - attention: 12 · layers · attn_width · Σ causal pairs (QK^T and AV, 2 FLOPs per MAC, × 3);
    - SWD (when ``swd_projections`` > 0): in the authors' form (directions redrawn every step)
      6 · params · projections (θ_init's and θ's projections forward, and the backward into the
      weights); in the normalized form 4 · params · projections (θ_init is projected once, in
      ``prepare``). Sorting is not counted as FLOPs.
    """
    tokens = sum(lengths)
    body = 6 * shape.body_params * tokens
    head = 6 * shape.hidden * shape.vocab * labelled
    attn = 12 * shape.layers * shape.attn_width * sum(causal_pairs(n) for n in lengths)
    per_proj = 6 if swd_form == "authors" else 4
    return float(body + head + attn + per_proj * shape.all_params * swd_projections)


def generation_flops(shape: ModelShape, prompt_len: int, generated: int) -> float:
    """Useful forward FLOPs of greedy generation: prefill plus one step per generated token but
    the last (which is never fed back); the LM head runs once per generated token."""
    fed = prompt_len + max(generated - 1, 0)
    return float(2 * shape.body_params * fed + 2 * shape.hidden * shape.vocab * generated
                 + 4 * shape.layers * shape.attn_width * causal_pairs(fed))


def step_stats(examples: list[dict[str, list[int]]]) -> dict[str, int]:
    """Token counts of one step: real tokens, labelled (LM-head) positions, and the padded size of
    the one merged batch ``nll_per_stream`` runs."""
    from snap_bench.data import IGNORE_INDEX

    lengths = [len(e["input_ids"]) for e in examples]
    return {"rows": len(lengths), "tokens": sum(lengths), "padded": len(lengths) * max(lengths),
            "labelled": sum(1 for e in examples for t in e["labels"][1:] if t != IGNORE_INDEX)}


def run_train_flops(shape: ModelShape, batches, swd_projections: int, swd_form: str = "authors") -> float:
    total = 0.0
    for ex in batches:
        st = step_stats(ex)
        total += train_step_flops(shape, [len(e["input_ids"]) for e in ex], st["labelled"], swd_projections, swd_form)
    # The normalized form projects θ_init once, forward only, in prepare().
    once = swd_form != "authors" and swd_projections
    return total + (2 * shape.all_params * swd_projections if once else 0.0)
