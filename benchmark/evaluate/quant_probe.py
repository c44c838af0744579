"""The quantization probe (``--set quant_probe=shipped,q4_1,q8_0``): does the unlearning survive the rounding
of a quantized deployment?

Zhang et al. (ICLR 2025, arXiv 2410.16454) found that unlearning under a utility constraint moves most
weights by less than half a quantization step, so a 4-bit copy of the unlearned model rounds back to the
original weights and answers again. ``evaluate/quant.py`` makes those copies; this module measures them.

For each entity, on a seeded sample of ``probe_limit`` held-out forget items (stratified by category, the
sample the knowledge probes use) and ``probe_limit`` held-out retain items (stratified, its own draw):

- forget: UA, leak and the answer's mean log-probability per token;
- retain: RA and RA_correct (over the sampled retain items the untrained model answered correctly by the
  answer-keyword check; see ``metrics.retain_correct``).

Each is measured on the model at full precision and after each scheme, and the same on the untrained
model (the control: what quantization alone does to a model that never unlearned; measured before
training). The share of the unlearning effect a scheme undoes (``recovered``):

    effect(full)      = UA(unlearned, full) - UA(untrained, full)
    effect(quantized) = UA(unlearned, scheme) - UA(untrained, scheme)
    recovered         = 1 - effect(quantized) / effect(full)

and the same for leak with the sign turned (unlearning lowers leak: effect = leak(untrained) - leak(unlearned)).
0: the scheme keeps all of the effect; 1: it undoes all of it (the quantized unlearned model behaves like the
quantized untrained one); below 0 or above 1 when quantization deepens or overturns it. None when the
full-precision effect is 0 (nothing to recover). Subtracting the quantized control keeps what quantization
does to any model (e.g. a 4-bit model that refuses less) out of the share.
"""

from __future__ import annotations

import gc
from typing import Any, Mapping, Sequence

from snap_bench.tasks import Item, stratified_sample

FULL = "full"  # the key of the unquantized measurement
METRICS = ("UA", "leak", "answer_logprob", "RA", "RA_correct")
RECOVERED = {"UA": 1.0, "leak": -1.0}  # metric -> sign of the unlearning effect (UA rises, leak falls)


def probe_sets(eval_sets: Mapping[str, Sequence[Item]], limit: int, seed: int) -> dict[str, list[Item]]:
    """The forget and retain items the probe asks: seeded samples stratified by category."""
    from snap_bench.evaluate.probes import probe_items

    return {"forget": probe_items(eval_sets.get("forget", []), limit, seed),
            "retain": stratified_sample(list(eval_sets.get("retain", [])), limit, seed, "quant-retain")[0]}


def measure(model, tok, judge, cfg, sets: Mapping[str, Mapping[str, list[Item]]], *, system: str | None,
            known_correct: Mapping[str, bool] | None, progress: bool, desc: str) -> dict[str, dict[str, Any]]:
    """entity -> the probe's metrics (:data:`METRICS`, plus ``RA_correct_n``) of ``model`` on ``sets``
    (entity -> {forget, retain}); one generation pass for all entities."""
    from snap_bench.evaluate.metrics import evaluate
    from snap_bench.evaluate.probes import answer_logprob

    m, _ = evaluate(model, tok, {e: dict(s) for e, s in sets.items()}, [], judge, cfg, system=system, progress=progress,
                    cross=(), known_correct=dict(known_correct) if known_correct is not None else None, desc=desc)
    out: dict[str, dict[str, Any]] = {}
    for entity, s in sets.items():
        lps = [v for v in answer_logprob(model, tok, s["forget"], system=system, batch_size=cfg.eval_batch_size)
               if v == v]  # NaN: an answer without tokens
        out[entity] = {"UA": m[entity]["UA"], "leak": m[entity]["leak"],
                       "answer_logprob": sum(lps) / len(lps) if lps else None,
                       "RA": m[entity]["RA"], "RA_correct": m[entity]["RA_correct"],
                       "RA_correct_n": m[entity]["RA_correct_n"]}
    return out


def measure_schemes(model, tok, judge, cfg, sets, schemes: Sequence[str], *, system: str | None,
                    known_correct: Mapping[str, bool] | None, progress: bool, label: str) -> dict[str, dict[str, Any]]:
    """entity -> {"full" | scheme -> :func:`measure`}: ``model`` as it is, then a quantized copy per scheme
    (one copy alive at a time; the model itself is never changed)."""
    from snap_bench.evaluate.quant import fake_quantize

    kw = dict(system=system, known_correct=known_correct, progress=progress)
    per: dict[str, dict[str, dict[str, Any]]] = {FULL: measure(model, tok, judge, cfg, sets, desc=f"quant {label} full", **kw)}
    for scheme in schemes:
        copy = fake_quantize(model, scheme)
        per[scheme] = measure(copy, tok, judge, cfg, sets, desc=f"quant {label} {scheme}", **kw)
        del copy
        gc.collect()
    return {e: {k: v[e] for k, v in per.items()} for e in sets}


def recovered(unlearned: Mapping[str, Any], control: Mapping[str, Any], scheme: str, metric: str) -> float | None:
    """The share of the unlearning effect on ``metric`` that ``scheme`` undoes (module docstring)."""
    sign = RECOVERED[metric]
    vals = [unlearned[FULL][metric], control[FULL][metric], unlearned[scheme][metric], control[scheme][metric]]
    if any(v is None for v in vals):
        return None
    effect_full = sign * (vals[0] - vals[1])
    effect_q = sign * (vals[2] - vals[3])
    return None if abs(effect_full) < 1e-9 else 1.0 - effect_q / effect_full


def quant_result(after: Mapping[str, Any], before: Mapping[str, Any] | None, schemes: Sequence[str],
                 sets: Mapping[str, Mapping[str, list[Item]]]) -> dict[str, dict[str, Any]]:
    """``quant[entity][scheme]``: each metric at full precision and quantized, the control's (the untrained
    model's) the same way, ``recovered`` for UA and leak, and the sample sizes."""
    out: dict[str, dict[str, Any]] = {}
    for entity, per in after.items():
        ctrl = (before or {}).get(entity)
        out[entity] = {}
        for scheme in schemes:
            row: dict[str, Any] = {m: {FULL: per[FULL][m], "quantized": per[scheme][m]} for m in METRICS}
            row["control"] = ({m: {FULL: ctrl[FULL][m], "quantized": ctrl[scheme][m]} for m in METRICS}
                              if ctrl is not None else None)
            row["recovered"] = {m: recovered(per, ctrl, scheme, m) if ctrl is not None else None for m in RECOVERED}
            row["n"] = {"forget": len(sets[entity]["forget"]), "retain": len(sets[entity]["retain"]),
                        "RA_correct": per[FULL]["RA_correct_n"]}
            out[entity][scheme] = row
    return out
