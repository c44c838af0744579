"""End to end: the default run's wall time against its floor (training FLOPs at the peak of the run's
precision + evaluation FLOPs at the fp32 peak), from a run timed now in a child process (``--e2e``) or
from a finished run read through :class:`~snap_bench.store.reader.StoreReader` (never written to)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from snap_bench.bench.config import BenchConfig
from snap_bench.bench.flops import ModelShape, generation_flops, run_train_flops
from snap_bench.bench.inputs import step_batches, training_inputs
from snap_bench.bench.measure import peak_for, peak_rss_gb
from snap_bench.errors import SnapBenchError


def _eval_flops(shape: ModelShape, tok, p, generations: list[dict[str, Any]]) -> tuple[float, int]:
    """Evaluation FLOPs of a stored run's generations. Generated lengths are re-tokenised from the
    stored (decoded, stripped) responses, + 1 for the end token unless the budget ran out."""
    from snap_bench.data import prompt_ids

    total, gen_tokens = 0.0, 0
    cap = p.cfg.max_new_tokens
    for g in generations:
        prompt = prompt_ids(tok, g["question"], p.cfg.system_prompt)
        n = len(tok(g["response"], add_special_tokens=False)["input_ids"])
        n = min(n + 1, cap)
        gen_tokens += n
        total += generation_flops(shape, len(prompt), n)
    return total, gen_tokens


def _stored_run(results: str | None, config_hash: str, run_id: str | None) -> tuple[str, dict[str, Any], list] | None:
    """``run_id`` from the store, or else its latest finished run with ``config_hash`` (the default run's)."""
    from snap_bench.store.reader import StoreReader
    from snap_bench.store.schema import DB_NAME

    folder = Path(results or "results")
    if not (folder / DB_NAME).is_file():
        if run_id:
            raise SnapBenchError(f"bench --run-id {run_id}: no results store in {folder}")
        return None
    store = StoreReader(folder)
    try:
        if run_id:
            run = store.run(run_id)
            if run is None or run["status"] != "done":
                raise SnapBenchError(f"bench --run-id {run_id}: no finished run of that id in {folder / DB_NAME}")
        else:
            runs = [r for r in store.runs("done") if r["config_hash"] == config_hash]
            if not runs:
                return None
            run = runs[-1]
        return f"stored run {run['run_id']} in {folder / DB_NAME}", _with_resources(store, run), \
            store.generations(run["run_id"])
    finally:
        store.close()


def _with_resources(store, run: dict[str, Any]) -> dict[str, Any]:
    """The stored run with its analysis ``resources`` (None for runs stored before issue 24)."""
    return {**run, "resources": store.analyses(run["run_id"]).get("resources")}


def _plan_of(run: dict[str, Any], default):
    """The default plan with the stored run's own config and seed (its steps and data order)."""
    import dataclasses

    rec = run["config"]
    if rec.get("mode") != "single" or rec.get("method") != default.spec.method or rec.get("entities") != [default.packs[0].slug]:
        raise SnapBenchError(f"bench: run {run['run_id']} is not a single-entity {default.spec.method} run on "
                             f"{default.packs[0].slug}")
    cfg = default.method_cls.config_cls(**rec["config"])
    from snap_bench.config import stored_precision

    cfg.precision = stored_precision(rec["config"])  # a run from before the field: fp32, not auto
    spec = dataclasses.replace(default.spec, seed=rec["seed"])
    return dataclasses.replace(default, spec=spec, cfg=cfg, regularizer=rec["regularizer"])


def _measure_default_run(cfg: BenchConfig) -> tuple[str, dict[str, Any], list, float, float]:
    """Run the default ``snap-bench run`` in a child process; its wall time and peak RSS."""
    from snap_bench.store.reader import StoreReader

    with tempfile.TemporaryDirectory(prefix="snap-bench-e2e-") as tmp:
        cmd = [sys.executable, "-m", "snap_bench", "run", "--method", cfg.method, "--entity", cfg.entity,
               "--model", cfg.model, "--results", tmp, "--no-progress", "--json"]
        print(f"bench: timing the default run ({' '.join(cmd[2:])})...", file=sys.stderr)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SnapBenchError(f"bench --e2e: the default run failed: {tail}")
        run_id = json.loads(proc.stdout)["run_id"]
        store = StoreReader(tmp)
        try:
            run, gens = _with_resources(store, store.run(run_id)), store.generations(run_id)
        finally:
            store.close()
    return "measured now (--e2e, child process)", run, gens, wall, peak_rss_gb(resource.RUSAGE_CHILDREN)


def end_to_end(cfg: BenchConfig, p, tok, shape: ModelShape, peaks: dict[str, list[float]], found=None) -> dict[str, Any]:
    """The e2e figures from a run timed now (``cfg.e2e``) or from ``found``, a stored run (see ``_stored_run``).
    The floor: training FLOPs at the peak of the run's precision, evaluation FLOPs at the fp32 peak."""
    if cfg.e2e:
        source, run, gens, wall, rss = _measure_default_run(cfg)
    else:
        if found is None:
            return {"source": f"none: no finished default run (config {p.config_hash}) in "
                              f"{cfg.results or 'results'}; pass --e2e to time one now (~12 min)"}
        source, run, gens = found
        wall, rss = run["timings"]["total"], None
        p = _plan_of(run, p)
    _, _, encoded = training_inputs(p, tok)
    batches = step_batches(encoded, p.cfg, p.spec.seed)
    n_proj = p.cfg.swd_projections if p.regularizer == "swd" else 0
    train_flops = run_train_flops(shape, batches, n_proj, p.cfg.swd_form)
    eval_flops, gen_tokens = _eval_flops(shape, tok, p, gens)
    from snap_bench.config import stored_precision

    precision = stored_precision((run.get("config") or {}).get("config") or {})
    train_peak, train_peak_name = peak_for(precision, peaks)
    floor = train_flops / (train_peak * 1e9) + eval_flops / (peak_for("fp32", peaks)[0] * 1e9)
    timings = run.get("timings") or {}
    return {"source": source, "run_id": run["run_id"], "wall_s": wall, "floor_s": floor, "ratio": wall / floor,
            "precision": precision, "train_peak": train_peak_name,
            "train_tflop": train_flops / 1e12, "eval_tflop": eval_flops / 1e12, "train_steps": len(batches),
            "eval_questions": len(gens), "eval_generated_tokens": gen_tokens,
            "timings": {k: timings[k] for k in sorted(timings)}, "peak_rss_gb": rss,
            "resources": whole_run(run.get("resources"), timings)}


def checkpointing_mode(decision: dict[str, Any] | None) -> str:
    """off, selective or full; records written before the selective level hold only ``used``."""
    d = decision or {}
    return d.get("mode") or ("full" if d.get("used") else "off")


def whole_run(res: dict[str, Any] | None, timings: dict[str, float]) -> dict[str, Any] | None:
    """The run's own record of where its time went (analysis ``resources``; None for runs stored before it):
    train and eval seconds, user and system CPU seconds, minor faults, peak RSS, allocator, checkpointing."""
    if not res:
        return None
    run = res.get("run") or {}
    eval_s = sum(v for k, v in timings.items() if k.startswith("eval_"))
    return {"train_s": timings.get("train"), "eval_s": eval_s, "total_s": timings.get("total"),
            "user_s": run.get("user_s"), "sys_s": run.get("sys_s"), "sys_share": run.get("sys_share"),
            "minor_faults": run.get("minor_faults"), "peak_rss_gb": res.get("peak_rss_gb"),
            "allocator": res.get("allocator"), "checkpointing": [checkpointing_mode(c) for c in res.get("checkpointing") or []],
            "phases": {k: res[k] for k in ("train", "eval") if k in res}}
