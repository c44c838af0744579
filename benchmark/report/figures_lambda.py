"""The λ figure (``fig_lambda``): UA, RA, cross-RA, TA against λ (log scale), one panel per regularizer,
with the regularizer's share of the loss on a second axis; error bars are std over seeds. The trade-off
figure (``fig_tradeoff``): UA against RA and against cross-RA, one annotated point per (regularizer, λ)
and per retain-share setting (retain_data, retain_ratio, general_ratio).

Each draws one sizing budget, and averages every point over the same entities, so its points compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from snap_bench.report.data import METRIC_HEADERS, Run, budget_diff, fmt_lambda, mean, seed_entity_means, std
from snap_bench.report.figures_plot import COLORS, _empty, _plt, _save


LAMBDA_FIG_METRICS = ("UA", "RA", "cross_RA", "TA")


def _common_entities(groups: dict[Any, list[Run]]) -> list[str]:
    """The entities every group ran, so each point averages the same entities; when none is shared, the
    entity the most groups ran."""
    sets = [{r.entities[0] for r in rs} for rs in groups.values() if rs]
    if not sets:
        return []
    common = set.intersection(*sets)
    if common:
        return sorted(common)
    counts: dict[str, int] = {}
    for s in sets:
        for e in s:
            counts[e] = counts.get(e, 0) + 1
    return [min(counts, key=lambda e: (-counts[e], e))]


def _main_budget(runs: list[Run], point: Callable[[Run], Any]) -> str:
    """The sizing budget behind the most distinct points (then the most runs): a figure draws one budget so
    that its points are scored on the same samples; the λ table lists the others."""
    points: dict[str, set[Any]] = {}
    counts: dict[str, int] = {}
    for r in runs:
        points.setdefault(r.budget, set()).add(point(r))
        counts[r.budget] = counts.get(r.budget, 0) + 1
    return max(sorted(points), key=lambda b: (len(points[b]), counts[b]))


def _lambda_points(runs: list[Run]) -> dict[tuple[str, str], tuple[list[str], list[tuple[float, dict[str, tuple[
        float | None, float]]]], str]]:
    """(model, regularizer) -> (entities, [(λ, metric -> (mean, std over seeds))], size note), from the λ
    table's runs.

    A panel draws one entity (of those every λ of the panel ran, the one with the most runs; entities are never
    averaged) and one sizing budget (the one with the most λ values; its size note names it when the runs have
    several). Each point is the mean over seeds and their std, with ``n`` the seeds behind it."""
    from snap_bench.report.tables_lambda import lambda_rows

    by_key: dict[tuple[str, str, float, str], list[Run]] = {}
    for key, row in lambda_rows(runs):
        if row.entity is not None:
            by_key.setdefault(key, []).extend(row.runs)
    out: dict[tuple[str, str], Any] = {}
    for model, reg in sorted({k[:2] for k in by_key}):
        mine = [r for k, rs in by_key.items() if k[:2] == (model, reg) for r in rs]
        budget = _main_budget(mine, lambda r: r.lam)
        note = budget_diff(mine).get(budget, "")
        panel = {k[:3]: rs for k, rs in by_key.items() if k[:2] == (model, reg) and k[3] == budget}
        common = _common_entities(panel)
        # One entity a panel, never a mean over entities (issue 26): the one with the most runs.
        ents = sorted(common, key=lambda e: (-sum(r.entities[0] == e for rs in panel.values() for r in rs), e))[:1]
        pts = []
        for key in sorted(panel, key=lambda k: k[2]):
            rs = [r for r in panel[key] if r.entities[0] in ents]
            vals = {}
            for m in LAMBDA_FIG_METRICS + ("reg_share",):
                v = list(seed_entity_means(rs, ents, (lambda r, e: r.reg_share) if m == "reg_share" else m).values())
                vals[m] = (mean(v), std(v) or 0.0)
            vals["n"] = (len({r.seed for r in rs}), 0.0)
            pts.append((key[2], vals))
        out[(model, reg)] = (ents, pts, note)
    return out


def fig_lambda(runs: list[Run], out: Path, write) -> list[str]:
    plt = _plt()
    data = _lambda_points(runs)
    panels = sorted(data) or [("—", "—")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels):
        ents, pts, note = data.get(key, ([], [], ""))
        if not pts:
            _empty(ax, "no SNAP / Euclidean runs that vary only λ\n(run snap with --set lambda_reg=1, 10, ...)")
            continue
        lams = [lam for lam, _ in pts]
        for i, m in enumerate(LAMBDA_FIG_METRICS):
            ys = [v[m][0] for _, v in pts]
            if all(y is None for y in ys):
                continue
            ax.errorbar(lams, [float("nan") if y is None else y for y in ys], yerr=[v[m][1] for _, v in pts],
                        marker="o", capsize=3, color=COLORS[i], label=METRIC_HEADERS.get(m, m))
        twin = ax.twinx()
        shares = [v["reg_share"][0] for _, v in pts]
        twin.plot(lams, [float("nan") if y is None else y for y in shares], color="#555", linestyle="--", marker="s",
                  markersize=4)
        twin.set_ylabel("reg share (λ·penalty / total loss)", color="#555", fontsize=8)
        # A share is a fraction of the loss: its axis starts at 0, so 0.1328 vs 0.1330 does not look like a swing.
        twin.set_ylim(0, max([0.05] + [y * 1.1 for y in shares if y is not None]))
        twin.tick_params(labelsize=7, colors="#555")
        ax.plot([], [], color="#555", linestyle="--", marker="s", markersize=4, label="reg share (right axis)")
        positive = [x for x in lams if x > 0]
        if positive and len(positive) == len(lams):
            ax.set_xscale("log")
        elif positive:  # λ = 0 present: linear near 0, logarithmic beyond the smallest positive λ
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xticks(lams, [fmt_lambda(x) for x in lams], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(-5, 105)
        ax.set_xlabel("λ")
        ax.set_ylabel("%")
        model, reg = key
        ns = sorted({v["n"][0] for _, v in pts})
        seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
        ax.set_title(f"{reg} · {model} · {', '.join(ents)} · n = {seeds} seed{'s' if ns[-1] > 1 else ''} per λ"
                     + (f" · {note}" if note else ""), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("UA, RA, cross-RA and TA against λ (mean over seeds; error bars the std over seeds where n ≥ 2)",
                 y=1.03)
    fig.tight_layout()
    return _save(fig, out, "fig_lambda", write)


def _tradeoff_points(runs: list[Run]) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(model, label, metric -> mean and ``<metric>_ci`` -> 95 % interval or None, seeds, entity) per (regularizer,
    λ) and retain-share variant of SNAP / Euclidean: the mean over seeds on ONE entity per model (of those all its
    points ran, the one with the most runs; entities are never averaged), at one sizing budget."""
    from snap_bench.report.items import cell_interval, item_values

    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        if r.mode == "single" and r.sweep in ("lambda", "retain"):
            reg = r.regularizer if r.regularizer != "swd" else ""
            key = r.label if r.sweep == "retain" else f"{reg or 'swd'} λ={fmt_lambda(r.lam)}"
            groups.setdefault((r.model, key), []).append(r)
    out = []
    for model in sorted({m for m, _ in groups}):
        # One sizing budget per model (the one with the most points): points scored on different samples of
        # the held-out sets are not drawn side by side.
        flat = [(key, r) for (m, key), rs in groups.items() if m == model for r in rs]
        budget = _main_budget([r for _, r in flat], lambda r: next(k for k, x in flat if x is r))
        mine: dict[str, list[Run]] = {}
        for key, r in flat:
            if r.budget == budget:
                mine.setdefault(key, []).append(r)
        common = _common_entities(mine)
        if not common:  # no entity ran every point: nothing comparable to draw
            continue
        entity = sorted(common, key=lambda e: (-sum(r.entities[0] == e for rs in mine.values() for r in rs), e))[0]
        for key, rs in sorted(mine.items()):
            rs = [r for r in rs if r.entities[0] == entity]
            seeds = sorted({r.seed for r in rs})
            vals: dict[str, Any] = {}
            for m in ("UA", "RA", "cross_RA"):
                vals[m] = mean(seed_entity_means(rs, [entity], m).values())
                per_seed = [[v for r in rs if r.seed == sd and (v := item_values(r.items, entity, m))] for sd in seeds]
                ok = per_seed and all(per_seed)
                vals[f"{m}_ci"] = cell_interval(per_seed, f"tradeoff|{model}|{key}|{entity}|{m}") if ok else None
            out.append((model, key, vals, len(seeds), entity))
    return out


_OFFSETS = ((4, 3), (4, -10), (-6, 3), (-6, -10), (4, 12), (-6, 12), (4, -19), (-6, -19))  # points; "-": text ends there


def _place_labels(ax, labels: list[tuple[float, float, str]]) -> None:
    """Annotate each (x, y, text) at the first offset whose text box overlaps no box placed before (boxes
    estimated in display pixels from the font size), so no two labels overlap; the last offset when all do."""
    fig = ax.figure
    ax.figure.canvas.draw()  # the transform needs the final axes size
    px = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text in sorted(labels, key=lambda t: (t[0], t[1])):
        X, Y = ax.transData.transform((x, y))
        w, h = (5.0 * len(text) + 5) * px, 10 * px  # 7-pt digits and commas, with a margin
        for dx, dy in _OFFSETS:
            left = X + dx * px - (w if dx < 0 else 0)
            box = (left, Y + dy * px, left + w, Y + dy * px + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                    ha="right" if dx < 0 else "left", va="bottom")


def fig_tradeoff(runs: list[Run], out: Path, write) -> list[str]:
    """UA against RA and against cross-RA, one numbered point per setting with its 95 % intervals as error bars;
    the numbers are keyed beside each panel, so no two labels overlap."""
    plt = _plt()
    pts = _tradeoff_points(runs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), squeeze=False)
    models = sorted({p[0] for p in pts})
    pending = []  # (axes, labels): placed once the layout is final, since placing measures the drawn axes
    for ax, m in zip(axes[0], ("RA", "cross_RA")):
        shown = [p for p in pts if p[2]["UA"] is not None and p[2][m] is not None]
        if not shown:
            _empty(ax, f"no SNAP / Euclidean runs varying λ or the retain share with {METRIC_HEADERS[m]}")
            continue
        key_lines, at = [], {}  # points on (nearly) one spot share one label, "5,6"
        for i, (model, key, v, n, entity) in enumerate(shown, start=1):
            kind = "retain" if key.startswith(("SNAP", "Euclidean")) else key.split(" ")[0]
            color = {"swd": COLORS[0], "l2": COLORS[1]}.get(kind, COLORS[2])
            x, y, xci, yci = v["UA"], v[m], v["UA_ci"], v[f"{m}_ci"]
            ax.errorbar([x], [y], xerr=None if xci is None else [[x - xci[0]], [xci[1] - x]],
                        yerr=None if yci is None else [[y - yci[0]], [yci[1] - y]], fmt="^" if kind == "retain" else "o",
                        color=color, markersize=5, elinewidth=0.8, capsize=2, alpha=0.9)
            at.setdefault((round(x / 3), round(y / 3)), []).append((x, y, str(i)))  # within ~3 points: one label
            key_lines.append(f"{i}  {key} (n={n})" if len(models) == 1 else f"{i}  {model}: {key} (n={n})")
        pending.append((ax, [(near[0][0], near[0][1], ",".join(n for _, _, n in near)) for near in at.values()]))
        ax.text(1.02, 1.0, "\n".join(key_lines), transform=ax.transAxes, fontsize=6, va="top", family="monospace")
        for kind, color, marker in (("swd", COLORS[0], "o"), ("l2", COLORS[1], "o"), ("retain share", COLORS[2], "^")):
            ax.scatter([], [], color=color, marker=marker, label=kind)
        ax.legend(fontsize=7, loc="lower left")
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("UA (%) → more forgotten")
        ax.set_ylabel(f"{METRIC_HEADERS[m]} (%)")
        ax.set_title(f"UA vs {METRIC_HEADERS[m]} · {', '.join(sorted({p[4] for p in shown}))}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Trade-off: forgetting (UA) against retention (RA) and selectivity (cross-RA); "
                 "● (regularizer, λ), ▲ retain-share settings;\nmean over seeds on one entity, error bars the 95 % "
                 "intervals (Wilson over items for one seed, the two-level bootstrap for more; docs/statistics.md)",
                 y=1.04, fontsize=9)
    fig.tight_layout()
    for ax, labels in pending:
        _place_labels(ax, labels)
    return _save(fig, out, "fig_tradeoff", write)
