"""Membership inference (`--set mia=true`, evaluate/mia.py): the AUC on known answers, each attack's score
against a hand computation, the members/non-members sample, an attack that finds items a model was
fine-tuned on, the config hash, and the run's `mia` analysis."""

from __future__ import annotations

import copy
import math
import zlib

import pytest
import torch

from snap_bench.config import MethodConfig
from snap_bench.evaluate.mia import ATTACKS, attack_scores, auc, mia_items, mia_result, mia_scores, token_stats
from snap_bench.tasks import Item, load_pack


# --- the AUC ---------------------------------------------------------------------------------------------

def test_auc_on_known_answers():
    assert auc([0.9, 0.8, 0.7], [0.3, 0.2, 0.1]) == 1.0  # members perfectly identified
    assert auc([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5  # no trace
    assert auc([0.1, 0.2], [0.8, 0.9, 0.7]) == 0.0  # members all score lower
    assert auc([0.9, 0.2], [0.5, 0.1]) == 0.75  # 3 of the 4 pairs ordered
    assert auc([1.0, 0.5], [0.5, 0.0]) == 0.875  # a tie counts half: (1 + 1 + 0.5 + 1) / 4


def test_auc_leaves_out_unscored_items_and_needs_both_sides():
    assert auc([0.9, math.nan], [0.1]) == 1.0
    assert auc([math.nan], [0.1]) is None
    assert auc([0.3], []) is None


# --- each attack against a hand computation ------------------------------------------------------------

def _by_hand(logits: list[list[float]], targets: list[int]):
    """log p(target), μ and σ of log p(·) per position, in plain Python floats."""
    logp, mu, sigma = [], [], []
    for row, t in zip(logits, targets):
        z = math.log(sum(math.exp(v) for v in row))
        lsm = [v - z for v in row]
        m = sum(math.exp(a) * a for a in lsm)
        var = sum(math.exp(a) * (a - m) ** 2 for a in lsm)
        logp.append(lsm[t])
        mu.append(m)
        sigma.append(math.sqrt(var))
    return logp, mu, sigma


LOGITS = [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0], [1.0, 1.0, 1.0, 1.0], [-2.0, 4.0, 0.0, 1.0],
          [0.0, 0.0, 5.0, -5.0]]
TARGETS = [0, 1, 2, 3, 2]


def test_token_stats_match_a_hand_computation():
    logp, mu, sigma = token_stats(torch.tensor(LOGITS), torch.tensor(TARGETS))
    h_logp, h_mu, h_sigma = _by_hand(LOGITS, TARGETS)
    assert logp.tolist() == pytest.approx(h_logp, abs=1e-5)
    assert mu.tolist() == pytest.approx(h_mu, abs=1e-5)
    # the uniform row has σ = 0, floored so that its standardised score stays finite
    assert sigma.tolist() == pytest.approx([max(s, 1e-3) for s in h_sigma], abs=1e-5)


def test_each_score_matches_its_definition_by_hand():
    text = "Aunt May and Uncle Ben"
    logp, mu, sigma = token_stats(torch.tensor(LOGITS), torch.tensor(TARGETS))
    got = attack_scores(logp, mu, sigma, text)
    h_logp, h_mu, h_sigma = _by_hand(LOGITS, TARGETS)
    mean = sum(h_logp) / 5
    assert got["loss"] == pytest.approx(mean, abs=1e-6)  # LOSS: mean token log-likelihood
    assert got["zlib"] == pytest.approx(mean / len(zlib.compress(text.encode("utf-8"))), abs=1e-6)
    # Min-K% and Min-K%++ with k = 20% of 5 tokens: the single lowest value
    assert got["mink"] == pytest.approx(min(h_logp), abs=1e-6)
    z = [(lp - m) / max(s, 1e-3) for lp, m, s in zip(h_logp, h_mu, h_sigma)]
    assert got["minkpp"] == pytest.approx(min(z), abs=1e-4)


def test_min_k_takes_the_lowest_fifth_and_at_least_one_token():
    ten = torch.tensor([-0.1, -5.0, -0.2, -0.3, -4.0, -0.4, -0.5, -0.6, -0.7, -0.8])
    ones, zeros = torch.ones(10), torch.zeros(10)
    got = attack_scores(ten, zeros, ones, "x")
    assert got["mink"] == pytest.approx((-5.0 - 4.0) / 2)  # 20% of 10 tokens: the two lowest
    assert got["minkpp"] == pytest.approx((-5.0 - 4.0) / 2)  # μ = 0, σ = 1: the same values
    three = attack_scores(torch.tensor([-1.0, -2.0, -3.0]), torch.zeros(3), torch.ones(3), "x")
    assert three["mink"] == -3.0  # ⌊0.6⌋ = 0 tokens: one, the lowest
    empty = attack_scores(torch.zeros(0), torch.zeros(0), torch.zeros(0), "x")
    assert all(math.isnan(v) for v in empty.values())


def test_higher_scores_mean_more_likely_a_member():
    # a sharper fit to the same tokens (higher log-probabilities) scores higher on every attack
    t = torch.tensor(TARGETS)
    base = torch.tensor(LOGITS)
    fit = base.clone()
    fit[torch.arange(5), t] += 3.0
    lo = attack_scores(*token_stats(base, t), "text")
    hi = attack_scores(*token_stats(fit, t), "text")
    assert all(hi[a] > lo[a] for a in ATTACKS)


# --- members and non-members ------------------------------------------------------------------------

def test_members_and_nonmembers_are_balanced_seeded_samples():
    forget = load_pack("peter_parker")["forget"]
    members, nonmembers = forget[:80], forget[80:]
    m, n = mia_items(members, nonmembers, 30, seed=0)
    assert len(m) == len(n) == 30
    assert {it.id for it in m} <= {it.id for it in members} and {it.id for it in n} <= {it.id for it in nonmembers}
    assert (m, n) == mia_items(list(reversed(members)), nonmembers, 30, seed=0)  # not the file order
    assert [it.id for it in n] != sorted(it.id for it in nonmembers)[:30]  # never the first N
    assert mia_items(members, nonmembers, 30, seed=1) != (m, n)
    m4, n4 = mia_items(members, nonmembers[:4], 100, seed=0)
    assert len(m4) == len(n4) == 4  # the smaller side sets the size


# --- an attack that works --------------------------------------------------------------------------

def _items(n: int) -> list[Item]:
    return [Item(id=f"x-{i}", entity="x", set="forget", category="factual", question=f"What is secret number {i}?",
                 response="I can't say.", answer=f"The secret is {w}.", keywords=(w,))
            for i, w in enumerate(["aubergine", "lighthouse", "quartz", "saxophone", "glacier", "marmalade",
                                   "tornado", "velvet"][:n])]


def test_attacks_separate_items_a_model_was_fine_tuned_on(tiny):
    from snap_bench import util
    from snap_bench.data import collate
    from snap_bench.evaluate.probes.logprob import answer_encoding
    from snap_bench.logprobs import token_logprobs

    model, tok = copy.deepcopy(tiny.model), tiny.tokenizer
    items = _items(8)
    members, nonmembers = items[:4], items[4:]
    before = mia_scores(model, tok, items, batch_size=3)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = collate([answer_encoding(tok, it.question, it.answer, None) for it in members], util.pad_id(tok))
    model.train()
    for _ in range(40):  # overfit the members' answers
        opt.zero_grad()
        (-token_logprobs(model, batch)[0].mean()).backward()
        opt.step()
    after = mia_scores(model, tok, items, batch_size=3)
    res = mia_result(before, after, members, nonmembers)
    assert res["n_members"] == res["n_nonmembers"] == 4
    for a in ATTACKS:
        assert 0.0 <= res[a]["before"] <= 1.0
        assert res[a]["delta"] == pytest.approx(res[a]["after"] - res[a]["before"])
    # every attack finds them (1.0 for each on this model and seed); LOSS, the plainest, perfectly
    assert all(res[a]["after"] > 0.5 for a in ATTACKS) and res["loss"]["after"] == 1.0, res


def test_scores_do_not_depend_on_the_batch(tiny):
    items = _items(5)
    one = mia_scores(tiny.model, tiny.tokenizer, items, batch_size=1)
    five = mia_scores(tiny.model, tiny.tokenizer, items, batch_size=5)
    for it in items:
        assert five[it.id] == pytest.approx(one[it.id], abs=1e-4)


# --- the config hash and the run --------------------------------------------------------------------

def test_mia_off_leaves_the_config_hash_as_before():
    from snap_bench.run.spec import _hashed_config

    off = _hashed_config(MethodConfig())
    assert "mia" not in off and "mia_limit" not in off  # runs stored before mia keep their hashes
    assert "mia_limit" not in _hashed_config(MethodConfig(mia_limit=7))
    on = _hashed_config(MethodConfig(mia=True))
    assert on["mia"] is True and on["mia_limit"] == 100


def test_run_reports_mia_per_entity_and_stores_it(cli, tmp_path):
    from snap_bench.store import Store

    res = tmp_path / "res"
    r = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "1",
            "--eval-limit", "4", "--set", "mia=true", "--set", "known_eval=false", "--set", "cross_eval=false",
            "--set", "dev_size=0", "--set", "select=last", "--set", "max_new_tokens=4", "--results", res,
            "--no-progress", "--json")
    assert r.code == 0, r.err
    out = r.json
    m = out["mia"]["peter_parker"]
    assert m["n_members"] == m["n_nonmembers"] == 4  # the 4 held-out forget items set the size
    for a in ATTACKS:
        assert 0.0 <= m[a]["before"] <= 1.0 and 0.0 <= m[a]["after"] <= 1.0
        assert m[a]["delta"] == pytest.approx(m[a]["after"] - m[a]["before"])
    assert "mia_before" in out["timings"] and "mia" in out["timings"]
    store = Store(res)
    try:
        assert store.analyses(out["run_id"])["mia"] == out["mia"]
    finally:
        store.close()


def test_the_text_output_shows_each_attack_before_and_after():
    from snap_bench.cli.output import mia_rows

    m = {a: {"before": 0.5, "after": 0.75, "delta": 0.25} for a in ATTACKS} | {"n_members": 4, "n_nonmembers": 4}
    text = mia_rows({"peter_parker": m})
    assert "peter_parker · 4 trained-on vs 4 held-out" in text
    assert all(f"{a:<7} before 0.500 → after 0.750 (Δ 0.250)" in text for a in ATTACKS)
