"""``snap-bench nlp``: the subcommand's parser, its handler and the plain-text result table."""

from __future__ import annotations

import json
import sys
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.nlp.harness import PAPER_TASKS, evaluate_nlp, parse_tasks


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'task':<16} {'acc':>7} {'±':>6} {'n':>6}", "-" * 38]
    for name in result.get("requested") or [*result["tasks"], *result["unavailable"]]:
        m = result["tasks"].get(name)
        if m is None:
            lines.append(f"{name:<16} {'—':>7} {'':>6} {'':>6}  unavailable")
            continue
        se = m.get("acc_stderr")
        lines.append(f"{name:<16} {m['acc']:7.4f} {'' if se is None else f'{se:6.4f}':>6} {m['n']:>6}")
    avg = result["average"]
    n_ran, n_all = len(result["tasks"]), len(result["tasks"]) + len(result["unavailable"])
    lines.append("-" * 38)
    lines.append(f"{'average':<16} {'—' if avg is None else f'{avg:.4f}':>7}   over {n_ran} of {n_all} tasks")
    return "\n".join(lines)


def cmd_nlp(args) -> int:
    from snap_bench.models import load_model

    names = parse_tasks(args.tasks)
    if args.limit is not None and args.limit <= 0:
        raise SnapBenchError(f"--limit must be a positive integer, got {args.limit}")
    if args.batch_size <= 0:
        raise SnapBenchError(f"--batch-size must be a positive integer, got {args.batch_size}")
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)
    result = evaluate_nlp(loaded.model, loaded.tokenizer, names, limit=args.limit, batch_size=args.batch_size,
                          seed=args.seed, progress=not args.no_progress, model_name=args.model)
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()
    else:
        print(format_table(result))
        print(f"\nmodel {args.model} · zero-shot · seed {args.seed} · "
              f"{'limit ' + str(args.limit) if args.limit else 'full test sets'} · {result['seconds']:.0f}s")
    if not result["tasks"]:
        print(f"snap-bench nlp: no task could run ({', '.join(result['unavailable'])} unavailable)", file=sys.stderr)
        return 1
    return 0


def add_parser(sub, parser_class) -> None:
    n = sub.add_parser("nlp", help="zero-shot NLP utility through lm-evaluation-harness (paper Table 2)")
    n.add_argument("--model", default="smollm2-135m", help="preset, Hugging Face id or local path (default: smollm2-135m)")
    n.add_argument("--tasks", nargs="+", default=None, metavar="T1,T2",
                   help=f"tasks, comma- or space-separated (default: all = {','.join(PAPER_TASKS)})")
    n.add_argument("--limit", type=int, default=None, metavar="N",
                   help="items per task (MMLU: N items stratified by subject; others: first N documents)")
    n.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size (default: 8)")
    n.add_argument("--seed", type=int, default=0, help="seed for the MMLU sample and lm-eval's RNGs (default: 0)")
    n.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub (off by default)")
    n.add_argument("--allow-pickle", action="store_true",
                   help="load pickle weights (.bin/.pt/.pth/.pkl) of a local model directory you trust (off: safetensors only)")
    n.add_argument("--no-progress", action="store_true", help="hide progress lines and bars")
    n.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    n.set_defaults(func=cmd_nlp)
