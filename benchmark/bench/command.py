"""The ``bench`` command: its flags, and what it prints (a table of figures, or ``--json``)."""

from __future__ import annotations

import json
import sys

from snap_bench.bench.config import BenchConfig
from snap_bench.bench.suite import run_bench
from snap_bench.bench.targets import format_table


def add_parser(subparsers, parser_class) -> None:
    d = BenchConfig()
    b = subparsers.add_parser("bench", help="measure speed against this machine's matmul peak (training, regularizers, "
                                            "generation, end-to-end, memory)")
    b.add_argument("--model", default=d.model, help=f"model preset, HF id or path (default: {d.model})")
    b.add_argument("--entity", default=d.entity, help=f"entity of the default run (default: {d.entity})")
    b.add_argument("--method", default=d.method, help=f"method of the default run (default: {d.method})")
    b.add_argument("--steps", type=int, default=d.steps, help=f"timed training steps per configuration (default: {d.steps})")
    b.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed training steps first (default: {d.warmup})")
    b.add_argument("--repeats", type=int, default=d.repeats, help=f"timed repeats of each penalty (default: {d.repeats})")
    b.add_argument("--gen-prompts", type=int, default=d.gen_prompts,
                   help=f"evaluation prompts for the generation comparison (default: {d.gen_prompts})")
    b.add_argument("--max-new-tokens", type=int, default=None, help="generation budget (default: the run config's, 64)")
    b.add_argument("--matmul-size", type=int, default=d.matmul_size, help=f"side of the peak matmul (default: {d.matmul_size})")
    b.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, one per core)")
    b.add_argument("--regularizers", default=",".join(d.regularizers),
                   help=f"comma-separated regularizers to measure (default: {','.join(d.regularizers)})")
    b.add_argument("--fisher-examples", type=int, default=d.fisher_examples,
                   help=f"examples in the timed Fisher estimate (default: {d.fisher_examples}; runs use 32)")
    b.add_argument("--e2e", action="store_true", help="time the default `snap-bench run` now in a child process (~12 min)")
    b.add_argument("--results", default=None, metavar="DIR",
                   help="without --e2e, read the latest finished default run from this store (default: ./results)")
    b.add_argument("--run-id", default=None, help="without --e2e, use this finished single-entity run of the store")
    b.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from snap_bench.registry import REGULARIZERS as REG

    names = tuple(n.strip() for n in args.regularizers.split(",") if n.strip())
    for n in names:
        REG.get(n)
    cfg = BenchConfig(model=args.model, entity=args.entity, method=args.method, steps=args.steps, warmup=args.warmup,
                      repeats=args.repeats, gen_prompts=args.gen_prompts, max_new_tokens=args.max_new_tokens,
                      matmul_size=args.matmul_size, threads=args.threads, fisher_examples=args.fisher_examples, e2e=args.e2e, results=args.results, run_id=args.run_id,
                      regularizers=names)
    result = run_bench(cfg)
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        print(format_table(result["figures"]))
    return 0
