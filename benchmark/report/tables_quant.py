"""``table_quant``: what survives quantization. Per method, entity and GGUF scheme (``--set quant_probe=...``,
``evaluate/quant_probe.py``): UA, leak and RA_correct at full precision and after the scheme, and the share of
the unlearning effect on UA and on leak that the scheme undoes (``recovered``, measured against the untrained
model quantized the same way). Only runs that stored the probe enter; none: no table (the report says so).

Rows are ``table_refusal``'s (methods at their defaults on single entities, size variants apart), one block per
scheme and entity; a cell is the mean over the row's seeds ± the sample std, n the seeds. The probe runs on its
own seeded sample (``probe_limit`` forget and retain items per entity), so its full-precision columns are that
sample's, not Table 1's: the sizes are in the columns "forget n", "retain n" and "RA_correct n".
"""

from __future__ import annotations

from snap_bench.models.quant_schemes import SCHEMES
from snap_bench.report.data import Run
from snap_bench.report.render import Table
from snap_bench.report.tables_refusal import Col, _build, _dig, refusal_rows
from snap_bench.report.tables_rows import Row

QUANT_METRICS = (("UA", "UA", "max"), ("leak", "leak↓", "min"), ("RA_correct", "RA correct", "max"))


def quant_value(run: Run, entity: str, scheme: str, *path: str) -> float | None:
    """``analyses["quant"][entity][scheme][path...]``, None when the run has none."""
    return _dig(run.analyses.get("quant"), entity, scheme, *path)


def schemes_in(runs: list[Run]) -> list[str]:
    """The schemes some run stored, in :data:`SCHEMES` order."""
    have = {s for r in runs for per in (r.analyses.get("quant") or {}).values() if isinstance(per, dict) for s in per}
    return [s for s in SCHEMES if s in have]


def _cols(scheme: str) -> tuple[Col, ...]:
    q = lambda *path: (lambda r, e: quant_value(r, e, scheme, *path))  # noqa: E731
    cols: list[Col] = []
    for name, header, rank in QUANT_METRICS:
        cols += [Col(f"{header} full", f"{name}_full", q(name, "full"), 1, rank),
                 Col(f"{header} {scheme}", f"{name}_quantized", q(name, "quantized"), 1, rank)]
    cols += [Col("recovered UA", "recovered_UA", q("recovered", "UA"), 2, "min"),
             Col("recovered leak", "recovered_leak", q("recovered", "leak"), 2, "min"),
             Col("forget n", "n_forget", q("n", "forget"), count=True),
             Col("retain n", "n_retain", q("n", "retain"), count=True),
             Col("RA_correct n", "n_RA_correct", q("n", "RA_correct"), count=True)]
    # csv only: the control (the untrained model) at full precision and quantized, which `recovered` subtracts
    cols += [Col("", f"control_{name}_{side}", q("control", name, side), shown=False)
             for name, _, _ in QUANT_METRICS for side in ("full", "quantized")]
    return tuple(cols)


def quant_rows(runs: list[Run], scheme: str) -> list[Row]:
    """``table_refusal``'s rows, each keeping only its runs that stored ``scheme``; rows left empty are dropped."""
    rows = [Row(row.model, row.label, row.entity, row.entities,
                [r for r in row.runs if quant_value(r, row.entity, scheme, "UA", "full") is not None
                 or quant_value(r, row.entity, scheme, "RA", "full") is not None])
            for row in refusal_rows(runs)]
    return [row for row in rows if row.runs]


def table_quant(runs: list[Run]) -> Table | None:
    """One block per scheme; None when no run stored the quantization probe."""
    schemes = schemes_in(runs)
    if not schemes:
        return None
    t: Table | None = None
    for scheme in schemes:
        part = _build("table_quant", "What survives quantization: the GGUF formats people deploy", _cols(scheme),
                      quant_rows(runs, scheme))
        part.header[2] = "Entity · scheme"
        for row in part.rows:
            row[2].text = f"{row[2].text} · {scheme}"
        part.csv_header = ["scheme"] + part.csv_header
        part.csv_rows = [[scheme] + r for r in part.csv_rows]
        t = part if t is None else _append(t, part, scheme)
    assert t is not None
    t.header = [h.replace(f" {schemes[0]}", " quantized") for h in t.header]
    t.notes += [
        "per method, entity and scheme: the quantization probe (`--set quant_probe=...`, evaluate/quant_probe.py) "
        "on its own seeded sample of held-out forget and retain items (sizes in the n columns); mean ± sample std "
        "over seeds (n = seeds); best in bold within a block",
        "full: the model as trained (fp32); quantized: a copy whose weight matrices went through the scheme "
        "(gguf.quants; shipped = each tensor back to its type in the default model's GGUF file, Q4_1/Q8_0/F32)",
        "recovered: the share of the unlearning effect the scheme undoes, 1 - effect(quantized) / effect(full), where "
        "effect = the model's UA minus the untrained model's UA at the same precision (for leak: untrained minus "
        "model); 0 = all of it survives, 1 = quantization undoes it; — where the full-precision effect is 0 "
        "(Zhang et al., ICLR 2025, arXiv 2410.16454)",
    ]
    return t


def _append(t: Table, part: Table, scheme: str) -> Table:
    """``part``'s rows under ``t``'s, each row keeping its own ranking block (scheme, model, entity)."""
    base = len(t.rows)
    t.rows += part.rows
    t.csv_rows += part.csv_rows
    t.reference_rows |= {base + i for i in part.reference_rows}
    t.rank_groups.update({base + i: (scheme, g) for i, g in part.rank_groups.items()})
    return t
