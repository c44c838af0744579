"""tests/speed/gpu_check.sh (issue 14 item 5): argument handling and the dry run, without a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "speed" / "gpu_check.sh"


def _sh(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    r = _sh("--dry-run", "--out", str(tmp_path / "never"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for want in ("(a)", "configs/accelerate/single_gpu.yaml", "--set precision=bf16", "--eval-limit 20",
                 "--max-steps 20", "(b)", "configs/accelerate/deepspeed_zero2_offload.yaml", "(c)",
                 "gpu_check_7b.py", "HF_HUB_OFFLINE=1"):
        assert want in out, want
    assert not (tmp_path / "never").exists()


def test_dry_run_follows_the_arguments():
    r = _sh("--dry-run", "--steps", "5", "--eval-limit", "3", "--entity", "bill_gates")
    assert r.returncode == 0
    assert "--max-steps 5" in r.stdout and "--eval-limit 3" in r.stdout and "--entity bill_gates" in r.stdout


def test_help():
    r = _sh("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ") and "--dry-run" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "unknown argument --bogus"),
    (["--steps", "0"], "--steps 0: expected a positive integer"),
    (["--eval-limit", "x"], "--eval-limit x: expected a positive integer"),
    (["--steps"], "--steps needs a value"),
    (["--entity", "Bad Name"], "--entity Bad Name"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    r = _sh("--dry-run", *args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_the_7b_helper_plans_the_paper_setting_without_a_gpu():
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "speed" / "gpu_check_7b.py"), "--dry-run"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    paper = plan["paper"]
    assert paper["batch"] == 32 and paper["max_length"] == 160 and paper["tokens_per_step"] == 32 * 160
    assert paper["steps"] == 19  # 3 epochs over 100 forget items, 16 forget examples a step
    assert paper["max_new_tokens"] == 128 and paper["eval_questions"] > 0
    assert plan["batch"] == 8 and plan["seq"] == 256


def test_the_script_never_downloads():
    text = SCRIPT.read_text()
    assert "export HF_HUB_OFFLINE=1" in text
    assert "curl" not in text and "wget" not in text and "pip install " not in text.replace("(pip install deepspeed)", "")
