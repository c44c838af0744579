"""The ``snap-bench`` argument parser: the CLI's own commands (``run``, ``list``, ``tasks``, ``judge``, ``store``) and
those that live in their own modules (:data:`COMMAND_MODULES`), which register themselves.

Parse errors raise :class:`SnapBenchError` (one line, exit code 2) instead of argparse's usage dump.
"""

from __future__ import annotations

import argparse
import importlib

from snap_bench import __version__
from snap_bench.cli import commands
from snap_bench.errors import SnapBenchError

# Each module exposes add_parser(subparsers, parser_class) and keeps its heavy imports lazy.
COMMAND_MODULES = ("snap_bench.packgen", "snap_bench.run.sweep", "snap_bench.evaluate.nlp", "snap_bench.report",
                   "snap_bench.cli.interact", "snap_bench.bench")


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        raise SnapBenchError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="snap-bench", description="Benchmark suite for selective unlearning in instruction-tuned LLMs.")
    p.add_argument("--version", action="version", version=f"snap-bench {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _add_run(sub)
    _add_list(sub)
    _add_tasks(sub)
    _add_judge(sub)
    # Commands that live in their own modules register themselves here.
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name != mod_name:
                raise
            continue
        mod.add_parser(sub, _Parser)
    _add_store(sub)
    return p


def _add_run(sub) -> None:
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
    r.add_argument("--gguf", default=None, choices=("q8_0", "q4_0", "q4_1", "f16", "f32"), metavar="TYPE",
                   help="with --save: also write DIR/model.TYPE.gguf (Llama models with SmolLM2's tokenizer), loadable "
                        "as --model DIR/model.TYPE.gguf and by llama.cpp; q4_0/q4_1 keep the output head at q8_0 as "
                        "llama-quantize does")
    r.add_argument("--allow-pickle", action="store_true",
                   help="load pickle weights (.bin/.pt/.pth/.pkl) of a local model directory you trust (off: safetensors only)")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.set_defaults(func=commands.cmd_run)


def _add_list(sub) -> None:
    ls = sub.add_parser("list", help="list registered methods, regularizers, entities, models, judges and the --set settings")
    ls.add_argument("kind", nargs="?", choices=commands.LIST_KINDS)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=commands.cmd_list)


def _add_tasks(sub) -> None:
    t = sub.add_parser("tasks", help="validate task packs or print their statistics")
    tsub = t.add_subparsers(dest="tasks_command", parser_class=_Parser)
    tv = tsub.add_parser("validate", help="run every quality gate on the shipped packs or on PATH")
    tv.add_argument("path", nargs="?", help="a pack folder (default: every shipped pack)")
    tv.add_argument("--threshold", type=float, default=0.75, help="near-duplicate cosine threshold (default: 0.75)")
    tv.add_argument("--no-dedup", action="store_true", help="skip the embedding near-duplicate check")
    tv.add_argument("--json", action="store_true")
    tv.set_defaults(func=commands.cmd_tasks_validate)
    ts = tsub.add_parser("stats", help="counts and % per category, per set, per entity (paper Table 5 / Figure 3)")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=commands.cmd_tasks_stats)


def _add_judge(sub) -> None:
    j = sub.add_parser("judge", help="judge {question, response[, keywords]} JSONL lines as obliterated or not")
    j.add_argument("--input", required=True, metavar="FILE.jsonl")
    j.add_argument("--judge", default="rules")
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=commands.cmd_judge)


def _add_store(sub) -> None:
    s = sub.add_parser("store", help="move runs between results stores: export a portable archive, import archives")
    # required: a bare `snap-bench store` is a one-line error naming the choices, not a help dump
    ssub = s.add_subparsers(dest="store_command", parser_class=_Parser, required=True, metavar="{export,import}")
    e = ssub.add_parser("export", help="write every run of a store (any status) as gzip JSON Lines shards + manifest.json")
    e.add_argument("--results", default=None, metavar="DIR", help="results store directory (default: ./results)")
    e.add_argument("--out", required=True, metavar="ARCHIVE_DIR",
                   help="archive folder to write; it must be new, empty or an earlier archive, which is replaced")
    e.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    e.set_defaults(func=commands.cmd_store_export)
    i = ssub.add_parser("import", help="merge archives into a store, all or nothing; runs it already holds are skipped")
    i.add_argument("archives", nargs="+", metavar="ARCHIVE_DIR", help="one or more archive folders (from store export)")
    i.add_argument("--results", default=None, metavar="DIR", help="results store directory, created if needed (default: ./results)")
    i.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    i.set_defaults(func=commands.cmd_store_import)
