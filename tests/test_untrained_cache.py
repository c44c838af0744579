"""The untrained reference measured once (issue 26): the "before" measurements of probes, MIA and the quantization
probe are cached per weights, items and settings, and a cached value is the computed one, number for number."""

from __future__ import annotations

import math

import torch

from snap_bench.run import untrained


def test_a_cached_measurement_is_computed_once_per_key_and_reads_back_identically(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAP_BENCH_CACHE", str(tmp_path))
    calls = []
    value = {"b": {"x": 0.1 + 0.2, "nan": float("nan")}, "a": [1, None, -3.5e-12]}

    def compute():
        calls.append(1)
        return value

    first = untrained.cached_measurement("k", tiny.model, tiny.tokenizer, {"items": ["i1", "i2"]}, compute)
    again = untrained.cached_measurement("k", tiny.model, tiny.tokenizer, {"items": ["i1", "i2"]}, compute)
    assert len(calls) == 1 and list(first) == list(again) == ["b", "a"]  # the order callers iterate is kept
    assert first["b"]["x"] == again["b"]["x"] == 0.1 + 0.2 and math.isnan(again["b"]["nan"])
    assert first == {**again, "b": {**again["b"], "nan": first["b"]["nan"]}}
    untrained.cached_measurement("k", tiny.model, tiny.tokenizer, {"items": ["i2", "i1"]}, compute)  # other items
    untrained.cached_measurement("other", tiny.model, tiny.tokenizer, {"items": ["i1", "i2"]}, compute)
    with torch.no_grad():
        p = next(tiny.model.parameters())
        p.add_(1.0)
        try:
            untrained.cached_measurement("k", tiny.model, tiny.tokenizer, {"items": ["i1", "i2"]}, compute)  # new weights
        finally:
            p.sub_(1.0)
    assert len(calls) == 4


def test_a_second_run_reuses_the_untrained_reference_and_reports_the_same_numbers(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAP_BENCH_CACHE", str(tmp_path / "cache"))
    from snap_bench.evaluate import mia, quant_probe
    from snap_bench.evaluate.probes import logprob

    calls = {"mia": 0, "quant": 0, "logprob": 0}
    real = (mia.mia_scores, quant_probe.measure_schemes, logprob.answer_logprob_by_id)

    def count(key, fn):
        def wrapped(*a, **kw):
            calls[key] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(mia, "mia_scores", count("mia", real[0]))
    monkeypatch.setattr(quant_probe, "measure_schemes", count("quant", real[1]))
    monkeypatch.setattr(logprob, "answer_logprob_by_id", count("logprob", real[2]))
    import snap_bench.evaluate.probes as probes

    monkeypatch.setattr(probes, "answer_logprob_by_id", logprob.answer_logprob_by_id)
    args = ("--model", "tiny-random", "--max-steps", "1", "--eval-limit", "4", "--json", "--no-progress",
            "--set", "probes=true", "--set", "probe_limit=4", "--set", "relearn_n=2", "--set", "relearn_steps=1",
            "--set", "mia=true", "--set", "mia_limit=4", "--set", "quant_probe=q8_0", "--set", "max_new_tokens=4")
    a = cli("run", "--method", "snap", "--entity", "peter_parker", "--results", tmp_path / "a", *args)
    assert a.code == 0, a.err
    first = dict(calls)
    b = cli("run", "--method", "snap", "--entity", "peter_parker", "--results", tmp_path / "b", *args)
    assert b.code == 0, b.err
    # the second run measured only its own (final) model: one call each where the first made two
    assert {k: calls[k] - first[k] for k in calls} == {"mia": 1, "quant": 1, "logprob": first["logprob"] - 2}
    for key in ("mia", "quant", "probes"):
        assert _untimed(a.json[key]) == _untimed(b.json[key]), key  # the same numbers, measured or read back


def _untimed(tree):
    """``tree`` without its wall-clock fields (``seconds``), which no two runs share."""
    if isinstance(tree, dict):
        return {k: _untimed(v) for k, v in tree.items() if k != "seconds"}
    return tree
