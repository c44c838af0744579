"""The refusal-vs-removal figure (``fig_refusal``): forget leak (x) against retain ability (RA, y), one point
per method per entity (one panel per entity), error bars the sample std over seeds; refusal-style methods
as circles, removal-style as squares, the untrained model as a grey star. Its points are the rows of
``table_refusal`` at their main size (size variants, "[eval_limit=…]", are left to the table).

Up and to the left is better: the model keeps its other answers (RA) and reveals none of the forgotten
ones (leak). Read a point with the table's probes and MIA columns: a refusal can score low leak while the
knowledge stays in the weights.
"""

from __future__ import annotations

from pathlib import Path

from snap_bench.report.data import UNTRAINED, Run, mean, std
from snap_bench.report.figures_plot import COLORS, _empty, _plt, _save
from snap_bench.report.tables_refusal import row_kind, refusal_rows
from snap_bench.report.tables_rows import Row

KIND_STYLE = {"refusal": (COLORS[0], "o"), "removal": (COLORS[3], "s"), "reference": ("#777777", "*"),
              "?": (COLORS[7], "D")}


def refusal_points(runs: list[Run]) -> dict[str, list[tuple[Row, tuple[float, float], tuple[float, float]]]]:
    """entity -> [(row, (leak mean, RA mean), (leak std, RA std))]: the table's rows with both values, size
    variants left out; a std is 0 below two seeds (drawn as no bar)."""
    out: dict[str, list[tuple[Row, tuple[float, float], tuple[float, float]]]] = {}
    models = {r.model for r in runs}
    for row in refusal_rows(runs):
        if not row.runs or " [" in row.label:
            continue
        leak, ra = list(row.values("leak").values()), list(row.values("RA").values())
        if not leak or not ra:
            continue
        key = row.entity if len(models) < 2 else f"{row.model} · {row.entity}"
        out.setdefault(key, []).append((row, (mean(leak), mean(ra)), (std(leak) or 0.0, std(ra) or 0.0)))
    return out


def _panel(ax, entity: str, pts) -> None:
    at: dict[tuple[float, float], list[str]] = {}  # points on the same spot share one annotation
    for row, (x, y), (sx, sy) in pts:
        color, marker = KIND_STYLE.get(row_kind(row), KIND_STYLE["?"])
        ax.errorbar([x], [y], xerr=[sx], yerr=[sy], fmt=marker, color=color, ecolor=color, elinewidth=0.8,
                    capsize=2, markersize=9 if marker == "*" else 6)
        at.setdefault((round(x, 1), round(y, 1)), []).append(f"{row.label} (n={len(row.seeds)})")
    for i, ((x, y), texts) in enumerate(sorted(at.items())):
        ax.annotate("\n".join(texts), (x, y), textcoords="offset points", xytext=((5, -5)[i % 2], (3, -3)[i % 2]),
                    ha=("left", "right")[i % 2], va=("bottom", "top")[i % 2], fontsize=6)
    right = max([x + sx for _, (x, _), (sx, _) in pts] + [10.0])
    ax.set_xlim(-0.05 * right, 1.15 * right)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("forget leak (%): held-out forget responses revealing an answer (lower is better)")
    ax.set_ylabel("RA (%): retain questions still answered (higher is better)")
    ax.set_title(entity)
    ax.grid(alpha=0.3)


def fig_refusal(runs: list[Run], out: Path, write) -> list[str]:
    plt = _plt()
    data = refusal_points(runs)
    keys = list(data) or ["—"]  # the table's entity order: the most-run entity first
    fig, axes = plt.subplots(1, len(keys), figsize=(5.6 * len(keys), 4.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        if key not in data:
            _empty(ax, "no finished single-entity runs of a method at its defaults\n"
                       "(snap-bench sweep --suite methods-cpu makes them)")
            continue
        _panel(ax, key, data[key])
    for kind, (color, marker) in KIND_STYLE.items():
        if kind != "?" or any(row_kind(p[0]) == "?" for pts in data.values() for p in pts):
            label = {"reference": UNTRAINED.lower(), "?": "unclassified"}.get(kind, f"{kind}-style")
            axes[0][0].plot([], [], marker, color=color, label=label)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Refusal vs removal: forget leak against retain ability, one point per method "
                 "(mean ± std over seeds)", y=1.03, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "fig_refusal", write)
