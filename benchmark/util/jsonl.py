"""Reading JSON Lines input with errors that name the file and line, for the CLI's one-line messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from snap_bench.errors import SnapBenchError

MAX_LINE_BYTES = 1024 * 1024  # a judge or pack line is a question and a response; more is a broken file


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; raises SnapBenchError on anything else."""
    p = Path(path)
    if not p.is_file():
        raise SnapBenchError(f"{path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SnapBenchError(f"{path}: not UTF-8 (byte {exc.start})") from None
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise SnapBenchError(f"{path}:{ln}: line longer than {MAX_LINE_BYTES} characters")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SnapBenchError(f"{path}:{ln}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise SnapBenchError(f"{path}:{ln}: expected a JSON object")
        yield ln, obj
