"""Part (c) of ``tests/speed/gpu_check.sh``: timed SNAP steps on a randomly initialised Llama-2-7B shape.

Builds ``LlamaForCausalLM`` with Llama-2-7B's sizes (random weights, bf16, on the GPU; nothing is
downloaded), times training steps of batch 8 × 256 tokens (NLL forward + backward, the SWD penalty
of the authors' form with the run's 100 directions, AdamW) with and without the penalty, times one
evaluation batch of greedy generation, and projects the wall time of the paper's 7B setting:

    train  = paper_steps × (step_none × paper_tokens / measured_tokens + (step_swd − step_none))
    eval   = ceil(eval_questions / eval_batch_size) × one_eval_batch_s
    total  = train + eval

paper_steps and paper_tokens (= batch 32 × max_length 160, every example padded to the cap: an
upper bound) come from ``--preset paper``; eval_questions from the paper preset's split of one
entity (held-out forget, multihop, retain, general, cross-entity; plus the untrained model's retain
answers for RA_known). One eval batch generates max_new_tokens (128) tokens for every row (random
weights never stop early), so the estimate is an upper bound too.

Prints one JSON object on stdout. ``--dry-run`` prints the plan without torch touching a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)


def paper_setting(entity: str) -> dict:
    """Steps, tokens per step and evaluation questions of ``--preset paper`` for one entity (no model needed)."""
    from snap_bench.run.spec import RunSpec, plan
    from snap_bench.run.splits import make_splits
    from snap_bench.train.trainer import plan_steps

    p = plan(RunSpec(method="snap", entities=[entity], model="tiny-random", preset="paper", progress=False,
                     overrides={"precision": "bf16"}))
    sp = make_splits(p)
    train = sp.per_entity[entity]["train"]
    streams = {"forget": len(train["forget"]), "retain": len(train["retain"])}
    steps, per_stream = plan_steps(p.cfg, streams)
    ev = sp.per_entity[entity]["eval"]
    questions = sum(len(v) for v in ev.values()) + len(sp.g_eval) + len(sp.cross_eval)
    if p.cfg.known_eval:
        questions += len(ev["retain"])
    return {"steps": steps, "batch": sum(per_stream.values()), "max_length": p.cfg.max_length,
            "tokens_per_step": sum(per_stream.values()) * p.cfg.max_length, "eval_questions": questions,
            "eval_batch_size": p.cfg.eval_batch_size, "max_new_tokens": p.cfg.max_new_tokens,
            "swd_projections": p.cfg.swd_projections, "lr": p.cfg.lr}


def measure(args, paper: dict) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from snap_bench.regularizers.swd import SlicedWassersteinRegularizer

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check_7b: no CUDA GPU")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    t = time.perf_counter()
    with dev:
        model = LlamaForCausalLM._from_config(LlamaConfig(**LLAMA2_7B), torch_dtype=torch.bfloat16)
    model.train()
    build_s = time.perf_counter() - t
    init_state = {n: p.detach().clone() for n, p in model.named_parameters()}
    swd = SlicedWassersteinRegularizer(n_projections=paper["swd_projections"], p=2.0, seed=0, form="authors")
    swd.prepare(model, init_state)
    opt = torch.optim.AdamW(model.parameters(), lr=paper["lr"], weight_decay=0.1)
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, LLAMA2_7B["vocab_size"], (args.batch, args.seq), generator=g).to(dev)

    def step(with_swd: bool) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        if with_swd:
            loss = loss + 0.1 * swd.penalty(model, init_state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    times = {}
    for name, with_swd in (("swd", True), ("none", False)):
        for _ in range(args.warmup):
            step(with_swd)
        times[name] = statistics.median(step(with_swd) for _ in range(args.steps))
    peak_gb = torch.cuda.max_memory_allocated() / 1e9
    del opt, init_state
    torch.cuda.empty_cache()

    model.eval()
    prompts = torch.randint(0, LLAMA2_7B["vocab_size"], (paper["eval_batch_size"], 64), generator=g).to(dev)
    with torch.inference_mode():
        model.generate(prompts[:, :8], max_new_tokens=4, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=paper["max_new_tokens"],
                             min_new_tokens=paper["max_new_tokens"], do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        eval_batch_s = time.perf_counter() - t0
    assert out.shape[1] == 64 + paper["max_new_tokens"]

    tokens = args.batch * args.seq
    step_paper = times["none"] * paper["tokens_per_step"] / tokens + (times["swd"] - times["none"])
    train_s = paper["steps"] * step_paper
    eval_s = math.ceil(paper["eval_questions"] / paper["eval_batch_size"]) * eval_batch_s
    return {"device": torch.cuda.get_device_name(0), "build_s": build_s, "batch": args.batch, "seq": args.seq,
            "step_swd_s": times["swd"], "step_none_s": times["none"], "swd_overhead": times["swd"] / times["none"] - 1,
            "tokens_per_s": tokens / times["swd"], "peak_gpu_gb": peak_gb, "eval_batch_s": eval_batch_s,
            "paper_step_s": step_paper, "projected_train_s": train_s, "projected_eval_s": eval_s,
            "projected_total_s": train_s + eval_s, "paper": paper,
            "formula": "paper_steps × (step_none × paper_tokens/measured_tokens + (step_swd − step_none)) + "
                       "ceil(eval_questions/eval_batch_size) × one_eval_batch_s"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entity", default="peter_parker")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median counts)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    if min(args.batch, args.seq, args.steps) < 1 or args.warmup < 0:
        ap.error("--batch, --seq and --steps must be >= 1, --warmup >= 0")
    paper = paper_setting(args.entity)
    if args.dry_run:
        print(json.dumps({"dry_run": True, "paper": paper, "model": "Llama-2-7B shape, random weights, bf16",
                          "batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup}))
        return 0
    print(json.dumps(measure(args, paper)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
