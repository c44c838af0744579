"""One table, four renderings: Markdown, LaTeX (booktabs), CSV and HTML.

Best values are bold and second best underlined, as in the paper, per column and per block of
rows (one entity's rows compete with each other, not with another entity's); lower is better in
the columns a table marks so (leak, degenerate, ROUGE-L on the forget set). The untrained
model's row is a reference and does not compete. CSV cells carry full-precision numbers, not the rounded text.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cell:
    text: str
    value: float | None = None  # what ranking compares; None never ranks


MISSING = Cell("—")


@dataclass
class Table:
    key: str                       # file stem: "table1"
    title: str
    header: list[str]
    rows: list[list[Cell]]
    rank_cols: list[int] = field(default_factory=list)
    lower_better: set[int] = field(default_factory=set)     # ranked columns where the smallest value wins
    rank_groups: dict[int, Any] = field(default_factory=dict)  # row -> block; rows rank within their block
    reference_rows: set[int] = field(default_factory=set)  # rows left out of the ranking
    notes: list[str] = field(default_factory=list)
    csv_header: list[str] = field(default_factory=list)
    csv_rows: list[list[Any]] = field(default_factory=list)

    def marks(self) -> dict[tuple[int, int], str]:
        """(row, col) -> "best" | "second", per ranked column and row block, on the values as displayed."""
        out: dict[tuple[int, int], str] = {}
        blocks: dict[Any, list[int]] = {}
        for i in range(len(self.rows)):
            if i not in self.reference_rows:
                blocks.setdefault(self.rank_groups.get(i), []).append(i)
        for c in self.rank_cols:
            for members in blocks.values():
                shown = {i: round(self.rows[i][c].value, 1) for i in members if self.rows[i][c].value is not None}
                if len(shown) < 2:
                    continue
                levels = sorted(set(shown.values()), reverse=c not in self.lower_better)
                for i, v in shown.items():
                    if v == levels[0]:
                        out[(i, c)] = "best"
                    elif len(levels) > 1 and v == levels[1]:
                        out[(i, c)] = "second"
        return out


def to_markdown(t: Table) -> str:
    marks = t.marks()

    def cell(i: int, j: int, c: Cell) -> str:
        m = marks.get((i, j))
        text = c.text.replace("|", "\\|")
        return f"**{text}**" if m == "best" else f"<u>{text}</u>" if m == "second" else text

    lines = [f"### {t.title}", "", "| " + " | ".join(t.header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(t.header) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(i, j, c) for j, c in enumerate(row)) + " |" for i, row in enumerate(t.rows)]
    if t.notes:
        lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "±": r"$\pm$", "♣": r"$^{\clubsuit}$", "−": r"$-$",
        "—": "---", "Δ": r"$\Delta$", "→": r"$\rightarrow$", "·": r"$\cdot$", "≥": r"$\geq$", "≤": r"$\leq$",
        "↓": r"$\downarrow$", "λ": r"$\lambda$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    marks = t.marks()

    def cell(i: int, j: int, c: Cell) -> str:
        m, text = marks.get((i, j)), tex_escape(c.text)
        return rf"\textbf{{{text}}}" if m == "best" else rf"\underline{{{text}}}" if m == "second" else text

    body = [" & ".join(cell(i, j, c) for j, c in enumerate(row)) + r" \\" for i, row in enumerate(t.rows)]
    if t.reference_rows and max(t.reference_rows) < len(body) - 1:
        body[max(t.reference_rows)] += r" \midrule"
    notes = "".join(f"% {n}\n" for n in t.notes)
    return (
        f"% {t.title}\n{notes}"
        "% needs \\usepackage{booktabs}\n"
        "\\begin{table}[t]\n\\centering\n\\small\n"
        f"\\caption{{{tex_escape(t.title)}}}\n\\label{{tab:{t.key}}}\n"
        f"\\begin{{tabular}}{{l{'r' * (len(t.header) - 1)}}}\n\\toprule\n"
        + " & ".join(tex_escape(h) for h in t.header) + r" \\" + "\n\\midrule\n"
        + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n"
    )


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.csv_header or t.header)
    for row in (t.csv_rows if t.csv_header else [[c.text for c in r] for r in t.rows]):
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_html(t: Table, raw: tuple[str, ...] = ("csv", "md", "tex")) -> str:
    """``raw``: the files written beside the page for this table, linked under it."""
    marks = t.marks()

    def cell(i: int, j: int, c: Cell) -> str:
        m, text = marks.get((i, j)), html.escape(c.text)
        inner = f"<strong>{text}</strong>" if m == "best" else f"<u>{text}</u>" if m == "second" else text
        return f"<td>{inner}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    rows = "".join(
        ('<tr class="ref">' if i in t.reference_rows else "<tr>") + "".join(cell(i, j, c) for j, c in enumerate(r)) + "</tr>"
        for i, r in enumerate(t.rows))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in t.notes)
    return (f'<section id="{t.key}"><h2>{html.escape(t.title)}</h2>'
            f'<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
            + (f"<ul class=\"notes\">{notes}</ul>" if notes else "")
            + '<p class="raw">Raw: ' + " · ".join(f'<a href="{t.key}.{ext}">{t.key}.{ext}</a>' for ext in raw)
            + "</p></section>")
