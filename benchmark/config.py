"""Typed run configuration: the fields every method shares, presets, and ``--set key=value``.

Each method subclasses :class:`MethodConfig` with its own documented fields (see
``methods/``). ``--set`` reaches any field of the resolved config; values are parsed by the
field's type and range-checked, and an unknown key lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.models.quant_schemes import parse_schemes as quant_schemes

RETAIN_DATA = ("hard", "general", "hard+general", "none")
SELECT = ("last", "dev")
# How select=dev scores a checkpoint (and how settings are compared) on the dev split. ``balanced`` weighs
# forgetting and keeping equally, so a model that unlearns nothing (UA 0, everything kept) scores 50, never
# more than one that forgets. ``mean4``, the plain mean of the four, was the first criterion: it ranks an
# untrained model (UA 0, RA/TA/cross_RA 100: 75) above every unlearned one, so it is kept only to describe
# runs made with it.
SELECT_CRITERIA = {
    "balanced": "mean(UA, mean(RA, TA, cross_RA)) on the dev split, averaged over entities; ties: the earlier step",
    "mean4": "mean(UA, RA, TA, cross_RA) on the dev split, averaged over entities; ties: the earlier step",
}
RETAIN_TARGETS = ("pack", "self")
MIXED_PRECISION = ("no", "bf16", "fp16")
PRECISION = ("auto", "fp32", "bf16")
CHECKPOINTING = ("auto", "true", "selective", "false")
BOOL_WORDS = {**dict.fromkeys(("1", "true", "yes", "on"), "true"), **dict.fromkeys(("0", "false", "no", "off"), "false")}
LOG_WITH = ("none", "tensorboard", "wandb", "mlflow")  # accelerate trackers run/tracking.py drives
# What mixed_precision (accelerate's name) each precision used means, and back.
MIXED_OF_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class MethodConfig:
    """Settings shared by every method. A preset (PRESETS; ``cpu`` by default) overrides some of these."""

    # --- optimisation (AdamW) ---
    lr: float = 1e-4
    """Peak learning rate. Paper: 5e-5 (Llama-2-7b-chat), 1e-5 (Mistral-7B-Instruct); CPU default 1e-4,
    because a 135M model trained for a few dozen steps needs a larger step to move."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms or biases). Paper: 0.1."""
    batch_size: int = 16
    """Examples per optimiser step, split between the method's data streams by their ratios (forget 1,
    ``retain_ratio``, ``general_ratio``; ``trainer.plan_steps``) (paper: 32)."""
    epochs: float = 3.0
    """Passes over the forget stream when ``max_steps`` is unset (the retain and general streams are drawn from
    alongside it, cycling as needed, so their passes follow from their shares of the batch)."""
    max_steps: int | None = None
    """Hard cap on optimiser steps; 0 evaluates the untrained model. Overrides ``epochs``."""
    warmup_steps: int = 0
    """Linear warm-up steps before the learning-rate schedule starts."""
    lr_schedule: str = "linear"
    """``linear`` (decay to 0 at the last step) or ``constant``."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm; 0 disables it."""
    max_length: int = 160
    """Token cap per training example (prompt kept whole, the response's tail is cut)."""
    train_size: int = 100
    """Items sampled per training set, proportional across categories (paper: 100); the rest are eval."""
    retain_data: str = "hard"
    """Data to keep: ``hard`` (related D_r, the paper's HardRDA: stream ``retain``), ``general`` (D_g, Figure 4:
    stream ``general``), ``hard+general`` (both, as TWO streams with their own shares of the batch and their own
    loss terms ``retain`` and ``general``, as in Opt-Out's "+rt+wd") or ``none`` (−HardRDA)."""
    retain_ratio: float = 1.0
    """Examples drawn from the retain stream (D_r; also any other non-forget stream a method has, except
    ``general``) per forget example in a step (paper: 1, an even mix)."""
    general_ratio: float = 1.0
    """Examples drawn from the general stream (D_g; ``retain_data`` ``general`` or ``hard+general``) per forget
    example in a step. 1 follows the authors' later code (Choi et al., Opt-Out, github.com/brightjade/Opt-Out,
    method "+rt+wd"), which draws an equal batch from the forget, retain and world (general) data each step and
    adds the three mean NLLs."""
    retain_targets: str = "pack"
    """Targets of the retain stream: ``pack`` (the pack's written answers, as in the paper) or ``self`` (the
    untrained model's own greedy answers, generated once before training; see ``retain_targets.py``)."""
    length_bucket: int = 8
    """Examples are ordered by length within chunks of ``length_bucket * batch`` draws, to cut padding."""

    # --- regularizer ---
    regularizer: str = "swd"
    """Default regularizer of the method; ``--regularizer`` overrides it."""
    lambda_reg: float = 0.1
    """λ, the regularizer's weight in L = L_f + L_r + λ·penalty. Paper: 0.1."""
    swd_projections: int = 100
    """Random directions for the sliced Wasserstein distance (paper eq. 6)."""
    swd_p: float = 2.0
    """Order p of SW_p."""
    swd_form: str = "authors"
    """``authors`` (the Opt-Out code, ``model.py`` ``sliced_wasserstein_distance``: |sorted diff|^p summed over
    rows, averaged over directions, no root, directions redrawn every step) or ``normalized`` (mean over rows
    and directions, then the 1/p root; directions drawn once per run, as before this field existed). See
    ``regularizers/swd.py``."""

    # --- precision and scale-out (GPUs; docs/scaling.md) ---
    precision: str = "auto"
    """Training arithmetic: ``auto``, ``fp32`` or ``bf16``. ``bf16`` is autocast with fp32 master weights (the
    optimiser and θ_init stay fp32; the regularizer's distances between weights are computed in fp32, outside
    autocast). ``auto`` picks bf16 where the hardware runs it fast (``scaling.fast_bf16``: a CUDA GPU with bf16,
    or a CPU with AMX-BF16 or AVX512-BF16) and fp32 elsewhere. It is resolved once, when the run is planned:
    the stored config holds the precision USED (``fp32``, ``bf16``, or ``fp16`` via ``mixed_precision``), the
    environment (``versions``) also the one requested, and the run output and reports show it. fp32 runs keep
    the config hashes they had before this field existed. Evaluation generates without autocast whatever the
    precision (in fp32, except under DeepSpeed or LoRA loading, whose weights are bf16 already), so a bf16 run
    differs from an fp32 one only through its trained weights, and the untrained-answer cache stays valid. This is the knob to use;
    ``mixed_precision`` is what it resolves to. The ``cpu`` preset pins fp32 until the default run under bf16 has
    been compared with fp32 over 3 seeds on a host with fast bf16 (issue 14)."""
    mixed_precision: str = "no"
    """accelerate's name for the same thing, kept for old commands and configs: ``no`` (fp32), ``bf16`` or
    ``fp16`` (CUDA only) autocast through accelerate; under DeepSpeed also the engine's bf16/fp16 weights (fp32
    masters in its optimizer). Overrides the accelerate config's ``mixed_precision``. Leave it at ``no`` and
    set ``precision``: planning sets it from the resolved precision. Set, it must agree with ``precision``
    (``auto`` takes it: ``mixed_precision=bf16`` is ``precision=bf16``); fp16 is reachable only here. The
    paper's 7B runs use bf16."""
    gradient_checkpointing: str = "auto"
    """Recompute activations in backward: less memory, more compute. ``auto``: none if the estimated training peak
    fits ``memory_budget_gb``, else ``selective`` (keep matmul/attention outputs) if that fits, else full
    (``train/memory.py``); ``false``/``selective``/``true`` (full) force a level. The same arithmetic, so an
    execution setting (outside the config hash); the decision is stored in the analysis ``resources``."""
    memory_budget_gb: float | None = None
    """Training memory budget (GB) for ``gradient_checkpointing=auto``: resident set on a CPU, allocated bytes on a
    GPU. None: 6 on a CPU (two runs fit 24 GB), 90 % of a GPU's memory. An execution setting."""
    lora_r: int = 0
    """LoRA rank (peft, the ``scale`` extra); 0 trains every weight. With LoRA only the adapters train, and
    θ_init, the optimiser and the regularizer (swd, l2, fisher) see only them; they are merged into the
    weights after training."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the adapter's update is (lora_alpha / lora_r) · B·A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input during training."""
    lora_targets: str = "all-linear"
    """Modules that get adapters: ``all-linear`` (peft: every linear layer except the LM head) or a
    comma-separated list of module names such as ``q_proj,v_proj``."""

    # --- experiment tracking (run/tracking.py); execution settings, outside the config hash ---
    log_with: str = "none"
    """Send every loss term and lr per step, and the final metrics, to ``tensorboard``, ``wandb`` or ``mlflow``
    (accelerate's trackers) under the run id; ``none``: the store only. W&B and MLflow use their own config."""
    log_dir: str | None = None
    """Where ``tensorboard`` writes (one sub-folder per run id); None: ``<results>/tensorboard``."""

    # --- evaluation ---
    max_new_tokens: int = 64
    """Greedy generation budget per evaluation question."""
    eval_batch_size: int = 128
    """Questions generated together (left-padded, KV-cached). The same fp32 token ids as 32, faster (docs/speed.md;
    tests/test_e2e_slow.py): an execution setting, outside the config hash."""
    eval_limit: int | None = None
    """Cap on evaluation questions per set (forget, multihop, retain, general, cross); None = all held-out items.
    A capped set is a seeded sample stratified by entity and category, never the first N."""
    general_eval_size: int = 100
    """Held-out D_g questions used for TA (the general set is shared by all entities); a stratified, seeded sample."""
    cross_eval: bool = True
    """Also ask the held-out forget questions of the other shipped entities (those not unlearned in the run) and
    report ``cross_RA``, the % of them NOT obliterated: selectivity."""
    known_eval: bool = True
    """Generate the untrained model's answers to the held-out retain questions (cached per model weights, prompt
    settings and question) to report ``RA_known`` on the items it answered correctly. Off: RA_known is null."""
    heldout: bool = True
    """Evaluate the held-out sets. false: a dev-only run, for choosing settings: it trains and scores the dev split
    (needs ``dev_size`` > 0), computes no held-out number and no analysis, and no held-out table shows it."""
    dev_size: int = 0
    """Items per set (forget, retain, general; and the other entities' training forget items for cross_RA) carved
    from the TRAINING split as a dev split: stratified, seeded, held out of training. Settings and checkpoints are
    chosen on it, never on the held-out evaluation sets. Its metrics are stored under ``"dev"``. 0: no dev split."""
    select: str = "last"
    """Checkpoint: ``last`` (the model after the last step) or ``dev`` (the checkpoint with the best dev score,
    evaluated every ``select_every`` steps and at the last step; needs ``dev_size`` > 0), scored by
    ``select_criterion``; the choice and every checkpoint's dev metrics are stored with the run."""
    select_criterion: str = "balanced"
    """The dev score (``SELECT_CRITERIA``): ``balanced`` = mean(UA, mean(RA, TA, cross_RA)), forgetting and keeping
    weighed equally; ``mean4`` = mean(UA, RA, TA, cross_RA), which prefers an untrained model (kept for old runs)."""
    select_every: int = 10
    """Steps between dev evaluations when ``select=dev``."""
    system_prompt: str | None = None
    """A system message for training and evaluation prompts; None uses the chat template's default."""

    # --- analyses beyond Table 1 (off by default: each adds minutes on a CPU) ---
    probes: bool = False
    """Knowledge probes on held-out forget items (``evaluate/probes/``): answer log-likelihood before and after,
    UA under adversarial framings, a relearning attack and fluency. Printed under ``"probes"``."""
    probe_limit: int = 40
    """Forget items per probe."""
    relearn_n: int = 10
    """Forget facts (question -> true answer) the relearning attack fine-tunes on; UA is measured on the others."""
    relearn_steps: int = 5
    """Optimizer steps of the relearning attack."""
    mia: bool = False
    """Membership inference (``evaluate/mia.py``): per entity, the AUC with which LOSS, ZLib, Min-K% and Min-K%++
    (k = 20%) tell the forget items trained on from the held-out ones, on the untrained and the final model; 0.5 =
    no trace. Printed under ``"mia"``."""
    mia_limit: int = 100
    """Members and non-members per entity for ``mia`` (equal numbers, a seeded stratified sample of the larger set)."""
    quant_probe: str = ""
    """Comma-separated GGUF schemes (``evaluate/quant.py``: shipped, q8_0, q4_0, q4_1, int4_g32) at which the final and
    the untrained model are re-evaluated on ``probe_limit`` forget and retain items (``evaluate/quant_probe.py``).
    Empty: off. Printed under ``"quant"``."""
    eval_nlp: bool = False
    """Zero-shot NLP utility (paper Table 2) through lm-evaluation-harness (``evaluate/nlp/``). Printed under ``"nlp"``."""
    nlp_tasks: str = "hellaswag,lambada_openai,winogrande,piqa,arc_challenge,mmlu,openbookqa,boolq,mathqa"
    """Comma-separated lm-eval tasks; a task whose data is unreachable is reported unavailable, never scored."""
    nlp_limit: int | None = 200
    """Items per NLP task (MMLU: stratified by subject); None = the whole test set."""

    def require_positive(self, *names: str) -> None:
        """Subclasses call this for their own fields, so every config reports bad values the same way."""
        for name in names:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise SnapBenchError(f"--set {name}={v}: must be a positive number")

    def require_nonnegative(self, *names: str) -> None:
        for name in names:
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise SnapBenchError(f"--set {name}={v}: must be >= 0")

    def validate(self) -> None:
        self.require_positive("lr", "batch_size", "retain_ratio", "general_ratio", "max_length", "swd_projections",
                              "swd_p", "max_new_tokens", "eval_batch_size", "probe_limit",
                              "mia_limit", "select_every")
        self.require_nonnegative("weight_decay", "lambda_reg", "max_grad_norm", "epochs", "warmup_steps", "train_size",
                                 "general_eval_size", "relearn_n", "relearn_steps", "dev_size")
        for name in ("max_steps", "eval_limit", "nlp_limit"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise SnapBenchError(f"--set {name}={v}: must be >= 0")
        for name, choices in (("retain_data", RETAIN_DATA), ("retain_targets", RETAIN_TARGETS), ("select", SELECT),
                              ("mixed_precision", MIXED_PRECISION), ("log_with", LOG_WITH)):
            if getattr(self, name) not in choices:
                raise SnapBenchError(f"--set {name}={getattr(self, name)}: expected one of {', '.join(choices)}")
        if self.select_criterion not in SELECT_CRITERIA:
            raise SnapBenchError(f"--set select_criterion={self.select_criterion}: expected one of "
                                 f"{', '.join(SELECT_CRITERIA)}")
        if self.swd_form not in ("authors", "normalized"):
            raise SnapBenchError(f"--set swd_form={self.swd_form}: expected authors or normalized")
        if self.lr_schedule not in ("linear", "constant"):
            raise SnapBenchError(f"--set lr_schedule={self.lr_schedule}: expected linear or constant")
        if self.precision not in PRECISION and self.precision != "fp16":
            raise SnapBenchError(f"--set precision={self.precision}: expected one of {', '.join(PRECISION)}")
        if self.precision == "fp16" and self.mixed_precision != "fp16":
            raise SnapBenchError("--set precision=fp16: expected one of auto, fp32, bf16 (fp16, CUDA only, is "
                                 "--set mixed_precision=fp16)")
        if self.mixed_precision != "no" and self.precision not in ("auto", self.mixed_precision):
            raise SnapBenchError(f"--set precision={self.precision} and mixed_precision={self.mixed_precision} "
                                 "contradict; give precision alone")
        self.require_nonnegative("lora_r")
        self.require_positive("lora_alpha")
        if not 0 <= self.lora_dropout < 1:
            raise SnapBenchError(f"--set lora_dropout={self.lora_dropout}: must be in [0, 1)")
        low = str(self.gradient_checkpointing).strip().lower()  # a bool before auto: its spellings still parse
        self.gradient_checkpointing = BOOL_WORDS.get(low, low)
        if self.gradient_checkpointing not in CHECKPOINTING:
            raise SnapBenchError(f"--set gradient_checkpointing={self.gradient_checkpointing}: expected one of "
                                 f"{', '.join(CHECKPOINTING)}")
        if self.memory_budget_gb is not None:
            self.require_positive("memory_budget_gb")
        self.quant_probe = ",".join(quant_schemes(self.quant_probe))  # normalised; a bad name lists the valid ones
        if not self.lora_targets.strip():
            raise SnapBenchError("--set lora_targets: empty; use all-linear or module names such as q_proj,v_proj")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default on a 2-core CPU (docs/configuration.md, "How the cpu defaults were chosen",
    # says how each value was chosen, on the dev split only). D_r and D_g are two streams (5 + 5 + 5
    # examples a step with the forget stream): without D_g a 135M model's refusals spread to everyday
    # questions. 20 items of each training set are carved off as a dev split, so 3 epochs over the 80
    # remaining forget items are 48 steps, and the checkpoint is chosen on the dev split once per epoch
    # (select=dev, every 16 steps).
    # fp32 until bf16 autocast is measured end to end on CPUs (issue 14): in a first check on an AMX host
    # the first bf16 steps of each new batch shape ran several times slower than fp32, and every figure in
    # docs/results.md is fp32. `--set precision=auto` picks bf16 where the hardware has it.
    "cpu": {"retain_data": "hard+general", "dev_size": 20, "select": "dev", "select_every": 16, "precision": "fp32"},
    # The paper's hyper-parameters (Choi et al. 2024, §4.1) for a 7B model on GPUs. The paper
    # text we follow does not fix the epoch count; 3 is our choice and is recorded with the run.
    "paper": {"lr": 5e-5, "weight_decay": 0.1, "batch_size": 32, "lambda_reg": 0.1, "epochs": 3.0, "retain_data": "hard",
              "swd_projections": 100, "swd_p": 2.0, "train_size": 100, "max_new_tokens": 128},
    "paper-mistral": {"lr": 1e-5, "weight_decay": 0.1, "batch_size": 32, "lambda_reg": 0.1, "epochs": 3.0,
                      "retain_data": "hard", "swd_projections": 100, "swd_p": 2.0, "train_size": 100,
                      "max_new_tokens": 128},
}


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _parse_value(key: str, raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in typing.get_args(typ):
        if raw.strip().lower() in ("none", "null", ""):
            return None
        typ = args[0]
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            f = float(raw)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if typ is float:
            v = float(raw)
            if not math.isfinite(v):
                raise ValueError
            return v
        if typ is str:
            return raw
    except ValueError:
        raise SnapBenchError(f"--set {key}={raw}: expected {getattr(typ, '__name__', typ)}") from None
    raise SnapBenchError(f"--set {key}: unsupported field type {typ}")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SnapBenchError(f"--set {pair}: expected key=value")
        k, v = pair.split("=", 1)
        k = k.strip()
        if not k:
            raise SnapBenchError(f"--set {pair}: empty key")
        if k in out:
            raise SnapBenchError(f"--set {k} given twice")
        out[k] = v
    return out


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``0,1,2`` -> [0, 1, 2]: distinct non-negative integers, comma-separated; anything else is bad input."""
    parts = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in parts):
        raise SnapBenchError(f"{flag} {text!r}: expected comma-separated seeds such as 0,1,2 (an empty entry is not a seed)")
    seeds: list[int] = []
    for t in parts:
        try:
            v = int(t)
        except ValueError:
            raise SnapBenchError(f"{flag} {text}: {t!r} is not an integer; expected comma-separated seeds such as 0,1,2") from None
        if v < 0:
            raise SnapBenchError(f"{flag} {text}: seed {v} is negative; seeds are integers >= 0")
        if v in seeds:
            raise SnapBenchError(f"{flag} {text}: seed {v} is given twice")
        seeds.append(v)
    return seeds


def build_config(cls: type[MethodConfig], preset: str = "cpu", overrides: dict[str, str] | None = None,
                 extra_keys: tuple[str, ...] = ()) -> MethodConfig:
    """Method defaults <- preset <- ``--set`` overrides, parsed, typed and validated."""
    if preset not in PRESETS:
        raise SnapBenchError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    types = _field_types(cls)
    values: dict[str, Any] = {k: v for k, v in PRESETS[preset].items() if k in types}
    if "mixed_precision" in (overrides or {}) and "precision" not in (overrides or {}):
        values.pop("precision", None)  # the preset's precision yields to the user's own (old) knob
    for k, raw in (overrides or {}).items():
        if k in extra_keys:
            continue
        if k not in types:
            raise SnapBenchError(f"--set {k}: unknown key; valid keys: {', '.join(sorted(set(types) | set(extra_keys)))}")
        values[k] = _parse_value(k, raw, types[k])
    cfg = cls(**values)
    cfg.validate()
    return cfg


def stored_precision(config: dict[str, Any]) -> str:
    """The precision a stored run config used: its ``precision``, else (a run from before the field)
    its ``mixed_precision`` (``no`` or missing: fp32)."""
    if config.get("precision") not in (None, "auto"):
        return str(config["precision"])
    return {"no": "fp32"}.get(config.get("mixed_precision", "no"), config.get("mixed_precision", "no"))


def config_hash(payload: dict[str, Any]) -> str:
    """A stable hash of everything that determines a run's results."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


__all__ = ["MethodConfig", "PRESETS", "build_config", "config_hash", "parse_overrides", "stored_precision", "field"]
