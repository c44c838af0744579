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
sweep resumes where it stopped. Each run is claimed in the store before it starts, so two sweeps
sharing a store split the grid between them: a run another live process is doing is left to it
and waited for at the end (and taken over if that process dies). A run that fails (a NaN loss, an
API outage) is recorded as failed and the sweep goes on; the exit code is then 1. Shipped suites
live in ``benchmark/run/suites/``. ``--seeds 0,1,2`` replaces the suite's ``seeds:`` list (the same
validation as ``snap-bench run --seeds``).

That is the local executor (``--executor local``, the default), for one machine. ``--executor ray``
(run/sweep_ray.py) runs the same grid as Ray tasks with this process the store's only writer. A Ray
driver locks the store against other drivers; local sweeps share that lock (run/driver_lock.py).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.run.sweep_ray import RayOptions

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


EXECUTORS = ("local", "ray")
POLL_S = 2.0  # how often a sweep looks again at runs another process is doing


def _as_list(v, where: str, of: type | None = None, empty_ok: bool = False) -> list:
    if not isinstance(v, list):
        raise SnapBenchError(f"{where}: expected a list, got {type(v).__name__}")
    if not v and not empty_ok:
        raise SnapBenchError(f"{where}: expected a non-empty list")
    if of is not None:
        for j, x in enumerate(v):
            if not isinstance(x, of) or isinstance(x, bool):
                raise SnapBenchError(f"{where}[{j}]: expected {of.__name__}, got {type(x).__name__} {x!r}")
    return v


def _entities(v, where: str) -> list[str]:
    """One run's entities: a slug or pack path, or a list of them."""
    if isinstance(v, str):
        return [v]
    return _as_list(v, where, str)


def expand(suite: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, regularizer, entities, mode, seed, overrides) combination of the suite."""
    path = suite["_path"]
    seeds = _as_list(suite.get("seeds", [0]), f"{path}: seeds", int)
    for key in ("name", "model"):
        if key in suite and not isinstance(suite[key], str):
            raise SnapBenchError(f"{path}: '{key}' must be a string, got {type(suite[key]).__name__}")
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
        methods = _as_list(entry.get("methods"), f"{where}.methods", str)
        regs = _as_list(entry.get("regularizers", ["default"]), f"{where}.regularizers", str)
        ents = [_entities(e, f"{where}.entities[{j}]")
                for j, e in enumerate(_as_list(entry.get("entities"), f"{where}.entities"))]
        modes = _as_list(entry.get("modes", ["single"]), f"{where}.modes", str)
        extra = entry.get("set", {}) or {}
        if not isinstance(extra, dict):
            raise SnapBenchError(f"{where}.set: must be a mapping")
        model = entry.get("model", suite.get("model", "smollm2-135m"))
        if not isinstance(model, str):
            raise SnapBenchError(f"{where}.model: must be a string, got {type(model).__name__}")
        for m, r, e, mode, seed in itertools.product(methods, regs, ents, modes, seeds):
            runs.append({
                "method": m, "regularizer": None if r == "default" else r,
                "entities": e, "mode": mode, "seed": seed, "model": model,
                "overrides": {str(k): str(v) for k, v in {**base_set, **extra}.items()},
                "label": entry.get("label"), "where": where,
            })
    return runs


def run_sweep(suite_name: str, results_dir=None, progress: bool = True, dry_run: bool = False,
              seeds: list[int] | None = None, executor: str = "local", ray: RayOptions | None = None) -> dict[str, Any]:
    """Run (or with ``dry_run`` list) the suite's grid; ``seeds`` replaces the suite's ``seeds:`` list.

    ``executor="ray"`` runs the grid as Ray tasks (run/sweep_ray.py, options ``ray``); ``local`` here, in turn."""
    from snap_bench.util.fsutil import preflight_dir
    from snap_bench.run.driver_lock import DriverLock
    from snap_bench.run.spec import RunSpec, plan
    from snap_bench.train.scaling import launched_processes
    from snap_bench.store import Store, default_results_dir

    if launched_processes() > 1:  # every rank would read the store and decide what to skip on its own
        raise SnapBenchError("snap-bench sweep runs in one process; launch each run with accelerate launch -m snap_bench run")
    if executor not in EXECUTORS:
        raise SnapBenchError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    if executor == "ray":
        from snap_bench.run.sweep_ray import import_ray

        import_ray()  # a missing extra fails before the grid is planned
    suite = load_suite(suite_name)
    # Absolute, so Ray workers (another working directory, maybe another node) see the same path.
    results_dir = Path(results_dir or default_results_dir()).resolve()
    if seeds is not None:  # --seeds overrides the suite's list (already validated by parse_seeds)
        suite["seeds"] = list(seeds)
    plans = []
    for r in expand(suite):  # validate the whole grid before running anything
        spec = RunSpec(method=r["method"], entities=r["entities"], mode=r["mode"], regularizer=r["regularizer"],
                       model=r["model"], seed=r["seed"], overrides=r["overrides"], results_dir=results_dir,
                       progress=progress)
        try:
            plans.append(plan(spec))
        except SnapBenchError as exc:
            raise SnapBenchError(f"{r['where']}: {exc}") from None
    summary = {"suite": suite.get("name", suite_name), "executor": executor, "total": len(plans), "skipped": 0,
               "ran": 0, "failed": 0, "runs": []}
    if not dry_run:
        preflight_dir(results_dir)  # a full disk fails here, before any training
    with contextlib.ExitStack() as held:  # released in reverse: the store closes, then the lock goes
        if not dry_run:
            held.callback(DriverLock(results_dir, executor).release)
        store = Store(results_dir)
        held.callback(store.close)
        t0 = time.perf_counter()
        tags = [f"[{i}/{len(plans)}] {p.spec.method}+{p.regularizer} {','.join(p.spec.entities)} {p.spec.mode} "
                f"seed={p.spec.seed}" for i, p in enumerate(plans, 1)]
        if executor == "ray" and not dry_run:
            from snap_bench.run.sweep_ray import run_on_ray  # imports Ray itself only when called

            run_on_ray(list(zip(plans, tags)), store, summary, ray or RayOptions())
        else:
            _run_local(store, summary, plans, tags, dry_run)
        summary["seconds"] = time.perf_counter() - t0
    return summary


def _run_local(store, summary: dict[str, Any], plans: list, tags: list[str], dry_run: bool) -> None:
    """The local executor: each run in turn in this process, claiming it first (other sweeps may share the store)."""
    waiting = []
    for p, tag in zip(plans, tags):
        done = store.done_run_for_hash(p.config_hash)
        if done:
            note_skipped(summary, p, done, f"{tag}: done already ({done}), skipping")
        elif dry_run:
            summary["runs"].append({"config_hash": p.config_hash, "would_run": tag})
            print(f"snap-bench sweep: {tag}: would run", file=sys.stderr)
        elif not _attempt(summary, p, tag):
            waiting.append((p, tag))
    while waiting:  # runs a live process elsewhere holds: wait for them, or take them over if it dies
        time.sleep(POLL_S)
        store.reap_stale()
        still = []
        for p, tag in waiting:
            done = store.done_run_for_hash(p.config_hash)
            if done:
                note_skipped(summary, p, done, f"{tag}: done by another process ({done})")
            elif store.live_run_for_hash(p.config_hash) or not _attempt(summary, p, tag):
                still.append((p, tag))
        waiting = still


def note_skipped(summary: dict[str, Any], p, run_id: str, message: str) -> None:
    summary["skipped"] += 1
    summary["runs"].append({"run_id": run_id, "config_hash": p.config_hash, "skipped": True})
    print(f"snap-bench sweep: {message}", file=sys.stderr)


def _attempt(summary: dict[str, Any], p, tag: str) -> bool:
    """Claim and run one planned run; False when another live process holds it (try again later).

    A run that fails is recorded (in the store by the runner, here in the summary) and the sweep
    goes on; only Ctrl-C stops it."""
    from snap_bench.run.execute import execute

    print(f"snap-bench sweep: {tag}", file=sys.stderr)
    try:
        res = execute(p, claim=True)
    except Exception as exc:  # noqa: BLE001  the run is marked failed in the store; the grid goes on
        from snap_bench.util.redaction import redact

        reason = redact(" ".join(str(exc).split()) or type(exc).__name__)
        summary["failed"] += 1
        summary["runs"].append({"config_hash": p.config_hash, "skipped": False, "failed": reason})
        print(f"snap-bench sweep: {tag}: FAILED: {reason}", file=sys.stderr)
        return True
    if res.get("skipped") == "busy":
        print(f"snap-bench sweep: {tag}: another process is running it ({res['run_id']}); coming back to it",
              file=sys.stderr)
        return False
    if res.get("skipped") == "done":
        note_skipped(summary, p, res["run_id"], f"{tag}: done by another process ({res['run_id']})")
        return True
    summary["ran"] += 1
    summary["runs"].append({"run_id": res["run_id"], "config_hash": p.config_hash, "skipped": False,
                            "metrics": res["metrics"]})
    return True


def cmd_sweep(args) -> int:
    import json

    from snap_bench.config import parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None  # bad input fails before the suite is read
    summary = run_sweep(args.suite, args.results, progress=not args.no_progress, dry_run=args.dry_run, seeds=seeds,
                        executor=args.executor, ray=_ray_options(args))
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"suite {summary['suite']}: {summary['total']} runs, {summary['ran']} ran, {summary['skipped']} already done"
              + (f", {summary['retried']} of them after a lost worker" if summary.get("retried") else "")
              + (f", {summary['failed']} FAILED (see the store's reason column; re-run the sweep to retry them)"
                 if summary["failed"] else ""))
    return 1 if summary["failed"] else 0


def _ray_options(args) -> RayOptions | None:
    """The Ray flags, refused without ``--executor ray`` (they would silently do nothing)."""
    given = {k: v for k, v in (("--address", args.address), ("--cpus-per-run", args.cpus_per_run),
                                ("--gpus-per-run", args.gpus_per_run), ("--max-retries", args.max_retries)) if v is not None}
    if args.executor != "ray":
        if given:
            raise SnapBenchError(f"{', '.join(given)}: only with --executor ray")
        return None
    for flag in ("--cpus-per-run", "--gpus-per-run", "--max-retries"):
        if flag in given and not given[flag] >= 0:
            raise SnapBenchError(f"{flag} {given[flag]:g}: must be >= 0")
    if args.cpus_per_run == 0 and not args.gpus_per_run:
        raise SnapBenchError("--cpus-per-run 0 with no --gpus-per-run: a run must reserve something")
    d = RayOptions()
    return RayOptions(address=args.address, cpus_per_run=d.cpus_per_run if args.cpus_per_run is None else args.cpus_per_run,
                      gpus_per_run=args.gpus_per_run or 0.0,
                      max_retries=d.max_retries if args.max_retries is None else args.max_retries)


def add_parser(sub, parser_class) -> None:
    s = sub.add_parser("sweep", help="run a YAML suite of experiments; runs already done are skipped")
    s.add_argument("--suite", required=True, help=f"shipped suite ({', '.join(shipped_suites())}) or a YAML file")
    s.add_argument("--results", default=None, metavar="DIR", help="results store directory (default: ./results)")
    s.add_argument("--dry-run", action="store_true", help="list the runs that would execute, run nothing")
    s.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="comma-separated seeds (e.g. 0,1,2) that replace the suite's 'seeds:' list")
    s.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: the runs one after another in this process (one machine); ray: each run a Ray task, "
                        "this process the store's only writer (docs/cluster.md)")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="--executor ray: a running Ray cluster (auto, HOST:PORT); default: start a local instance")
    s.add_argument("--cpus-per-run", type=float, default=None, metavar="N", help="--executor ray: CPUs per run (default 1)")
    s.add_argument("--gpus-per-run", type=float, default=None, metavar="N", help="--executor ray: GPUs per run (default 0)")
    s.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="--executor ray: submissions again after a lost worker (default 2); a run's own error is not retried")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sweep)
