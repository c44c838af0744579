"""The CLI reference, generated from the ``snap-bench`` argument parser so that it cannot drift from the code.

It walks :func:`~snap_bench.cli.build_parser` (every command and sub-command, in the order the parser adds
them) and renders each as a heading, its one-line help, a usage line and a table of its arguments (name and
value, default, help). The result sits in ``docs/cli.md`` between two marker lines and is rewritten by
``python -m snap_bench.cli.docs_gen docs/cli.md`` (``--check``: exit 1 instead of writing when it differs);
``tests/test_docs.py`` fails when the page's copy differs from what the parser generates.

The usage line is built here, not by argparse's formatter: that one wraps at the terminal's width and its
layout changes between Python versions, which would make the page differ from machine to machine.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator

from snap_bench.cli.settings_doc import rewrite_block

DOC = "docs/cli.md"
BEGIN = ("<!-- cli reference: generated from the argument parser by "
         f"`python -m snap_bench.cli.docs_gen {DOC}`; edit the parser's help texts, not this -->")
END = "<!-- end of cli reference -->"
USAGE_WIDTH = 100


def commands(parser: argparse.ArgumentParser, helps: str = "") -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """``(parser, one-line help)`` for ``parser`` and every sub-command under it, depth first."""
    yield parser, helps or parser.description or ""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            help_of = {c.dest: c.help or "" for c in action._choices_actions}
            for name, sub in action.choices.items():
                yield from commands(sub, help_of.get(name, ""))


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user types: neither ``--help`` nor a sub-command selector."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _value(action: argparse.Action) -> str:
    """How the argument is written: ``--seed SEED``, ``{a,b}``, ``--json`` (a flag takes no value)."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.metavar or (action.dest.upper() if action.option_strings else action.dest)


def _synopsis(action: argparse.Action) -> str:
    name = action.option_strings[-1] if action.option_strings else ""
    value = _value(action)
    if action.option_strings and action.nargs in ("+", "*"):
        value += " ..."
    text = " ".join(t for t in (name, value) if t)
    return text if action.required or (not action.option_strings and action.nargs is None) else f"[{text}]"


def usage(parser: argparse.ArgumentParser) -> str:
    """``prog`` then each argument, wrapped at :data:`USAGE_WIDTH` with continuation lines indented."""
    lines, line = [], parser.prog
    for part in [_synopsis(a) for a in _arguments(parser)] + (["COMMAND ..."] if _has_subcommands(parser) else []):
        if len(line) + 1 + len(part) > USAGE_WIDTH and line.strip():
            lines.append(line)
            line = " " * (len(parser.prog) + 1) + part
        else:
            line += " " + part
    return "\n".join(lines + [line])


def _has_subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d in (None, "", []) or d is argparse.SUPPRESS:
        return ""
    return f"`{d}`"


def _cell(text: str) -> str:
    # pipes would split the cell; < and > would be read as HTML tags
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def command_section(parser: argparse.ArgumentParser, helps: str) -> list[str]:
    """One command's heading, help, usage and argument table."""
    lines = [f"### `{parser.prog}`", ""]
    if helps:
        lines += [_cell(helps[0].upper() + helps[1:].rstrip(".")) + ".", ""]
    lines += ["```", usage(parser), "```", ""]
    args = _arguments(parser)
    if args:
        lines += ["| argument | default | meaning |", "|---|---|---|"]
        for a in args:
            written = f"{', '.join(a.option_strings)} {_value(a)}".strip()
            help_text = a.help % dict(vars(a), prog=parser.prog) if a.help else ""  # argparse's %(default)s etc.
            required = "required" if a.required else _default(a)
            lines.append(f"| `{written}` | {required} | {_cell(help_text)} |")
        lines.append("")
    return lines


def cli_reference() -> str:
    """The markdown block ``docs/cli.md`` shows, between the marker lines."""
    from snap_bench.cli import build_parser

    lines = [BEGIN, ""]
    for parser, helps in commands(build_parser()):
        lines += command_section(parser, helps)
    return "\n".join(lines + [END])


def main(argv: list[str]) -> int:
    return rewrite_block(argv, DOC, cli_reference(), BEGIN, END)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
