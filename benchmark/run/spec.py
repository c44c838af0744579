"""What a run is before it runs: the user's :class:`RunSpec`, resolved and validated into a :class:`Plan`.

All validation happens here, before the store is opened, so a bad name, file or value writes
nothing. The plan's ``record`` is what the store keeps as the run's config; its hash (without the
execution-only settings) is what a sweep uses to know a run is done already.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snap_bench import __version__
from snap_bench.config import MethodConfig, build_config, config_hash
from snap_bench.errors import SnapBenchError
from snap_bench.models import DEFAULT_MODEL
from snap_bench.registry import METHODS, REGULARIZERS
from snap_bench.tasks import Pack, load_general, load_pack
from snap_bench.run.tracking import check_available as check_tracker

MODES = ("single", "batch", "sequential")


@dataclass
class RunSpec:
    method: str
    entities: list[str]
    mode: str = "single"
    regularizer: str | None = None  # None: the method's default
    model: str = DEFAULT_MODEL
    seed: int = 0
    preset: str = "cpu"
    overrides: dict[str, str] = field(default_factory=dict)
    results_dir: Path | str | None = None
    judge: str = "rules"
    progress: bool = True
    trust_remote_code: bool = False
    save_dir: Path | str | None = None  # --save: write the final model there (see saving.py)
    save_gguf: str | None = None  # --gguf: also write DIR/model.<type>.gguf (models/gguf_export.py); not hashed
    allow_pickle: bool = False  # load pickle (.bin/.pt) weights of a local model directory; off: safetensors only


@dataclass
class Plan:
    """A fully resolved, validated run, ready to execute."""

    spec: RunSpec
    method_cls: type
    cfg: MethodConfig
    regularizer: str
    packs: list[Pack]
    general: Pack
    record: dict[str, Any]  # what is stored as the run's config (and hashed)
    config_hash: str
    precision: dict[str, Any] = field(default_factory=dict)  # used, requested, fast_bf16: stored with versions


def _fingerprint(pack: Pack) -> str:
    h = hashlib.sha256()
    for set_name in sorted(pack.sets):
        for it in pack.sets[set_name]:
            h.update(repr(sorted(it.to_dict().items())).encode())
    return h.hexdigest()[:12]


def plan(spec: RunSpec) -> Plan:
    """Resolve names, packs and config; raise SnapBenchError on any bad input. Touches no store."""
    if spec.mode not in MODES:
        raise SnapBenchError(f"unknown mode {spec.mode!r}; valid modes: {', '.join(MODES)}")
    if not spec.entities:
        raise SnapBenchError("no --entity given")
    if len(set(spec.entities)) != len(spec.entities):
        raise SnapBenchError("the same --entity is given twice")
    if spec.mode == "single" and len(spec.entities) != 1:
        raise SnapBenchError(f"--mode single takes one --entity, got {len(spec.entities)}; use --mode batch or --mode sequential")
    method_cls = METHODS.get(spec.method)
    overrides = dict(spec.overrides)
    cfg = build_config(method_cls.config_cls, spec.preset, overrides)
    if cfg.eval_nlp:  # checked now: a bad task name would otherwise fail after all the training
        from snap_bench.evaluate.nlp import parse_tasks

        parse_tasks(cfg.nlp_tasks)
    regularizer = spec.regularizer or cfg.regularizer
    REGULARIZERS.get(regularizer)
    cfg.regularizer = regularizer
    packs = [load_pack(e) for e in spec.entities]
    general = load_general()
    from snap_bench.models import check_model_spec

    check_model_spec(spec.model, allow_pickle=spec.allow_pickle)
    _check_model_fits(spec, method_cls, cfg)
    check_tracker(cfg.log_with)
    from snap_bench.registry import JUDGES
    from snap_bench.store import check_env

    JUDGES.get(spec.judge)
    from snap_bench.train.scaling import apply_precision, check_scaling

    # ``auto`` is resolved once, here: the stored config (and its hash) holds the precision used.
    precision = apply_precision(cfg)
    procs = check_scaling(cfg)
    _check_select(cfg, procs.count, "select" in overrides)
    _check_heldout(cfg)
    _check_save(spec)
    check_env()
    record = {
        "method": spec.method,
        "regularizer": regularizer,
        "mode": spec.mode,
        "entities": [p.slug for p in packs],
        "model": spec.model,
        "seed": spec.seed,
        "preset": spec.preset,
        "judge": spec.judge,
        "config": _hashed_config(cfg),
        "packs": {p.slug: _fingerprint(p) for p in [*packs, general]},
    }
    if procs.count > 1:  # the shard means and the reduction order change the numbers a little
        record["processes"] = {"count": procs.count, "type": procs.distributed_type}
    digest = config_hash(record)  # before "execution": those settings change no result
    record["execution"] = {k: getattr(cfg, k) for k in _EXECUTION_ONLY}
    return Plan(spec, method_cls, cfg, regularizer, packs, general, record, digest, precision)


def _check_save(spec: RunSpec) -> None:
    """``--save DIR`` (and ``--gguf``): a usable folder and an exportable model, before anything is trained."""
    if spec.save_dir is not None:
        from snap_bench.models.saving import check_save_dir

        check_save_dir(spec.save_dir)
    if spec.save_gguf is not None:
        _check_gguf(spec)


def _check_gguf(spec: RunSpec) -> None:
    """``--gguf``: refuse a model that cannot be exported now, not after the training."""
    from snap_bench.models import model_config, model_tokenizer
    from snap_bench.models.gguf_export import QTYPES, check_exportable, check_tokenizer

    if spec.save_dir is None:
        raise SnapBenchError(f"--gguf {spec.save_gguf} writes into the --save directory; give --save DIR too")
    if spec.save_gguf not in QTYPES:
        raise SnapBenchError(f"--gguf {spec.save_gguf}: unknown type; valid: {', '.join(QTYPES)}")
    config = model_config(spec.model, trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
    if config is not None:  # unreadable here (a hub id offline): load_model reports it
        check_exportable(config)
    tok = model_tokenizer(spec.model, trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
    if tok is not None:
        check_tokenizer(tok)


def _check_model_fits(spec: RunSpec, method_cls, cfg: MethodConfig) -> None:
    """Settings that depend on the model (RMU's layer against its depth), checked through the method's
    ``check_model`` hook on the model's config, read without the weights, before anything is written."""
    from snap_bench.models import DEFAULT_MODEL, GGUF_FILE, model_config

    if "shipped" in cfg.quant_probe.split(",") and spec.model != DEFAULT_MODEL:  # the one model with a GGUF of origin
        raise SnapBenchError(f"--set quant_probe=shipped: model {spec.model!r} has no GGUF of origin (only {DEFAULT_MODEL}, "
                             f"from {GGUF_FILE}, has one); use q8_0, q4_0, q4_1 or int4_g32")
    config = model_config(spec.model, trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
    if config is not None:
        method_cls(cfg).check_model(config)


def _check_select(cfg: MethodConfig, processes: int, explicit: bool) -> None:
    """Dev checkpoint selection needs a dev split, and it keeps a copy of the weights and puts it back after
    training, which needs one process and no LoRA (adapters are merged after training). Asked for explicitly
    without them, it is an error; when it comes from the preset, the run falls back to the last checkpoint and
    its stored config says so."""
    if cfg.select != "dev":
        return
    if cfg.dev_size <= 0:
        if explicit:
            raise SnapBenchError("--set select=dev needs a dev split: also give --set dev_size=N (N > 0)")
        cfg.select = "last"
        return
    why = ("LoRA (lora_r > 0) merges its adapters after training" if cfg.lora_r else
           f"{processes} processes would each restore their own copy" if processes > 1 else None)
    if why is None:
        return
    if explicit:
        raise SnapBenchError(f"--set select=dev cannot put a checkpoint back here: {why}; use --set select=last")
    cfg.select = "last"


def _check_heldout(cfg: MethodConfig) -> None:
    """A dev-only run (``heldout=false``) scores the dev split and nothing held out: it needs a dev split, and an
    analysis (each measures held-out items) would silently do nothing, so asking for one is an error."""
    if cfg.heldout:
        return
    if cfg.dev_size <= 0:
        raise SnapBenchError("--set heldout=false is a dev-only run: it needs a dev split (--set dev_size=N, N > 0)")
    asked = [k for k in ("probes", "mia", "eval_nlp") if getattr(cfg, k)] + (["quant_probe"] if cfg.quant_probe else [])
    if asked:
        raise SnapBenchError(f"--set heldout=false: {', '.join(asked)} measure held-out items; a dev-only run has "
                             "none (drop them, or keep heldout=true)")


# Fields added for scale-out enter the record (and the config hash) only when set, so the hashes
# of runs stored before they existed, and a sweep's resumption, stay valid.
_SCALE_DEFAULTS = {"mixed_precision": "no", "lora_r": 0, "lora_alpha": 16.0,
                   "lora_dropout": 0.0, "lora_targets": "all-linear"}


# Fields whose value, before they existed, was the one given here: a config with that value
# leaves them out, so runs stored before them keep their hashes (a missing swd_form = normalized).
# precision: every run before it was fp32 (a resolved fp32 hashes as before; mixed_precision=no goes too).
# mia, quant_probe: runs before them computed no membership inference and no quantization probe.
# heldout: every run before it evaluated the held-out sets.
_LEGACY_VALUES = {"swd_form": "normalized", "precision": "fp32", "select_criterion": "mean4", "mia": False,
                  "quant_probe": "", "heldout": True}


# Settings that change how a run computes, never what it computes: stored with the run (record["execution"]),
# outside its config hash, so flipping one neither re-runs a sweep nor makes a new report row. Gradient
# checkpointing recomputes the same arithmetic (tests/test_scaling.py: losses and weights bit-identical; a
# whole default run on SmolLM2-135M gave identical metrics, docs/speed.md "Memory").
# Tracking (log_with, log_dir) only copies numbers elsewhere.
# The evaluation batch size only groups the same greedy generations (fp32 token ids identical at 32 and 128 on the
# default model, tests/test_e2e_slow.py); it became an execution setting when its default rose from 32 (issue 24).
_EXECUTION_ONLY = ("gradient_checkpointing", "memory_budget_gb", "log_with", "log_dir", "eval_batch_size")
# ... but every run hashed before then holds eval_batch_size 32 in its hashed config: that value stays there, for
# every run, so their hashes, rows and resumption hold (tests/test_precision.py pins such a hash).
_HASHED_AS = {"eval_batch_size": 32}


def _hashed_config(cfg: MethodConfig) -> dict[str, Any]:
    out = cfg.to_dict()
    for k in _EXECUTION_ONLY:
        out.pop(k, None)
    out.update(_HASHED_AS)
    for k, default in {**_SCALE_DEFAULTS, **_LEGACY_VALUES}.items():
        if out.get(k) == default:
            del out[k]
    # general_ratio matters only when D_g is trained on; it enters the hash exactly then, so runs with
    # retain_data=hard|none keep their hashes, while hard+general runs (D_r and D_g once one stream, now
    # two) get new ones and a sweep does not mistake an old run for the new recipe.
    if out.get("retain_data") not in ("general", "hard+general"):
        out.pop("general_ratio", None)
    # Likewise the selection criterion acts only under select=dev: a select=last run keeps one hash
    # whatever the criterion's default is.
    if out.get("select") != "dev":
        out.pop("select_criterion", None)
    # And mia_limit only with mia on.
    if not out.get("mia"):
        out.pop("mia_limit", None)
    return out



def versions() -> dict[str, str]:
    import torch
    import transformers

    return {"snap_bench": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}



def phases(p: Plan) -> list[list[Pack]]:
    if p.spec.mode == "sequential":
        return [[pack] for pack in p.packs]
    return [p.packs]

