"""End-to-end on the real default model (SmolLM2-135M-Instruct), with few steps. Marked slow."""

import json
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def _run(tmp_path, *extra):
    cmd = [sys.executable, "-m", "snap_bench", "run", "--method", "snap", "--entity", "peter_parker",
           "--results", str(tmp_path / "res"), "--json", "--no-progress", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_snap_on_smollm2_raises_ua_and_keeps_general_ability(tmp_path):
    base = _run(tmp_path, "--max-steps", "0", "--eval-limit", "24")
    snap = _run(tmp_path, "--max-steps", "14", "--eval-limit", "24")
    b, s = base["metrics"]["peter_parker"], snap["metrics"]["peter_parker"]
    # The untrained model answers everything, and the judge must see that in its real outputs.
    assert b["UA"] <= 10 and b["RA"] >= 90 and b["TA"] >= 90, b
    assert s["UA"] >= b["UA"] + 40, (b, s)
    assert s["TA"] >= 60, (b, s)
    # RA is not asserted: on this 135M model the refusal spreads to held-out Marvel questions
    # (docs/results.md, "The default run"); reports show it, a test threshold would hide it.
    assert snap["train"]["steps"] == 14


def test_generation_is_identical_at_batch_32_and_at_the_default_batch_in_fp32():
    """Raising ``eval_batch_size`` (issue 24) must not change one token: the default model, fp32, greedy, the same
    prompts (spread over every eval set of the default split) answered in batches of 32 and of the default size."""
    from snap_bench.bench.config import BenchConfig
    from snap_bench.bench.inputs import default_plan, eval_prompts
    from snap_bench.config import MethodConfig
    from snap_bench.evaluate.generation import generate_ids
    from snap_bench.models import load_model

    size = MethodConfig.eval_batch_size
    assert size > 32
    cfg = BenchConfig()
    lm = load_model(cfg.model)
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    prompts = eval_prompts(default_plan(cfg), lm.tokenizer, size + size // 2)  # one full batch and a part
    small = generate_ids(lm.model, lm.tokenizer, prompts, max_new_tokens=64, batch_size=32)
    large = generate_ids(lm.model, lm.tokenizer, prompts, max_new_tokens=64, batch_size=size)
    assert len(prompts) == size + size // 2 and sum(map(len, small)) > 0
    assert [i for i, (a, b) in enumerate(zip(small, large)) if a != b] == []
