"""Fixtures of the speed suite: the default run's model, plan and first training batches.

Run with ``pytest benchmarks/`` (not part of ``make test``; ``snap-bench bench`` prints the same
figures against their targets). ``SNAP_BENCH_BENCH_MODEL`` picks the model (default smollm2-135m).
"""

import os

import pytest

MODEL = os.environ.get("SNAP_BENCH_BENCH_MODEL", "smollm2-135m")


@pytest.fixture(scope="session")
def lm():
    from snap_bench.models import load_model

    return load_model(MODEL)


@pytest.fixture(scope="session")
def default(lm):
    """(plan, method, data, encoded streams, the first step's examples) of the default SNAP run."""
    from snap_bench import bench

    p = bench.default_plan(bench.BenchConfig(model=MODEL))
    method, data, encoded = bench.training_inputs(p, lm.tokenizer)
    first = bench.step_batches(encoded, p.cfg, p.spec.seed, 1)[0]
    return p, method, data, encoded, first


@pytest.fixture(scope="session")
def peak_gflops():
    from snap_bench.bench import matmul_gflops

    return matmul_gflops(2048)
