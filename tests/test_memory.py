"""Gradient checkpointing decided by the estimated training peak against the memory budget (train/memory.py)."""

from __future__ import annotations

import pytest
import torch

from snap_bench.config import build_config
from snap_bench.errors import SnapBenchError
from snap_bench.methods.snap import Snap
from snap_bench.train import memory


def _encoded(n_tokens: list[int]) -> dict[str, list[dict]]:
    return {"forget": [{"input_ids": [1] * n} for n in n_tokens], "retain": [{"input_ids": [1] * 5}]}


def test_step_tokens_bound_is_examples_a_step_times_the_longest():
    assert memory.step_tokens_bound(_encoded([3, 9, 4]), {"forget": 2, "retain": 3}) == 2 * 9 + 3 * 5


def test_saved_bytes_grow_with_the_model_and_count_no_weight(tiny):
    grads = [None if p.grad is None else p.grad.clone() for p in tiny.model.parameters()]  # other tests share tiny
    per_token = memory.saved_bytes_per_token(tiny.model, tokens=16)
    cfg = tiny.model.config
    vocab_rows = 2 * cfg.vocab_size * 4  # the losses' log-probabilities and their gradient, fp32
    # At least the hidden state entering each layer is kept for backward, and far less than the weights.
    assert per_token > vocab_rows + cfg.num_hidden_layers * cfg.hidden_size * 4
    weights = sum(p.numel() * p.element_size() for p in tiny.model.parameters())
    assert per_token * 16 < weights + 16 * vocab_rows
    after = [p.grad for p in tiny.model.parameters()]  # the probe ran no backward: no gradient changed
    assert all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
               for a, b in zip(grads, after))


def test_auto_turns_checkpointing_on_only_over_the_budget(tiny):
    enc, per = _encoded([20, 30]), {"forget": 2, "retain": 2}
    roomy = memory.decide("auto", 1e6, tiny.model, enc, per)
    tight = memory.decide("auto", 1e-6, tiny.model, enc, per)
    assert not roomy.used and tight.used
    assert roomy.estimated_peak_gb == pytest.approx(sum(roomy.parts_gb.values()), abs=1e-3)
    assert set(roomy.parts_gb) == {"resident", "optimiser_state", "activations", "regularizer",
                                     "heap_slack"}
    trainable = sum(p.numel() * p.element_size() for p in tiny.model.parameters() if p.requires_grad)
    assert roomy.parts_gb["optimiser_state"] == pytest.approx(4 * trainable / 1e9, abs=1e-3)


@pytest.mark.parametrize("given,used,mode", [("true", True, "full"), ("false", False, "off"),
                                            ("selective", True, "selective")])
def test_forced_levels_are_obeyed_without_an_estimate(tiny, given, used, mode):
    d = memory.decide(given, 1e-6, tiny.model, _encoded([4]), {"forget": 1, "retain": 1})
    assert d.used is used and d.mode == mode and d.estimated_peak_gb is None


def test_selective_saves_less_than_none_and_more_than_the_layer_inputs(tiny):
    """Selective keeps the matmul/attention outputs and each layer's input, not the elementwise rest."""
    per = memory.saved_bytes_per_token_by_mode(tiny.model, tokens=16)
    cfg = tiny.model.config
    layer_inputs = cfg.num_hidden_layers * cfg.hidden_size * 4  # fp32 residual stream, per token
    assert per["selective"] is not None and per["off"] > per["selective"] > layer_inputs


def test_auto_takes_selective_when_only_selective_fits(tiny):
    enc, per = _encoded([4000, 6000]), {"forget": 2, "retain": 2}  # long: the activations dominate the estimate
    roomy = memory.decide("auto", 1e6, tiny.model, enc, per)
    assert roomy.mode == "off" and roomy.selective_peak_gb < roomy.estimated_peak_gb
    between = (roomy.selective_peak_gb + roomy.estimated_peak_gb) / 2
    d = memory.decide("auto", between, tiny.model, enc, per)
    assert d.mode == "selective" and d.used
    assert memory.decide("auto", 1e-6, tiny.model, enc, per).mode == "full"


def test_budget_default_is_6_gb_on_a_cpu_and_the_setting_wins():
    assert memory.budget(None, torch.device("cpu")) == 6.0
    assert memory.budget(2.5, torch.device("cpu")) == 2.5


@pytest.mark.parametrize("raw,value", [("on", "true"), ("0", "false"), ("AUTO", "auto"), ("true", "true")])
def test_old_boolean_spellings_still_parse(raw, value):
    assert build_config(Snap.config_cls, "cpu", {"gradient_checkpointing": raw}).gradient_checkpointing == value


@pytest.mark.parametrize("key,raw", [("gradient_checkpointing", "sometimes"), ("memory_budget_gb", "0"),
                                     ("memory_budget_gb", "-1")])
def test_bad_values_are_refused(key, raw):
    with pytest.raises(SnapBenchError, match=key):
        build_config(Snap.config_cls, "cpu", {key: raw})


def test_a_run_records_the_decision_and_where_its_time_went(cli, tmp_path):
    import json

    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "2",
            "--eval-limit", "2", "--set", "max_new_tokens=2", "--set", "memory_budget_gb=0.000001",
            "--results", tmp_path / "res", "--no-progress", "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)["resources"]
    (ck,) = res["checkpointing"]
    assert ck["requested"] == "auto" and ck["used"] and ck["budget_gb"] == 1e-6 and ck["estimated_peak_gb"] > 0
    assert res["allocator"] in ("trim", "glibc", "mmap", "none") or res["allocator"].startswith("preload:")
    for phase in ("run", "train", "eval"):
        u = res[phase]
        assert u["wall_s"] > 0 and u["user_s"] >= 0 and u["sys_s"] >= 0 and u["minor_faults"] >= 0
    assert res["run"]["wall_s"] >= res["train"]["wall_s"] + res["eval"]["wall_s"] - 1e-3
    assert res["peak_rss_gb"] > 0


def test_the_probe_leaves_the_random_state_alone(tiny):
    """A model with dropout draws masks in the probe's forward: training must draw the same ones as without it."""
    attn = [m for m in tiny.model.modules() if hasattr(m, "attention_dropout")]
    assert attn
    old = [m.attention_dropout for m in attn]
    for m in attn:
        m.attention_dropout = 0.5
    try:
        torch.manual_seed(0)
        before = torch.get_rng_state()
        memory.saved_bytes_per_token(tiny.model, tokens=8)
        assert torch.equal(torch.get_rng_state(), before)
        tiny.model.train()  # the same forward outside the probe does draw: the check above can fail
        tiny.model(input_ids=torch.zeros((1, 8), dtype=torch.long))
        assert not torch.equal(torch.get_rng_state(), before)
    finally:
        tiny.model.eval()
        for m, v in zip(attn, old):
            m.attention_dropout = v
