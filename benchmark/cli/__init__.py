"""The ``snap-bench`` command line.

Conventions: ``--json`` prints exactly one JSON object on stdout and nothing else there
(progress and logs go to stderr); bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from snap_bench import __version__
from snap_bench.errors import SnapBenchError

LIST_KINDS = ("methods", "regularizers", "entities", "models", "judges", "settings")
# Each module exposes add_parser(subparsers, parser_class) and keeps its heavy imports lazy.
COMMAND_MODULES = ("snap_bench.packgen", "snap_bench.run.sweep", "snap_bench.evaluate.nlp", "snap_bench.report",
                   "snap_bench.cli.interact", "snap_bench.bench")


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        raise SnapBenchError(f"{self.prog}: {message}")


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


# --- run -------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "   —  " if v is None else f"{v:6.1f}"


def table1_rows(result: dict[str, Any]) -> str:
    """The Table-1 row(s) of a run, then selectivity and removal (cross_RA, leak, RA_known, degenerate), as
    fixed-width text."""
    head = (f"{'method':<18} {'entity':<16} {'UA':>6} {'UA♣':>6} {'RA':>6} {'TA':>6} {'Avg':>6} │ {'crossRA':>7} "
            f"{'leak':>6} {'RA_known':>13} {'degen':>6}")
    lines = [head, "-" * len(head)]
    label = result["method"] + (f"+{result['regularizer']}" if result["regularizer"] not in ("none",) else "")
    for entity, m in result["metrics"].items():
        n = m.get("RA_known_n")
        known = _fmt(m.get("RA_known")) + (f" (n={int(n)})" if n is not None else "")
        lines.append(
            f"{label:<18} {entity:<16} {_fmt(m['UA'])} {_fmt(m['UA_multihop'])} {_fmt(m['RA'])} {_fmt(m['TA'])} "
            f"{_fmt(m['Avg'])} │ {_fmt(m.get('cross_RA')):>7} {_fmt(m.get('leak'))} {known:>13} {_fmt(m.get('degenerate'))}"
        )
    return "\n".join(lines)


def probe_rows(probes: dict[str, Any]) -> str:
    """Knowledge probes per entity: UA under each framing, answer log-likelihood, relearning."""
    lines = []
    for entity, pr in probes.items():
        lp = pr["answer_logprob"]
        lines.append(f"probes · {entity} · {pr['items']} forget items")
        lines.append("  UA by framing: " + "  ".join(f"{k} {_fmt(v).strip()}" for k, v in pr["extraction_UA"].items()))
        lines.append(f"  answer log-prob/token: before {_num(lp['before'])} → after {_num(lp['after'])} "
                     f"(Δ {_num(lp['delta'])})")
        rlp = pr.get("retain_answer_logprob")
        if rlp:
            lines.append(f"  retain answer log-prob/token: before {_num(rlp['before'])} → after {_num(rlp['after'])} "
                         f"(Δ {_num(rlp['delta'])})")
        rl = pr.get("relearning")
        if rl:
            lines.append(f"  relearning ({rl['n_relearn']} facts, {rl['steps']} steps): UA {_fmt(rl['UA_before']).strip()} → "
                         f"{_fmt(rl['UA_after']).strip()}, log-prob {_num(rl['logprob_before'])} → {_num(rl['logprob_after'])}")
        flu = pr.get("fluency", {}).get("eval_sets") or {}
        if flu:
            lines.append("  degenerate responses %: " + "  ".join(f"{k} {_fmt(v).strip()}" for k, v in flu.items()))
    return "\n".join(lines)


def nlp_rows(nlp: dict[str, Any]) -> str:
    parts = [f"{k} {100 * v['acc']:.1f}" for k, v in nlp.get("tasks", {}).items()]
    avg = nlp.get("average")
    line = "NLP zero-shot acc %: " + ("  ".join(parts) or "no task ran")
    if avg is not None:
        line += f"  (average {100 * avg:.1f} over {len(parts)})"
    if nlp.get("unavailable"):
        line += "\n  unavailable, left out of the average: " + ", ".join(nlp["unavailable"])
    return line


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


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


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; None below two values) and n of the non-missing values."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / n
    std = (sum((v - mean) ** 2 for v in vals) / (n - 1)) ** 0.5 if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def seed_summary(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{entity: {metric: {mean, std, n}}} over the runs of several seeds; every entity (and the batch
    modes' ``average`` row) on its own, never pooled across entities."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    entities = list(dict.fromkeys(e for r in results for e in r["metrics"]))
    for e in entities:
        metrics = list(dict.fromkeys(m for r in results for m in r["metrics"].get(e, {})))
        out[e] = {m: _stats([r["metrics"].get(e, {}).get(m) for r in results]) for m in metrics}
    return out


def summary_rows(label: str, seeds: list[int], summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The seed summary as fixed-width text: mean ± sample std per entity and metric, with n."""

    def cell(s: dict[str, Any] | None) -> str:
        if not s or s["mean"] is None:
            return f"{'—':>13}"
        std = "—" if s["std"] is None else f"{s['std']:.1f}"
        return f"{s['mean']:6.1f} ± {std:<4}"

    cols = (("UA", "UA"), ("UA♣", "UA_multihop"), ("RA", "RA"), ("TA", "TA"), ("Avg", "Avg"))
    head = f"{'method':<18} {'entity':<16} {'n':>2} " + " ".join(f"{c:>13}" for c, _ in cols)
    lines = [f"mean ± sample std over seeds {','.join(map(str, seeds))} (n = runs with a value)", head, "-" * len(head)]
    for entity, ms in summary.items():
        n = max((s["n"] for s in ms.values()), default=0)
        row = f"{label:<18} {entity:<16} {n:>2} " + " ".join(cell(ms.get(k)) for _, k in cols)
        odd = [f"{c} n={ms[k]['n']}" for c, k in cols if k in ms and ms[k]["n"] != n]
        lines.append(row + (f"  ({', '.join(odd)})" if odd else ""))
    return "\n".join(lines)


def _print_run(result: dict[str, Any]) -> None:
    print(table1_rows(result))
    if result.get("probes"):
        print("\n" + probe_rows(result["probes"]))
    if result.get("nlp"):
        print("\n" + nlp_rows(result["nlp"]))
    t = result["timings"]
    print(f"\nrun {result['run_id']} · model {result['model']} · seed {result['seed']} · "
          f"{result.get('precision', 'fp32')} · "
          f"{result['train']['steps']} steps · train {t.get('train', 0):.0f}s · total {t['total']:.0f}s · "
          f"stored in {result['results']}")
    if result.get("saved"):
        print(f"model saved to {result['saved']} (snap-bench ask|chat --model {result['saved']})")


def cmd_run(args) -> int:
    from snap_bench.config import parse_overrides
    from snap_bench.run.execute import RunSpec, execute, plan

    # --seeds: validated, and every seed planned, before anything is written or trained.
    if args.seeds is not None and args.seed is not None:
        raise SnapBenchError(f"--seed {args.seed} and --seeds {args.seeds} contradict; give one of them")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [0 if args.seed is None else args.seed]
    if len(seeds) > 1 and args.save is not None:
        raise SnapBenchError(f"--save writes one model but --seeds {args.seeds} runs {len(seeds)}; "
                             "save one seed's model with --seed N --save DIR")
    overrides = parse_overrides(args.set)
    for flag, key in (("max_steps", "max_steps"), ("eval_limit", "eval_limit")):
        value = getattr(args, flag)
        if value is None:
            continue
        if key in overrides:  # two different answers to one question: refuse rather than pick one
            raise SnapBenchError(f"--{flag.replace('_', '-')} {value} and --set {key}={overrides[key]} contradict; "
                                 "give one of them")
        overrides[key] = str(value)
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
            allow_pickle=args.allow_pickle,
        )
        plans.append(plan(spec))

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
            _print_run(result)
    if not results:
        return 0
    if args.seeds is None:  # plain --seed N: today's output, unchanged
        if args.json:
            _emit_json(results[0])
        return 0
    summary = seed_summary(results)
    if args.json:
        _emit_json({"runs": results, "summary": summary})
    else:
        label = results[0]["method"] + (f"+{results[0]['regularizer']}" if results[0]["regularizer"] != "none" else "")
        print("\n" + summary_rows(label, seeds, summary))
    return 0


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
        _emit_json({k: data[k] for k in kinds} if len(kinds) > 1 else {kinds[0]: data[kinds[0]]})
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
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_general, load_pack, load_pack_dir
    from snap_bench.tasks.validate import validate_pack

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
        _emit_json({"ok": not problems, "packs": summary, "problems": [str(p) for p in problems]})
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


def task_stats() -> dict[str, Any]:
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_general, load_pack

    def count(items):
        cats: dict[str, int] = {}
        for it in items:
            cats[it.category] = cats.get(it.category, 0) + 1
        n = len(items)
        return {"total": n, "categories": {c: {"count": k, "pct": round(100 * k / n, 1)} for c, k in sorted(cats.items())}}

    out: dict[str, Any] = {"entities": {}}
    for name in ENTITIES.names():
        pk = load_pack(name)
        out["entities"][name] = {s: count(v) for s, v in pk.sets.items()}
    out["general"] = count(load_general()["general"])
    return out


def cmd_tasks_stats(args) -> int:
    stats = task_stats()
    if args.json:
        _emit_json(stats)
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
        _emit_json(out)
    else:
        for r in results:
            print(f"{'OBLITERATED' if r['obliterated'] else 'answered   '}  {r['response'][:100]!r}")
        print(f"\n{len(rows)} responses, {pct:.1f}% obliterated" + (f", accuracy vs labels {out['accuracy']:.1f}%" if labelled else ""))
    return 0


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="snap-bench", description="Benchmark suite for selective unlearning in instruction-tuned LLMs.")
    p.add_argument("--version", action="version", version=f"snap-bench {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser("run", help="unlearn one or more entities with a method, evaluate, store and print Table-1 rows")
    r.add_argument("--method", required=True, help="registered method name (see `snap-bench list methods`)")
    r.add_argument("--entity", action="append", required=True, help="entity slug or path to a pack folder; repeat for several")
    r.add_argument("--mode", default="single", help="single | batch | sequential (default: single)")
    r.add_argument("--regularizer", default=None, help="override the method's regularizer: swd | l2 | none | ...")
    r.add_argument("--model", default="smollm2-135m", help="preset, Hugging Face id or local path (default: smollm2-135m)")
    r.add_argument("--seed", type=int, default=None, help="seed for the split, data order, init and projections (default: 0)")
    r.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="run the same experiment once per seed (e.g. 0,1,2), one stored run each, then print mean ± "
                        "sample std per entity; --json prints {runs, summary}. Not with --seed")
    r.add_argument("--preset", default="cpu", help="hyper-parameter preset: cpu (default) | paper | paper-mistral")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field; repeatable (`snap-bench list settings` shows them all)")
    r.add_argument("--results", default=None, metavar="DIR", help="results store directory (default: ./results)")
    r.add_argument("--max-steps", type=int, default=None, help="cap optimiser steps (0 = evaluate the untrained model)")
    r.add_argument("--eval-limit", type=int, default=None, help="cap evaluation questions per set")
    r.add_argument("--judge", default="rules", help="obliteration judge (default: rules)")
    r.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub (off by default)")
    r.add_argument("--save", default=None, metavar="DIR",
                   help="write the final model (safetensors + tokenizer + snap_bench_card.json) to DIR; DIR must be new, "
                        "empty or an earlier snap-bench save, which is replaced")
    r.add_argument("--allow-pickle", action="store_true",
                   help="load pickle weights (.bin/.pt/.pth/.pkl) of a local model directory you trust (off: safetensors only)")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list registered methods, regularizers, entities, models, judges and the --set settings")
    ls.add_argument("kind", nargs="?", choices=LIST_KINDS)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("tasks", help="validate task packs or print their statistics")
    tsub = t.add_subparsers(dest="tasks_command", parser_class=_Parser)
    tv = tsub.add_parser("validate", help="run every quality gate on the shipped packs or on PATH")
    tv.add_argument("path", nargs="?", help="a pack folder (default: every shipped pack)")
    tv.add_argument("--threshold", type=float, default=0.75, help="near-duplicate cosine threshold (default: 0.75)")
    tv.add_argument("--no-dedup", action="store_true", help="skip the embedding near-duplicate check")
    tv.add_argument("--json", action="store_true")
    tv.set_defaults(func=cmd_tasks_validate)
    ts = tsub.add_parser("stats", help="counts and % per category, per set, per entity (paper Table 5 / Figure 3)")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=cmd_tasks_stats)

    j = sub.add_parser("judge", help="judge {question, response[, keywords]} JSONL lines as obliterated or not")
    j.add_argument("--input", required=True, metavar="FILE.jsonl")
    j.add_argument("--judge", default="rules")
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_judge)

    # Commands that live in their own modules register themselves here.
    import importlib

    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name != mod_name:
                raise
            continue
        mod.add_parser(sub, _Parser)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from snap_bench.util.heap import release_freed_memory

    release_freed_memory()  # before the model loads: freed tensors' memory goes back to the OS
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            if getattr(args, "command", None) == "tasks":
                raise SnapBenchError("snap-bench tasks: choose validate or stats")
            parser.print_help(sys.stderr)
            return 2
        return args.func(args)
    except SnapBenchError as exc:
        from snap_bench.util.redaction import redact

        print(f"snap-bench: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snap-bench: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not bad input: keep the traceback for the report, minus any secret in it
        import traceback

        from snap_bench.util.redaction import redact

        print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
        print("snap-bench: internal error (the traceback above is a bug; please report it)", file=sys.stderr)
        return 1
