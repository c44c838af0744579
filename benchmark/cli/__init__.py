"""The ``snap-bench`` command line: :func:`main`, the console script's entry point (and ``python -m snap_bench``).

Conventions: ``--json`` prints exactly one JSON object on stdout and nothing else there
(progress and logs go to stderr); bad input exits with code 2 and one line on stderr.

The parser is built in :mod:`~snap_bench.cli.parser`; the CLI's own commands (``run``, ``list``, ``tasks``,
``judge``) live in :mod:`~snap_bench.cli.commands`, ``ask`` and ``chat`` in :mod:`~snap_bench.cli.interact`,
and what they print in :mod:`~snap_bench.cli.output`. Nothing imports this package but the entry point.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from snap_bench.cli.output import nlp_rows, probe_rows, seed_summary, summary_rows, table1_rows
from snap_bench.cli.parser import build_parser
from snap_bench.errors import SnapBenchError

__all__ = ["build_parser", "main", "nlp_rows", "probe_rows", "seed_summary", "summary_rows", "table1_rows"]


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from snap_bench.util import heap

    parser = build_parser()
    try:
        heap.apply_policy()  # before the model loads (SNAP_BENCH_MALLOC; util/heap.py)
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
