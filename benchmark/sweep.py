"""``snap-bench sweep``: run a grid of experiments from a small YAML suite, resuming by config hash.

A suite file::

    name: smoke
    model: tiny-random            # default model for every run
    seeds: [0]
    set: {max_steps: 1, eval_limit: 4}   # --set overrides applied to every run
    grid:                         # each entry expands to the product of its lists
      - methods: [snap, euclidean]
        regularizers: [default]   # "default" = the method's own regularizer
        entities: [[peter_parker]]    # one list of entities per run
        modes: [single]
        set: {retain_data: hard}  # extra overrides for this entry

A run whose config hash already has a ``done`` row in the store is skipped, so an interrupted
sweep resumes where it stopped. Shipped suites live in ``benchmark/suites/``.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError

SUITES_DIR = Path(__file__).resolve().parent / "suites"


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> dict[str, Any]:
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        if name_or_path not in shipped_suites():
            raise SnapBenchError(f"unknown suite {name_or_path!r}; shipped suites: {', '.join(shipped_suites())} (or a YAML file path)")
        path = SUITES_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SnapBenchError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("grid"), list) or not data["grid"]:
        raise SnapBenchError(f"{path}: a suite needs a non-empty 'grid' list")
    data["_path"] = str(path)
    return data


def _as_list(v, where: str) -> list:
    if isinstance(v, list):
        return v
    raise SnapBenchError(f"{where}: expected a list, got {type(v).__name__}")


def expand(suite: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, regularizer, entities, mode, seed, overrides) combination of the suite."""
    path = suite["_path"]
    seeds = _as_list(suite.get("seeds", [0]), f"{path}: seeds")
    base_set = suite.get("set", {}) or {}
    if not isinstance(base_set, dict):
        raise SnapBenchError(f"{path}: 'set' must be a mapping")
    runs = []
    for i, entry in enumerate(suite["grid"]):
        where = f"{path}: grid[{i}]"
        if not isinstance(entry, dict):
            raise SnapBenchError(f"{where}: expected a mapping")
        unknown = set(entry) - {"methods", "regularizers", "entities", "modes", "set", "model", "label"}
        if unknown:
            raise SnapBenchError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        methods = _as_list(entry.get("methods"), f"{where}.methods")
        regs = _as_list(entry.get("regularizers", ["default"]), f"{where}.regularizers")
        ents = _as_list(entry.get("entities"), f"{where}.entities")
        modes = _as_list(entry.get("modes", ["single"]), f"{where}.modes")
        extra = entry.get("set", {}) or {}
        if not isinstance(extra, dict):
            raise SnapBenchError(f"{where}.set: must be a mapping")
        for m, r, e, mode, seed in itertools.product(methods, regs, ents, modes, seeds):
            runs.append({
                "method": m, "regularizer": None if r == "default" else r,
                "entities": e if isinstance(e, list) else [e], "mode": mode, "seed": int(seed),
                "model": entry.get("model", suite.get("model", "smollm2-135m")),
                "overrides": {k: str(v) for k, v in {**base_set, **extra}.items()},
                "label": entry.get("label"),
            })
    return runs


def run_sweep(suite_name: str, results_dir=None, progress: bool = True, dry_run: bool = False) -> dict[str, Any]:
    from snap_bench.runner import RunSpec, execute, plan
    from snap_bench.scaling import launched_processes
    from snap_bench.store import Store

    if launched_processes() > 1:  # every rank would read the store and decide what to skip on its own
        raise SnapBenchError("snap-bench sweep runs in one process; launch each run with accelerate launch -m snap_bench run")
    suite = load_suite(suite_name)
    specs = [RunSpec(method=r["method"], entities=r["entities"], mode=r["mode"], regularizer=r["regularizer"],
                     model=r["model"], seed=r["seed"], overrides=r["overrides"], results_dir=results_dir,
                     progress=progress) for r in expand(suite)]
    plans = [plan(s) for s in specs]  # validate the whole grid before running anything
    summary = {"suite": suite.get("name", suite_name), "total": len(plans), "skipped": 0, "ran": 0, "runs": []}
    store = Store(results_dir)
    try:
        t0 = time.perf_counter()
        for i, p in enumerate(plans, 1):
            done = store.done_run_for_hash(p.config_hash)
            tag = f"[{i}/{len(plans)}] {p.spec.method}+{p.regularizer} {','.join(p.spec.entities)} {p.spec.mode} seed={p.spec.seed}"
            if done:
                summary["skipped"] += 1
                summary["runs"].append({"run_id": done, "config_hash": p.config_hash, "skipped": True})
                print(f"snap-bench sweep: {tag}: done already ({done}), skipping", file=sys.stderr)
                continue
            if dry_run:
                summary["runs"].append({"config_hash": p.config_hash, "would_run": tag})
                print(f"snap-bench sweep: {tag}: would run", file=sys.stderr)
                continue
            print(f"snap-bench sweep: {tag}", file=sys.stderr)
            res = execute(p)
            summary["ran"] += 1
            summary["runs"].append({"run_id": res["run_id"], "config_hash": p.config_hash, "skipped": False,
                                    "metrics": res["metrics"]})
        summary["seconds"] = time.perf_counter() - t0
    finally:
        store.close()
    return summary


def cmd_sweep(args) -> int:
    import json

    summary = run_sweep(args.suite, args.results, progress=not args.no_progress, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"suite {summary['suite']}: {summary['total']} runs, {summary['ran']} ran, {summary['skipped']} already done")
    return 0


def add_parser(sub, parser_class) -> None:
    s = sub.add_parser("sweep", help="run a YAML suite of experiments; runs already done are skipped")
    s.add_argument("--suite", required=True, help=f"shipped suite ({', '.join(shipped_suites())}) or a YAML file")
    s.add_argument("--results", default=None, metavar="DIR", help="results store directory (default: ./results)")
    s.add_argument("--dry-run", action="store_true", help="list the runs that would execute, run nothing")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sweep)
