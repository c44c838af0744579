"""What the CLI prints: the ``--json`` object, and the fixed-width text of a run's results (Table-1 rows,
probes, membership inference, NLP scores) and of a multi-seed summary (mean ± sample std per entity and metric).

Only the CLI prints these; the run layer returns plain results and never formats them.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(obj: Any) -> None:
    """``--json``: exactly one JSON object on stdout, flushed (progress and logs go to stderr)."""
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _fmt(v: float | None) -> str:
    return "   —  " if v is None else f"{v:6.1f}"


def table1_rows(result: dict[str, Any]) -> str:
    """The Table-1 row(s) of a run, then selectivity and removal (cross_RA, leak, RA_known, RA_correct,
    degenerate), as fixed-width text."""
    head = (f"{'method':<18} {'entity':<16} {'UA':>6} {'UA♣':>6} {'RA':>6} {'TA':>6} {'Avg':>6} │ {'crossRA':>7} "
            f"{'leak':>6} {'RA_known':>13} {'RA_correct':>13} {'degen':>6}")
    lines = [head, "-" * len(head)]
    label = result["method"] + (f"+{result['regularizer']}" if result["regularizer"] not in ("none",) else "")
    for entity, m in result["metrics"].items():
        n = m.get("RA_known_n")
        known = _fmt(m.get("RA_known")) + (f" (n={int(n)})" if n is not None else "")
        nc = m.get("RA_correct_n")
        correct = _fmt(m.get("RA_correct")) + (f" (n={int(nc)})" if nc is not None else "")
        lines.append(
            f"{label:<18} {entity:<16} {_fmt(m.get('UA'))} {_fmt(m.get('UA_multihop'))} {_fmt(m.get('RA'))} "
            f"{_fmt(m.get('TA'))} {_fmt(m.get('Avg'))} │ {_fmt(m.get('cross_RA')):>7} {_fmt(m.get('leak'))} {known:>13} {correct:>13} {_fmt(m.get('degenerate'))}"
        )
    return "\n".join(lines)


def probe_rows(probes: dict[str, Any]) -> str:
    """Knowledge probes per entity: UA under each framing, answer log-likelihood, relearning."""
    lines = []
    for entity, pr in probes.items():
        lp = pr["answer_logprob"]
        lines.append(f"probes · {entity} · {pr['items']} forget items")
        lines.append("  UA by framing: " + "  ".join(f"{k} {_fmt(v).strip()}" for k, v in pr["extraction_UA"].items()))
        lines.append(f"  answer log-prob/token: before {_num(lp['before'])} → after {_num(lp['after'])} "
                     f"(Δ {_num(lp['delta'])})")
        rlp = pr.get("retain_answer_logprob")
        if rlp:
            lines.append(f"  retain answer log-prob/token: before {_num(rlp['before'])} → after {_num(rlp['after'])} "
                         f"(Δ {_num(rlp['delta'])})")
        rl = pr.get("relearning")
        if rl:
            lines.append(f"  relearning ({rl['n_relearn']} facts, {rl['steps']} steps): UA {_fmt(rl['UA_before']).strip()} → "
                         f"{_fmt(rl['UA_after']).strip()}, log-prob {_num(rl['logprob_before'])} → {_num(rl['logprob_after'])}")
        flu = pr.get("fluency", {}).get("eval_sets") or {}
        if flu:
            lines.append("  degenerate responses %: " + "  ".join(f"{k} {_fmt(v).strip()}" for k, v in flu.items()))
    return "\n".join(lines)


def mia_rows(mia: dict[str, Any]) -> str:
    """Membership-inference AUC per entity and attack, before → after unlearning (0.5: no trace)."""
    lines = []
    for entity, m in mia.items():
        lines.append(f"membership inference AUC · {entity} · {m['n_members']} trained-on vs {m['n_nonmembers']} "
                     "held-out forget items (0.5 = no trace)")
        for attack in ("loss", "zlib", "mink", "minkpp"):
            a = m[attack]
            lines.append(f"  {attack:<7} before {_num(a['before'])} → after {_num(a['after'])} (Δ {_num(a['delta'])})")
    return "\n".join(lines)


def quant_rows(quant: dict[str, Any]) -> str:
    """The quantization probe per entity and scheme: full precision → quantized, for the model and the untrained
    control, and the share of the unlearning effect the scheme undoes."""
    lines = []
    for entity, per in quant.items():
        for scheme, q in per.items():
            n = q["n"]
            lines.append(f"quantization {scheme} · {entity} · {n['forget']} forget, {n['retain']} retain items "
                         f"(RA_correct n={_n(n.get('RA_correct'))})")
            for who, row in (("model", q), ("untrained", q.get("control"))):
                if row:
                    lines.append(f"  {who:<9} " + "  ".join(f"{m} {_fmt(row[m]['full']).strip()} → "
                                                           f"{_fmt(row[m]['quantized']).strip()}"
                                                           for m in ("UA", "leak", "RA", "RA_correct")))
            rec = q.get("recovered") or {}
            lines.append("  recovered by quantization: " + "  ".join(f"{m} {_num(v)}" for m, v in rec.items()))
    return "\n".join(lines)


def _n(v: float | None) -> str:
    return "—" if v is None else str(int(v))


def nlp_rows(nlp: dict[str, Any]) -> str:
    parts = [f"{k} {100 * v['acc']:.1f}" for k, v in nlp.get("tasks", {}).items()]
    avg = nlp.get("average")
    line = "NLP zero-shot acc %: " + ("  ".join(parts) or "no task ran")
    if avg is not None:
        line += f"  (average {100 * avg:.1f} over {len(parts)})"
    if nlp.get("unavailable"):
        line += "\n  unavailable, left out of the average: " + ", ".join(nlp["unavailable"])
    return line


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; None below two values) and n of the non-missing values."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / n
    std = (sum((v - mean) ** 2 for v in vals) / (n - 1)) ** 0.5 if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def seed_summary(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{entity: {metric: {mean, std, n}}} over the runs of several seeds; every entity (and the batch
    modes' ``average`` row) on its own, never pooled across entities."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    entities = list(dict.fromkeys(e for r in results for e in r["metrics"]))
    for e in entities:
        metrics = list(dict.fromkeys(m for r in results for m in r["metrics"].get(e, {})))
        out[e] = {m: _stats([r["metrics"].get(e, {}).get(m) for r in results]) for m in metrics}
    return out


def summary_rows(label: str, seeds: list[int], summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The seed summary as fixed-width text: mean ± sample std per entity and metric, with n."""

    def cell(s: dict[str, Any] | None) -> str:
        if not s or s["mean"] is None:
            return f"{'—':>13}"
        std = "—" if s["std"] is None else f"{s['std']:.1f}"
        return f"{s['mean']:6.1f} ± {std:<4}"

    cols = (("UA", "UA"), ("UA♣", "UA_multihop"), ("RA", "RA"), ("TA", "TA"), ("Avg", "Avg"))
    head = f"{'method':<18} {'entity':<16} {'n':>2} " + " ".join(f"{c:>13}" for c, _ in cols)
    lines = [f"mean ± sample std over seeds {','.join(map(str, seeds))} (n = runs with a value)", head, "-" * len(head)]
    for entity, ms in summary.items():
        n = max((s["n"] for s in ms.values()), default=0)
        row = f"{label:<18} {entity:<16} {n:>2} " + " ".join(cell(ms.get(k)) for _, k in cols)
        odd = [f"{c} n={ms[k]['n']}" for c, k in cols if k in ms and ms[k]["n"] != n]
        lines.append(row + (f"  ({', '.join(odd)})" if odd else ""))
    return "\n".join(lines)


def print_run(result: dict[str, Any]) -> None:
    """A finished run as text: Table-1 rows, then probes and NLP scores if it has them, then where it is stored.
    A dev-only run (``heldout=false``) has no held-out row: its dev-split metrics are shown instead, marked so."""
    dev = (result.get("dev") or {}).get("metrics")
    if not result["metrics"] and dev:
        print("dev split only (heldout=false): no held-out question was asked")
        print(table1_rows({**result, "metrics": {f"{e} (dev)": m for e, m in dev.items()}}))
    else:
        print(table1_rows(result))
    if result.get("probes"):
        print("\n" + probe_rows(result["probes"]))
    if result.get("mia"):
        print("\n" + mia_rows(result["mia"]))
    if result.get("quant"):
        print("\n" + quant_rows(result["quant"]))
    if result.get("nlp"):
        print("\n" + nlp_rows(result["nlp"]))
    t = result["timings"]
    print(f"\nrun {result['run_id']} · model {result['model']} · seed {result['seed']} · "
          f"{result.get('precision', 'fp32')} · "
          f"{result['train']['steps']} steps · train {t.get('train', 0):.0f}s · total {t['total']:.0f}s · "
          f"stored in {result['results']}")
    if result.get("saved"):
        print(f"model saved to {result['saved']} (snap-bench ask|chat --model {result['saved']})")
