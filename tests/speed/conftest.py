"""Fixtures of the speed suite: the default run's model, plan and first training batches.

The suite is not part of ``make test``: its tests carry the ``speed`` marker and are deselected
unless ``--run-speed`` is given, as ``make bench`` does (``pytest tests/speed --run-speed``; no timed
asserts: pytest-benchmark reports the times, ``snap-bench bench`` prints the same figures against
their targets). The fixtures load the model only when a speed test runs. ``SNAP_BENCH_BENCH_MODEL``
picks the model (default smollm2-135m).
"""

import os

import pytest

MODEL = os.environ.get("SNAP_BENCH_BENCH_MODEL", "smollm2-135m")


def pytest_addoption(parser):
    # Registered only when pytest starts from tests/speed (an initial conftest); elsewhere the option is
    # unknown and the speed tests stay deselected.
    parser.addoption("--run-speed", action="store_true", default=False,
                     help="run the speed suite (tests marked speed); without it they are deselected")


def pytest_collection_modifyitems(config, items):
    """Deselect the speed tests unless ``--run-speed``: the rest of the suite's timing stays as it was."""
    if config.getoption("--run-speed", default=False):
        return
    speed = [item for item in items if item.get_closest_marker("speed")]
    if speed:
        items[:] = [item for item in items if not item.get_closest_marker("speed")]
        config.hook.pytest_deselected(items=speed)


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
