"""pytest-benchmark suite: the pieces of a default SNAP run, each with its FLOP rate in extra_info.

    make bench    (pytest tests/speed --run-speed; add --benchmark-columns=median,min,max to taste)

Every test carries the ``speed`` marker: a plain ``pytest`` (``make test``) deselects them. No
assert here is about time; pytest-benchmark reports the times.

Ratios (fraction of the matmul peak, regularizer overhead, generation speedup) are only
meaningful within one session: the peak is measured in the same process.
"""

import copy

import pytest
import torch

from snap_bench import bench, util
from snap_bench.data import collate
from snap_bench.evaluate.generation import generate_ids
from snap_bench.methods.base import nll_per_stream

pytestmark = pytest.mark.speed


def test_matmul_peak(benchmark, peak_gflops):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    benchmark.pedantic(lambda: a @ b, rounds=5, warmup_rounds=1)
    benchmark.extra_info["gflops_best"] = peak_gflops


def test_train_forward_backward(benchmark, lm, default, peak_gflops):
    """The method's loss forward + backward on the default run's first step (no regularizer, no optimiser)."""
    p, method, _, _, first = default
    model = lm.model
    n = p.cfg.batch_size // 2
    batches = {"forget": collate(first[:n], util.pad_id(lm.tokenizer)),
               "retain": collate(first[n:], util.pad_id(lm.tokenizer))}
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        sum(nll_per_stream(model, batches).values()).backward()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    model.zero_grad(set_to_none=True)
    model.eval()
    st = bench.step_stats(first)
    flops = bench.train_step_flops(bench.ModelShape.of(model), [len(e["input_ids"]) for e in first], st["labelled"])
    benchmark.extra_info.update(tokens=st["tokens"], padded=st["padded"], tflop=flops / 1e12,
                                peak_fraction=flops / benchmark.stats.stats.median / 1e9 / peak_gflops)


def test_swd_penalty(benchmark, lm, default):
    """SWD forward + backward on moved weights (θ ≠ θ_init), with the θ_init projections cached."""
    from snap_bench.regularizers.base import build_regularizer

    p = default[0]
    model = copy.deepcopy(lm.model)
    init = {n: q.detach().clone() for n, q in model.named_parameters()}
    bench.with_moved_weights(model, init)
    reg = build_regularizer("swd", p.cfg, p.spec.seed)
    reg.prepare(model, init)

    def once():
        model.zero_grad(set_to_none=True)
        reg.penalty(model, init).backward()

    benchmark.pedantic(once, rounds=3, warmup_rounds=1)


def test_generation_batched(benchmark, lm, default):
    p = default[0]
    prompts = bench.eval_prompts(p, lm.tokenizer, 16)
    out = benchmark.pedantic(lambda: generate_ids(lm.model, lm.tokenizer, prompts, max_new_tokens=p.cfg.max_new_tokens,
                                                  batch_size=p.cfg.eval_batch_size), rounds=1)
    benchmark.extra_info["generated_tokens"] = sum(len(r) for r in out)


def test_generation_hf_one_at_a_time(benchmark, lm, default):
    p = default[0]
    prompts = bench.eval_prompts(p, lm.tokenizer, 16)
    ref = benchmark.pedantic(lambda: bench.hf_generate_one_at_a_time(lm.model, lm.tokenizer, prompts,
                                                                     p.cfg.max_new_tokens), rounds=1)
    ours = generate_ids(lm.model, lm.tokenizer, prompts, max_new_tokens=p.cfg.max_new_tokens,
                        batch_size=p.cfg.eval_batch_size)
    assert ours == ref  # greedy: identical outputs
    benchmark.extra_info["generated_tokens"] = sum(len(r) for r in ref)
