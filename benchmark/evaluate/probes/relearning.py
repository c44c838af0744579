"""Probe 3: a relearning attack. Is the unlearned knowledge gone, or only suppressed?

A copy of the model is fine-tuned for a few steps on a handful of forget questions with their
true answers; UA and the answer log-probability are then measured on the OTHER forget
questions. Knowledge that was only suppressed comes back quickly on questions the attack never
showed (Lynch et al. 2024, arXiv 2402.16835; Hu et al. 2024, arXiv 2406.13356).

Evaluation sits below the training layer and does not import it: the caller hands in the
training entry point (:class:`Trainer`, in the runs :func:`snap_bench.train.trainer.train`),
and a diverged attack is caught as :class:`snap_bench.errors.NonFiniteLossError`, the base of
the trainer's own ``NonFiniteLoss``.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any, Protocol, Sequence

from snap_bench.data import Example
from snap_bench.errors import NonFiniteLossError
from snap_bench.evaluate.generation import generate
from snap_bench.evaluate.probes.logprob import answer_logprob
from snap_bench.evaluate.probes.stats import _mean, _pct
from snap_bench.methods.base import UnlearnData, as_examples, complete_method, nll_per_stream
from snap_bench.tasks import Item, stratified_sample
from snap_bench.util import progress_bar


class Trainer(Protocol):
    """The training entry point the attack fine-tunes with: :func:`snap_bench.train.trainer.train`'s signature.

    It trains ``model`` in place, returns a result whose ``losses`` holds one dict of loss terms
    per step, and raises a :class:`snap_bench.errors.NonFiniteLossError` when a loss turns NaN/inf.
    """

    def __call__(self, model, tokenizer, method, regularizer, data: UnlearnData, cfg, seed: int, *,
                 progress: bool, local: bool) -> Any: ...


@complete_method  # the Protocol's optional hooks, with their defaults
class _Relearn:
    """Plain response-masked NLL on (forget question -> true answer): the attacker's fine-tune."""

    config_cls = None  # built by the probe, never from a config

    def streams(self, data: UnlearnData) -> dict[str, list[Example]]:
        return {"forget": as_examples(data.forget, "answer")}

    def loss(self, model, batches, ctx):
        return {"relearn": nll_per_stream(model, batches)["forget"]}


def _draw(items: Sequence[Item], n: int, seed: int) -> tuple[list[Item], list[Item]]:
    ordered = sorted(items, key=lambda it: it.id)  # independent of the caller's order
    chosen = set(random.Random(seed).sample(range(len(ordered)), max(0, min(n, len(ordered)))))
    return ([it for i, it in enumerate(ordered) if i in chosen],
            [it for i, it in enumerate(ordered) if i not in chosen])


def relearn_split(items: Sequence[Item], n_relearn: int, seed: int) -> tuple[list[Item], list[Item]]:
    """(items to relearn, held-out items), disjoint, by a seeded draw over ids; at most half are relearned."""
    return _draw(items, min(n_relearn, len(items) // 2), seed)


def _plain_ua(model, tokenizer, items, judge, cfg, system, progress, desc) -> float | None:
    bar = progress_bar(progress, len(items), desc)
    try:
        resp = generate(model, tokenizer, [it.question for it in items], system=system,
                        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
                        on_batch=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    verdicts = judge.judge_many([(it.question, r, it.keywords) for it, r in zip(items, resp)])
    return _pct([v.obliterated for v in verdicts])


def relearning_attack(model, tokenizer, forget_items: Sequence[Item], judge, cfg, *, train: Trainer,
                      n_relearn: int = 10, steps: int = 5, lr: float | None = None, seed: int = 0,
                      system: str | None = None, limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Fine-tune a deep copy on ``n_relearn`` forget items (question -> true answer), measure the others.

    ``model`` is never modified. ``train`` (see :class:`Trainer`) gives the copy ``steps``
    full-batch AdamW steps at a constant ``lr`` (default: the run's own ``cfg.lr``, which is
    already scaled to the model) with the run's weight decay and clipping and no regularizer,
    under the evaluation system prompt.
    ``UA_*`` and ``logprob_*`` (mean per-token log-probability of the true answers) are measured
    on held-out forget items that the attack never trained on (at most ``limit``), before
    (``model``) and after (the copy). At most half of ``forget_items`` are relearned.
    Deterministic for a given ``seed``.
    """
    relearn, held = relearn_split(forget_items, n_relearn, seed)
    if limit is not None:
        held = stratified_sample(held, limit, seed, "relearn-held")[0]
    return _relearning_with(model, tokenizer, relearn, held, judge, cfg, train=train, steps=steps, lr=lr,
                            seed=seed, system=system, progress=progress)


def _relearning_with(model, tokenizer, relearn: list[Item], held: list[Item], judge, cfg, *, train: Trainer,
                     steps: int, lr: float | None, seed: int, system: str | None, progress: bool,
                     before: tuple[float | None, float | None] | None = None) -> dict[str, Any]:
    """The attack on a given split; ``before`` = (UA, mean logprob) of ``model`` on ``held`` when already known."""
    from snap_bench.regularizers.base import build_regularizer

    lr = lr if lr is not None else cfg.lr
    out: dict[str, Any] = {"n_relearn": len(relearn), "steps": steps, "lr": lr, "held_out": len(held),
                           "UA_before": None, "UA_after": None, "logprob_before": None, "logprob_after": None,
                           "train_loss": []}
    if not relearn or not held or steps <= 0:
        return out
    bs = max(1, min(len(held), cfg.eval_batch_size))
    if before is None:
        before = (_plain_ua(model, tokenizer, held, judge, cfg, system, progress, "probe: relearn before"),
                  _mean(answer_logprob(model, tokenizer, held, system=system, batch_size=bs)))
    out["UA_before"], out["logprob_before"] = before
    rcfg = dataclasses.replace(cfg, lr=lr, max_steps=steps, batch_size=len(relearn), warmup_steps=0,
                               lr_schedule="constant", lambda_reg=0.0, retain_ratio=1.0, system_prompt=system)
    attacked = copy.deepcopy(model)
    try:
        try:
            res = train(attacked, tokenizer, _Relearn(), build_regularizer("none", rcfg, seed),
                        UnlearnData(packs=[], forget=list(relearn), retain=[], general=[]), rcfg, seed,
                        progress=progress, local=True)  # the main process alone runs the probes
        except NonFiniteLossError as exc:
            # A probe must not fail the run it measures (e.g. after gradient ascent blew the weights up).
            out["error"] = str(exc)
            return out
        out["train_loss"] = [round(s["relearn"], 4) for s in res.losses]
        out["UA_after"] = _plain_ua(attacked, tokenizer, held, judge, cfg, system, progress, "probe: relearn after")
        out["logprob_after"] = _mean(answer_logprob(attacked, tokenizer, held, system=system, batch_size=bs))
    finally:
        del attacked
    return out
