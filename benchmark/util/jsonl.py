"""Reading JSON Lines input with errors that name the file and line, for the CLI's one-line messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from snap_bench.errors import SnapBenchError

MAX_LINE_BYTES = 1024 * 1024  # a judge or pack line is a question and a response; more is a broken file


def iter_jsonl(path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES,
               error: type[SnapBenchError] = SnapBenchError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; raises ``error`` (a SnapBenchError) naming the file
    and line on anything else. Task packs pass their own limit and PackError."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{path}: no such file")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 (byte {exc.start})") from None
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{ln}"
        if len(line.encode("utf-8")) > max_line_bytes:
            raise error(f"{where}: line longer than {max_line_bytes} bytes")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield ln, obj
