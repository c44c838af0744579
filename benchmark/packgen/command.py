"""The ``snap-bench generate`` command: check the flags, run the pipeline, write and validate the pack.

The API key comes from ``OPENAI_API_KEY`` only (never a flag), and every error the command
raises passes through :func:`~snap_bench.util.redaction.redact`, so a server that echoes the key
cannot put it on the terminal. A folder the command created and left empty is removed again.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from snap_bench.errors import SnapBenchError
from snap_bench.packgen.generator import Options, PackGenerator
from snap_bench.packgen.pack import pack_meta, slugify, write_pack
from snap_bench.packgen.prompts import SETS
from snap_bench.util.fsutil import preflight_dir
from snap_bench.util.openai_client import ChatClient, api_key_from_env
from snap_bench.util.redaction import redact


def default_cache_dir() -> Path:
    """``$SNAP_BENCH_CACHE/generate`` (default ``~/.cache/snap-bench/generate``), as the model cache."""
    from snap_bench.models import cache_dir

    return cache_dir() / "generate"


def _ensure_writable_dir(path: Path, what: str) -> None:
    preflight_dir(path, what, check_space=False)  # a cache of small JSON files: any free space will do


def _check_args(args) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise SnapBenchError(f"snap-bench generate: {msg}")

    need(bool(args.entity.strip()) and len(args.entity) <= 200 and not any(c in args.entity for c in "\n\r\t\0"),
         "--entity must be a non-empty name on one line (at most 200 characters)")
    need(bool(re.match(r"^https?://[^\s/]+", args.base_url)), "--base-url must be an http:// or https:// URL")
    need(bool(args.model.strip()), "--model must not be empty")
    for flag in ("forget_n", "retain_n", "multihop_n"):
        v = getattr(args, flag)
        need(1 <= v <= 100000, f"--{flag.replace('_', '-')} must be between 1 and 100000 (got {v})")
    need(1 <= args.per_call <= 100, f"--per-call must be between 1 and 100 (got {args.per_call})")
    need(0 < args.dedup <= 1, f"--dedup must be a cosine threshold in (0, 1] (got {args.dedup})")
    need(1 <= args.related_k <= 50, f"--related-k must be between 1 and 50 (got {args.related_k})")
    need(0 <= args.max_retries <= 30, f"--max-retries must be between 0 and 30 (got {args.max_retries})")
    need(args.timeout > 0, f"--timeout must be positive (got {args.timeout})")
    need(0 <= args.retry_delay <= 60, f"--retry-delay must be between 0 and 60 seconds (got {args.retry_delay})")


def _entity_arg(out: Path) -> str:
    if ".." in out.parts:  # `run --entity` refuses '..' in a pack path
        return str(out.resolve())
    s = str(out)
    return s if ("/" in s or s.startswith(".")) else f"./{s}"


def cmd_generate(args) -> int:
    api_key = api_key_from_env("OPENAI_API_KEY")
    out = Path(args.out)
    fresh = not out.exists()
    try:
        return _generate(args, api_key)
    except BaseException as exc:
        try:  # leave no empty folder behind when nothing was written
            if fresh and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        except OSError:
            pass
        if isinstance(exc, SnapBenchError):
            raise SnapBenchError(redact(str(exc), [api_key])) from None
        raise


def _generate(args, api_key: str) -> int:
    _check_args(args)
    opts = _options(args)
    out = Path(args.out)
    _claim_out(out, opts.slug)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    _ensure_writable_dir(cache, "--cache")

    from snap_bench.evaluate.pack_gates import validate_pack
    from snap_bench.tasks import load_general, load_pack_dir

    general = load_general()
    _warn_general_clash(general, opts)
    client = ChatClient(args.base_url, args.model, api_key, cache, max_retries=args.max_retries,
                        timeout=args.timeout, retry_delay=args.retry_delay, seed=args.seed)
    gen = PackGenerator(opts, client, progress=not args.no_progress)
    items = gen.run()

    empty = [s for s in SETS if not items[s]]
    if empty:  # only the final near-duplicate pass can get here
        raise SnapBenchError(f"no usable {' or '.join(empty)} items left after de-duplication; nothing written")
    try:
        write_pack(out, pack_meta(opts, args.model, args.base_url, args.seed, gen.related), items)
    except OSError as exc:
        raise SnapBenchError(f"--out {out}: cannot write ({exc.strerror or exc})") from None

    problems = validate_pack(load_pack_dir(out), general, dedup=True, threshold=args.dedup)
    _report(args, out, _summary(out, opts, items, client, gen, cache, problems), problems)
    return 1 if problems else 0


def _options(args) -> Options:
    """The entity's one-line name, its distinct aliases and slug, and the pipeline's targets."""
    name = " ".join(args.entity.split())
    aliases = []
    for a in (args.aliases or "").split(","):
        a = " ".join(a.split())
        if a and a.lower() != name.lower() and a.lower() not in {x.lower() for x in aliases}:
            aliases.append(a)
    targets = {"forget": args.forget_n, "retain": args.retain_n, "multihop": args.multihop_n}
    return Options(name=name, slug=slugify(name), aliases=aliases, kind=args.kind, targets=targets,
                   per_call=args.per_call, dedup=args.dedup, related_k=args.related_k)


def _claim_out(out: Path, slug: str) -> None:
    """Make ``--out`` writable; refuse it when it already holds another entity's pack."""
    _ensure_writable_dir(out, "--out")
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8")).get("entity")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != slug:
            raise SnapBenchError(f"--out {out}: already holds another pack ({old!r}); choose an empty folder")


def _warn_general_clash(general: dict, opts: Options) -> None:
    from snap_bench.evaluate.judges.base import keyword_hit

    name = opts.name
    clash = [it.id for it in general["general"] if keyword_hit(it.question, [name, *opts.aliases])]
    if clash:
        print(f"snap-bench: warning: {len(clash)} general questions name {name!r} (e.g. {clash[0]}); "
              "`snap-bench tasks validate` will report them", file=sys.stderr)


def _summary(out: Path, opts: Options, items: dict[str, list[dict]], client: ChatClient, gen: PackGenerator,
             cache: Path, problems: list) -> dict:
    """The ``--json`` summary: counts against targets, categories, requests made and what was dropped."""
    counts = {s: len(items[s]) for s in SETS}
    categories = {s: {} for s in SETS}
    for s in SETS:
        for it in items[s]:
            categories[s][it["category"]] = categories[s].get(it["category"], 0) + 1
    return {
        "out": str(out),
        "entity": opts.slug,
        "name": opts.name,
        "kind": opts.kind,
        "counts": counts,
        "targets": opts.targets,
        "categories": categories,
        "api_calls": client.api_calls,
        "cache_hits": client.cache_hits,
        "retries": client.retries,
        "failed_rounds": gen.failed_rounds,
        "dropped": dict(sorted(gen.dropped.items())),
        "related": gen.related,
        "cache": str(cache),
        "valid": not problems,
    }


def _report(args, out: Path, summary: dict, problems: list) -> None:
    """Warnings and validator problems on stderr; the summary on stdout, as JSON or two lines."""
    counts, targets = summary["counts"], summary["targets"]
    for s in SETS:
        if counts[s] < targets[s]:
            print(f"snap-bench: warning: {s}: {counts[s]} of {targets[s]} items (the model gave too few distinct, "
                  f"valid questions; ask again with another --seed or a larger --per-call)", file=sys.stderr)
    for p in problems:
        print(f"snap-bench: {p}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print(f"wrote {out}: " + ", ".join(f"{s} {counts[s]}/{targets[s]}" for s in SETS)
              + f" · {summary['api_calls']} API calls, {summary['cache_hits']} cached, {summary['retries']} retries")
        print(f"next: snap-bench tasks validate {out}\n      snap-bench run --method snap --entity {_entity_arg(out)}")


def add_parser(subparsers, parser_class) -> None:
    g = subparsers.add_parser(
        "generate",
        help="build a task pack for any entity with an LLM behind an OpenAI-compatible API (the SNAP paper's pipeline)",
    )
    g.add_argument("--entity", required=True, metavar="NAME", help="the entity's display name, e.g. \"Wanda Maximoff\"")
    g.add_argument("--base-url", required=True, metavar="URL", help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", required=True, metavar="NAME", help="model name the server knows")
    g.add_argument("--out", required=True, metavar="DIR", help="pack folder to write")
    g.add_argument("--kind", default="fictional", choices=("fictional", "real"),
                   help="fictional (default) or real; real asks for related people/organisations for the retain set")
    g.add_argument("--aliases", default="", metavar="A,B", help="other names of the entity, comma-separated")
    g.add_argument("--forget-n", type=int, default=200, metavar="N", help="forget items to produce (default: 200)")
    g.add_argument("--retain-n", type=int, default=200, metavar="N", help="retain items to produce (default: 200)")
    g.add_argument("--multihop-n", type=int, default=40, metavar="N", help="multihop items to produce (default: 40)")
    g.add_argument("--per-call", type=int, default=20, metavar="N", help="questions asked for per request (default: 20)")
    g.add_argument("--dedup", type=float, default=0.75, metavar="COS",
                   help="near-duplicate cosine threshold under all-MiniLM-L6-v2 (default: 0.75)")
    g.add_argument("--related-k", type=int, default=8, metavar="K",
                   help="related individuals and organisations asked for with --kind real (default: 8)")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="request cache (default: $SNAP_BENCH_CACHE/generate, else ~/.cache/snap-bench/generate)")
    g.add_argument("--max-retries", type=int, default=5, metavar="N",
                   help="retries per request on 429, 5xx, timeouts and connection errors (default: 5)")
    g.add_argument("--retry-delay", type=float, default=1.0, metavar="S",
                   help="first backoff delay in seconds, doubled on each retry (default: 1.0)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for one reply (default: 60)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed sent with every request (default: 0)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    g.set_defaults(func=cmd_generate)
