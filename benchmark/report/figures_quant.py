"""The quantization figure (``fig_quant``): UA of the model as trained (x) against UA of its Q4_1 copy (y), one
point per method per entity (one panel per entity), error bars the sample std over seeds; the untrained model
(the control) as a grey star. The points are ``table_quant``'s Q4_1 rows at their main size.

On the diagonal the refusals survive the 4-bit rounding; below it quantization undoes part of the
unlearning (Zhang et al., ICLR 2025, arXiv 2410.16454). Drawn only when some run stored the Q4_1 probe
(``--set quant_probe=q4_1``); the report says so when none did.
"""

from __future__ import annotations

from pathlib import Path

from snap_bench.report.data import Run, mean, std
from snap_bench.report.figures_plot import _plt, _save
from snap_bench.report.figures_refusal import KIND_STYLE
from snap_bench.report.tables_quant import quant_rows, quant_value
from snap_bench.report.tables_refusal import row_kind

SCHEME = "q4_1"


def quant_points(runs: list[Run], scheme: str = SCHEME):
    """entity -> [(row, (UA full, UA quantized) means, their stds)], size variants left out; std 0 below two seeds."""
    out: dict[str, list] = {}
    models = {r.model for r in runs}
    for row in quant_rows(runs, scheme):
        if " [" in row.label:
            continue
        full = list(row.values(lambda r: quant_value(r, row.entity, scheme, "UA", "full")).values())
        q = list(row.values(lambda r: quant_value(r, row.entity, scheme, "UA", "quantized")).values())
        if not full or not q:
            continue
        key = row.entity if len(models) < 2 else f"{row.model} · {row.entity}"
        out.setdefault(key, []).append((row, (mean(full), mean(q)), (std(full) or 0.0, std(q) or 0.0)))
    return out


def fig_quant(runs: list[Run], out: Path, write) -> list[str]:
    """Writes fig_quant.png/.svg when some run has the Q4_1 probe; [] (nothing written) otherwise."""
    data = quant_points(runs)
    if not data:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(data), figsize=(5.0 * len(data), 4.6), squeeze=False)
    for ax, (entity, pts) in zip(axes[0], data.items()):
        ax.plot([0, 100], [0, 100], color="#bbbbbb", lw=0.8, ls="--", zorder=0)
        for i, (row, (x, y), (sx, sy)) in enumerate(pts):
            color, marker = KIND_STYLE.get(row_kind(row), KIND_STYLE["?"])
            ax.errorbar([x], [y], xerr=[sx], yerr=[sy], fmt=marker, color=color, ecolor=color, elinewidth=0.8,
                        capsize=2, markersize=9 if marker == "*" else 6)
            ax.annotate(f"{row.label} (n={len(row.seeds)})", (x, y), textcoords="offset points",
                        xytext=(5, (3, -9)[i % 2]), fontsize=6)
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("UA (%) as trained (fp32), quantization probe sample")
        ax.set_ylabel("UA (%) after Q4_1")
        ax.set_title(entity)
        ax.grid(alpha=0.3)
    fig.suptitle("What survives quantization: UA before and after Q4_1, one point per method (mean ± std over seeds)",
                 y=1.03, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "fig_quant", write)
