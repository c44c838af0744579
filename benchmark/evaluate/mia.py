"""Membership inference on the forget items: can an attacker tell the items a method unlearned on from
held-out items of the same entity, before and after unlearning?

Members are an entity's forget items the method trained on (its training split, dev items excluded);
non-members are its held-out forget items. Each item is scored on its TRUE answer as the assistant's reply
to its question, under the run's chat template and system prompt (the encoding of the answer
log-probability probe, :func:`snap_bench.evaluate.probes.logprob.answer_encoding`: answer tokens only, no
end-of-turn token). Every score is oriented so that HIGHER means "more likely a member"; the AUC of each
attack is scikit-learn's ``roc_auc_score`` with members as the positive class. 1.0: members perfectly
identified; 0.5: no trace of which items were trained on; below 0.5: the members stand out the other way
(e.g. their answers were pushed below the held-out ones'), which is a trace too.

The attacks, over the answer's token log-probabilities log p(x_t | x_<t):

- ``loss`` (LOSS; Yeom et al. 2018, "Privacy Risk in Machine Learning", arXiv 1709.01604): the mean token
  log-likelihood, i.e. minus the loss.
- ``zlib`` (Carlini et al. 2021, "Extracting Training Data from Large Language Models", USENIX Security,
  arXiv 2012.07805): the mean token log-likelihood divided by the zlib entropy of the text, the length in
  bytes of ``zlib.compress`` of the answer's UTF-8 bytes (as in MIMIR and open-unlearning).
- ``mink`` (Min-K% Prob; Shi et al. 2024, "Detecting Pretraining Data from Large Language Models", ICLR,
  arXiv 2310.16789): the mean of the lowest k% token log-probabilities (k = 20%).
- ``minkpp`` (Min-K%++; Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training Data
  from Large Language Models", arXiv 2404.02936): each token's log-probability standardised by the
  next-token distribution, (log p(x_t) − μ_t) / σ_t with μ_t = E_{z~p(·|x_<t)}[log p(z)] and σ_t² =
  E_z[(log p(z) − μ_t)²], then the mean of the lowest k% (k = 20%).

Min-K% and Min-K%++ take max(1, ⌊k·T⌋) of an answer's T tokens (the papers' ⌊k·T⌋, at least one token,
as open-unlearning does); σ_t is floored at 1e-3 (a next-token distribution that is nearly one-hot).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping, Sequence

import torch

from snap_bench.logprobs import labelled_logits
from snap_bench.tasks import Item, stratified_sample

ATTACKS = ("loss", "zlib", "mink", "minkpp")
MIN_K = 0.2  # the k of Min-K% and Min-K%++, both papers' main setting
_SIGMA_FLOOR = 1e-3
_POSITIONS = 256  # positions whose vocabulary statistics are computed at once (bounds the memory)


def token_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: log p(target), and μ, σ of log p(·) under the next-token distribution p(·).

    ``logits`` is (positions, vocabulary); ``targets`` (positions,). Computed in float32, a few hundred
    positions at a time, so the full-vocabulary log-softmax of a whole batch is never held at once."""
    logp, mu, sigma = [], [], []
    for lg, tg in zip(logits.split(_POSITIONS), targets.split(_POSITIONS)):
        lsm = torch.log_softmax(lg.float(), dim=-1)
        p = lsm.exp()
        m = (p * lsm).sum(-1)
        var = (p * (lsm - m[:, None]) ** 2).sum(-1)
        logp.append(lsm.gather(1, tg[:, None]).squeeze(1))
        mu.append(m)
        sigma.append(var.sqrt().clamp_min(_SIGMA_FLOOR))
    if not logp:
        empty = logits.new_zeros(0, dtype=torch.float32)
        return empty, empty, empty
    return torch.cat(logp), torch.cat(mu), torch.cat(sigma)


def _lowest_mean(x: torch.Tensor, k: float) -> float:
    n = max(1, int(k * x.numel()))
    return float(torch.sort(x.double()).values[:n].mean())


def attack_scores(logp: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, text: str,
                  k: float = MIN_K) -> dict[str, float]:
    """The four scores of one answer (higher = more likely a member) from its tokens' log-probabilities and
    next-token statistics (:func:`token_stats`) and its text; NaN for an answer without tokens."""
    if logp.numel() == 0:
        return {a: float("nan") for a in ATTACKS}
    loss = float(logp.double().mean())
    return {
        "loss": loss,
        "zlib": loss / len(zlib.compress(text.encode("utf-8"))),
        "mink": _lowest_mean(logp, k),
        "minkpp": _lowest_mean((logp - mu) / sigma, k),
    }


@torch.no_grad()
def mia_scores(model, tokenizer, items: Sequence[Item], *, system: str | None = None, batch_size: int = 16,
               k: float = MIN_K) -> dict[str, dict[str, float]]:
    """Item id -> the four attack scores of its true answer as the reply to its question (see the module)."""
    from snap_bench.evaluate.probes.logprob import answer_batches

    out: dict[str, dict[str, float]] = {}
    for chunk, batch in answer_batches(model, tokenizer, items, system, batch_size):
        logits, targets, rows = labelled_logits(model, batch)
        logp, mu, sigma = (t.cpu() for t in token_stats(logits, targets))
        rows = rows.cpu()
        for j, i in enumerate(chunk):
            sel = rows == j
            out[items[i].id] = attack_scores(logp[sel], mu[sel], sigma[sel], items[i].answer.strip(), k)
    return out


def mia_items(members: Sequence[Item], nonmembers: Sequence[Item], limit: int | None,
              seed: int) -> tuple[list[Item], list[Item]]:
    """Equal numbers of members and non-members, at most ``limit`` each: a seeded sample stratified by
    category (:func:`stratified_sample`) of the larger side, never its first N."""
    n = min(len(members), len(nonmembers), *(() if limit is None else (limit,)))
    return (stratified_sample(list(members), n, seed, "mia-members")[0],
            stratified_sample(list(nonmembers), n, seed, "mia-nonmembers")[0])


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float | None:
    """ROC AUC of separating members (positive) from non-members by score, higher = member; ties count
    half. Non-finite scores are left out; None when either side has none left."""
    from sklearn.metrics import roc_auc_score

    pos = [s for s in member_scores if math.isfinite(s)]
    neg = [s for s in nonmember_scores if math.isfinite(s)]
    if not pos or not neg:
        return None
    return float(roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg))


def mia_result(before: Mapping[str, Mapping[str, float]] | None, after: Mapping[str, Mapping[str, float]],
               members: Sequence[Item], nonmembers: Sequence[Item]) -> dict[str, Any]:
    """Per attack the AUC before (the untrained model; None without its scores) and after unlearning and
    the change, with the numbers of members and non-members scored."""

    def side(scores, its, attack):
        return [scores[it.id][attack] for it in its if it.id in scores]

    out: dict[str, Any] = {}
    for a in ATTACKS:
        b = auc(side(before, members, a), side(before, nonmembers, a)) if before is not None else None
        af = auc(side(after, members, a), side(after, nonmembers, a))
        out[a] = {"before": b, "after": af, "delta": af - b if af is not None and b is not None else None}
    scored = lambda its: sum(1 for it in its if math.isfinite(after.get(it.id, {}).get("loss", math.nan)))  # noqa: E731
    out["n_members"], out["n_nonmembers"] = scored(members), scored(nonmembers)
    return out
