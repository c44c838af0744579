"""``snap-bench ask`` and ``snap-bench chat``: put your own questions to a model.

The model is a preset, a Hugging Face id or a directory written by ``run --save``. Both commands
build prompts exactly as evaluation does (``data.prompt_ids``, the tokenizer's chat template) and
decode greedily through the same loop (``generation.py``), so ``ask`` on a saved model repeats the
run's own evaluation answers. For a snap-bench save the defaults for the system prompt, the token
budget and the batch size come from its card (what its run evaluated with); otherwise they are
the ``cpu`` preset's evaluation defaults.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from snap_bench.errors import SnapBenchError
from snap_bench.util import progress_bar

EXIT_COMMANDS = ("/exit", "/quit")


@dataclass
class GenerationSettings:
    """How ``ask`` and ``chat`` generate."""

    system_prompt: str | None
    """System message; None uses the chat template's default (as evaluation does without one)."""
    max_new_tokens: int
    """Greedy generation budget per answer."""
    batch_size: int
    """Questions generated together by ``ask`` (left-padded, KV-cached)."""
    source: str
    """Where the defaults came from: ``card`` (a snap-bench save) or ``preset`` (the cpu preset)."""


def resolve_settings(model: str, system_prompt: str | None, max_new_tokens: int | None,
                     batch_size: int | None) -> GenerationSettings:
    """Flags win; then a save's card; then the cpu preset. ``system_prompt=""`` means no system message."""
    from snap_bench.config import MethodConfig, build_config
    from snap_bench.models.saving import read_card

    card = read_card(model) if Path(model).is_dir() else None
    ev = (card or {}).get("eval") or {}
    preset = build_config(MethodConfig, "cpu")
    for flag, v in (("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size)):
        if v is not None and v <= 0:
            raise SnapBenchError(f"{flag} {v}: must be a positive integer")
    if system_prompt is None:
        system_prompt = ev.get("system_prompt", preset.system_prompt)
    return GenerationSettings(
        system_prompt=system_prompt or None,
        max_new_tokens=max_new_tokens or int(ev.get("max_new_tokens") or preset.max_new_tokens),
        batch_size=batch_size or int(ev.get("batch_size") or preset.eval_batch_size),
        source="card" if card else "preset",
    )


def _load(args):
    from snap_bench.models import load_model

    t = time.perf_counter()
    lm = load_model(args.model, trust_remote_code=args.trust_remote_code)
    return lm, time.perf_counter() - t


# --- ask -------------------------------------------------------------------------------------


def cmd_ask(args) -> int:
    from snap_bench.cli.commands import judge_rows, read_jsonl_questions
    from snap_bench.cli.output import emit_json
    from snap_bench.evaluate.judges.base import get_judge
    from snap_bench.models import check_model_spec

    # Everything the user typed is checked before the model loads (seconds to minutes).
    rows = read_jsonl_questions(args.input, require_response=False)
    check_model_spec(args.model)
    settings = resolve_settings(args.model, args.system_prompt, args.max_new_tokens, args.batch_size)
    judge = get_judge(args.judge)
    lm, load_s = _load(args)

    from snap_bench.evaluate.generation import generate

    t = time.perf_counter()
    bar = progress_bar(not args.no_progress, len(rows), "ask")
    try:
        responses = generate(lm.model, lm.tokenizer, [r["question"] for r in rows], system=settings.system_prompt,
                             max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                             on_batch=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    gen_s = time.perf_counter() - t
    results, pct = judge_rows(judge, rows, responses)
    out: dict[str, Any] = {
        "model": args.model, "judge": judge.name, "n": len(rows), "obliterated_pct": pct,
        "system_prompt": settings.system_prompt, "max_new_tokens": settings.max_new_tokens,
        "defaults_from": settings.source, "timings": {"load": load_s, "generate": gen_s}, "results": results,
    }
    if args.json:
        emit_json(out)
        return 0
    for i, r in enumerate(results, 1):
        print(f"[{i}] {'OBLITERATED' if r['obliterated'] else 'answered'} ({r['reason']})")
        print(f"  Q: {r['question']}")
        print(f"  A: {r['response']}\n")
    print(f"{len(rows)} questions, {pct:.1f}% obliterated (judge {judge.name}) · model {args.model} · "
          f"load {load_s:.1f}s · generate {gen_s:.1f}s")
    return 0


# --- chat ------------------------------------------------------------------------------------


class TokenPrinter:
    """Turns a stream of token ids into text pieces as they arrive.

    Each new token re-decodes the whole answer and writes only the new suffix: a token can
    change how the previous ones decode (merged spaces, multi-byte characters), so per-token
    decoding would print garbage. A text ending in U+FFFD is an incomplete character and waits.
    """

    def __init__(self, tokenizer, stop_ids: set[int], write: Callable[[str], None]):
        self.tokenizer, self.stop_ids, self.write = tokenizer, stop_ids, write
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False

    def __call__(self, token: int) -> None:
        if self.stopped or token in self.stop_ids:
            self.stopped = True
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return
        piece, self.text = text[len(self.text):], text
        if piece:
            self.write(piece)

    def answer(self) -> str:
        """The whole answer, stripped like evaluation's responses."""
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()


def stream_answer(lm, question: str, settings: GenerationSettings, write: Callable[[str], None],
                  history: list[tuple[str, str]] | None = None) -> str:
    """Greedy answer to ``question``, written piece by piece as it is generated; returns the answer."""
    from snap_bench.data import prompt_ids
    from snap_bench.evaluate.generation import end_token_ids, generate_streaming

    prompt = prompt_ids(lm.tokenizer, question, settings.system_prompt, history or ())
    printer = TokenPrinter(lm.tokenizer, end_token_ids(lm.tokenizer, lm.model), write)
    generate_streaming(lm.model, lm.tokenizer, prompt, printer, max_new_tokens=settings.max_new_tokens)
    rest = printer.answer()
    if rest.startswith(printer.text) and len(rest) > len(printer.text):
        write(rest[len(printer.text):])  # a character held back as incomplete at the very end
    return rest


def cmd_chat(args) -> int:
    from snap_bench.models import check_model_spec

    check_model_spec(args.model)
    settings = resolve_settings(args.model, args.system_prompt, args.max_new_tokens, None)
    # stderr shares the terminal with the answer: a library deprecation notice would land mid-sentence.
    warnings.filterwarnings("ignore", category=FutureWarning)
    lm, load_s = _load(args)
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    print(f"snap-bench chat · {args.model} · greedy, up to {settings.max_new_tokens} new tokens"
          f"{' · multi-turn' if args.history else ''} · loaded in {load_s:.1f}s · /exit or Ctrl-D ends",
          file=sys.stderr, flush=True)

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    history: list[tuple[str, str]] = []
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return 0
        q = line.strip()
        if q in EXIT_COMMANDS:
            return 0
        if q == "/reset":
            history.clear()
            print("(history cleared)")
            continue
        if not q:
            continue
        write("model> ")
        try:
            answer = stream_answer(lm, q, settings, write, history if args.history else None)
        except KeyboardInterrupt:  # Ctrl-C stops this answer, not the session
            write(" [interrupted]\n")
            continue
        write("\n")
        if args.history:
            history.append((q, answer))


# --- parser ----------------------------------------------------------------------------------


def _common(p) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="preset, Hugging Face id or local directory such as a `run --save` DIR (default: smollm2-135m)")
    p.add_argument("--system-prompt", default=None, metavar="TEXT",
                   help="system message (default: the one the saved run evaluated with, else none; '' for none)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="greedy token budget per answer (default: the saved run's, else 64 as in evaluation)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub (off by default)")


def add_parser(sub, parser_class) -> None:
    a = sub.add_parser("ask", help="answer {question[, keywords]} JSONL lines with a model, as evaluation does, and judge them")
    a.add_argument("--input", required=True, metavar="FILE.jsonl", help="one {\"question\": ..., \"keywords\": [...]} per line")
    _common(a)
    a.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="questions generated together (default: the saved run's, else 32 as in evaluation)")
    a.add_argument("--judge", default="rules", help="obliteration judge (default: rules)")
    a.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a.set_defaults(func=cmd_ask)

    c = sub.add_parser("chat", help="interactive terminal chat with a model (greedy, streamed; /exit or Ctrl-D ends)")
    _common(c)
    c.add_argument("--history", action="store_true",
                   help="keep earlier turns in the prompt (default: each question alone, as in evaluation; /reset clears)")
    c.set_defaults(func=cmd_chat)
