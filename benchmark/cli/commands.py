"""The commands that live in the CLI itself: ``run``, ``list``, ``tasks validate|stats``, ``judge`` and
``store export|import``.

Each ``cmd_*`` takes the parsed arguments and returns the exit code; bad input raises
:class:`SnapBenchError` (one line on stderr, exit code 2, printed by :func:`snap_bench.cli.main`). The
other commands live in their own modules and register their parsers themselves
(:data:`snap_bench.cli.parser.COMMAND_MODULES`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from snap_bench.cli.output import emit_json, print_run, seed_summary, summary_rows, table1_rows
from snap_bench.errors import SnapBenchError

LIST_KINDS = ("methods", "regularizers", "entities", "models", "judges", "settings")


# --- run -------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    seeds = _seeds(args)
    plans = _plan_runs(args, seeds)  # every seed planned before anything is written or trained
    results = _execute_plans(args, plans)
    if not results:
        return 0
    if args.seeds is None:  # plain --seed N: today's output, unchanged
        if args.json:
            emit_json(results[0])
        return 0
    summary = seed_summary(results)
    if args.json:
        emit_json({"runs": results, "summary": summary})
    else:
        label = results[0]["method"] + (f"+{results[0]['regularizer']}" if results[0]["regularizer"] != "none" else "")
        print("\n" + summary_rows(label, seeds, summary))
    return 0


def _seeds(args) -> list[int]:
    """The seeds to run: ``--seeds`` validated, or the one ``--seed`` (default 0)."""
    from snap_bench.config import parse_seeds

    if args.seeds is not None and args.seed is not None:
        raise SnapBenchError(f"--seed {args.seed} and --seeds {args.seeds} contradict; give one of them")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [0 if args.seed is None else args.seed]
    if args.gguf is not None and args.save is None:
        raise SnapBenchError(f"--gguf {args.gguf} writes into the --save directory; give --save DIR too")
    if len(seeds) > 1 and args.save is not None:
        raise SnapBenchError(f"--save writes one model but --seeds {args.seeds} runs {len(seeds)}; "
                             "save one seed's model with --seed N --save DIR")
    return seeds


def _overrides(args) -> dict[str, str]:
    """``--set`` pairs, plus ``--max-steps`` and ``--eval-limit`` as the same keys."""
    from snap_bench.config import parse_overrides

    overrides = parse_overrides(args.set)
    for flag, key in (("max_steps", "max_steps"), ("eval_limit", "eval_limit")):
        value = getattr(args, flag)
        if value is None:
            continue
        if key in overrides:  # two different answers to one question: refuse rather than pick one
            raise SnapBenchError(f"--{flag.replace('_', '-')} {value} and --set {key}={overrides[key]} contradict; "
                                 "give one of them")
        overrides[key] = str(value)
    return overrides


def _plan_runs(args, seeds: list[int]) -> list:
    from snap_bench.run.spec import RunSpec, plan

    overrides = _overrides(args)
    plans = []
    for seed in seeds:
        spec = RunSpec(
            method=args.method,
            entities=args.entity,
            mode=args.mode,
            regularizer=args.regularizer,
            model=args.model,
            seed=seed,
            preset=args.preset,
            overrides=dict(overrides),
            results_dir=args.results,
            judge=args.judge,
            progress=not args.no_progress,
            trust_remote_code=args.trust_remote_code,
            save_dir=args.save,
            save_gguf=args.gguf,
            allow_pickle=args.allow_pickle,
        )
        plans.append(plan(spec))
    return plans


def _execute_plans(args, plans: list) -> list[dict[str, Any]]:
    """Run each plan in turn, printing each result as text unless ``--json``; the results of this process."""
    from snap_bench.run.execute import execute

    results = []
    for i, p in enumerate(plans):
        spec = p.spec
        result_stub = {"method": spec.method, "regularizer": p.regularizer}

        def on_phase(k, metrics, spec=spec, result_stub=result_stub):
            if spec.mode == "sequential" and not args.json:  # only the main process evaluates and calls this
                print(f"\nafter step {k + 1} ({', '.join(metrics)}):", file=sys.stderr)
                print(table1_rows({**result_stub, "metrics": metrics}), file=sys.stderr)

        if args.seeds is not None and spec.progress:
            print(f"snap-bench: seed {spec.seed} ({i + 1}/{len(plans)})", file=sys.stderr)
        # Libraries may log to stdout (DeepSpeed does, once accelerate imports it); stdout is for the result.
        with contextlib.redirect_stdout(sys.stderr):
            result = execute(p, on_phase=on_phase)
        if result is None:  # a non-main process under accelerate launch: the main one reports
            continue
        results.append(result)
        if not args.json:
            if args.seeds is not None:
                print(("\n" if i else "") + f"== seed {spec.seed} ==")
            print_run(result)
    return results


# --- list ------------------------------------------------------------------------------------


def _listing() -> dict[str, list[dict[str, str]]]:
    from snap_bench.registry import ENTITIES, JUDGES, METHODS, MODELS, REGULARIZERS
    from snap_bench.cli.settings_doc import settings_rows
    from snap_bench.tasks import load_pack

    def doc(obj) -> str:
        d = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        return d[0] if d else ""

    out = {
        "methods": [{"name": n, "description": doc(sys.modules[c.__module__]) or doc(c)} for n, c in METHODS.items()],
        "regularizers": [{"name": n, "description": doc(sys.modules[c.__module__]) or doc(c)} for n, c in REGULARIZERS.items()],
        "entities": [],
        "models": [{"name": n, "description": v["description"]} for n, v in MODELS.items()],
        "judges": [{"name": n, "description": doc(c)} for n, c in JUDGES.items()],
        "settings": settings_rows(),  # every --set key, from the config docstrings
    }
    for n in ENTITIES.names():
        pk = load_pack(n)
        out["entities"].append({"name": n, "display_name": pk.name, "kind": pk.kind,
                                **{s: len(v) for s, v in pk.sets.items()}})
    return out


def cmd_list(args) -> int:
    data = _listing()
    kinds = [args.kind] if args.kind else list(LIST_KINDS)
    if args.json:
        emit_json({k: data[k] for k in kinds} if len(kinds) > 1 else {kinds[0]: data[kinds[0]]})
        return 0
    for k in kinds:
        print(f"{k}:")
        for row in data[k]:
            if k == "settings":  # the first sentence; --json has the whole text
                print(f"  {row['name']:<22} cpu={row['cpu']:<13} paper={row['paper']:<13} {row['description'].split('. ')[0]}")
                continue
            extra = row.get("description") or ", ".join(f"{s}={row[s]}" for s in ("forget", "retain", "multihop") if s in row)
            print(f"  {row['name']:<18} {extra}")
    return 0


# --- tasks -----------------------------------------------------------------------------------


def cmd_tasks_validate(args) -> int:
    from snap_bench.evaluate.pack_gates import validate_pack
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_general, load_pack, load_pack_dir

    if not 0 < args.threshold <= 1:
        raise SnapBenchError(f"--threshold must be a cosine similarity in (0, 1], got {args.threshold}")
    general = load_general()
    if args.path:
        packs = [load_pack_dir(Path(args.path))]
    else:
        packs = [load_pack(n) for n in ENTITIES.names()] + [general]
    problems = []
    summary = []
    for pk in packs:
        found = validate_pack(pk, general, dedup=not args.no_dedup, threshold=args.threshold)
        problems += found
        summary.append({"pack": pk.slug, "items": sum(len(v) for v in pk.sets.values()), "problems": len(found)})
    if args.json:
        emit_json({"ok": not problems, "packs": summary, "problems": [str(p) for p in problems]})
    else:
        for p in problems:
            print(p, file=sys.stderr)
        for s in summary:
            print(f"{s['pack']:<16} {s['items']:>5} items  {'ok' if not s['problems'] else str(s['problems']) + ' problems'}")
    if problems:
        if not args.json:
            print(f"snap-bench: {len(problems)} problems found", file=sys.stderr)
        return 1
    return 0


def cmd_tasks_stats(args) -> int:
    from snap_bench.report import task_stats

    stats = task_stats()
    if args.json:
        emit_json(stats)
        return 0
    for name, sets in stats["entities"].items():
        print(f"{name}")
        for s, d in sets.items():
            cats = "  ".join(f"{c} {v['count']} ({v['pct']}%)" for c, v in d["categories"].items())
            print(f"  {s:<9} {d['total']:>4}   {cats}")
    g = stats["general"]
    print(f"general\n  {'general':<9} {g['total']:>4}   " + "  ".join(f"{c} {v['count']} ({v['pct']}%)" for c, v in g["categories"].items()))
    return 0


# --- judge -----------------------------------------------------------------------------------


def read_jsonl_questions(path: str, require_response: bool) -> list[dict[str, Any]]:
    from snap_bench.util.jsonl import iter_jsonl

    rows = []
    for ln, obj in iter_jsonl(path):
        need = ("question", "response") if require_response else ("question",)
        for k in need:
            if not isinstance(obj.get(k), str):
                raise SnapBenchError(f"{path}:{ln}: field '{k}' must be a string")
        kws = obj.get("keywords", [])
        if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
            raise SnapBenchError(f"{path}:{ln}: field 'keywords' must be a list of strings")
        if "obliterated" in obj and not isinstance(obj["obliterated"], bool):
            raise SnapBenchError(f"{path}:{ln}: field 'obliterated' (the label) must be true or false")
        rows.append(obj)
    if not rows:
        raise SnapBenchError(f"{path}: no lines to read")
    return rows


def judge_rows(judge, rows: list[dict[str, Any]], responses: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Each row's {question, response, obliterated, reason} and the % obliterated (shared by judge and ask)."""
    verdicts = judge.judge_many([(r["question"], resp, r.get("keywords", [])) for r, resp in zip(rows, responses)])
    results = [{"question": r["question"], "response": resp, "obliterated": v.obliterated, "reason": v.reason}
               for r, resp, v in zip(rows, responses, verdicts)]
    return results, 100.0 * sum(v.obliterated for v in verdicts) / len(verdicts)


def cmd_judge(args) -> int:
    from snap_bench.evaluate.judges.base import get_judge

    rows = read_jsonl_questions(args.input, require_response=True)
    judge = get_judge(args.judge)
    results, pct = judge_rows(judge, rows, [r["response"] for r in rows])
    labelled = [(r["obliterated"], v["obliterated"]) for r, v in zip(rows, results) if isinstance(r.get("obliterated"), bool)]
    out: dict[str, Any] = {"judge": judge.name, "n": len(rows), "obliterated_pct": pct, "results": results}
    if labelled:
        out["accuracy"] = 100.0 * sum(a == b for a, b in labelled) / len(labelled)
    if args.json:
        emit_json(out)
    else:
        for r in results:
            print(f"{'OBLITERATED' if r['obliterated'] else 'answered   '}  {r['response'][:100]!r}")
        print(f"\n{len(rows)} responses, {pct:.1f}% obliterated" + (f", accuracy vs labels {out['accuracy']:.1f}%" if labelled else ""))
    return 0


# --- store export | import ---------------------------------------------------------------------


def cmd_store_export(args) -> int:
    from snap_bench.store.archive import export_archive

    summary = export_archive(args.results, args.out)
    if args.json:
        emit_json(summary)
    else:
        statuses = ", ".join(f"{n} {s}" for s, n in summary["statuses"].items()) or "none"
        print(f"exported {summary['runs']} runs ({statuses}) from {summary['store']} -> {summary['out']}/ "
              f"({summary['shards']} shard files, {summary['bytes']:,} bytes)")
    return 0


def cmd_store_import(args) -> int:
    from snap_bench.store.archive_import import import_archives

    summary = import_archives(args.archives, args.results)
    if args.json:
        emit_json(summary)
    else:
        print(f"imported {summary['imported']} runs, skipped {summary['skipped']} already present, from "
              f"{len(summary['archives'])} archives -> {summary['store']}")
    return 0
