"""Scale-out: the shipped accelerate/DeepSpeed configs, 2-process training, precision, checkpointing, LoRA."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snap_bench.config import build_config
from snap_bench.methods.base import UnlearnData
from snap_bench.methods.snap import Snap as SnapMethod
from snap_bench.regularizers.base import build_regularizer, trainable
from snap_bench.train.scaling import checkpointing
from snap_bench.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
RUN_ARGS = ["run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "6",
            "--set", "lr=3e-3", "--set", "batch_size=12", "--eval-limit", "1", "--set", "max_new_tokens=2",
            "--set", "select=last",
            "--no-progress", "--json"]


# --- configs ----------------------------------------------------------------------------------


def _launch_env(path: Path, monkeypatch) -> tuple:
    """Parse a config the way ``accelerate launch --config_file`` does; set the env it hands the processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as launch_utils

    monkeypatch.chdir(ROOT)  # the DeepSpeed JSON path is relative to the repo root, as in docs/scaling.md
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "snap_bench", "run"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = launch_utils.prepare_deepspeed_cmd_env(args)
    elif args.multi_gpu:
        env = launch_utils.prepare_multi_gpu_env(args)
    else:
        env = {}
    for k, v in env.items():
        if k.startswith("ACCELERATE_"):
            monkeypatch.setenv(k, str(v))
    return args, defaults


def test_the_three_shipped_setups_are_there():
    from accelerate.commands.config.config_args import ClusterConfig

    kinds = {p.stem: ClusterConfig.from_yaml_file(str(p)).distributed_type.value for p in ACCELERATE_CONFIGS}
    assert kinds == {"single_gpu": "NO", "multi_gpu_ddp": "MULTI_GPU", "deepspeed_zero2_offload": "DEEPSPEED"}


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_loads_with_accelerates_own_parsers(path, monkeypatch):
    """ClusterConfig rejects unknown top-level keys; the launch parser must know every deepspeed_config key."""
    from accelerate.commands.launch import launch_command_parser

    args, defaults = _launch_env(path, monkeypatch)
    known = {a.dest for a in launch_command_parser()._actions}
    assert set(defaults.deepspeed_config) <= known, set(defaults.deepspeed_config) - known
    if defaults.distributed_type.value == "DEEPSPEED":
        assert args.use_deepspeed and Path(args.deepspeed_config_file).is_file()


def _deepspeed_plugin(monkeypatch, mixed_precision: str):
    from accelerate.utils import DeepSpeedPlugin

    _launch_env(ROOT / "configs" / "accelerate" / "deepspeed_zero2_offload.yaml", monkeypatch)
    plugin = DeepSpeedPlugin()  # reads the JSON from the env and runs accelerate's consistency checks
    plugin.set_mixed_precision(mixed_precision)
    return plugin


def test_deepspeed_json_is_the_papers_zero2_with_cpu_offload(monkeypatch):
    plugin = _deepspeed_plugin(monkeypatch, "bf16")
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == 2 and plugin.offload_optimizer_device == "cpu"
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    # The trainer fills these from the run config (batch shard, max_grad_norm).
    assert plugin.is_auto("train_micro_batch_size_per_gpu") and plugin.is_auto("gradient_clipping")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (the scale extra)")
def test_deepspeed_json_passes_deepspeeds_own_schema(monkeypatch):
    import deepspeed.runtime.constants as C
    from deepspeed.runtime.config import DeepSpeedConfig
    from deepspeed.runtime.zero.config import ZERO_OPTIMIZATION

    ds = json.loads(json.dumps(_deepspeed_plugin(monkeypatch, "bf16").deepspeed_config))
    # DeepSpeed ignores unknown top-level keys, so check them against its own key constants.
    known = {getattr(C, n) for n in dir(C) if n.isupper() and isinstance(getattr(C, n), str)} | {ZERO_OPTIMIZATION}
    assert set(ds) <= known, set(ds) - known
    ds.update(train_micro_batch_size_per_gpu=4, train_batch_size=4, gradient_clipping=1.0)
    parsed = DeepSpeedConfig(ds)  # pydantic: unknown keys inside zero_optimization etc. raise
    assert parsed.zero_optimization_stage == 2 and parsed.zero_config.offload_optimizer.device == "cpu"


# --- two processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(results: Path) -> tuple[int, dict[str, list[float]]]:
    from snap_bench.store import Store

    store = Store(results)
    try:
        runs = store.conn.execute("SELECT run_id FROM runs").fetchall()
        rows = store.conn.execute("SELECT step, term, value FROM losses ORDER BY step").fetchall()
    finally:
        store.close()
    out: dict[str, list[float]] = {}
    for _, term, value in rows:
        out.setdefault(term, []).append(value)
    return len(runs), out


def test_two_gloo_processes_follow_the_one_process_loss_trajectory(tmp_path, cli):
    """The documented CPU entry (accelerate launch, 2 processes, gloo) trains on the same global batch.

    Measured: the 2-process trajectory is within 4e-3 of the 1-process one (the shards' token means
    average to a slightly different global mean); with DDP's gradient sync switched off, the
    forget/retain/total losses drift 0.04-0.17 away from step 1 on, so the 0.02 bound catches it.
    """
    one = cli(*RUN_ARGS, "--results", tmp_path / "one")
    assert one.code == 0, one.err
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
           "-m", "snap_bench", *RUN_ARGS, "--results", str(tmp_path / "two")]
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)  # ~40 s on an idle 2-core CPU
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout)["train"]["steps"] == 6  # exactly one JSON object: only rank 0 prints

    n1, l1 = _losses(tmp_path / "one")
    n2, l2 = _losses(tmp_path / "two")
    assert n1 == 1 and n2 == 1  # rank 1 wrote no run of its own
    assert set(l1) == set(l2) == {"forget", "retain", "general", "reg", "total", "lr"}
    assert l1["lr"] == l2["lr"]  # one scheduler step per optimiser step, whatever the process count
    for term in ("forget", "retain", "general", "reg", "total"):
        diff = max(abs(a - b) for a, b in zip(l1[term], l2[term], strict=True))
        assert diff < 0.02, (term, l1[term], l2[term])
    assert l2["total"][-1] < l2["total"][0] - 0.5  # it trained


def test_a_run_launched_on_gpus_that_are_not_there_is_refused(monkeypatch):
    """Two processes that each see a world of one would both train alone and both store the run."""
    from snap_bench.errors import SnapBenchError
    from snap_bench.train.scaling import process_info

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    for k in ("LOCAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SnapBenchError, match="ACCELERATE_USE_CPU"):
        process_info()


# --- switches on one step of tiny-random -----------------------------------------------------


class _Spy(SnapMethod):
    """SNAP's loss, recording what the trainer set up around it."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen: list[dict] = []

    def loss(self, model, batches, ctx):
        terms = super().loss(model, batches, ctx)
        self.seen.append({"autocast": torch.is_autocast_enabled("cpu"), "dtype": torch.get_autocast_dtype("cpu"),
                          "checkpointing": checkpointing(model),
                          "trainable": [n for n, p in model.named_parameters() if p.requires_grad]})
        return terms


def _data(pack_dir):
    from snap_bench.tasks import load_general, load_pack

    pack = load_pack(str(pack_dir))
    return UnlearnData(packs=[pack], forget=pack["forget"][:8], retain=pack["retain"][:8],
                       general=load_general()["general"][:8])


def _train(pack_dir, regularizer="none", **overrides):
    from snap_bench.models import load_model

    lm = load_model("tiny-random")
    cfg = build_config(SnapMethod.config_cls, "cpu", {"batch_size": "4", "max_steps": "1",
                                                      **{k: str(v) for k, v in overrides.items()}})
    method = _Spy(cfg)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    reg = build_regularizer(regularizer, cfg, 0)
    res = train(lm.model, lm.tokenizer, method, reg, _data(pack_dir), cfg, 0, progress=False)
    return lm.model, method.seen, before, res, reg


def test_bf16_switch_runs_the_loss_under_bf16_autocast(pack_dir):
    model, seen, _, res, _ = _train(pack_dir, mixed_precision="bf16")
    assert seen[0]["autocast"] and seen[0]["dtype"] == torch.bfloat16
    assert res.steps == 1 and all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    _, seen, _, _, _ = _train(pack_dir)
    assert not seen[0]["autocast"]


def test_gradient_checkpointing_switch_is_on_while_training_only(pack_dir):
    model, seen, _, res, _ = _train(pack_dir, gradient_checkpointing="true")
    assert seen[0]["checkpointing"] and res.steps == 1
    assert not checkpointing(model)  # evaluation and later phases get the model as it was


def test_gradient_checkpointing_changes_no_number_in_fp32(pack_dir):
    """The recomputed forward is the same fp32 arithmetic: losses and weights after 3 SWD steps are equal bit
    for bit (measured on SmolLM2-135M too: a whole default run gave identical metrics; docs/speed.md, "Memory")."""
    out = {}
    for gc in ("false", "true", "selective"):
        model, _, _, res, _ = _train(pack_dir, "swd", gradient_checkpointing=gc, max_steps=3)
        assert res.checkpointing["mode"] == {"false": "off", "true": "full"}.get(gc, gc)
        out[gc] = ([d["total"] for d in res.losses], {n: q.detach().clone() for n, q in model.named_parameters()})
    for gc in ("true", "selective"):
        assert out["false"][0] == out[gc][0] and len(out[gc][0]) == 3
        assert all(torch.equal(out["false"][1][n], out[gc][1][n]) for n in out["false"][1])


def test_fp16_on_a_cpu_is_refused_before_anything_runs(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed where CUDA is")
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random",
            "--set", "mixed_precision=fp16", "--results", tmp_path / "res")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "CUDA" in r.err
    assert not (tmp_path / "res").exists()


def test_scale_fields_enter_the_config_hash_only_when_set():
    from snap_bench.run.execute import RunSpec, plan

    base = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random"))
    assert not {"mixed_precision", "lora_r", "gradient_checkpointing"} & set(base.record["config"])
    # Gradient checkpointing changes no number: recorded as an execution setting, outside the hash.
    untracked = {"log_with": "none", "log_dir": None, "eval_batch_size": 128}  # tracking, eval batches: execution
    auto = {"gradient_checkpointing": "auto", "memory_budget_gb": None}  # decided by train/memory.py
    assert base.record["execution"] == {**auto, **untracked}  # the cpu preset's default
    off = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                       overrides={"gradient_checkpointing": "false", "memory_budget_gb": "3"}))
    assert off.record["execution"] == {"gradient_checkpointing": "false", "memory_budget_gb": 3.0, **untracked}
    assert off.config_hash == base.config_hash
    # The eval batch size groups the same generations: outside the hash, which keeps the 32 every older run had.
    b32 = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                       overrides={"eval_batch_size": "32"}))
    assert b32.config_hash == base.config_hash and base.record["config"]["eval_batch_size"] == 32
    assert b32.record["execution"]["eval_batch_size"] == 32
    bf16 = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                        overrides={"mixed_precision": "bf16"}))
    assert bf16.record["config"]["mixed_precision"] == "bf16" and bf16.config_hash != base.config_hash


# --- LoRA --------------------------------------------------------------------------------------


class _SeenByPenalty:
    """L2, recording which parameters it was computed on and their distance from θ_init."""

    def __init__(self):
        from snap_bench.regularizers.l2 import EuclideanRegularizer

        self.inner = EuclideanRegularizer()
        self.names: list[str] = []
        self.values: list[float] = []

    def penalty(self, model, init_state):
        self.names = [n for n, _, _ in trainable(model, init_state)]
        out = self.inner.penalty(model, init_state)
        self.values.append(float(out.detach()))
        return out


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed (the scale extra)")
@pytest.mark.parametrize("regularizer", ["swd", "l2", "fisher"])
def test_lora_trains_only_adapters_and_the_regularizer_sees_them(pack_dir, regularizer):
    model, seen, before, res, reg = _train(pack_dir, regularizer=regularizer, lora_r=4, lr=1e-2, max_steps=3,
                                           lambda_reg=1.0)
    assert res.steps == 3
    trainable_names = seen[0]["trainable"]
    assert trainable_names and all("lora_" in n for n in trainable_names)
    if regularizer == "fisher":
        assert set(reg.fisher) == set(trainable_names)  # F estimated on the adapters
    assert res.losses[-1]["reg"] > 0.0  # the adapters moved away from their init
    after = model.state_dict()
    assert set(after) == set(before)  # merged back into a plain model
    assert all(p.requires_grad for p in model.parameters())
    assert not any("lora" in n for n, _ in model.named_modules())
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # embeddings and norms untouched
    for k in changed:  # the merged update is B·A: its rank is at most r
        assert torch.linalg.matrix_rank(after[k] - before[k], atol=1e-6) <= 4, k


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed (the scale extra)")
def test_lora_penalty_is_computed_on_the_adapter_weights(pack_dir):
    from snap_bench.models import load_model

    lm = load_model("tiny-random")
    cfg = build_config(SnapMethod.config_cls, "cpu", {"batch_size": "4", "max_steps": "2", "lora_r": "2",
                                                      "lr": "1e-2", "lora_targets": "q_proj,v_proj"})
    from snap_bench.regularizers.base import complete_regularizer

    spy = complete_regularizer(_SeenByPenalty)()  # as registration would: the protocol's optional hooks filled in
    train(lm.model, lm.tokenizer, SnapMethod(cfg), spy, _data(pack_dir), cfg, 0, progress=False)
    assert spy.names and all(".lora_A." in n or ".lora_B." in n for n in spy.names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in spy.names} == {"q_proj", "v_proj"}
    assert spy.values[0] == 0.0 and spy.values[-1] > 0.0
