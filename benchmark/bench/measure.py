"""The measurements themselves: matmul peaks, peak RSS, the median training step, and the one-off and
per-step cost of each regularizer. Each is taken in this process, next to what it is compared with."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

from snap_bench import util
from snap_bench.util import usage
from snap_bench.util.usage import Usage, peak_rss_gb  # noqa: F401  (peak_rss_gb: the bench's own import path)


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


def per_step(stamps: list[Usage]) -> dict[str, float]:
    """Medians over the intervals between consecutive snapshots: seconds, the system share of the CPU
    time, minor faults; with the totals of the CPU seconds and faults over all of them."""
    d = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    total = sum(d, usage.ZERO)
    cpu = total.user + total.sys
    return {"n": len(d), "wall_s": statistics.median(x.wall for x in d),
            "sys_share": total.sys / cpu if cpu > 0 else None,
            "minor_faults": statistics.median(x.minflt for x in d),
            "user_s_total": total.user, "sys_s_total": total.sys, "minor_faults_total": total.minflt}


def _median_step(model, tok, method, regularizer, data, cfg, seed: int, warmup: int, steps: int):
    """(median wall time of the timed steps of a short ``train`` run, its per-step losses, the timed steps'
    :func:`per_step` figures, the checkpointing decision)."""
    from snap_bench.train.trainer import train

    stamps: list[Usage] = []
    run_cfg = _with(cfg, max_steps=warmup + steps)
    res = train(model, tok, method, regularizer, data, run_cfg, seed, progress=False,
                on_step=lambda step, values: stamps.append(Usage.now()))
    steps_fig = per_step(stamps[warmup - 1:])
    return steps_fig["wall_s"], res.losses, steps_fig, res.checkpointing


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
