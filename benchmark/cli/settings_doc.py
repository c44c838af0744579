"""The ``--set`` reference, generated from the config dataclasses so that it cannot drift from the code.

Every config field carries its help text as the docstring under it (trl's ``DPOConfig`` style; a test checks
that every field has one). This module reads those docstrings and renders them, with each field's value under
the ``cpu`` and ``paper`` presets, as ``snap-bench list settings`` rows and as the table of
``docs/configuration.md``, which sits between two marker lines and is rewritten by
``python -m snap_bench.cli.settings_doc docs/configuration.md`` (``--check``: exit 1 instead of writing when
it differs). ``tests/test_docs.py`` fails when the page's copy differs from what the code generates.

The marker mechanism (:func:`doc_block`, :func:`rewrite_block`) is shared with :mod:`~snap_bench.cli.docs_gen`,
which generates the CLI reference ``docs/cli.md`` the same way.
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

DOC = "docs/configuration.md"
BEGIN = ("<!-- settings table: generated from the config docstrings by "
         f"`python -m snap_bench.cli.settings_doc {DOC}`; edit those, not this -->")
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
    """The markdown table ``docs/configuration.md`` shows, between the marker lines."""
    lines = [BEGIN, "", "| field | `cpu` (default) | `paper` | meaning |", "|---|---|---|---|"]
    for r in settings_rows(method):
        lines.append(f"| `{r['name']}` | {_cell(r['cpu'])} | {_cell(r['paper'])} | {_cell(r['description'])} |")
    return "\n".join(lines + ["", END])


def doc_block(text: str, begin: str = BEGIN, end: str = END) -> str:
    """The generated block as it stands in ``text`` (markers included)."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no generated-block markers ({begin[:40]}...)")
    return text[start:stop + len(end)]


def rewrite_block(argv: list[str], default: str, block: str, begin: str, end: str) -> int:
    """The ``main`` of a generator: put ``block`` between the markers of the file ``argv`` names (else
    ``default``). With ``--check`` nothing is written: exit 1 when the file's block differs."""
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = Path(paths[0] if paths else default)
    text = path.read_text(encoding="utf-8")
    new = text.replace(doc_block(text, begin, end), block)
    if new == text:
        return 0
    if check:
        print(f"{path}: generated block is out of date; run the command in its first marker line", file=sys.stderr)
        return 1
    path.write_text(new, encoding="utf-8")
    print(f"{path}: generated block rewritten", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    return rewrite_block(argv, DOC, settings_table(), BEGIN, END)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
