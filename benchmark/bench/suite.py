"""The whole bench, step by step: set up, matmul peaks, model load, the training steps with and without
the default regularizer, each regularizer's overhead, generation, the peaks again, end to end.

Each training phase starts from a fresh load (warm: files cached, modules imported) instead of a
snapshot copy, so the peak RSS after the first phase is that of a training run, not of the bench.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any, Callable

from snap_bench.bench.config import BenchConfig
from snap_bench.bench.e2e import _stored_run, end_to_end
from snap_bench.bench.flops import ModelShape, step_stats, train_step_flops
from snap_bench.bench.generation import generation_bench
from snap_bench.bench.inputs import default_plan, eval_prompts, step_batches, training_inputs
from snap_bench.bench.measure import (PEAK_PRECISIONS, _median_step, _reload, matmul_gflops, peak_for, peak_rss_gb,
                                      regularizer_overheads)
from snap_bench.bench.targets import figures
from snap_bench.util import heap


def _setup(cfg: BenchConfig):
    """(the default run's plan, the stored run the e2e figures read or None): threads and quiet logging first."""
    import torch

    from snap_bench.models import _quiet_transformers

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _quiet_transformers()  # imports transformers, so the load time below is the load alone
    p = default_plan(cfg)
    stored = None if cfg.e2e else _stored_run(cfg.results, p.config_hash, cfg.run_id)  # bad --run-id fails first
    return p, stored


def _more_peaks(peaks: dict[str, list[float]], size: int, used: str) -> None:
    """Measure the fp32 peak and that of the precision in use again: contention drifts during the bench."""
    for k in {"fp32", used} & set(PEAK_PRECISIONS):
        peaks[k].append(matmul_gflops(size, precision=k))


def _training_steps(cfg: BenchConfig, p, lm, inputs, shape: ModelShape, peaks, log):
    """The training step with the default regularizer, then with none (the overhead reference), each on
    a fresh load. Returns (the training figures, (FLOPs per step with and without the regularizer), the
    model as the second phase left it, the warm reload's seconds); ``lm.model`` is dropped."""
    from snap_bench.regularizers.base import build_regularizer

    method, data, encoded = inputs
    seed = p.spec.seed
    timed = step_batches(encoded, p.cfg, seed, cfg.warmup + cfg.steps)[cfg.warmup :]
    n_proj = p.cfg.swd_projections if p.regularizer == "swd" else 0
    log(f"bench: {cfg.warmup}+{cfg.steps} training steps with {p.regularizer}, then without...")
    step_reg, _, usage_reg, ckpt = _median_step(lm.model, lm.tokenizer, method,
                                                build_regularizer(p.regularizer, p.cfg, seed), data, p.cfg, seed,
                                                cfg.warmup, cfg.steps)
    rss_train = peak_rss_gb()
    _more_peaks(peaks, cfg.matmul_size, p.cfg.precision)
    lm.model = None
    model, load_warm_s = _reload(cfg.model)
    step_none, _, _, _ = _median_step(model, lm.tokenizer, method, build_regularizer("none", p.cfg, seed), data,
                                      p.cfg, seed, cfg.warmup, cfg.steps)
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
        "sys_share": usage_reg["sys_share"], "minor_faults_per_step": usage_reg["minor_faults"],
        "usage": usage_reg, "checkpointing": ckpt,
    }
    return training, (flops, flops_none), model, load_warm_s


def _judge_training(training: dict[str, Any], flops: tuple[float, float], peaks, used: str) -> str:
    """Add the training fractions of the best peak of ``used`` (a measurement taken under load understates
    what the CPU can do, which would flatter the fraction); returns the name of that peak."""
    peak, peak_name = peak_for(used, peaks)
    training["precision"], training["peak_precision"] = used, peak_name
    training["peak_fraction"] = flops[0] / training["step_s"] / 1e9 / peak
    training["none_peak_fraction"] = flops[1] / training["step_none_s"] / 1e9 / peak
    return peak_name


def _machine() -> dict[str, Any]:
    import torch

    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()), "torch": torch.__version__}


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:
    """Measure everything; return the JSON-ready result (figures, targets, details)."""
    cfg.validate()
    import torch

    from snap_bench.models import load_model

    p, stored = _setup(cfg)
    used = p.cfg.precision  # resolved by plan(): fp32 or bf16 (auto follows scaling.fast_bf16)
    log(f"bench: matmul peaks ({cfg.matmul_size}², fp32 and bf16, {torch.get_num_threads()} threads; "
        f"training runs in {used})...")
    peaks = {k: [matmul_gflops(cfg.matmul_size, precision=k)] for k in PEAK_PRECISIONS}
    t = time.perf_counter()
    lm = load_model(cfg.model)
    load_s = time.perf_counter() - t
    tok, shape = lm.tokenizer, ModelShape.of(lm.model)
    inputs = training_inputs(p, tok)
    training, flops, model, load_warm_s = _training_steps(cfg, p, lm, inputs, shape, peaks, log)

    log(f"bench: regularizer penalties ({', '.join(cfg.regularizers)})...")
    regs = regularizer_overheads(model, tok, p, inputs[2], cfg.regularizers, training["step_none_s"], cfg.repeats,
                                 cfg.fisher_examples)
    model = None
    model, _ = _reload(cfg.model)

    max_new = cfg.max_new_tokens or p.cfg.max_new_tokens
    log(f"bench: generation, {cfg.gen_prompts} prompts × ≤{max_new} tokens, batched then one at a time...")
    gen = generation_bench(model, tok, eval_prompts(p, tok, cfg.gen_prompts), max_new, p.cfg.eval_batch_size)
    rss = peak_rss_gb()
    _more_peaks(peaks, cfg.matmul_size, used)
    peak_name = _judge_training(training, flops, peaks, used)
    e2e = end_to_end(cfg, p, tok, shape, peaks, stored)
    result = {
        "config": asdict(cfg), "machine": _machine(),
        "matmul": {"size": cfg.matmul_size, "gflops": peak_for("fp32", peaks)[0], "measured": peaks["fp32"],
                   "bf16_gflops": peak_for("bf16", peaks)[0], "bf16_measured": peaks["bf16"], "in_use": peak_name},
        "load_s": load_s, "load_warm_s": load_warm_s, "training": training, "regularizers": regs, "generation": gen, "e2e": e2e,
        "peak_rss_gb": rss, "allocator": heap.policy(),
    }
    result["figures"] = figures(result)
    return result
