"""The paper's figures (matplotlib, PNG + SVG), built from labelled runs.

Figure 3: category shares of the forget and retain sets per entity.
Figure 4: D_g vs D_r (and both) as SNAP's retain data, grouped bars over UA, RA, TA.
Figure 5: batch vs sequential: metrics (UA, UA♣, RA, TA, and cross-RA when stored) after each
sequential step (mean ± std shaded over seeds) against the batch run's level (dashed).
Losses: per-step forget, retain and regularizer terms of every trained run.
The λ and trade-off figures (``fig_lambda``, ``fig_tradeoff``) are in :mod:`.figures_lambda`, the
refusal-vs-removal figure (``fig_refusal``: forget leak against RA per method) in :mod:`.figures_refusal`, and the
plotting helpers every figure shares in :mod:`.figures_plot`; this module re-exports the figures.

A figure whose runs are missing is still drawn, saying which runs it needs, so a report is
never silently short of a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snap_bench.report.data import METRIC_HEADERS, RETAIN_DATA_LABELS, Run, mean, seed_values, std
from snap_bench.report.figures_lambda import LAMBDA_FIG_METRICS, fig_lambda, fig_tradeoff
from snap_bench.report.figures_plot import COLORS, _empty, _plt, _save
from snap_bench.report.figures_refusal import fig_refusal

__all__ = ["FIG_METRICS", "LAMBDA_FIG_METRICS", "COLORS", "fig3", "fig4", "fig5", "fig5_metrics", "fig_lambda",
           "fig_tradeoff", "fig_losses", "fig_refusal"]

FIG_METRICS = ("UA", "UA_multihop", "RA", "TA")


def fig3(stats: dict[str, Any], out: Path, write) -> list[str]:
    plt = _plt()
    entities = list(stats["entities"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 + 0.55 * max(1, len(entities))), sharey=True)
    cats = sorted({c for sets in stats["entities"].values() for s in ("forget", "retain")
                   for c in sets.get(s, {}).get("categories", {})})
    for ax, set_name in zip(axes, ("forget", "retain")):
        left = [0.0] * len(entities)
        for i, c in enumerate(cats):
            pct = [stats["entities"][e].get(set_name, {}).get("categories", {}).get(c, {}).get("pct", 0.0) for e in entities]
            ax.barh(entities, pct, left=left, color=COLORS[i % len(COLORS)], label=c.replace("_", " "))
            for y, (x0, w) in enumerate(zip(left, pct)):
                if w >= 8:
                    ax.text(x0 + w / 2, y, f"{w:.0f}%", ha="center", va="center", fontsize=7, color="white")
            left = [a + b for a, b in zip(left, pct)]
        for y, e in enumerate(entities):
            ax.text(101, y, f"n={stats['entities'][e].get(set_name, {}).get('total', 0)}", va="center", fontsize=7)
        ax.set_title(f"{set_name} set")
        ax.set_xlim(0, 112)
        ax.set_xlabel("% of items")
        ax.invert_yaxis()
    axes[1].legend(loc="upper center", bbox_to_anchor=(-0.05, -0.25), ncol=len(cats), frameon=False)
    fig.suptitle("Figure 3: categories of the forget and retain sets", y=1.04)
    return _save(fig, out, "fig3", write)


def _fig4_runs(runs: list[Run], kinds: dict[str, str]) -> dict[str, tuple[str, str, dict[str, list[Run]]]]:
    """model -> (entity, budget, retain data -> runs): SNAP single-entity runs on a fictional entity that differ
    only in retain data. One entity and one size per model, never pooled (issue 26): the (entity, budget) with
    the most retain-data series, then the most seeds."""
    groups: dict[tuple[str, str, str], dict[str, list[Run]]] = {}
    for r in runs:
        if r.method != "snap" or r.mode != "single" or kinds.get(r.entities[0], "fictional") == "real":
            continue
        if r.label == "SNAP" or (r.label.startswith("SNAP (") and r.label[6:-1] in RETAIN_DATA_LABELS.values()):
            if r.retain_data and r.retain_data != "none":
                groups.setdefault((r.model, r.entities[0], r.budget), {}).setdefault(r.retain_data, []).append(r)
    out: dict[str, tuple[str, str, dict[str, list[Run]]]] = {}
    for (model, entity, budget), series in sorted(groups.items()):
        rank = (len(series), sum(len({r.seed for r in rs}) for rs in series.values()))
        best = out.get(model)
        if best is None or rank > (len(best[2]), sum(len({r.seed for r in rs}) for rs in best[2].values())):
            out[model] = (entity, budget, series)
    return out


def fig4(runs: list[Run], kinds: dict[str, str], out: Path, write) -> list[str]:
    plt = _plt()
    data = _fig4_runs(runs, kinds)
    models = sorted(data) or ["—"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.6), squeeze=False)
    metrics = ("UA", "RA", "TA")
    for ax, model in zip(axes[0], models):
        entity, budget, by_rd = data.get(model, ("", "", {}))
        series = [k for k in ("hard", "general", "hard+general") if k in by_rd]
        if not series:
            _empty(ax, "no SNAP runs that differ only in retain data\n"
                       "(run snap with --set retain_data=hard and --set retain_data=general)")
            continue
        width = 0.8 / len(series)
        for i, rd in enumerate(series):
            rs = by_rd[rd]
            vals = [list(seed_values(rs, lambda r, m=m: r.final_mean(m)).values()) for m in metrics]  # per seed
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(metrics))]
            errs = [std(v) or 0.0 for v in vals]
            bars = ax.bar(xs, [mean(v) or 0.0 for v in vals], width, yerr=errs, capsize=3, color=COLORS[i],
                          label=f"{RETAIN_DATA_LABELS[rd]} (n={len({r.seed for r in rs})} seeds)")
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        missing = [RETAIN_DATA_LABELS[k] for k in ("hard", "general") if k not in series]
        ax.set_xticks(range(len(metrics)), [METRIC_HEADERS[m] for m in metrics])
        ax.set_ylim(0, 115)
        ax.set_ylabel("%")
        limit = by_rd[series[0]][0].cfg.get("eval_limit")
        size = f", {limit} items a set" if limit else ", full held-out sets"
        ax.set_title(f"{model} · {entity}{size}" + (f" (no run: {', '.join(missing)})" if missing else ""), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Figure 4: SNAP with D_r (hard retaining data) vs D_g (general data) as retain data\n"
                 "mean over seeds, error bars the std over seeds; one entity and one size per panel", y=1.06)
    return _save(fig, out, "fig4", write)


def _seq_curves(runs: list[Run], metrics: tuple[str, ...] = FIG_METRICS
                ) -> dict[tuple[str, tuple[str, ...], str], list[list[dict[str, float | None]]]]:
    """(model, entities, label) -> per run, per step: metric -> mean over the entities seen so far."""
    out: dict[tuple[str, tuple[str, ...], str], list[list[dict[str, float | None]]]] = {}
    for r in runs:
        if r.mode != "sequential":
            continue
        curve = [{m: mean(e.get(m) for e in r.metrics[k].values()) for m in metrics} for k in sorted(r.metrics)]
        out.setdefault((r.model, tuple(r.entities), r.label), []).append(curve)
    return out


def fig5_metrics(runs: list[Run]) -> tuple[str, ...]:
    """Figure 5's panels: UA, UA♣, RA, TA, and cross-RA when a batch or sequential run stored it."""
    multi = [r for r in runs if r.mode in ("sequential", "batch")]
    has_cross = any("cross_RA" in e for r in multi for step in r.metrics.values() for e in step.values())
    return FIG_METRICS + (("cross_RA",) if has_cross else ())


def fig5(runs: list[Run], out: Path, write) -> list[str]:
    plt = _plt()
    metrics = fig5_metrics(runs)
    seq = _seq_curves(runs, metrics)
    batch: dict[tuple[str, frozenset[str], str], list[Run]] = {}
    for r in runs:
        if r.mode == "batch":
            batch.setdefault((r.model, frozenset(r.entities), r.label), []).append(r)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    if not seq and not batch:
        for ax in axes[0]:
            _empty(ax, "no batch or\nsequential runs")
    for j, m in enumerate(metrics):
        ax = axes[0][j]
        i = 0
        for (model, ents, label), curves in sorted(seq.items()):
            steps = max(len(c) for c in curves)
            xs = list(range(1, steps + 1))
            mu = [mean(c[k][m] for c in curves if k < len(c)) for k in range(steps)]
            sd = [std(c[k][m] for c in curves if k < len(c)) or 0.0 for k in range(steps)]
            ys = [v if v is not None else float("nan") for v in mu]
            color = COLORS[i % len(COLORS)]
            ax.plot(xs, ys, marker="o", color=color, label=f"sequential {label} (n={len(curves)})")
            ax.fill_between(xs, [a - b for a, b in zip(ys, sd)], [a + b for a, b in zip(ys, sd)], color=color, alpha=0.2)
            ax.set_xticks(xs, [f"+{e}" for e in ents][:steps], rotation=20, fontsize=7)
            i += 1
        for (model, ents, label), rs in sorted(batch.items(), key=lambda kv: sorted(kv[0][1])):
            vals = [r.final_mean(m) for r in rs]
            mu, sd = mean(vals), std(vals)
            if mu is None:
                continue
            color = COLORS[i % len(COLORS)]
            ax.axhline(mu, linestyle="--", color=color, label=f"batch {label} (n={len(rs)})")
            if sd:
                ax.axhspan(mu - sd, mu + sd, color=color, alpha=0.1)
            i += 1
        if seq or batch:
            ax.set_ylim(-5, 105)
            ax.set_title(METRIC_HEADERS[m])
            ax.set_xlabel("sequential step (entity unlearned)")
    if seq or batch:
        axes[0][0].set_ylabel("% (mean over the entities unlearned so far)")
        axes[0][0].legend(fontsize=7, loc="lower left")  # UA: every series has it, the last panel may not
    fig.suptitle("Figure 5: batch (dashed) vs sequential unlearning", y=1.03)
    return _save(fig, out, "fig5", write)



# One colour per loss term on every panel, so a term reads the same across runs (issue 26).
TERM_COLORS = {"forget": COLORS[0], "retain": COLORS[1], "general": COLORS[2], "reg": COLORS[3], "total": "#333333"}


def _term_color(term: str) -> str:
    return TERM_COLORS.get(term) or COLORS[4 + sum(map(ord, term)) % (len(COLORS) - 4)]


def _kept_steps(r: Run) -> list[int]:
    """The x positions (steps counted across phases) of the checkpoints select=dev kept."""
    offsets, edge = {}, 0
    for phase in sorted(r.losses):
        offsets[phase] = edge
        edge += len(r.losses[phase])
    sel = (r.analyses.get("dev") or {}).get("selection") or []
    return [offsets.get(s.get("phase", 0), 0) + s["selected_step"] for s in sel
            if isinstance(s, dict) and s.get("selected_step")]


def _loss_panel(ax, r: Run) -> None:
    seq = [d for phase in sorted(r.losses) for d in r.losses[phase]]
    terms = [t for t in ("forget", "retain", "general", "total") if any(t in d for d in seq)]
    terms += sorted({t for d in seq for t in d} - set(terms) - {"lr", "reg"})
    xs = range(1, len(seq) + 1)
    for term in terms:
        ax.plot(xs, [d.get(term, float("nan")) for d in seq], color=_term_color(term), label=term, linewidth=1.2,
                linestyle="--" if term == "total" else "-")
    if any("reg" in d for d in seq):
        # λ·penalty is orders of magnitude below the NLL terms: its own axis keeps it readable.
        twin = ax.twinx()
        twin.plot(xs, [d.get("reg", float("nan")) for d in seq], color=_term_color("reg"), linewidth=1.0, linestyle=":")
        twin.tick_params(labelsize=6, colors=_term_color("reg"))
        ax.plot([], [], color=_term_color("reg"), linestyle=":", label="reg (right axis)")
    edge = 0
    for phase in sorted(r.losses)[:-1]:
        edge += len(r.losses[phase])
        ax.axvline(edge + 0.5, color="#999", linestyle=":", linewidth=0.8)
    for k, step in enumerate(_kept_steps(r)):
        ax.axvline(step, color="#000", linewidth=0.9, alpha=0.6)
        ax.plot([step], [ax.get_ylim()[1]], marker="v", color="#000", markersize=5, clip_on=False,
                label="kept checkpoint (select=dev)" if k == 0 else None)
    mode = "" if r.mode == "single" else f" · {r.mode}"
    ax.set_title(f"{r.label} · {'+'.join(r.entities)}{mode} · s{r.seed}\n{r.run_id}", fontsize=7)
    ax.set_xlabel("optimiser step", fontsize=7)
    ax.set_ylabel("loss (nats)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="best")


def fig_losses(runs: list[Run], out: Path, write, per_page: int = 24) -> list[str]:
    """One panel per trained run: its loss terms per optimiser step, phases of a sequential run back to back,
    and a marker at each checkpoint select=dev kept."""
    plt = _plt()
    trained = [r for r in runs if any(r.losses.values())]
    pages = [trained[i : i + per_page] for i in range(0, len(trained), per_page)] or [[]]
    names: list[str] = []
    for p, page in enumerate(pages):
        cols = 4
        rows = max(1, -(-len(page) // cols))
        fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.7 * rows), squeeze=False)
        for ax in axes.flat[len(page):]:
            ax.axis("off")
        if not page:
            _empty(axes[0][0], "no trained runs")
        for ax, r in zip(axes.flat, page):
            _loss_panel(ax, r)
        fig.suptitle("Training loss terms per step (reg = λ·penalty; ▼ the checkpoint select=dev kept)"
                     + (f" — page {p + 1}" if len(pages) > 1 else ""))
        fig.tight_layout()
        names += _save(fig, out, "fig_losses" if p == 0 else f"fig_losses_{p + 1}", write)
    return names
