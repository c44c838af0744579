"""``snap-bench bench``: how close a run comes to the arithmetic this machine can do.

Every figure is measured in one process, next to the reference it is compared with, so that a
busy CPU slows both sides alike and the ratios stay meaningful:

- **matmul peaks**: fp32 and bf16 GFLOP/s of a square ``torch.mm`` (best of a few), the yardsticks;
  every fraction is judged against the peak of the precision in use (the run config's resolved
  ``precision``: training in bf16 against the bf16 peak; evaluation generates in fp32 always);
- **model load**: seconds to load the model from its cached safetensors;
- **training step** at the default config (SNAP + SWD, ``cpu`` preset): real tokens/s and the
  achieved FLOP/s as a fraction of the matmul peak of its precision (FLOPs counted by :func:`train_step_flops`);
- **regularizer overhead**: the penalty's forward + backward for ``swd``, ``l2`` and ``fisher``
  on the model as it is after those steps, over a step without regularizer;
- **generation**: generated tokens/s of the suite's batched generator against one-at-a-time HF
  ``generate`` on the same prompts, whose greedy outputs must be identical, and against HF's own
  batched ``generate`` (same prompts, batch size and length order), the stronger baseline;
- **end-to-end**: the default run's wall time against its floor, training FLOPs / the peak of its
  precision + evaluation FLOPs / the fp32 peak, from a run measured now (``--e2e``) or read from a results store;
- **peak memory**: the peak RSS of this process (or of the ``--e2e`` child run).

FLOP counts are the useful arithmetic only (no padding, causal attention only over the pairs a
token may attend to), so padding and any other waste show up as a lower fraction.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from snap_bench.errors import SnapBenchError
from snap_bench import util

REGULARIZERS = ("swd", "l2", "fisher")
SWD_TARGET = "<= 0.10"  # issue 14 (issue 13 allowed 0.15): the authors' form, directions redrawn each step


@dataclass
class BenchConfig:
    """What ``snap-bench bench`` measures and how long it spends on each part."""

    model: str = "smollm2-135m"
    """Model preset, HF id or path; the targets are set for the default."""
    entity: str = "peter_parker"
    """Entity of the default run whose data and config the step and generation benchmarks use."""
    method: str = "snap"
    """Method of the default run (its default regularizer is the one the training step runs with)."""
    steps: int = 3
    """Timed training steps per configuration (after ``warmup`` untimed ones); the median counts."""
    warmup: int = 1
    """Untimed training steps first (allocator and kernel warm-up)."""
    repeats: int = 3
    """Timed repeats of each regularizer's penalty (forward + backward); the median counts."""
    gen_prompts: int = 16
    """Evaluation questions (spread over the default split's eval sets) both generators answer."""
    max_new_tokens: int | None = None
    """Generation budget; None uses the run config's ``max_new_tokens`` (64 on the cpu preset)."""
    matmul_size: int = 2048
    """Side of the square matmuls (fp32 and bf16) that set the peaks."""
    threads: int | None = None
    """torch intra-op threads; None keeps torch's default (one per physical core)."""
    e2e: bool = False
    """Run the default ``snap-bench run`` now in a child process and time it (about 12 min on 2 cores)."""
    results: str | None = None
    """Results store to read a finished default run from when ``e2e`` is off (default ./results)."""
    fisher_examples: int = 8
    """Examples in the Fisher estimate the bench times (the run's default is 32; prepare time scales with it)."""
    run_id: str | None = None
    """A finished run in ``results`` to use for the end-to-end figures instead of the latest default one."""
    regularizers: tuple[str, ...] = REGULARIZERS
    """Regularizers whose per-step overhead is measured."""

    def validate(self) -> None:
        for name in ("steps", "repeats", "gen_prompts", "matmul_size", "fisher_examples"):
            if getattr(self, name) < 1:
                raise SnapBenchError(f"bench --{name.replace('_', '-')} must be >= 1")
        if self.warmup < 1:
            raise SnapBenchError("bench --warmup must be >= 1 (the first step's time is not a step's time)")
        if self.threads is not None and self.threads < 1:
            raise SnapBenchError("bench --threads must be >= 1")
        if self.e2e and self.run_id:
            raise SnapBenchError("bench: --e2e times a new run; --run-id reads a stored one: pass one of them")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise SnapBenchError("bench --max-new-tokens must be >= 1")


# --- FLOP accounting ---------------------------------------------------------------------------


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


# --- the default run's data, step by step -------------------------------------------------------


def default_plan(cfg: BenchConfig, overrides: dict[str, str] | None = None):
    from snap_bench.run.execute import RunSpec, plan

    return plan(RunSpec(method=cfg.method, entities=[cfg.entity], model=cfg.model, overrides=dict(overrides or {}),
                        progress=False))


def training_inputs(p, tokenizer):
    """(method, UnlearnData, encoded streams, step batches planner) of a single-entity plan."""
    from snap_bench.data import encode_example
    from snap_bench.methods.base import UnlearnData
    from snap_bench.run.execute import _splits

    sp = _splits(p)
    pack = p.packs[0]
    data = UnlearnData(packs=[pack], forget=sp.per_entity[pack.slug]["train"]["forget"],
                       retain=sp.per_entity[pack.slug]["train"]["retain"], general=sp.g_train)
    method = p.method_cls(p.cfg)
    streams = {k: v for k, v in method.streams(data).items() if v}
    encoded = {k: [encode_example(tokenizer, ex, p.cfg.max_length, p.cfg.system_prompt) for ex in v]
               for k, v in streams.items()}
    return method, data, encoded


def step_batches(encoded, cfg, seed: int, steps: int | None = None) -> list[list[dict[str, list[int]]]]:
    """The examples of each training step, drawn exactly as ``trainer.train`` draws them (same
    streams, seeds and length buckets; checked against the trainer in the tests)."""
    from snap_bench.data import Stream
    from snap_bench.train.trainer import plan_steps

    total, per_stream = plan_steps(cfg, {k: len(v) for k, v in encoded.items()})
    streams = {k: Stream(v, seed=seed * 1000 + i, bucket=cfg.length_bucket * per_stream[k])
               for i, (k, v) in enumerate(sorted(encoded.items()))}
    n = total if steps is None else min(steps, total)
    return [[e for k, s in streams.items() for e in s.take(per_stream[k])] for _ in range(n)]


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


# --- measurements -------------------------------------------------------------------------------


PEAK_PRECISIONS = ("fp32", "bf16")


def matmul_gflops(n: int, repeats: int = 5, precision: str = "fp32") -> float:
    """Best-of-``repeats`` GFLOP/s of an n×n by n×n matmul in ``precision`` (fp32 or bf16 operands)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def peak_for(precision: str, peaks: dict[str, list[float]]) -> tuple[float, str]:
    """The peak a computation in ``precision`` is judged against, and the name of that peak: the best
    measurement of the matmul in the same precision (fp16, never measured here, and anything else
    falls back to fp32). The best, because a measurement under load understates the machine."""
    name = precision if precision in peaks and peaks[precision] else "fp32"
    return max(peaks[name]), name


def peak_rss_gb(who: int | None = None) -> float:
    """Peak resident set size of this process (or of its waited-for children), in GB."""
    ru = resource.getrusage(resource.RUSAGE_SELF if who is None else who).ru_maxrss
    return ru * (1 if sys.platform == "darwin" else 1024) / 1e9


def _median_step(model, tok, method, regularizer, data, cfg, seed: int, warmup: int, steps: int) -> tuple[float, list]:
    """Median wall time of the timed steps of a short ``train`` run, and its per-step losses."""
    from snap_bench.train.trainer import train

    stamps: list[float] = []
    run_cfg = _with(cfg, max_steps=warmup + steps)
    res = train(model, tok, method, regularizer, data, run_cfg, seed, progress=False,
                on_step=lambda step, values: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:])]
    return statistics.median(times), res.losses


def _reload(spec: str) -> tuple[Any, float]:
    """A fresh copy of the model (the caller drops its old one first); (model, seconds the load took)."""
    import gc

    from snap_bench.models import load_model

    gc.collect()
    t = time.perf_counter()
    fresh = load_model(spec)
    return fresh.model, time.perf_counter() - t


def _with(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _penalty_seconds(model, reg, init_state, repeats: int) -> float:
    def once():
        model.zero_grad(set_to_none=True)
        reg.penalty(model, init_state).backward()

    once()  # warm-up
    t = _timed(once, repeats)
    model.zero_grad(set_to_none=True)
    return t


def regularizer_overheads(model, tok, p, encoded, names, step_none: float, repeats: int,
                          fisher_examples: int | None = None) -> dict[str, dict[str, float]]:
    """Per regularizer: its one-off ``prepare`` time and its penalty's forward + backward per step,
    as a ratio to a step without a regularizer. ``fisher_examples`` caps the Fisher estimate's
    sample (its per-step penalty costs the same whatever the sample)."""
    from snap_bench.regularizers.base import build_regularizer
    from snap_bench.train.trainer import PrepareContext

    init_state = {n: q.detach().clone() for n, q in model.named_parameters() if q.requires_grad}
    pad_id = util.pad_id(tok)
    out = {}
    for name in names:
        reg = build_regularizer(name, p.cfg, p.spec.seed)
        if fisher_examples and hasattr(reg, "max_examples"):
            reg.max_examples = fisher_examples
        t = time.perf_counter()
        reg.prepare(model, init_state, PrepareContext(tok, encoded, pad_id, p.cfg, p.spec.seed))
        prep = time.perf_counter() - t
        with_moved_weights(model, init_state)
        sec = _penalty_seconds(model, reg, init_state, repeats)
        out[name] = {"prepare_s": prep, "penalty_s": sec, "overhead": sec / step_none}
        if hasattr(reg, "examples"):
            out[name]["prepare_examples"] = reg.examples
        del reg
    return out


def with_moved_weights(model, init_state) -> None:
    """Make θ differ from θ_init (a tiny seeded nudge) so every penalty does its full work."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, q in model.named_parameters():
            if n in init_state and torch.equal(q, init_state[n]):
                q.add_(1e-4 * torch.randn(q.shape, generator=g, dtype=q.dtype).to(q.device))


def eval_prompts(p, tok, n: int) -> list[list[int]]:
    """``n`` evaluation questions spread evenly over the default split's eval sets, tokenised."""
    from snap_bench.data import prompt_ids
    from snap_bench.run.execute import _splits

    sp = _splits(p)
    sets = sp.per_entity[p.packs[0].slug]["eval"]
    items = [*sets["forget"], *sets["multihop"], *sets["retain"], *sp.g_eval, *sp.cross_eval]
    if not items:
        raise SnapBenchError("bench: the default split has no evaluation questions")
    stride = max(1, len(items) // n)
    return [prompt_ids(tok, it.question, p.cfg.system_prompt) for it in items[::stride][:n]]


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

    def ours_timed() -> tuple[float, list[list[int]]]:
        t = time.perf_counter()
        out = generate_ids(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return time.perf_counter() - t, out

    # The batched pass (cheap) runs before and after the reference and its faster time counts, so
    # a burst of load from other processes during one of them skews the speedup less.
    t_first, ours = ours_timed()
    t = time.perf_counter()
    ref = hf_generate_one_at_a_time(model, tok, prompts, max_new_tokens)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ref_b = hf_generate_batched(model, tok, prompts, max_new_tokens, batch_size)
    t_ref_b = time.perf_counter() - t
    t_ours = min(t_first, ours_timed()[0])
    n_tokens = sum(len(r) for r in ref)
    return {"prompts": len(prompts), "generated_tokens": n_tokens, "batched_s": t_ours, "hf_s": t_ref,
            "batched_tokens_per_s": n_tokens / t_ours, "hf_tokens_per_s": n_tokens / t_ref,
            "speedup": t_ref / t_ours, "identical": ours == ref,
            "mismatches": sum(a != b for a, b in zip(ours, ref)),
            # HF's batched generate, same prompts and batch size: the speedup that the loop itself buys.
            "hf_batched_s": t_ref_b, "hf_batched_tokens_per_s": n_tokens / t_ref_b,
            "speedup_vs_batched": t_ref_b / t_ours, "identical_batched": ours == ref_b,
            "mismatches_batched": sum(a != b for a, b in zip(ours, ref_b))}


# --- end to end -------------------------------------------------------------------------------


def _eval_flops(shape: ModelShape, tok, p, generations: list[dict[str, Any]]) -> tuple[float, int]:
    """Evaluation FLOPs of a stored run's generations. Generated lengths are re-tokenised from the
    stored (decoded, stripped) responses, + 1 for the end token unless the budget ran out."""
    from snap_bench.data import prompt_ids

    total, gen_tokens = 0.0, 0
    cap = p.cfg.max_new_tokens
    for g in generations:
        prompt = prompt_ids(tok, g["question"], p.cfg.system_prompt)
        n = len(tok(g["response"], add_special_tokens=False)["input_ids"])
        n = min(n + 1, cap)
        gen_tokens += n
        total += generation_flops(shape, len(prompt), n)
    return total, gen_tokens


def _stored_run(results: str | None, config_hash: str, run_id: str | None) -> tuple[str, dict[str, Any], list] | None:
    """``run_id`` from the store, or else its latest finished run with ``config_hash`` (the default run's)."""
    from snap_bench.store import DB_NAME, StoreReader

    folder = Path(results or "results")
    if not (folder / DB_NAME).is_file():
        if run_id:
            raise SnapBenchError(f"bench --run-id {run_id}: no results store in {folder}")
        return None
    store = StoreReader(folder)
    try:
        if run_id:
            run = store.run(run_id)
            if run is None or run["status"] != "done":
                raise SnapBenchError(f"bench --run-id {run_id}: no finished run of that id in {folder / DB_NAME}")
        else:
            runs = [r for r in store.runs("done") if r["config_hash"] == config_hash]
            if not runs:
                return None
            run = runs[-1]
        return f"stored run {run['run_id']} in {folder / DB_NAME}", run, store.generations(run["run_id"])
    finally:
        store.close()


def _plan_of(run: dict[str, Any], default):
    """The default plan with the stored run's own config and seed (its steps and data order)."""
    import dataclasses

    rec = run["config"]
    if rec.get("mode") != "single" or rec.get("method") != default.spec.method or rec.get("entities") != [default.packs[0].slug]:
        raise SnapBenchError(f"bench: run {run['run_id']} is not a single-entity {default.spec.method} run on "
                             f"{default.packs[0].slug}")
    cfg = default.method_cls.config_cls(**rec["config"])
    from snap_bench.config import stored_precision

    cfg.precision = stored_precision(rec["config"])  # a run from before the field: fp32, not auto
    spec = dataclasses.replace(default.spec, seed=rec["seed"])
    return dataclasses.replace(default, spec=spec, cfg=cfg, regularizer=rec["regularizer"])


def _measure_default_run(cfg: BenchConfig) -> tuple[str, dict[str, Any], list, float, float]:
    """Run the default ``snap-bench run`` in a child process; its wall time and peak RSS."""
    from snap_bench.store import StoreReader

    with tempfile.TemporaryDirectory(prefix="snap-bench-e2e-") as tmp:
        cmd = [sys.executable, "-m", "snap_bench", "run", "--method", cfg.method, "--entity", cfg.entity,
               "--model", cfg.model, "--results", tmp, "--no-progress", "--json"]
        print(f"bench: timing the default run ({' '.join(cmd[2:])})...", file=sys.stderr)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SnapBenchError(f"bench --e2e: the default run failed: {tail}")
        run_id = json.loads(proc.stdout)["run_id"]
        store = StoreReader(tmp)
        try:
            run, gens = store.run(run_id), store.generations(run_id)
        finally:
            store.close()
    return "measured now (--e2e, child process)", run, gens, wall, peak_rss_gb(resource.RUSAGE_CHILDREN)


def end_to_end(cfg: BenchConfig, p, tok, shape: ModelShape, peaks: dict[str, list[float]], found=None) -> dict[str, Any]:
    """The e2e figures from a run timed now (``cfg.e2e``) or from ``found``, a stored run (see ``_stored_run``).
    The floor: training FLOPs at the peak of the run's precision, evaluation FLOPs at the fp32 peak."""
    if cfg.e2e:
        source, run, gens, wall, rss = _measure_default_run(cfg)
    else:
        if found is None:
            return {"source": f"none: no finished default run (config {p.config_hash}) in "
                              f"{cfg.results or 'results'}; pass --e2e to time one now (~12 min)"}
        source, run, gens = found
        wall, rss = run["timings"]["total"], None
        p = _plan_of(run, p)
    _, _, encoded = training_inputs(p, tok)
    batches = step_batches(encoded, p.cfg, p.spec.seed)
    n_proj = p.cfg.swd_projections if p.regularizer == "swd" else 0
    train_flops = run_train_flops(shape, batches, n_proj, p.cfg.swd_form)
    eval_flops, gen_tokens = _eval_flops(shape, tok, p, gens)
    from snap_bench.config import stored_precision

    precision = stored_precision((run.get("config") or {}).get("config") or {})
    train_peak, train_peak_name = peak_for(precision, peaks)
    floor = train_flops / (train_peak * 1e9) + eval_flops / (peak_for("fp32", peaks)[0] * 1e9)
    timings = run.get("timings") or {}
    return {"source": source, "run_id": run["run_id"], "wall_s": wall, "floor_s": floor, "ratio": wall / floor,
            "precision": precision, "train_peak": train_peak_name,
            "train_tflop": train_flops / 1e12, "eval_tflop": eval_flops / 1e12, "train_steps": len(batches),
            "eval_questions": len(gens), "eval_generated_tokens": gen_tokens,
            "timings": {k: timings[k] for k in sorted(timings)}, "peak_rss_gb": rss}


# --- the whole bench ---------------------------------------------------------------------------


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:
    """Measure everything; return the JSON-ready result (figures, targets, details)."""
    cfg.validate()
    import torch

    from snap_bench.models import _quiet_transformers, load_model
    from snap_bench.regularizers.base import build_regularizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _quiet_transformers()  # imports transformers, so the load time below is the load alone
    p = default_plan(cfg)
    stored = None if cfg.e2e else _stored_run(cfg.results, p.config_hash, cfg.run_id)  # bad --run-id fails first
    used = p.cfg.precision  # resolved by plan(): fp32 or bf16 (auto follows scaling.fast_bf16)
    log(f"bench: matmul peaks ({cfg.matmul_size}², fp32 and bf16, {torch.get_num_threads()} threads; "
        f"training runs in {used})...")
    peaks = {k: [matmul_gflops(cfg.matmul_size, precision=k)] for k in PEAK_PRECISIONS}
    t = time.perf_counter()
    lm = load_model(cfg.model)
    load_s = time.perf_counter() - t
    model, tok = lm.model, lm.tokenizer
    shape = ModelShape.of(model)
    method, data, encoded = training_inputs(p, tok)
    seed = p.spec.seed

    # The training step: the default regularizer, then none (for the overhead reference). Each
    # phase starts from a fresh load (warm: files cached, modules imported) instead of a snapshot
    # copy, so the peak RSS after the first phase is that of a training run, not of the bench.
    timed = step_batches(encoded, p.cfg, seed, cfg.warmup + cfg.steps)[cfg.warmup :]
    n_proj = p.cfg.swd_projections if p.regularizer == "swd" else 0
    log(f"bench: {cfg.warmup}+{cfg.steps} training steps with {p.regularizer}, then without...")
    step_reg, _ = _median_step(model, tok, method, build_regularizer(p.regularizer, p.cfg, seed), data, p.cfg, seed,
                               cfg.warmup, cfg.steps)
    rss_train = peak_rss_gb()
    for k in {"fp32", used} & set(PEAK_PRECISIONS):  # again right after the steps: contention drifts
        peaks[k].append(matmul_gflops(cfg.matmul_size, precision=k))
    model = lm.model = None
    model, load_warm_s = _reload(cfg.model)
    step_none, _ = _median_step(model, tok, method, build_regularizer("none", p.cfg, seed), data, p.cfg, seed,
                                cfg.warmup, cfg.steps)
    stats = [step_stats(ex) for ex in timed]
    mean = {k: statistics.mean(s[k] for s in stats) for k in stats[0]}
    flops = statistics.mean(train_step_flops(shape, [len(e["input_ids"]) for e in ex], s["labelled"], n_proj, p.cfg.swd_form)
                            for ex, s in zip(timed, stats))
    flops_none = statistics.mean(train_step_flops(shape, [len(e["input_ids"]) for e in ex], s["labelled"])
                                 for ex, s in zip(timed, stats))
    training = {
        "regularizer": p.regularizer, "step_s": step_reg, "step_none_s": step_none,
        "tokens_per_step": mean["tokens"], "padded_tokens_per_step": mean["padded"],
        "labelled_per_step": mean["labelled"], "padding_waste": 1 - mean["tokens"] / mean["padded"],
        "tflop_per_step": flops / 1e12, "tokens_per_s": mean["tokens"] / step_reg,
        "gflops": flops / step_reg / 1e9, "peak_rss_gb": rss_train,
    }

    log(f"bench: regularizer penalties ({', '.join(cfg.regularizers)})...")
    regs = regularizer_overheads(model, tok, p, encoded, cfg.regularizers, step_none, cfg.repeats, cfg.fisher_examples)
    model = None
    model, _ = _reload(cfg.model)

    max_new = cfg.max_new_tokens or p.cfg.max_new_tokens
    log(f"bench: generation, {cfg.gen_prompts} prompts × ≤{max_new} tokens, batched then one at a time...")
    gen = generation_bench(model, tok, eval_prompts(p, tok, cfg.gen_prompts), max_new, p.cfg.eval_batch_size)
    rss = peak_rss_gb()
    for k in {"fp32", used} & set(PEAK_PRECISIONS):
        peaks[k].append(matmul_gflops(cfg.matmul_size, precision=k))
    # Judge against the best peak seen: a measurement taken under load understates what the CPU
    # can do, which would flatter the training fraction and shorten the e2e floor.
    peak, peak_name = peak_for(used, peaks)
    training["precision"], training["peak_precision"] = used, peak_name
    training["peak_fraction"] = flops / step_reg / 1e9 / peak
    training["none_peak_fraction"] = flops_none / step_none / 1e9 / peak
    e2e = end_to_end(cfg, p, tok, shape, peaks, stored)
    result = {
        "config": asdict(cfg),
        "machine": {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                    "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()), "torch": torch.__version__},
        "matmul": {"size": cfg.matmul_size, "gflops": peak_for("fp32", peaks)[0], "measured": peaks["fp32"],
                   "bf16_gflops": peak_for("bf16", peaks)[0], "bf16_measured": peaks["bf16"], "in_use": peak_name},
        "load_s": load_s, "load_warm_s": load_warm_s, "training": training, "regularizers": regs, "generation": gen, "e2e": e2e,
        "peak_rss_gb": rss,
    }
    result["figures"] = figures(result)
    return result


@dataclass
class Figure:
    name: str
    value: float | bool | None
    unit: str
    target: str = ""  # e.g. ">= 0.55"; empty: reported, no target
    status: str = "info"  # pass | miss | info | n/a
    note: str = ""


def _check(value, target: str) -> str:
    if not target:
        return "info"
    if value is None:
        return "n/a"
    op, bound = target.split()
    if op == "==":
        ok = str(value).lower() == bound
    else:
        ok = value >= float(bound) if op == ">=" else value <= float(bound)
    return "pass" if ok else "miss"


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    tr, gen, e2e = r["training"], r["generation"], r["e2e"]
    rows = [
        Figure("matmul peak (fp32)", r["matmul"]["gflops"], "GFLOP/s",
               note=f"{r['matmul']['size']}² matmul, best of 5; best of the bench's " + "/".join(
                   f"{g:.0f}" for g in r["matmul"]["measured"]) + _in_use(r, "fp32")),
        Figure("matmul peak (bf16)", r["matmul"]["bf16_gflops"], "GFLOP/s",
               note="best of the bench's " + "/".join(f"{g:.0f}" for g in r["matmul"]["bf16_measured"])
                    + _in_use(r, "bf16")),
        Figure("model load", r["load_s"], "s", "<= 2", note=f"first in the process; again: {r['load_warm_s']:.2f}s"),
        Figure(f"train step ({tr['regularizer']})", tr["step_s"], "s", note=f"{tr['tokens_per_step']:.0f} tokens"),
        Figure("train tokens/s", tr["tokens_per_s"], "tok/s"),
        Figure("train achieved", tr["gflops"], "GFLOP/s"),
        Figure("train fraction of peak", tr["peak_fraction"], "", ">= 0.55",
               note=f"of the {tr['peak_precision']} peak (training in {tr['precision']}); "
                    f"without regularizer: {tr['none_peak_fraction']:.2f}"),
        Figure("padding waste", tr["padding_waste"], "", note="padded tokens not counted as work"),
    ]
    for name, o in r["regularizers"].items():
        rows.append(Figure(f"{name} overhead / step", o["overhead"], "", SWD_TARGET if name == "swd" else "",
                           note=f"penalty fwd+bwd {o['penalty_s']:.2f}s, prepare {o['prepare_s']:.1f}s once"
                                + (f" ({o['prepare_examples']} examples)" if "prepare_examples" in o else "")))
    rows += [
        Figure("generation batched", gen["batched_tokens_per_s"], "tok/s", note=f"{gen['generated_tokens']} tokens"),
        Figure("generation HF one-at-a-time", gen["hf_tokens_per_s"], "tok/s"),
        Figure("generation speedup", gen["speedup"], "x", ">= 5"),
        Figure("generation identical to HF", gen["identical"], "", "== true", note=f"{gen['mismatches']} mismatches"),
    ]
    if "hf_batched_tokens_per_s" in gen:  # absent from bench JSON written before the batched baseline
        rows += [
            Figure("generation HF batched", gen["hf_batched_tokens_per_s"], "tok/s",
                   note="HF generate, same prompts, batches and length order"),
            Figure("generation speedup vs HF batched", gen["speedup_vs_batched"], "x", ">= 1.5"),
            Figure("generation identical to HF batched", gen["identical_batched"], "", "== true",
                   note=f"{gen['mismatches_batched']} of {gen['prompts']} differ"),
        ]
    rows += [
        Figure("e2e wall time", e2e.get("wall_s"), "s", note=e2e["source"]),
        Figure("e2e floor", e2e.get("floor_s"), "s",
               note=f"train FLOPs / {e2e.get('train_peak', 'its precision')}'s peak + eval FLOPs / fp32 peak"),
        Figure("e2e wall / floor", e2e.get("ratio"), "x", "<= 1.5"),  # issue 14
    ]
    if e2e.get("peak_rss_gb") is not None:
        rows.append(Figure("peak RSS (default run)", e2e["peak_rss_gb"], "GB", "<= 4"))  # issue 14
    rows.append(Figure("peak RSS (training steps)", tr["peak_rss_gb"], "GB", "<= 4",
                       note="this process after load + the default config's steps"))
    rows.append(Figure("peak RSS (whole bench)", r["peak_rss_gb"], "GB",
                       note="adds the fisher/l2 measurements and generation"))
    out = []
    for f in rows:
        f.status = _check(f.value, f.target)
        out.append(asdict(f))
    return out


def _in_use(r: dict[str, Any], name: str) -> str:
    return f"; in use (training in {r['training']['precision']})" if r["matmul"]["in_use"] == name else ""


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v) -> str:
        if v is None:
            return "—"
        if isinstance(v, bool):
            return str(v).lower()
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

    head = f"{'figure':<30} {'value':>10} {'unit':<8} {'target':<9} {'status':<6} note"
    lines = [head, "-" * len(head)]
    for f in rows:
        lines.append(f"{f['name']:<30} {fmt(f['value']):>10} {f['unit']:<8} {f['target']:<9} {f['status']:<6} {f['note']}")
    return "\n".join(lines)


# --- CLI -----------------------------------------------------------------------------------------


def add_parser(subparsers, parser_class) -> None:
    d = BenchConfig()
    b = subparsers.add_parser("bench", help="measure speed against this machine's matmul peak (training, regularizers, "
                                            "generation, end-to-end, memory)")
    b.add_argument("--model", default=d.model, help=f"model preset, HF id or path (default: {d.model})")
    b.add_argument("--entity", default=d.entity, help=f"entity of the default run (default: {d.entity})")
    b.add_argument("--method", default=d.method, help=f"method of the default run (default: {d.method})")
    b.add_argument("--steps", type=int, default=d.steps, help=f"timed training steps per configuration (default: {d.steps})")
    b.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed training steps first (default: {d.warmup})")
    b.add_argument("--repeats", type=int, default=d.repeats, help=f"timed repeats of each penalty (default: {d.repeats})")
    b.add_argument("--gen-prompts", type=int, default=d.gen_prompts,
                   help=f"evaluation prompts for the generation comparison (default: {d.gen_prompts})")
    b.add_argument("--max-new-tokens", type=int, default=None, help="generation budget (default: the run config's, 64)")
    b.add_argument("--matmul-size", type=int, default=d.matmul_size, help=f"side of the peak matmul (default: {d.matmul_size})")
    b.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, one per core)")
    b.add_argument("--regularizers", default=",".join(d.regularizers),
                   help=f"comma-separated regularizers to measure (default: {','.join(d.regularizers)})")
    b.add_argument("--fisher-examples", type=int, default=d.fisher_examples,
                   help=f"examples in the timed Fisher estimate (default: {d.fisher_examples}; runs use 32)")
    b.add_argument("--e2e", action="store_true", help="time the default `snap-bench run` now in a child process (~12 min)")
    b.add_argument("--results", default=None, metavar="DIR",
                   help="without --e2e, read the latest finished default run from this store (default: ./results)")
    b.add_argument("--run-id", default=None, help="without --e2e, use this finished single-entity run of the store")
    b.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from snap_bench.registry import REGULARIZERS as REG

    names = tuple(n.strip() for n in args.regularizers.split(",") if n.strip())
    for n in names:
        REG.get(n)
    cfg = BenchConfig(model=args.model, entity=args.entity, method=args.method, steps=args.steps, warmup=args.warmup,
                      repeats=args.repeats, gen_prompts=args.gen_prompts, max_new_tokens=args.max_new_tokens,
                      matmul_size=args.matmul_size, threads=args.threads, fisher_examples=args.fisher_examples, e2e=args.e2e, results=args.results, run_id=args.run_id,
                      regularizers=names)
    result = run_bench(cfg)
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        print(format_table(result["figures"]))
    return 0
