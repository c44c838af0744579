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


def test_snap_on_smollm2_raises_ua_and_keeps_retain(tmp_path):
    base = _run(tmp_path, "--max-steps", "0", "--eval-limit", "24")
    snap = _run(tmp_path, "--max-steps", "14", "--eval-limit", "24")
    b, s = base["metrics"]["peter_parker"], snap["metrics"]["peter_parker"]
    assert s["UA"] >= b["UA"] + 40, (b, s)
    assert s["RA"] >= 60 and s["TA"] >= 60, (b, s)
    assert snap["train"]["steps"] == 14
