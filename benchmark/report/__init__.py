"""``snap-bench report``: the results store -> Tables 1-5, the λ table, the refusal-vs-removal table, Figures
3-5, the λ, trade-off and refusal-vs-removal figures, loss curves and index.html.

    snap-bench report [--results DIR] [--out DIR] [--json]

Writes into ``--out`` (default ``reports/``): ``table1..table5``, ``table_lambda`` and ``table_refusal``
(+ ``table_dev`` when the store has dev-only runs, ``table_probes`` when runs have probes, ``table_mia`` when they
have membership inference, ``table_quant``
and ``fig_quant`` when they have the quantization probe; the summary says when none has) as ``.md``,
``.tex`` and ``.csv``; ``fig3``, ``fig4``, ``fig5``, ``fig_lambda``, ``fig_tradeoff``, ``fig_refusal`` and
``fig_losses`` as ``.png`` and ``.svg``;
``runs.csv`` (every run, failed ones too, with the reason; done ones with their label, λ,
optimiser steps, reg share and entity-mean final metrics); and ``index.html``. Table cells are
means ± std over seeds, one row per entity (see ``report.tables``). Each file is written to a
temporary name and renamed, so a reader never sees half a file. Only ``done`` runs enter the tables.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError

FIGURE_CAPTIONS = {
    "fig3": "Figure 3: categories of the forget and retain sets",
    "fig4": "Figure 4: D_r vs D_g as retain data",
    "fig5": "Figure 5: batch vs sequential unlearning",
    "fig_lambda": "λ figure: UA, RA, cross-RA, TA and the regularizer's loss share against λ",
    "fig_tradeoff": "Trade-off figure: UA against RA and cross-RA per (regularizer, λ) and retain share",
    "fig_refusal": "Refusal vs removal figure: forget leak against RA, one point per method and entity (± std over seeds)",
    "fig_quant": "Quantization figure: UA as trained against UA after Q4_1, one point per method and entity (± std over seeds)",
    "fig_losses": "Training losses: forget, retain and regularizer terms per step",
}


def _runs_table(rows: list[dict[str, Any]], runs=()):
    """Every stored run; a done one (``runs``) also gets its label, λ, steps, reg share and final metrics."""
    from snap_bench.report.data import ALL_METRICS, COUNTS
    from snap_bench.report.render import Cell, Table

    done = {r.run_id: r for r in runs}
    metrics = list(ALL_METRICS) + list(COUNTS.values())
    t = Table("runs", "Every run in the store", ["run", "status", "method", "regularizer", "λ", "mode", "entities",
                                                 "model", "seed", "precision", "steps", "reason"], [])
    t.csv_header = ["run_id", "status", "method", "regularizer", "mode", "entities", "model", "seed", "config_hash",
                    "precision", "created_at", "finished_at", "seconds_total", "reason", "label", "lambda_reg", "steps",
                    "reg_share"] + metrics
    for r in rows:
        ents = " ".join(r["entities"])
        run = done.get(r["run_id"])
        lam = run.lam if run else ((r.get("config") or {}).get("config") or {}).get("lambda_reg")
        steps = run.steps if run else None
        prec = _precision(r.get("config"), r.get("versions"))
        t.rows.append([Cell(x) for x in (r["run_id"], r["status"], r["method"], r["regularizer"],
                                         "" if lam is None else f"{lam:g}", r["mode"], ents, r["model"], str(r["seed"]),
                                         prec, "" if steps is None else str(steps), (r["reason"] or "")[:120])])
        t.csv_rows.append([r["run_id"], r["status"], r["method"], r["regularizer"], r["mode"], ents, r["model"], r["seed"],
                           r["config_hash"], prec, _iso(r["created_at"]), _iso(r["finished_at"]),
                           (r.get("timings") or {}).get("total"), r["reason"] or "",
                           run.label if run else "", lam, steps, run.reg_share if run else None]
                          + [(_count(run, m) if m in COUNTS.values() else run.final_mean(m)) if run else None
                             for m in metrics])
    return t


def _count(run, key: str) -> int | None:
    """An item count summed over the run's entities (never averaged)."""
    vals = [e.get(key) for e in run.final().values() if e.get(key) is not None]
    return int(sum(vals)) if vals else None


def _iso(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


_PRECISION_KEYS = ("precision", "precision_requested", "fast_bf16")


def _precision(record: dict[str, Any] | None, versions: dict[str, Any] | None) -> str:
    """The precision a run used, from its stored config; ``bf16 (asked: auto)`` when it was resolved."""
    from snap_bench.config import stored_precision

    used = stored_precision((record or {}).get("config") or {})
    asked = (versions or {}).get("precision_requested")
    return f"{used} (asked: {asked})" if asked and asked != used else used


def _environment(runs, rows: list[dict[str, Any]], results_dir: Path) -> dict[str, Any]:
    versions: dict[str, set[str]] = {}
    for r in runs:
        for k, v in r.versions.items():
            if k not in _PRECISION_KEYS:  # shown as "precision" below, from the config
                versions.setdefault(k, set()).add(str(v))
    env: dict[str, Any] = {
        "store": str(results_dir),
        "runs": f"{len(runs)} done, {len(rows) - len(runs)} not done (see runs.csv)",
        "models": sorted({r.model for r in runs}) or ["—"],
        "seeds": sorted({str(r.seed) for r in runs}) or ["—"],
        "presets": sorted({r.record.get("preset", "?") for r in runs}) or ["—"],
        "judges": sorted({r.record.get("judge", "?") for r in runs}) or ["—"],
        # The precision each run used (a config without the field: fp32, as every run before it).
        "precision": sorted({_precision(r.record, r.versions) for r in runs}) or ["—"],
        "run dates": (f"{_iso(min(r.created_at for r in runs))} … {_iso(max(r.finished_at or r.created_at for r in runs))}"
                      if runs else "—"),
        "hosts": sorted({str(h) for h in (x["host"] for x in rows) if h}) or ["—"],
    }
    env.update({f"version: {k}": sorted(v) for k, v in sorted(versions.items())})
    env["report made with"] = f"python {platform.python_version()} on {platform.machine()}"
    return env


def task_stats() -> dict[str, Any]:
    """Items per set and % per category, per entity and for the general set (Table 5 / Figure 3; also
    `snap-bench tasks stats`)."""
    from snap_bench.registry import ENTITIES
    from snap_bench.tasks import load_general, load_pack

    def count(items):
        cats: dict[str, int] = {}
        for it in items:
            cats[it.category] = cats.get(it.category, 0) + 1
        n = len(items)
        return {"total": n, "categories": {c: {"count": k, "pct": round(100 * k / n, 1)} for c, k in sorted(cats.items())}}

    out: dict[str, Any] = {"entities": {}}
    for name in ENTITIES.names():
        pk = load_pack(name)
        out["entities"][name] = {s: count(v) for s, v in pk.sets.items()}
    out["general"] = count(load_general()["general"])
    return out


def _figures(runs, kinds, stats, out: Path, write) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """Draw every figure; (stem, caption, PNG bytes) for the page, and the notes on figures no run made possible."""
    from snap_bench.report.figures import fig3, fig4, fig5, fig_lambda, fig_losses, fig_refusal, fig_tradeoff
    from snap_bench.report.figures_quant import fig_quant

    fig3(stats, out, write)
    fig4(runs, kinds, out, write)
    fig5(runs, out, write)
    fig_lambda(runs, out, write)
    fig_tradeoff(runs, out, write)
    fig_refusal(runs, out, write)
    quant_files = fig_quant(runs, out, write)
    absent = [] if quant_files else ["no run in this store has the quantization probe: table_quant and fig_quant not "
                                     "written (`snap-bench run ... --set quant_probe=shipped,q4_1,q8_0`)"]
    loss_files = fig_losses(runs, out, write)
    figures = [(stem, FIGURE_CAPTIONS[stem], (out / f"{stem}.png").read_bytes())
               for stem in ("fig3", "fig4", "fig5", "fig_lambda", "fig_tradeoff", "fig_refusal")
               + (("fig_quant",) if quant_files else ())]
    figures += [(Path(n).stem, FIGURE_CAPTIONS["fig_losses"] + (f" ({Path(n).stem})" if n.startswith("fig_losses_") else ""),
                 (out / n).read_bytes()) for n in loss_files if n.endswith(".png")]
    return figures, absent


def build_report(results_dir: Path | str | None, out_dir: Path | str | None, progress: bool = True) -> dict[str, Any]:
    from snap_bench.util.fsutil import atomic_write_bytes, preflight_dir
    from snap_bench.report.data import entity_kinds, load_runs
    from snap_bench.report.html import render
    from snap_bench.report.render import to_csv, to_latex, to_markdown
    from snap_bench.report.tables import all_tables
    from snap_bench.report.tables_dev import table_dev
    from snap_bench.store.reader import StoreReader
    from snap_bench.store.schema import DB_NAME

    results = Path(results_dir) if results_dir else Path("results")
    if not (results / DB_NAME).is_file():
        raise SnapBenchError(f"no results store at {results / DB_NAME} (run `snap-bench run` or `snap-bench sweep` first, "
                             "or pass --results DIR)")
    out = preflight_dir(Path(out_dir) if out_dir else Path("reports"), what="--out")

    t0 = time.perf_counter()
    store = StoreReader(results)  # read-only: a report never changes the store
    try:
        done = load_runs(store)
        dev_only = [r for r in done if r.dev_only]  # no held-out number: the dev table alone shows them
        runs = [r for r in done if not r.dev_only]
        kinds = entity_kinds()
        stats = task_stats()
        tables = all_tables(runs, kinds, stats) + [t for t in (table_dev(dev_only),) if t is not None]
        rows = store.runs()  # every run, done or not: runs.csv and the environment's counts
        runs_table = _runs_table(rows, done)
        env = _environment(done, rows, results)
    finally:
        store.close()

    files: list[str] = []

    def write(path: Path, data: bytes | str) -> None:
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data, shared=True)
        files.append(path.name)

    for t in tables:
        write(out / f"{t.key}.md", to_markdown(t))
        write(out / f"{t.key}.tex", to_latex(t))
        write(out / f"{t.key}.csv", to_csv(t))
    write(out / "runs.csv", to_csv(runs_table))
    if progress:
        print(f"snap-bench report: {len(done)} done runs, {len(tables)} tables written; drawing figures...", file=sys.stderr)
    figures, absent = _figures(runs, kinds, stats, out, write)
    models = ", ".join(sorted({r.model for r in done})) or "no model"
    banner = (f"Results of {models}, read from the store {results}: {len(done)} finished runs. "
              "These are what this store holds, measured as the tables say; they are not the SNAP paper's 7B numbers.")
    write(out / "index.html", render(tables, figures, env, banner, runs_table))
    missing = [n for t in tables for n in t.notes if n.startswith("missing:")]
    return {"out": str(out), "runs": len(done), "tables": [t.key for t in tables], "files": sorted(files),
            "missing": missing, "absent": absent, "seconds": round(time.perf_counter() - t0, 2)}


def cmd_report(args) -> int:
    import json

    summary = build_report(args.results, args.out, progress=not args.json)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"report: {summary['runs']} done runs -> {summary['out']}/ ({len(summary['files'])} files, "
              f"{summary['seconds']:.1f}s); open {summary['out']}/index.html")
        for m in summary["missing"] + summary["absent"]:
            print(f"  {m}")
    return 0


def add_parser(sub, parser_class) -> None:
    r = sub.add_parser("report", help="Tables 1-5 and λ, Figures 3-5, λ and trade-off figures, loss curves and index.html from the results store")
    r.add_argument("--results", default=None, metavar="DIR", help="results store directory (default: ./results)")
    r.add_argument("--out", default=None, metavar="DIR", help="output directory (default: ./reports)")
    r.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    r.set_defaults(func=cmd_report)
