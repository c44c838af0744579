"""End-to-end on the real default model (SmolLM2-135M-Instruct), with few steps. Marked slow."""

import json
import subprocess
import sys

import pytest

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
