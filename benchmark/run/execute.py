"""One benchmark run: resolve and validate everything, load the model, unlearn, evaluate, store.

Modes (paper §4 and Figure 5):

- ``single``: one entity;
- ``batch``: the union of the entities' forget and retain data in one training run, metrics
  per entity;
- ``sequential``: the entities are unlearned one after another, each step starting from the
  previous step's model; after every step all entities seen so far are evaluated.

All validation happens before the store is opened, so a bad name, file or value writes nothing.

Under ``accelerate launch`` every process runs this same code: all of them train together (see
``trainer.py``), and only the main process writes to the store, evaluates, runs the analyses and
returns a result; the others return None.
"""

from __future__ import annotations

import copy
import hashlib
import platform
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snap_bench import __version__
from snap_bench.config import MethodConfig, build_config, config_hash
from snap_bench.errors import SnapBenchError
from snap_bench.methods.base import UnlearnData
from snap_bench.models import DEFAULT_MODEL
from snap_bench.registry import METHODS, REGULARIZERS
from snap_bench.tasks import Item, Pack, load_general, load_pack, shipped_entities, split_items, stratified_sample

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
    from snap_bench.registry import JUDGES
    from snap_bench.store import check_env

    JUDGES.get(spec.judge)
    from snap_bench.train.scaling import apply_precision, check_scaling

    # ``auto`` is resolved once, here: the stored config (and its hash) holds the precision used.
    precision = apply_precision(cfg)
    procs = check_scaling(cfg)
    _check_select(cfg, procs.count, "select" in overrides)
    if spec.save_dir is not None:
        from snap_bench.models.saving import check_save_dir

        check_save_dir(spec.save_dir)
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


# Fields added for scale-out enter the record (and the config hash) only when set, so the hashes
# of runs stored before they existed, and a sweep's resumption, stay valid.
_SCALE_DEFAULTS = {"mixed_precision": "no", "lora_r": 0, "lora_alpha": 16.0,
                   "lora_dropout": 0.0, "lora_targets": "all-linear"}


# Fields whose value, before they existed, was the one given here: a config with that value
# leaves them out, so runs stored before them keep their hashes (a missing swd_form = normalized).
# precision: every run before it was fp32 (a resolved fp32 hashes as before; mixed_precision=no goes too).
_LEGACY_VALUES = {"swd_form": "normalized", "precision": "fp32", "select_criterion": "mean4"}


# Settings that change how a run computes, never what it computes: stored with the run (record["execution"]),
# outside its config hash, so flipping one neither re-runs a sweep nor makes a new report row. Gradient
# checkpointing recomputes the same arithmetic (tests/test_scaling.py: losses and weights bit-identical; a
# whole default run on SmolLM2-135M gave identical metrics, README "Memory").
_EXECUTION_ONLY = ("gradient_checkpointing",)


def _hashed_config(cfg: MethodConfig) -> dict[str, Any]:
    out = cfg.to_dict()
    for k in _EXECUTION_ONLY:
        out.pop(k, None)
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
    return out


class _NoStore:
    """What a non-main process has instead of the store: the main process records the run."""

    path = None

    def start_run(self, **_):
        return None

    def finish_run(self, *_, **__):
        pass

    def fail_run(self, *_, **__):
        pass

    def start_heartbeat(self, _run_id):
        return self  # nothing to beat for: its stop() is the no-op below

    def stop(self):
        pass

    def close(self):
        pass


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"snap_bench": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


@dataclass
class Splits:
    """Every item set a run touches, all seeded and drawn by :func:`stratified_sample`.

    ``per_entity[slug]`` holds ``train`` (forget, retain), ``eval`` (forget, multihop, retain: held out)
    and ``dev`` (forget, retain: carved from the training split, never trained on). ``cross_*`` are the
    other shipped entities' forget questions: held-out ones for cross_RA, training ones for the dev split.
    """

    per_entity: dict[str, dict[str, dict[str, list[Item]]]]
    g_train: list[Item]
    g_eval: list[Item]
    g_dev: list[Item]
    cross_eval: list[Item]
    cross_dev: list[Item]


def _dev_n(dev_size: int, train: list[Item]) -> int:
    """A dev split never takes more than half of a training set (a small custom pack must keep data to train on)."""
    return min(dev_size, len(train) // 2)


def _splits(p: Plan) -> Splits:
    """Per-entity train/dev/eval splits, the general split and the cross-entity sets, all seeded."""
    cfg, seed = p.cfg, p.spec.seed
    limit, dev = cfg.eval_limit, cfg.dev_size
    per_entity = {}
    for pack in p.packs:
        f_train, f_eval = split_items(pack["forget"], cfg.train_size, seed)
        r_train, r_eval = split_items(pack["retain"], cfg.train_size, seed)
        f_dev, f_train = stratified_sample(f_train, _dev_n(dev, f_train), seed, "dev")
        r_dev, r_train = stratified_sample(r_train, _dev_n(dev, r_train), seed, "dev")
        per_entity[pack.slug] = {
            "train": {"forget": f_train, "retain": r_train},
            "eval": {s: stratified_sample(v, limit, seed, "eval")[0]
                     for s, v in (("forget", f_eval), ("multihop", pack["multihop"]), ("retain", r_eval))},
            "dev": {"forget": f_dev, "retain": r_dev},
        }
    g_train, g_eval = split_items(p.general["general"], cfg.train_size, seed)
    g_dev, g_train = stratified_sample(g_train, _dev_n(dev, g_train), seed, "dev")
    g_eval = stratified_sample(stratified_sample(g_eval, cfg.general_eval_size, seed, "general")[0], limit, seed, "eval")[0]
    cross_eval: list[Item] = []
    cross_dev: list[Item] = []
    if cfg.cross_eval:
        others = [load_pack(slug) for slug in shipped_entities() if slug not in {pk.slug for pk in p.packs}]
        for pack in others:
            o_train, o_eval = split_items(pack["forget"], cfg.train_size, seed)
            cross_eval += o_eval
            cross_dev += o_train
        cross_eval = stratified_sample(cross_eval, limit, seed, "cross")[0]
        cross_dev = stratified_sample(cross_dev, dev, seed, "cross-dev")[0] if dev else []
    return Splits(per_entity, g_train, g_eval, g_dev, cross_eval, cross_dev)


def _phases(p: Plan) -> list[list[Pack]]:
    if p.spec.mode == "sequential":
        return [[pack] for pack in p.packs]
    return [p.packs]


def execute(p: Plan, *, model_bundle=None, on_phase=None, claim: bool = False) -> dict[str, Any] | None:
    """Run a planned experiment and return its JSON-ready result. Stores everything.

    With ``claim`` (sweeps) the config hash is claimed atomically first: when it is done already or
    a live process holds it, nothing runs and ``{"skipped": "done"|"busy", "run_id": ...}`` comes back.
    Under ``accelerate launch`` only the main process stores and returns the result; the others
    train with it and return None.
    """
    from snap_bench.evaluate.metrics import evaluate
    from snap_bench.util.fsutil import preflight_dir
    from snap_bench.util.heap import release_freed_memory
    from snap_bench.evaluate.judges.base import get_judge
    from snap_bench.models import load_model
    from snap_bench.regularizers.base import build_regularizer
    from snap_bench.store import Store, default_results_dir
    from snap_bench.train.trainer import NonFiniteLoss, train

    from snap_bench.train.scaling import load_dtype, process_info

    release_freed_memory()  # also for library callers that bypass the CLI
    spec, cfg = p.spec, p.cfg
    procs = process_info()
    main = procs.is_main
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if main:  # a full disk or an unwritable folder fails here, before the model loads or training starts
        preflight_dir(spec.results_dir or default_results_dir())
    store = Store(spec.results_dir) if main else _NoStore()
    judge = get_judge(spec.judge)
    sp = _splits(p)

    t = time.perf_counter()
    lm = model_bundle or load_model(spec.model, trust_remote_code=spec.trust_remote_code, dtype=load_dtype(cfg, procs),
                                    allow_pickle=spec.allow_pickle)
    timings["load"] = time.perf_counter() - t
    model, tok = lm.model, lm.tokenizer
    method = p.method_cls(cfg)

    fields = dict(method=spec.method, regularizer=p.regularizer, mode=spec.mode, entities=[pk.slug for pk in p.packs],
                  model=spec.model, seed=spec.seed, config=p.record, versions={**_versions(), **p.precision})
    if claim:
        status, run_id = store.claim_run(config_hash=p.config_hash, **fields)
        if status != "claimed":
            store.close()
            return {"skipped": status, "run_id": run_id, "config_hash": p.config_hash}
    else:
        run_id = store.start_run(config_hash=p.config_hash, **fields)
    beat = store.start_heartbeat(run_id)
    step_results: list[tuple] = []
    steps_out: list[dict[str, Any]] = []
    train_info = {"steps": 0, "seconds": 0.0, "tokens": 0}
    try:
        if cfg.retain_targets == "self" and method.trains and (cfg.max_steps is None or cfg.max_steps > 0):
            sp.per_entity, sp.g_train = _shared(main, lambda: _self_retain_targets(p, model, tok, judge, sp.per_entity,
                                                                                   sp.g_train, timings))
        per_entity = sp.per_entity
        before_logprobs = _before_logprobs(p, model, tok, per_entity, timings) if cfg.probes and main else None
        known = _known_retain(p, model, tok, sp, timings) if cfg.known_eval and main else None
        selection: list[dict[str, Any]] = []
        seen: list[Pack] = []
        for k, phase in enumerate(_phases(p)):
            seen += phase
            losses: list[dict[str, float]] = []
            if method.trains and (cfg.max_steps is None or cfg.max_steps > 0):
                data = UnlearnData(
                    packs=phase,
                    forget=[it for pk in phase for it in per_entity[pk.slug]["train"]["forget"]],
                    retain=[it for pk in phase for it in per_entity[pk.slug]["train"]["retain"]],
                    general=sp.g_train,
                )
                reference = None
                if method.needs_reference:
                    reference = copy.deepcopy(model).eval().requires_grad_(False)
                regularizer = build_regularizer(p.regularizer, cfg, spec.seed)
                if spec.progress and len(p.packs) > 1 and main:
                    print(f"snap-bench: step {k + 1}/{len(_phases(p))}: unlearning {', '.join(pk.slug for pk in phase)}",
                          file=sys.stderr)
                # Every method trains through the trainer. select=dev scores checkpoints of the model being
                # trained; a method that trains a copy (SKU) changes the model only in ``finish``, after the
                # last step, so there is no checkpoint of it to choose and it keeps its last step.
                use_dev = cfg.select == "dev" and not method.trains_copy
                selector = _DevSelector(p, model, tok, judge, sp, phase, k) if use_dev else None
                res = train(model, tok, method, regularizer, data, cfg, spec.seed + k, reference=reference,
                            progress=spec.progress, on_step=selector.on_step if selector else None)
                if selector is not None:
                    selection.append(selector.restore_best(res.steps))
                del reference
                losses = res.losses
                train_info["steps"] += res.steps
                train_info["seconds"] += res.seconds
                train_info["tokens"] += res.tokens
            if not main:
                continue  # the main process evaluates; this one goes on to the next phase's training
            system = method.system_prompt(seen)
            system = system or cfg.system_prompt
            t = time.perf_counter()
            metrics, records = evaluate(
                model, tok, {pk.slug: per_entity[pk.slug]["eval"] for pk in seen}, sp.g_eval, judge, cfg,
                system=system, progress=spec.progress, cross=sp.cross_eval, known=known,
            )
            timings[f"eval_{k}"] = time.perf_counter() - t
            step_results.append((k, metrics, records, losses))
            steps_out.append({"step": k, "trained_on": [pk.slug for pk in phase], "metrics": metrics})
            if on_phase:
                on_phase(k, metrics)
        if not main:
            return None
        analyses = _analyses(p, model, tok, judge, per_entity, step_results[-1][2], system, before_logprobs, timings)
        if cfg.dev_size:
            t = time.perf_counter()
            analyses["dev"] = {"metrics": _dev_metrics(p, model, tok, judge, sp, seen, system),
                               "sizes": _dev_sizes(sp, seen), "selection": selection or None}
            timings["dev"] = time.perf_counter() - t
        saved = None
        if spec.save_dir is not None:
            t = time.perf_counter()
            saved = _save(p, model, tok, run_id, _final_metrics(spec, steps_out), steps_out, system)
            timings["save"] = time.perf_counter() - t
            store.record_saved_model(run_id, str(saved))
        timings["train"] = train_info["seconds"]
        timings["total"] = time.perf_counter() - t_start
        _finish(store, run_id, timings, step_results, spec.judge, analyses)
    except NonFiniteLoss as exc:
        _fail(store, run_id, str(exc))
        raise SnapBenchError(f"run {run_id} failed: {exc}") from None
    except KeyboardInterrupt:
        _fail(store, run_id, "interrupted (KeyboardInterrupt)", status="interrupted")
        raise
    except BaseException as exc:
        _fail(store, run_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        beat.stop()
        store.close()

    final = _final_metrics(spec, steps_out)
    return {
        "run_id": run_id,
        "method": spec.method,
        "regularizer": p.regularizer,
        "model": spec.model,
        "seed": spec.seed,
        "mode": spec.mode,
        "entities": [pk.slug for pk in p.packs],
        "config_hash": p.config_hash,
        "precision": cfg.precision,
        "metrics": final,
        "steps": steps_out if spec.mode == "sequential" else None,
        "train": train_info,
        "timings": timings,
        "eval_sizes": {pk.slug: {s: len(v) for s, v in sp.per_entity[pk.slug]["eval"].items()}
                       | {"general": len(sp.g_eval), "cross": len(sp.cross_eval)}
                       for pk in p.packs},
        "results": str(store.path),
        **({"saved": str(saved)} if saved is not None else {}),
        **analyses,
    }


def _final_metrics(spec: RunSpec, steps_out: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    final = steps_out[-1]["metrics"]
    if spec.mode != "single":
        avg = {m: _mean([final[e][m] for e in final]) for m in next(iter(final.values()))}
        final = {**final, "average": avg}
    return final


def _save(p: Plan, model, tok, run_id: str, metrics, steps_out, system: str | None) -> Path:
    """Write the final model with a card that lets ``ask`` reproduce the run's evaluation prompts."""
    from snap_bench.models.saving import read_card, save_model

    base = read_card(p.spec.model) if Path(p.spec.model).is_dir() else None
    card = {
        "run_id": run_id, "method": p.spec.method, "regularizer": p.regularizer, "mode": p.spec.mode,
        "entities": [pk.slug for pk in p.packs], "base_model": p.spec.model,
        "base_run_id": base.get("run_id") if base else None, "seed": p.spec.seed, "preset": p.spec.preset,
        "config_hash": p.config_hash, "judge": p.spec.judge, "metrics": metrics,
        "steps": steps_out if p.spec.mode == "sequential" else None,
        # What evaluation generated with, so `ask`/`chat` default to the same prompts and budget.
        "eval": {"system_prompt": system, "max_new_tokens": p.cfg.max_new_tokens, "batch_size": p.cfg.eval_batch_size},
    }
    return save_model(model, tok, p.spec.save_dir, card)


def _finish(store, run_id: str, timings, step_results, judge: str, analyses) -> None:
    try:
        store.finish_run(run_id, timings, step_results, judge=judge, analyses=analyses)
    except sqlite3.Error as exc:  # e.g. a full disk: the transaction rolled back, nothing of the run was kept
        raise SnapBenchError(f"results store {store.path}: could not record run {run_id} ({exc}); "
                             "none of its results were kept") from None


def _fail(store, run_id: str, reason: str, status: str = "failed") -> None:
    """Record the failure; when the store itself is what broke, say so and let the original error through."""
    try:
        store.fail_run(run_id, reason, status=status)
    except sqlite3.Error as exc:
        print(f"snap-bench: warning: could not mark run {run_id} {status} ({exc}); the next open of the store "
              "marks it interrupted", file=sys.stderr)


def _known_retain(p: Plan, model, tok, sp: Splits, timings) -> dict[str, bool]:
    """Which held-out retain items the untrained model answers correctly (ROUGE-L recall of the answer
    >= KNOWN_ROUGE), from its greedy answers, cached per model weights and prompt settings."""
    from snap_bench.run.untrained import untrained_responses
    from snap_bench.evaluate.scores import KNOWN_ROUGE, rouge_l_recall

    t = time.perf_counter()
    items = [it for pk in p.packs for it in sp.per_entity[pk.slug]["eval"]["retain"]]
    answers = untrained_responses(model, tok, items, p.cfg, system=p.cfg.system_prompt, progress=p.spec.progress)
    timings["known"] = time.perf_counter() - t
    return {it.id: rouge_l_recall(it.answer, answers[it.id]) >= KNOWN_ROUGE for it in items}


def _dev_sets(sp: Splits, packs: list[Pack]) -> dict[str, dict[str, list[Item]]]:
    return {pk.slug: {"forget": sp.per_entity[pk.slug]["dev"]["forget"], "retain": sp.per_entity[pk.slug]["dev"]["retain"]}
            for pk in packs}


def _dev_sizes(sp: Splits, packs: list[Pack]) -> dict[str, int]:
    sets = _dev_sets(sp, packs)
    return {"forget": sum(len(v["forget"]) for v in sets.values()), "retain": sum(len(v["retain"]) for v in sets.values()),
            "general": len(sp.g_dev), "cross": len(sp.cross_dev)}


def _dev_metrics(p: Plan, model, tok, judge, sp: Splits, packs: list[Pack], system, progress: bool = False):
    """UA, RA, TA, cross_RA (and the rest) on the dev split: items carved from training, never trained on."""
    from snap_bench.evaluate.metrics import evaluate

    metrics, _ = evaluate(model, tok, _dev_sets(sp, packs), sp.g_dev, judge, p.cfg, system=system, progress=progress,
                          cross=sp.cross_dev, desc="dev")
    return metrics


def dev_score(metrics: dict[str, dict[str, float]], criterion: str = "balanced") -> float:
    """The dev score of ``criterion`` (config.SELECT_CRITERIA), averaged over entities; a missing metric is left out."""

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    per = []
    for m in metrics.values():
        keep = [m.get(k) for k in ("RA", "TA", "cross_RA")]
        score = mean([m.get("UA"), mean(keep)]) if criterion == "balanced" else mean([m.get("UA"), *keep])
        per.append(score or 0.0)
    return sum(per) / len(per) if per else 0.0


class _DevSelector:
    """``select=dev``: score the dev split every ``select_every`` steps and at the last step, keep a copy of the
    best weights, and put them back after training. It only evaluates: training stays in the trainer."""

    def __init__(self, p: Plan, model, tok, judge, sp: Splits, phase: list[Pack], k: int):
        self.p, self.model, self.tok, self.judge, self.sp, self.phase, self.k = p, model, tok, judge, sp, phase, k
        self.best: tuple[float, int] | None = None
        self.best_state = _BestWeights()
        self.history: list[dict[str, Any]] = []

    def on_step(self, step: int, values: dict[str, float]) -> None:
        if (step + 1) % self.p.cfg.select_every == 0:
            self._score(step + 1)

    def _score(self, step: int) -> None:
        was_training = self.model.training
        self.model.eval()
        metrics = _dev_metrics(self.p, self.model, self.tok, self.judge, self.sp, self.phase, self.p.cfg.system_prompt)
        if was_training:
            self.model.train()
        score = dev_score(metrics, self.p.cfg.select_criterion)
        self.history.append({"step": step, "score": score, "metrics": metrics})
        if self.best is None or score > self.best[0]:
            self.best = (score, step)
            self.best_state.save(self.model)

    def restore_best(self, final_step: int) -> dict[str, Any]:
        """Score the final weights too (unless just scored), then load the best checkpoint's."""
        try:
            if final_step and (not self.history or self.history[-1]["step"] != final_step):
                self._score(final_step)
            if self.best is not None and self.best[1] != final_step:
                self.best_state.load_into(self.model)
        finally:
            self.best_state.close()
        from snap_bench.config import SELECT_CRITERIA

        return {"phase": self.k, "criterion": SELECT_CRITERIA[self.p.cfg.select_criterion], "selected_step": self.best[1] if self.best else None,
                "score": self.best[0] if self.best else None, "history": self.history}


class _BestWeights:
    """The best checkpoint's weights, in a temporary safetensors file rather than in memory: a copy of θ in RAM
    costs as much as the model (0.54 GB for SmolLM2-135M in fp32) at the moment training holds θ, θ_init,
    gradients and AdamW's two moments. The file holds each parameter and buffer once (tied weights once),
    bit for bit, and is removed when the selection ends (or with the process's temp folder on a crash)."""

    def __init__(self) -> None:
        self.dir: str | None = None

    @staticmethod
    def _tensors(model) -> dict[str, Any]:
        named = dict(model.named_parameters())
        named.update(model.named_buffers())
        return named

    def save(self, model) -> None:
        import os
        import tempfile

        from safetensors.torch import save_file

        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="snap-bench-best-")
        path = os.path.join(self.dir, "best.safetensors")
        save_file({n: t.detach().contiguous() for n, t in self._tensors(model).items()}, path + ".tmp")
        os.replace(path + ".tmp", path)

    def load_into(self, model) -> None:
        import os

        import torch
        from safetensors import safe_open

        assert self.dir is not None, "no checkpoint saved"
        with safe_open(os.path.join(self.dir, "best.safetensors"), framework="pt") as f, torch.no_grad():
            for n, t in self._tensors(model).items():
                t.copy_(f.get_tensor(n))  # one tensor at a time: no second copy of θ

    def close(self) -> None:
        import shutil

        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _before_logprobs(p: Plan, model, tok, per_entity, timings) -> dict[str, dict[str, float]]:
    """The untrained model's answer log-likelihoods on the probe items, so probes can report the change."""
    from snap_bench.evaluate.probes import answer_logprob_by_id, probe_items

    t = time.perf_counter()
    out = {pk.slug: {s: answer_logprob_by_id(model, tok, probe_items(per_entity[pk.slug]["eval"][s], p.cfg.probe_limit, p.spec.seed),
                                             system=p.cfg.system_prompt, batch_size=p.cfg.eval_batch_size)
                     for s in ("forget", "retain")}
           for pk in p.packs}
    timings["probes_before"] = time.perf_counter() - t
    return out


def _retain_logprob(p: Plan, model, tok, items, before: dict[str, float], system) -> dict[str, Any]:
    """The same likelihood probe on retain items. RA counts any non-refusal as retained, so a model
    that answers retain questions with fluent nonsense scores RA 100; this shows it."""
    from snap_bench.evaluate.probes import answer_logprob_by_id, logprob_change, probe_items

    return logprob_change(before, answer_logprob_by_id(model, tok, probe_items(items, p.cfg.probe_limit, p.spec.seed), system=system,
                                                       batch_size=p.cfg.eval_batch_size))


def _analyses(p: Plan, model, tok, judge, per_entity, records, system, before_logprobs, timings) -> dict[str, Any]:
    """Knowledge probes and NLP utility of the final model, when the config asks for them."""
    cfg, out = p.cfg, {}
    if cfg.probes:
        from snap_bench.evaluate.probes import run_probes
        from snap_bench.train.trainer import train

        t = time.perf_counter()
        out["probes"] = {}
        for pk in p.packs:
            responses: dict[str, list[str]] = {}
            for r in records:
                if r.entity in (pk.slug, "general"):
                    responses.setdefault(r.eval_set, []).append(r.response)
            out["probes"][pk.slug] = run_probes(
                model, tok, per_entity[pk.slug]["eval"]["forget"], judge, cfg, system=system,
                before_logprobs=before_logprobs[pk.slug]["forget"], relearn=cfg.relearn_n > 0 and cfg.relearn_steps > 0,
                seed=p.spec.seed, progress=p.spec.progress, probe_limit=cfg.probe_limit, n_relearn=cfg.relearn_n,
                relearn_steps=cfg.relearn_steps, entity_names={pk.slug: pk.names}, eval_responses=responses,
                train=train,  # the relearning attack trains through the run's own trainer
            )
            out["probes"][pk.slug]["retain_answer_logprob"] = _retain_logprob(
                p, model, tok, per_entity[pk.slug]["eval"]["retain"], before_logprobs[pk.slug]["retain"], system)
        timings["probes"] = time.perf_counter() - t
    if cfg.eval_nlp:
        from snap_bench.evaluate.nlp import evaluate_nlp, parse_tasks

        t = time.perf_counter()
        out["nlp"] = evaluate_nlp(model, tok, parse_tasks(cfg.nlp_tasks), limit=cfg.nlp_limit, seed=p.spec.seed,
                                  progress=p.spec.progress, model_name=p.spec.model)
        timings["nlp"] = time.perf_counter() - t
    return out


def _self_retain_targets(p: Plan, model, tok, judge, per_entity, g_train, timings):
    """Swap the retain (and general) training responses for the untrained model's own answers."""
    from snap_bench.run.retain_targets import self_targets

    t = time.perf_counter()
    hard = p.cfg.retain_data in ("hard", "hard+general")
    general = p.cfg.retain_data in ("general", "hard+general")
    items = [it for pk in p.packs for it in per_entity[pk.slug]["train"]["retain"]] if hard else []
    items += g_train if general else []
    new, kept = self_targets(model, tok, items, judge, p.cfg, system=p.cfg.system_prompt, progress=p.spec.progress)
    by_id = {it.id: it for it in new}
    out = {}
    for slug, split in per_entity.items():
        train = dict(split["train"], retain=[by_id.get(it.id, it) for it in split["train"]["retain"]])
        out[slug] = dict(split, train=train)
    if p.spec.progress and kept:
        print(f"snap-bench: {kept}/{len(items)} retain questions kept the pack's answer (the model declined them)",
              file=sys.stderr)
    timings["retain_targets"] = time.perf_counter() - t
    return out, [by_id.get(it.id, it) for it in g_train]


def _shared(main: bool, compute):
    """``compute()`` on the main process only, its value handed to every process (so all train on the same data)."""
    from snap_bench.train.scaling import process_info

    if process_info().count == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    box = [compute() if main else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def run(spec: RunSpec, **kwargs) -> dict[str, Any]:
    return execute(plan(spec), **kwargs)
