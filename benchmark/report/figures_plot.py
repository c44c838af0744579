"""What every figure shares: matplotlib without a display and with stable SVG ids, the palette, saving
as PNG + SVG through the report's atomic ``write``, and the panel that says which runs it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display here; also keeps a user's interactive backend out of reports
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "snap-bench", "font.size": 9})  # stable SVG ids between runs
    return plt


def _save(fig, out: Path, stem: str, write: Callable[[Path, bytes], None]) -> list[str]:
    import io

    names = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150 if ext == "png" else None, bbox_inches="tight",
                    metadata={"Date": None} if ext == "svg" else {"Software": "snap-bench"})
        write(out / f"{stem}.{ext}", buf.getvalue())
        names.append(f"{stem}.{ext}")
    _plt().close(fig)
    return names


def _empty(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=9, color="#555", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
