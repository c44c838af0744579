"""One benchmark run, executed: plan → phases (train, evaluate) → analyses → persist.

Modes (paper §4 and Figure 5):

- ``single``: one entity;
- ``batch``: the union of the entities' forget and retain data in one training run, metrics
  per entity;
- ``sequential``: the entities are unlearned one after another, each step starting from the
  previous step's model; after every step all entities seen so far are evaluated.

Validation happens in :func:`snap_bench.run.spec.plan`, before the store is opened, so a bad name,
file or value writes nothing. Under ``accelerate launch`` every process runs this same code: all of
them train together (see ``train/trainer.py``), and only the main process writes to the store,
evaluates, runs the analyses and returns a result; the others return None.
"""

from __future__ import annotations

import copy
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.methods.base import UnlearnData
from snap_bench.records import RunResult, RunSkipped, StepResult, TrainTotals, final_metrics
from snap_bench.run.analyses import (before_logprobs, final_analyses, known_retain, mia_scores, quant_measurements,
                                     self_retain_targets)
from snap_bench.run.dev import DevSelector, dev_metrics, dev_sizes
from snap_bench.run.spec import MODES, Plan, RunSpec, phases, plan, versions
from snap_bench.run.splits import Splits, make_splits
from snap_bench.tasks import Pack
from snap_bench.util import heap, usage
from snap_bench.util.usage import Usage

__all__ = ["MODES", "Plan", "RunSpec", "execute", "plan", "run"]


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


@dataclass
class _Run:
    """What the phases of one run share: the plan, the loaded model, the splits and the store."""

    p: Plan
    model: Any
    tok: Any
    method: Any
    judge: Any
    sp: Splits
    store: Any
    main: bool  # the main process (always, without accelerate launch)
    timings: dict[str, float]
    known: dict[str, bool] | None = None  # retain items the untrained model answered correctly (ROUGE-L)
    known_correct: dict[str, bool] | None = None  # the same by the answer-keyword check (RA_correct)
    before: dict[str, dict[str, float]] | None = None  # the untrained model's answer log-probs (probes)
    mia_before: dict[str, Any] | None = None  # the untrained model's membership-inference scores (mia)
    quant_before: dict[str, Any] | None = None  # the untrained model's quantization-probe measurements (control)
    selection: list[dict[str, Any]] = field(default_factory=list)  # select=dev: the choice per phase
    tracker: Any = None  # log_with: the run's tracker (main process only)
    usage: dict[str, Usage] = field(default_factory=dict)  # CPU time and faults by phase (train, eval)

    def count(self, phase: str, since: Usage) -> None:
        self.usage[phase] = self.usage.get(phase, usage.ZERO) + (Usage.now() - since)

    @property
    def trains(self) -> bool:
        return self.method.trains and (self.p.cfg.max_steps is None or self.p.cfg.max_steps > 0)


def execute(p: Plan, *, model_bundle=None, on_phase=None, claim: bool = False, store=None) -> dict[str, Any] | None:
    """Run a planned experiment and return its JSON-ready result (:meth:`RunResult.to_json`). Stores everything.

    With ``claim`` (sweeps) the config hash is claimed atomically first: when it is done already or
    a live process holds it, nothing runs and ``{"skipped": "done"|"busy", "run_id": ...}`` comes back.
    Under ``accelerate launch`` only the main process stores and returns the result; the others
    train with it and return None. ``store`` replaces the results store (a Ray worker hands its writes to
    the sweep's driver, run/worker.py).
    """
    from snap_bench.run.tracking import open_tracker
    from snap_bench.train.trainer import NonFiniteLoss

    heap.apply_policy()  # also for library callers that bypass the CLI
    run_start = Usage.now()  # its wall clock is the run's start for timings["total"] too
    r = _open(p, model_bundle, store)
    run_id = _start(r, claim)
    if isinstance(run_id, RunSkipped):
        r.store.close()
        return run_id.to_json()
    beat = r.store.start_heartbeat(run_id)
    try:
        r.tracker = open_tracker(p, run_id) if r.main else None
        _prepare(r)
        steps, totals, system = _run_phases(r, on_phase)
        if not r.main:
            return None
        analyses = _measure(r, steps, system)
        analyses["resources"] = _resources(r, totals, run_start)
        if r.tracker is not None:  # before the run is marked done: a tracker error must not fail a done run
            r.tracker.log_final(final_metrics(p.spec.mode, steps))
        saved = _persist(r, run_id, steps, analyses, system, totals, run_start.wall)
    except NonFiniteLoss as exc:
        _fail(r.store, run_id, str(exc))
        raise SnapBenchError(f"run {run_id} failed: {exc}") from None
    except KeyboardInterrupt:
        _fail(r.store, run_id, "interrupted (KeyboardInterrupt)", status="interrupted")
        raise
    except BaseException as exc:
        _fail(r.store, run_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        beat.stop()
        if r.tracker is not None:
            r.tracker.close()
        r.store.close()
    return _result(r, run_id, steps, totals, analyses, saved).to_json()


def run(spec: RunSpec, **kwargs) -> dict[str, Any] | None:
    return execute(plan(spec), **kwargs)


def _open(p: Plan, model_bundle, store=None) -> _Run:
    """Check the results folder, open the store (main process), build the judge and splits, load the model."""
    from snap_bench.evaluate.judges.base import get_judge
    from snap_bench.models import load_model
    from snap_bench.store import Store, default_results_dir
    from snap_bench.train.scaling import load_dtype, process_info
    from snap_bench.util.fsutil import preflight_dir

    spec, procs = p.spec, process_info()
    if store is None and procs.is_main:  # a full disk or an unwritable folder fails here, before the model loads
        preflight_dir(spec.results_dir or default_results_dir())
        store = Store(spec.results_dir)
    elif store is None:
        store = _NoStore()
    judge = get_judge(spec.judge)
    sp = make_splits(p)
    t = time.perf_counter()
    lm = model_bundle or load_model(spec.model, trust_remote_code=spec.trust_remote_code,
                                    dtype=load_dtype(p.cfg, procs), allow_pickle=spec.allow_pickle)
    timings = {"load": time.perf_counter() - t}
    return _Run(p, lm.model, lm.tokenizer, p.method_cls(p.cfg), judge, sp, store, procs.is_main, timings)


def _start(r: _Run, claim: bool) -> str | RunSkipped:
    """Record the run as running (a sweep claims its config hash first) and return its id."""
    p = r.p
    if not claim:
        return r.store.start_run(config_hash=p.config_hash, **run_fields(p))
    status, run_id = r.store.claim_run(config_hash=p.config_hash, **run_fields(p))
    return run_id if status == "claimed" else RunSkipped(status, run_id, p.config_hash)


def run_fields(p: Plan) -> dict[str, Any]:
    """The store's columns for a new run of ``p`` (besides its config hash)."""
    spec = p.spec
    return dict(method=spec.method, regularizer=p.regularizer, mode=spec.mode, entities=[pk.slug for pk in p.packs],
                model=spec.model, seed=spec.seed, config=p.record, versions={**versions(), **p.precision})


def _prepare(r: _Run) -> None:
    """Before training: the retain targets (``retain_targets=self``) and the untrained model's measurements."""
    cfg = r.p.cfg
    if cfg.retain_targets == "self" and r.trains:
        r.sp.per_entity, r.sp.g_train = _shared(r.main, lambda: self_retain_targets(
            r.p, r.model, r.tok, r.judge, r.sp.per_entity, r.sp.g_train, r.timings))
    if not cfg.heldout:
        return  # a dev-only run: every measurement below serves a held-out metric or analysis
    if cfg.probes and r.main:
        r.before = before_logprobs(r.p, r.model, r.tok, r.sp.per_entity, r.timings)
    if cfg.mia and r.main:
        r.mia_before = mia_scores(r.p, r.model, r.tok, r.sp.per_entity, cfg.system_prompt, r.timings, "mia_before")
    if cfg.known_eval and r.main:
        r.known, r.known_correct = known_retain(r.p, r.model, r.tok, r.judge, r.sp, r.timings)
    if cfg.quant_probe and r.main:
        r.quant_before = quant_measurements(r.p, r.model, r.tok, r.judge, r.sp.per_entity, cfg.system_prompt,
                                            r.known_correct, r.timings, "quant_before")


def _run_phases(r: _Run, on_phase) -> tuple[list[StepResult], TrainTotals, str | None]:
    """Train and evaluate each phase (one, or one per entity in sequential mode); returns the steps'
    results, the training totals and the system prompt of the last evaluation."""
    steps: list[StepResult] = []
    totals = TrainTotals()
    seen: list[Pack] = []
    system = None
    all_phases = phases(r.p)
    for k, phase in enumerate(all_phases):
        seen += phase
        losses: list[dict[str, float]] = []
        if r.trains:
            t = Usage.now()
            res = _train_phase(r, k, phase, len(all_phases))
            r.count("train", t)
            losses = res.losses
            totals.add(res)
        if not r.main:
            continue  # the main process evaluates; this one goes on to the next phase's training
        system = r.method.system_prompt(seen) or r.p.cfg.system_prompt
        if not r.p.cfg.heldout:  # dev-only: no held-out number; the dev split is scored in _measure
            steps.append(StepResult(k, [pk.slug for pk in phase], {}, {}, losses))
            continue
        t = Usage.now()
        steps.append(_evaluate_phase(r, k, phase, seen, losses, system))
        r.count("eval", t)
        if on_phase:
            on_phase(k, steps[-1].metrics)
    return steps, totals, system


def _train_phase(r: _Run, k: int, phase: list[Pack], n_phases: int):
    """Unlearn ``phase``'s entities through the trainer, with dev checkpoint selection when asked for."""
    from snap_bench.regularizers.base import build_regularizer
    from snap_bench.train.trainer import train

    p, spec, per_entity = r.p, r.p.spec, r.sp.per_entity
    data = UnlearnData(
        packs=phase,
        forget=[it for pk in phase for it in per_entity[pk.slug]["train"]["forget"]],
        retain=[it for pk in phase for it in per_entity[pk.slug]["train"]["retain"]],
        general=r.sp.g_train,
    )
    reference = copy.deepcopy(r.model).eval().requires_grad_(False) if r.method.needs_reference else None
    regularizer = build_regularizer(p.regularizer, p.cfg, spec.seed)
    if spec.progress and len(p.packs) > 1 and r.main:
        print(f"snap-bench: step {k + 1}/{n_phases}: unlearning {', '.join(pk.slug for pk in phase)}", file=sys.stderr)
    # select=dev scores checkpoints of the model being trained; a method that trains a copy (SKU) changes
    # the model only in ``finish``, after the last step, so there is no checkpoint of it to choose and
    # it keeps its last step.
    use_dev = p.cfg.select == "dev" and not r.method.trains_copy
    selector = DevSelector(p, r.model, r.tok, r.judge, r.sp, phase, k) if use_dev else None
    hooks = [h for h in (selector and selector.on_step, r.tracker and r.tracker.log_step) if h]
    res = train(r.model, r.tok, r.method, regularizer, data, p.cfg, spec.seed + k, reference=reference,
                progress=spec.progress, on_step=(lambda step, values: [h(step, values) for h in hooks]) if hooks else None)
    if r.tracker is not None:
        r.tracker.end_phase()
    if selector is not None:
        r.selection.append(selector.restore_best(res.steps))
    return res


def _evaluate_phase(r: _Run, k: int, phase: list[Pack], seen: list[Pack], losses, system) -> StepResult:
    """Evaluate every entity seen so far on its held-out sets (plus the general and cross sets)."""
    from snap_bench.evaluate.metrics import evaluate

    t = time.perf_counter()
    metrics, records = evaluate(
        r.model, r.tok, {pk.slug: r.sp.per_entity[pk.slug]["eval"] for pk in seen}, r.sp.g_eval, r.judge, r.p.cfg,
        system=system, progress=r.p.spec.progress, cross=r.sp.cross_eval, known=r.known,
        known_correct=r.known_correct,
    )
    r.timings[f"eval_{k}"] = time.perf_counter() - t
    return StepResult(k, [pk.slug for pk in phase], metrics, records, losses)


def _measure(r: _Run, steps: list[StepResult], system: str | None) -> dict[str, Any]:
    """The final model's analyses (probes, NLP) and, with a dev split, its dev metrics and the selection."""
    analyses = final_analyses(r.p, r.model, r.tok, r.judge, r.sp.per_entity, steps[-1].records, system,
                              r.before, r.timings, mia_before=r.mia_before, quant_before=r.quant_before,
                              known_correct=r.known_correct) if r.p.cfg.heldout else {}
    if r.p.cfg.dev_size:
        t = time.perf_counter()
        packs = r.p.packs  # every phase has run: all entities are seen
        analyses["dev"] = {"metrics": dev_metrics(r.p, r.model, r.tok, r.judge, r.sp, packs, system),
                           "sizes": dev_sizes(r.sp, packs), "selection": r.selection or None}
        r.timings["dev"] = time.perf_counter() - t
    return analyses


def _resources(r: _Run, totals: TrainTotals, start: Usage) -> dict[str, Any]:
    """Where the run's time and memory went (analysis ``resources``): the allocator policy and gradient
    checkpointing in force, CPU user/system seconds and page faults of the whole run and of its train and
    eval phases (train includes select=dev's checkpoint evaluations), and the process's peak RSS so far."""
    return {"allocator": heap.policy(), "checkpointing": totals.checkpointing,
            "run": (Usage.now() - start).to_json(), **{k: v.to_json() for k, v in r.usage.items()},
            "peak_rss_gb": round(usage.peak_rss_gb(), 3)}


def _persist(r: _Run, run_id: str, steps, analyses, system, totals: TrainTotals, t_start: float) -> Path | None:
    """Save the model when asked (``--save``), then write the steps and analyses and mark the run done."""
    saved = None
    if r.p.spec.save_dir is not None:
        t = time.perf_counter()
        saved = _save(r, run_id, steps, system)
        r.timings["save"] = time.perf_counter() - t
        r.store.record_saved_model(run_id, str(saved))
    r.timings["train"] = totals.seconds
    r.timings["total"] = time.perf_counter() - t_start
    try:
        r.store.finish_run(run_id, r.timings, steps, judge=r.p.spec.judge, analyses=analyses)
    except sqlite3.Error as exc:  # e.g. a full disk: the transaction rolled back, nothing of the run was kept
        raise SnapBenchError(f"results store {r.store.path}: could not record run {run_id} ({exc}); "
                             "none of its results were kept") from None
    return saved


def _result(r: _Run, run_id: str, steps, totals: TrainTotals, analyses, saved: Path | None) -> RunResult:
    p, spec, sp = r.p, r.p.spec, r.sp
    return RunResult(
        run_id=run_id, method=spec.method, regularizer=p.regularizer, model=spec.model, seed=spec.seed,
        mode=spec.mode, entities=[pk.slug for pk in p.packs], config_hash=p.config_hash,
        precision=p.cfg.precision, steps=steps, train=totals, timings=r.timings,
        eval_sizes={pk.slug: {s: len(v) for s, v in sp.per_entity[pk.slug]["eval"].items()}
                    | {"general": len(sp.g_eval), "cross": len(sp.cross_eval)} for pk in p.packs} if p.cfg.heldout else {},
        results=str(r.store.path), analyses=analyses, saved=str(saved) if saved is not None else None,
    )


def _save(r: _Run, run_id: str, steps: list[StepResult], system: str | None) -> Path:
    """Write the final model with a card that lets ``ask`` reproduce the run's evaluation prompts."""
    from snap_bench.models.saving import read_card, save_model

    p = r.p
    base = read_card(p.spec.model) if Path(p.spec.model).is_dir() else None
    card = {
        "run_id": run_id, "method": p.spec.method, "regularizer": p.regularizer, "mode": p.spec.mode,
        "entities": [pk.slug for pk in p.packs], "base_model": p.spec.model,
        "base_run_id": base.get("run_id") if base else None, "seed": p.spec.seed, "preset": p.spec.preset,
        "config_hash": p.config_hash, "judge": p.spec.judge, "metrics": final_metrics(p.spec.mode, steps),
        "steps": [s.to_json() for s in steps] if p.spec.mode == "sequential" else None,
        # What evaluation generated with, so `ask`/`chat` default to the same prompts and budget.
        "eval": {"system_prompt": system, "max_new_tokens": p.cfg.max_new_tokens, "batch_size": p.cfg.eval_batch_size},
    }
    return save_model(r.model, r.tok, p.spec.save_dir, card, gguf=p.spec.save_gguf)


def _fail(store, run_id: str, reason: str, status: str = "failed") -> None:
    """Record the failure; when the store itself is what broke, say so and let the original error through."""
    try:
        store.fail_run(run_id, reason, status=status)
    except sqlite3.Error as exc:
        print(f"snap-bench: warning: could not mark run {run_id} {status} ({exc}); the next open of the store "
              "marks it interrupted", file=sys.stderr)


def _shared(main: bool, compute):
    """``compute()`` on the main process only, its value handed to every process (so all train on the same data)."""
    from snap_bench.train.scaling import process_info

    if process_info().count == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    box = [compute() if main else None]
    broadcast_object_list(box, from_process=0)
    return box[0]
