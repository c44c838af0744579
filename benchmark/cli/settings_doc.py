"""The ``--set`` reference, generated from the config dataclasses so that it cannot drift from the code.

Every config field carries its help text as the docstring under it (trl's ``DPOConfig`` style; a test checks
that every field has one). This module reads those docstrings and renders them, with each field's value under
the ``cpu`` and ``paper`` presets, as ``snap-bench list settings`` rows and as the README's table, which sits
between two marker lines and is rewritten by ``python -m snap_bench.cli.settings_doc README.md``; a test fails
when the README's copy differs from what the code generates.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

BEGIN = "<!-- settings table: generated from the config docstrings by `python -m snap_bench.cli.settings_doc README.md`; edit those, not this -->"
END = "<!-- end of settings table -->"


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for a dataclass and its bases (a subclass's docstring wins), whitespace folded."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                    docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _fmt(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_rows(method: str = "snap") -> list[dict[str, str]]:
    """One row per field of ``method``'s config: name, value under ``cpu`` and ``paper``, help text."""
    from snap_bench.config import build_config
    from snap_bench.registry import METHODS

    cls = METHODS.get(method).config_cls
    cpu, paper = build_config(cls, "cpu"), build_config(cls, "paper")
    docs = field_docs(cls)
    return [{"name": f.name, "cpu": _fmt(getattr(cpu, f.name)), "paper": _fmt(getattr(paper, f.name)),
             "description": docs.get(f.name, "")} for f in dataclasses.fields(cls)]


def _cell(text: str) -> str:
    # ``x`` (reST literals in docstrings) -> `x` (markdown); pipes would split the cell
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def settings_table(method: str = "snap") -> str:
    """The markdown table the README shows, between the marker lines."""
    lines = [BEGIN, "", "| field | `cpu` (default) | `paper` | meaning |", "|---|---|---|---|"]
    for r in settings_rows(method):
        lines.append(f"| `{r['name']}` | {_cell(r['cpu'])} | {_cell(r['paper'])} | {_cell(r['description'])} |")
    return "\n".join(lines + ["", END])


def readme_block(text: str) -> str:
    """The generated block as it stands in ``text`` (markers included)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("README has no settings-table markers")
    return text[start:end + len(END)]


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text(encoding="utf-8")
    new = text.replace(readme_block(text), settings_table())
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: settings table regenerated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
