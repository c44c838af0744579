"""The paper's figures (matplotlib, PNG + SVG), built from labelled runs.

Figure 3: category shares of the forget and retain sets per entity.
Figure 4: D_g vs D_r (and both) as SNAP's retain data, grouped bars over UA, RA, TA.
Figure 5: batch vs sequential: metrics (UA, UA♣, RA, TA, and cross-RA when stored) after each
sequential step (mean ± std shaded over seeds) against the batch run's level (dashed).
λ figure (``fig_lambda``): UA, RA, cross-RA, TA against λ (log scale), one panel per regularizer,
with the regularizer's share of the loss on a second axis; error bars are std over seeds.
Trade-off figure (``fig_tradeoff``): UA against RA and against cross-RA, one annotated point per
(regularizer, λ) and per retain-share setting (retain_data, retain_ratio, general_ratio).
Losses: per-step forget, retain and regularizer terms of every trained run.

A figure whose runs are missing is still drawn, saying which runs it needs, so a report is
never silently short of a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from snap_bench.report.data import (METRIC_HEADERS, RETAIN_DATA_LABELS, Run, budget_diff, fmt_lambda, mean,
                                    seed_entity_means, std)

FIG_METRICS = ("UA", "UA_multihop", "RA", "TA")
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


def _fig4_runs(runs: list[Run], kinds: dict[str, str]) -> dict[str, dict[str, list[Run]]]:
    """model -> retain data -> SNAP single-entity runs on fictional entities that differ only in retain data."""
    out: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        if r.method != "snap" or r.mode != "single" or kinds.get(r.entities[0], "fictional") == "real":
            continue
        if r.label == "SNAP" or (r.label.startswith("SNAP (") and r.label[6:-1] in RETAIN_DATA_LABELS.values()):
            if r.retain_data and r.retain_data != "none":
                out.setdefault(r.model, {}).setdefault(r.retain_data, []).append(r)
    return out


def fig4(runs: list[Run], kinds: dict[str, str], out: Path, write) -> list[str]:
    plt = _plt()
    data = _fig4_runs(runs, kinds)
    models = sorted(data) or ["—"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.6), squeeze=False)
    metrics = ("UA", "RA", "TA")
    for ax, model in zip(axes[0], models):
        series = [k for k in ("hard", "general", "hard+general") if k in data.get(model, {})]
        if not series:
            _empty(ax, "no SNAP runs that differ only in retain data\n"
                       "(run snap with --set retain_data=hard and --set retain_data=general)")
            continue
        width = 0.8 / len(series)
        for i, rd in enumerate(series):
            rs = data[model][rd]
            vals = [[r.final_mean(m) for r in rs] for m in metrics]
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(metrics))]
            errs = [std(v) or 0.0 for v in vals]
            bars = ax.bar(xs, [mean(v) or 0.0 for v in vals], width, yerr=errs, capsize=3, color=COLORS[i],
                          label=f"{RETAIN_DATA_LABELS[rd]} (n={len(rs)})")
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        missing = [RETAIN_DATA_LABELS[k] for k in ("hard", "general") if k not in series]
        ax.set_xticks(range(len(metrics)), [METRIC_HEADERS[m] for m in metrics])
        ax.set_ylim(0, 115)
        ax.set_ylabel("%")
        ax.set_title(model + (f" (no run: {', '.join(missing)})" if missing else ""))
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Figure 4: SNAP with D_r (hard retaining data) vs D_g (general data) as retain data", y=1.03)
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

    Each point is the per-seed mean over the same entities (those every λ of the panel ran), then mean and
    std over seeds, so one panel's points are comparable; a panel draws one sizing budget (the one with the
    most λ values), and its size note names it when the runs have several."""
    from snap_bench.report.tables import lambda_rows

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
        ents = _common_entities(panel)
        pts = []
        for key in sorted(panel, key=lambda k: k[2]):
            rs = [r for r in panel[key] if r.entities[0] in ents]
            vals = {}
            for m in LAMBDA_FIG_METRICS + ("reg_share",):
                v = list(seed_entity_means(rs, ents, (lambda r, e: r.reg_share) if m == "reg_share" else m).values())
                vals[m] = (mean(v), std(v) or 0.0)
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
        ax.set_title(f"{reg} · {model} · {', '.join(ents)}" + (f" · {note}" if note else ""), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("UA, RA, cross-RA and TA against λ (mean ± std over seeds)", y=1.03)
    fig.tight_layout()
    return _save(fig, out, "fig_lambda", write)


def _tradeoff_points(runs: list[Run]) -> list[tuple[str, str, dict[str, float | None], int]]:
    """(model, label, metric -> mean, seeds) per (regularizer, λ) and retain-share variant of SNAP / Euclidean,
    each the mean over seeds of the per-seed mean over the entities all of a model's points ran."""
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
        ents = _common_entities(mine)
        for key, rs in sorted(mine.items()):
            rs = [r for r in rs if r.entities[0] in ents]
            vals = {m: seed_entity_means(rs, ents, m) for m in ("UA", "RA", "cross_RA")}
            out.append((model, key, {m: mean(v.values()) for m, v in vals.items()}, len(vals["UA"])))
    return out


def fig_tradeoff(runs: list[Run], out: Path, write) -> list[str]:
    plt = _plt()
    pts = _tradeoff_points(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False)
    models = sorted({p[0] for p in pts})
    for ax, m in zip(axes[0], ("RA", "cross_RA")):
        shown = [p for p in pts if p[2]["UA"] is not None and p[2][m] is not None]
        if not shown:
            _empty(ax, f"no SNAP / Euclidean runs varying λ or the retain share with {METRIC_HEADERS[m]}")
            continue
        at: dict[tuple[float, float], list[str]] = {}  # points on the same spot share one annotation
        for model, key, v, n in shown:
            kind = "retain" if key.startswith(("SNAP", "Euclidean")) else key.split(" ")[0]
            color = {"swd": COLORS[0], "l2": COLORS[1]}.get(kind, COLORS[2])
            ax.scatter([v["UA"]], [v[m]], color=color, marker="^" if kind == "retain" else "o", s=28,
                       edgecolors="white" if len(models) == 1 else COLORS[(3 + models.index(model)) % len(COLORS)])
            at.setdefault((round(v["UA"], 1), round(v[m], 1)), []).append(
                f"{key} (n={n})" if len(models) == 1 else f"{model}: {key} (n={n})")
        for i, ((x, y), texts) in enumerate(sorted(at.items())):
            ax.annotate("\n".join(texts), (x, y), textcoords="offset points", xytext=((5, -5)[i % 2], (3, -3)[i % 2]),
                        ha=("left", "right")[i % 2], va=("bottom", "top")[i % 2], fontsize=6)
        for kind, color, marker in (("swd", COLORS[0], "o"), ("l2", COLORS[1], "o"), ("retain share", COLORS[2], "^")):
            ax.scatter([], [], color=color, marker=marker, label=kind)
        ax.legend(fontsize=7, loc="lower left")
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("UA (%) → more forgotten")
        ax.set_ylabel(f"{METRIC_HEADERS[m]} (%)")
        ax.set_title(f"UA vs {METRIC_HEADERS[m]}")
        ax.grid(alpha=0.3)
    fig.suptitle("Trade-off: forgetting (UA) against retention (RA) and selectivity (cross-RA); "
                 "● (regularizer, λ), ▲ retain-share settings;\nmean over seeds of the mean over the entities every point ran",
                 y=1.04, fontsize=9)
    return _save(fig, out, "fig_tradeoff", write)


def fig_losses(runs: list[Run], out: Path, write, per_page: int = 24) -> list[str]:
    """One panel per trained run: its loss terms per optimiser step, phases of a sequential run back to back."""
    plt = _plt()
    trained = [r for r in runs if any(r.losses.values())]
    pages = [trained[i : i + per_page] for i in range(0, len(trained), per_page)] or [[]]
    names: list[str] = []
    for p, page in enumerate(pages):
        cols = 4
        rows = max(1, -(-len(page) // cols))
        fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), squeeze=False)
        for ax in axes.flat[len(page):]:
            ax.axis("off")
        if not page:
            _empty(axes[0][0], "no trained runs")
        for ax, r in zip(axes.flat, page):
            seq = [d for phase in sorted(r.losses) for d in r.losses[phase]]
            terms = [t for t in ("forget", "retain", "total") if any(t in d for d in seq)]
            terms += sorted({t for d in seq for t in d} - set(terms) - {"lr", "reg"})
            xs = range(1, len(seq) + 1)
            for k, term in enumerate(terms):
                ax.plot(xs, [d.get(term, float("nan")) for d in seq], color=COLORS[k % len(COLORS)],
                        label=term, linewidth=1.2, linestyle="--" if term == "total" else "-")
            if any("reg" in d for d in seq):
                # λ·penalty is orders of magnitude below the NLL terms: its own axis keeps it readable.
                twin = ax.twinx()
                twin.plot(xs, [d.get("reg", float("nan")) for d in seq], color=COLORS[3], linewidth=1.0, linestyle=":")
                twin.tick_params(labelsize=6, colors=COLORS[3])
                ax.plot([], [], color=COLORS[3], linestyle=":", label="reg (right axis)")
            edge = 0
            for phase in sorted(r.losses)[:-1]:
                edge += len(r.losses[phase])
                ax.axvline(edge + 0.5, color="#999", linestyle=":", linewidth=0.8)
            mode = "" if r.mode == "single" else f" · {r.mode}"
            ax.set_title(f"{r.label} · {'+'.join(r.entities)}{mode} · s{r.seed}\n{r.run_id}", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="best")
        fig.suptitle("Training loss terms per step (reg = λ·penalty)" + (f" — page {p + 1}" if len(pages) > 1 else ""))
        fig.tight_layout()
        names += _save(fig, out, "fig_losses" if p == 0 else f"fig_losses_{p + 1}", write)
    return names
