"""The baseline methods and regularizers: registration, a run of each, every method x regularizer
pair, and one behavioural check per method (fast tier, tiny-random model, a few steps at most)."""

import copy
import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest
import torch

from snap_bench.config import build_config
from toy_lm import ToyLM
from snap_bench.evaluate.metrics import EXTRA_METRICS, METRICS
from snap_bench.data import Example, collate, encode_example
from snap_bench.methods.base import StepContext, UnlearnData, nll_per_stream
from snap_bench.models import LoadedModel
from snap_bench.registry import METHODS, REGULARIZERS
from snap_bench.regularizers.base import build_regularizer
from snap_bench.run.execute import RunSpec, execute, plan

# The paper's comparison set and the newer baselines: each must stay registered.
METHOD_NAMES = ["snap", "prompting", "euclidean", "fisher", "gradient_ascent", "grad_diff", "npo", "idk_dpo", "sku",
                "simnpo", "rmu"]
REGULARIZER_NAMES = ["swd", "l2", "fisher", "none"]
# What the parametrised tests run: every registered method and regularizer, read when the module is
# collected (before any test registers a throw-away one), so a new method file is tested without an edit here.
REGISTERED_METHODS = METHODS.names()
REGISTERED_REGULARIZERS = REGULARIZERS.names()
DEFAULT_REGULARIZER = {"snap": "swd", "prompting": "none", "euclidean": "l2", "fisher": "fisher",
                       "gradient_ascent": "none", "grad_diff": "none", "npo": "none", "idk_dpo": "none", "sku": "none",
                       "simnpo": "none", "rmu": "none"}
METRIC_KEYS = set(METRICS) | set(EXTRA_METRICS)
# The cheapest settings that still take a real optimiser step and evaluate every set.
CHEAP = {"max_steps": 1, "eval_limit": 1, "max_new_tokens": 2, "batch_size": 6, "train_size": 8, "swd_projections": 4}


def fresh(tiny) -> LoadedModel:
    """A private copy of the session's tiny model, so runs never see each other's updates."""
    return LoadedModel(copy.deepcopy(tiny.model), tiny.tokenizer, tiny.name, tiny.source)


def run_spec(tmp_path, method, entity, regularizer=None, **overrides) -> RunSpec:
    return RunSpec(method=method, entities=[str(entity)], model="tiny-random", regularizer=regularizer,
                   results_dir=tmp_path / "res", progress=False, overrides={k: str(v) for k, v in overrides.items()})


def loss_terms(tmp_path, run_id) -> set[str]:
    db = sqlite3.connect(tmp_path / "res" / "snap_bench.sqlite")
    try:
        return {t for (t,) in db.execute("SELECT DISTINCT term FROM losses WHERE run_id=?", (run_id,))}
    finally:
        db.close()


def pack_data(pack_dir) -> UnlearnData:
    from snap_bench.tasks import load_pack

    pack = load_pack(str(pack_dir))
    return UnlearnData(packs=[pack], forget=pack["forget"], retain=pack["retain"], general=[])


def make_method(name, **overrides):
    cls = METHODS.get(name)
    cfg = build_config(cls.config_cls, "cpu", {k: str(v) for k, v in overrides.items()})
    return cls(cfg), cfg


def stream_nll(model, tokenizer, examples) -> float:
    batch = collate([encode_example(tokenizer, ex, 160) for ex in examples], tokenizer.pad_token_id)
    with torch.no_grad():
        return float(nll_per_stream(model, {"s": batch})["s"])


# --- registration and the CLI ------------------------------------------------------------------


def test_all_methods_and_regularizers_are_listed(cli):
    r = cli("list", "methods", "--json")
    assert r.code == 0, r.err
    assert set(METHOD_NAMES) <= {row["name"] for row in r.json["methods"]}
    assert all(row["description"] for row in r.json["methods"])
    r = cli("list", "regularizers", "--json")
    assert r.code == 0, r.err
    assert set(REGULARIZER_NAMES) <= {row["name"] for row in r.json["regularizers"]}


def test_every_config_field_is_documented():
    """Every field of every method's config (its own and MethodConfig's) has a docstring: the --set
    reference (docs/configuration.md, `snap-bench list settings`) is generated from them by the same reader."""
    import dataclasses

    from snap_bench.cli.settings_doc import field_docs

    for name in REGISTERED_METHODS:
        cls = METHODS.get(name).config_cls
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{name}: field {f.name} has no docstring"


@pytest.mark.parametrize("method", REGISTERED_METHODS)
def test_each_method_runs_from_the_cli(cli, tmp_path, method):
    r = cli("run", "--method", method, "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "1",
            "--eval-limit", "4", "--json", "--no-progress", "--results", tmp_path / "res",
            "--set", "max_new_tokens=4", "--set", "batch_size=6", "--set", "train_size=12")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert method in DEFAULT_REGULARIZER, f"{method}: add its default regularizer to DEFAULT_REGULARIZER"
    assert out["method"] == method and out["regularizer"] == DEFAULT_REGULARIZER[method]
    m = out["metrics"]["peter_parker"]
    assert set(m) == METRIC_KEYS and all(v is None or 0 <= v <= 100 for k, v in m.items() if k != "RA_known_n")
    assert out["eval_sizes"]["peter_parker"] == {"forget": 4, "multihop": 4, "retain": 4, "general": 4, "cross": 4}
    assert out["train"]["steps"] == (0 if method == "prompting" else 1)


# The loss terms each method logs under the cpu preset (retain_data=hard+general: D_r and D_g are two
# streams, each with its own term), besides "total" and "reg".
RETAIN_GENERAL = {"forget", "retain", "general"}
EXPECTED_TERMS = {"snap": RETAIN_GENERAL, "euclidean": RETAIN_GENERAL, "fisher": RETAIN_GENERAL,
                  "gradient_ascent": {"forget"}, "grad_diff": RETAIN_GENERAL, "npo": RETAIN_GENERAL,
                  "idk_dpo": RETAIN_GENERAL, "sku": {"distort", "disassociate", "preserve", "preserve_general"},
                  "prompting": set(), "simnpo": RETAIN_GENERAL, "rmu": RETAIN_GENERAL}


@pytest.mark.parametrize("method", REGISTERED_METHODS)
def test_method_with_every_regularizer(tmp_path, tiny, method):
    assert method in EXPECTED_TERMS, f"{method}: add the loss terms it logs to EXPECTED_TERMS"
    trains = METHODS.get(method).trains
    for reg in REGISTERED_REGULARIZERS:
        out = execute(plan(run_spec(tmp_path, method, "peter_parker", reg, **CHEAP)), model_bundle=fresh(tiny))
        assert out["regularizer"] == reg
        assert set(out["metrics"]["peter_parker"]) == METRIC_KEYS
        terms = loss_terms(tmp_path, out["run_id"])
        if trains:
            assert out["train"]["steps"] == 1
            assert ("reg" in terms) == (reg != "none"), (reg, terms)
            assert terms - {"reg", "total", "lr"} == EXPECTED_TERMS[method], (reg, terms)
        else:
            assert out["train"]["steps"] == 0 and not terms


# --- behaviour ---------------------------------------------------------------------------------


def test_gradient_ascent_raises_forget_nll_while_snap_lowers_it(pack_dir, tiny):
    from snap_bench.train.trainer import train

    data = pack_data(pack_dir)
    moved = {}
    for name in ("gradient_ascent", "snap"):
        method, cfg = make_method(name, max_steps=4, lr=3e-3, batch_size=8, lambda_reg=0)
        lm = fresh(tiny)
        forget = method.streams(data)["forget"]
        before = stream_nll(lm.model, lm.tokenizer, forget)
        res = train(lm.model, lm.tokenizer, method, build_regularizer(cfg.regularizer, cfg, 0), data, cfg, 0,
                    progress=False)
        assert res.steps == 4 and all(math.isfinite(v["total"]) for v in res.losses)
        moved[name] = stream_nll(lm.model, lm.tokenizer, forget) - before
    # GA's forget targets are the TRUE answers; SNAP's are the obliterated responses.
    assert moved["gradient_ascent"] > 0.1, moved
    assert moved["snap"] < -0.1, moved


def test_gradient_ascent_uses_true_answers_and_optional_retain(pack_dir):
    data = pack_data(pack_dir)
    ga, _ = make_method("gradient_ascent")
    s = ga.streams(data)
    assert set(s) == {"forget"} and s["forget"][0].response == data.forget[0].answer
    ga_rt, _ = make_method("gradient_ascent", retain_weight=0.5)
    assert set(ga_rt.streams(data)) == {"forget", "retain"}
    gd, _ = make_method("grad_diff")
    assert set(gd.streams(data)) == {"forget", "retain"}


def _with_general(pack_dir) -> UnlearnData:
    from snap_bench.tasks import load_general

    data = pack_data(pack_dir)
    data.general = load_general()["general"][:7]
    return data


# Registered methods whose streams are not forget + the retain_data streams, and why; every other
# registered method (a new one included) must follow retain_data.
OWN_STREAMS = {"prompting": "trains nothing: no streams", "sku": "names its own streams (test just below)"}


def test_the_methods_with_streams_of_their_own_are_registered():
    assert set(OWN_STREAMS) <= set(REGISTERED_METHODS)


@pytest.mark.parametrize("method", [m for m in REGISTERED_METHODS if m not in OWN_STREAMS])
def test_hard_plus_general_gives_two_streams_retain_and_general(pack_dir, method):
    data = _with_general(pack_dir)
    # a method whose retain term is off by default (gradient ascent) builds no retain stream until it is on
    overrides = {"retain_weight": 1} if getattr(make_method(method)[1], "retain_weight", None) == 0 else {}
    m, _ = make_method(method, retain_data="hard+general", **overrides)
    s = m.streams(data)
    assert set(s) == {"forget", "retain", "general"}
    assert [ex.source for ex in s["retain"]] == [it.id for it in data.retain]  # D_r alone
    assert [ex.source for ex in s["general"]] == [it.id for it in data.general]  # D_g alone
    only_general, _ = make_method(method, retain_data="general", **overrides)
    assert set(only_general.streams(data)) == {"forget", "general"}
    hard, _ = make_method(method, retain_data="hard", **overrides)
    assert set(hard.streams(data)) == {"forget", "retain"}
    none, _ = make_method(method, retain_data="none", **overrides)
    assert set(none.streams(data)) == {"forget"}


def test_sku_stage_one_preserves_on_retain_and_general_separately(pack_dir):
    data = _with_general(pack_dir)
    method, cfg = make_method("sku", retain_data="hard+general")
    s = method.streams(data)
    assert set(s) == {"forget", "shuffled", "retain", "general"}
    assert [ex.response for ex in s["forget"]] == [it.answer for it in data.forget]  # distorts the truth
    assert [ex.source for ex in s["retain"]] == [it.id for it in data.retain]  # D_r alone
    assert [ex.source for ex in s["general"]] == [it.id for it in data.general]  # D_g alone
    assert all(ex.response == it.response for ex, it in zip(s["general"], data.general))
    # the shuffled stream pairs forget questions with other questions' answers, never their own
    truth = {it.question: it.answer for it in data.forget}
    assert s["shuffled"] and all(ex.response != truth[ex.question] for ex in s["shuffled"])
    hard, _ = make_method("sku", retain_data="hard")
    assert set(hard.streams(data)) == {"forget", "shuffled", "retain"}


def test_retain_streams_helper():
    data = UnlearnData(packs=[], forget=[], retain=["r"], general=["g"])
    assert data.retain_streams("hard+general") == {"retain": ["r"], "general": ["g"]}
    assert data.retain_streams("hard") == {"retain": ["r"]} and data.retain_streams("general") == {"general": ["g"]}
    assert data.retain_streams("none") == {}
    assert UnlearnData(packs=[], forget=[], retain=[], general=["g"]).retain_streams("hard+general") == {"general": ["g"]}
    with pytest.raises(ValueError):
        data.retain_streams("both")


@pytest.mark.parametrize("ratios,batch,expected", [
    ((1, 1), 16, {"forget": 5, "retain": 5, "general": 5}),  # round(16/3) = 5 each; the sum may fall short
    ((1, 2), 16, {"forget": 4, "retain": 4, "general": 8}),
    ((0.5, 0.5), 16, {"forget": 8, "retain": 4, "general": 4}),
    ((3, 1), 16, {"forget": 3, "retain": 10, "general": 3}),  # 3.2, 9.6, 3.2
    ((1, 0.01), 4, {"forget": 2, "retain": 2, "general": 1}),  # never below one example
])
def test_plan_steps_gives_each_stream_its_own_share(ratios, batch, expected):
    from snap_bench.config import MethodConfig
    from snap_bench.train.trainer import plan_steps

    cfg = MethodConfig(batch_size=batch, retain_ratio=ratios[0], general_ratio=ratios[1], epochs=3.0)
    total, per_stream = plan_steps(cfg, {"forget": 100, "retain": 100, "general": 400})
    weights = {"forget": 1.0, "retain": ratios[0], "general": ratios[1]}
    rule = {k: max(1, round(batch * w / sum(weights.values()))) for k, w in weights.items()}
    assert per_stream == expected == rule
    assert total == math.ceil(3.0 * 100 / expected["forget"])  # epochs: passes over the forget stream
    # two streams (retain_data=hard) are split as before: 8 + 8
    assert plan_steps(MethodConfig(batch_size=16), {"forget": 100, "retain": 100})[1] == {"forget": 8, "retain": 8}


def test_a_training_step_logs_forget_retain_and_general_terms(pack_dir, tiny):
    from snap_bench.train.trainer import train

    data = _with_general(pack_dir)
    method, cfg = make_method("snap", retain_data="hard+general", max_steps=1, batch_size=6)
    lm = fresh(tiny)
    res = train(lm.model, lm.tokenizer, method, build_regularizer(cfg.regularizer, cfg, 0), data, cfg, 0,
                progress=False)
    assert res.steps == 1
    step = res.losses[0]
    assert {"forget", "retain", "general", "total"} <= set(step)
    terms = {k: v for k, v in step.items() if k not in ("total", "lr")}
    assert step["total"] == pytest.approx(sum(terms.values()), rel=1e-5)


def test_fisher_estimates_on_retain_and_general_together(pack_dir, tiny):
    reg, _, _ = _fisher_setup(tiny, pack_dir, streams=("forget", "retain", "general"))
    assert reg.stream == "retain+general" and reg.examples == 12


def test_npo_loss_matches_its_formula_on_a_hand_built_case():
    method, cfg = make_method("npo")
    assert cfg.beta == 0.1 and cfg.retain_weight == 1.0 and method.needs_reference
    policy, reference = ToyLM([0.0, 1.0, 2.0, 0.5]), ToyLM([0.0, 0.0, 0.0, 0.0])
    # Row 0 answers tokens (1, 2); row 1 answers token 3. Labels mark the answer tokens.
    batch = {"input_ids": torch.tensor([[0, 1, 2], [0, 0, 3]]),
             "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "labels": torch.tensor([[-100, 1, 2], [-100, -100, 3]])}
    log_z = math.log(sum(math.exp(v) for v in [0.0, 1.0, 2.0, 0.5]))
    logp = [(1.0 - log_z) + (2.0 - log_z), 0.5 - log_z]
    ref = [2 * -math.log(4), -math.log(4)]
    beta = 0.1

    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    expected = -(2 / beta) * sum(log_sigmoid(-beta * (a - b)) for a, b in zip(logp, ref)) / 2
    ctx = StepContext(step=0, total_steps=1, init_state={}, reference=reference)
    terms = method.loss(policy, {"forget": batch}, ctx)
    assert set(terms) == {"forget"}
    assert terms["forget"].item() == pytest.approx(expected, rel=1e-5)
    # At the reference the loss is (2/β)·log 2, and its gradient pushes the answers' probability down.
    at_ref = method.loss(reference, {"forget": batch}, ctx)["forget"]
    assert at_ref.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    at_ref.backward()
    probs = torch.softmax(reference.bias.detach(), -1)
    assert reference.bias.grad[1:].gt(0).all() and reference.bias.grad[0] < 0, (reference.bias.grad, probs)


def test_idk_dpo_pairs_each_refusal_with_its_true_answer(pack_dir, tiny):
    data = pack_data(pack_dir)
    method, cfg = make_method("idk_dpo")
    tok = tiny.tokenizer
    method.prepare(tok, data, 0)
    items = data.forget[:3]
    chosen = collate([encode_example(tok, Example(it.question, it.response), cfg.max_length) for it in items],
                     tok.pad_token_id)
    rejected = method.rejected_batch(chosen)
    for row, it in enumerate(items):
        answer_ids = rejected["input_ids"][row][rejected["labels"][row] != -100]
        assert tok.decode(answer_ids, skip_special_tokens=True).strip() == it.answer
    ctx = StepContext(step=0, total_steps=1, init_state={}, reference=tiny.model)
    with torch.no_grad():
        loss = method.loss(tiny.model, {"forget": chosen}, ctx)["forget"]
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)  # policy == reference


def _fisher_setup(tiny, pack_dir, streams=("retain",), **kw):
    from snap_bench.regularizers.fisher import FisherRegularizer
    from snap_bench.train.trainer import PrepareContext

    data = pack_data(pack_dir)
    model = copy.deepcopy(tiny.model)
    tok = tiny.tokenizer
    src = {"retain": data.retain[:6], "forget": data.forget[:6], "general": data.retain[6:12]}
    encoded = {s: [encode_example(tok, Example(it.question, it.response), 160) for it in src[s]] for s in streams}
    init = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    reg = FisherRegularizer(**kw)
    reg.prepare(model, init, PrepareContext(tok, encoded, tok.pad_token_id, None, 0))
    return reg, model, init


def test_fisher_penalty_is_zero_at_init_and_weighs_high_fisher_moves_more(pack_dir, tiny):
    reg, model, init = _fisher_setup(tiny, pack_dir)
    assert reg.stream == "retain" and reg.examples == 6
    assert set(reg.fisher) == set(init)
    assert all(f.dtype == torch.float32 and f.shape == init[n].shape for n, f in reg.fisher.items())
    count = sum(f.numel() for f in reg.fisher.values())
    assert sum(float(f.sum()) for f in reg.fisher.values()) / count == pytest.approx(1.0, rel=1e-4)  # normalised
    assert reg.penalty(model, init).item() == 0.0

    name = "model.layers.0.mlp.down_proj.weight"
    f = reg.fisher[name].flatten()
    hi, lo = int(f.argmax()), int(f.argmin())
    assert f[hi] > 10 * f[lo]
    param = dict(model.named_parameters())[name]
    delta = 0.01
    penalties = {}
    for which, idx in (("hi", hi), ("lo", lo)):
        with torch.no_grad():
            param.view(-1)[idx] += delta
        penalties[which] = reg.penalty(model, init)
        penalties[which].backward()
        penalties[which + "_grad"] = param.grad.view(-1)[idx].item()
        param.grad = None
        with torch.no_grad():
            param.copy_(init[name])
    assert penalties["hi"].item() == pytest.approx(f[hi].item() * delta**2, rel=1e-3)
    assert penalties["hi"] > penalties["lo"]
    assert penalties["hi_grad"] > penalties["lo_grad"]  # the pull back is stronger where F is large


def test_fisher_falls_back_to_the_forget_stream_and_supports_batches(pack_dir, tiny):
    reg, model, init = _fisher_setup(tiny, pack_dir, streams=("forget",), batch_size=3, normalize=False)
    assert reg.stream == "forget" and reg.examples == 6
    capped, _, _ = _fisher_setup(tiny, pack_dir, max_examples=4)
    assert capped.examples == 4
    assert all(bool(torch.isfinite(f).all()) for f in reg.fisher.values())
    assert sum(float(f.sum()) for f in reg.fisher.values()) > 0


def test_prompting_leaves_weights_untouched_and_names_the_aliases(tmp_path, tiny, monkeypatch):
    from snap_bench.evaluate import metrics as evaluate_mod
    from snap_bench.tasks import load_pack

    pack = load_pack("peter_parker")
    method, _ = make_method("prompting")
    prompt = method.system_prompt([pack])
    assert "say that you do not know so you cannot answer; otherwise, answer as best as you can." in prompt
    assert all(name in prompt for name in [pack.name, *pack.aliases])

    seen = {}
    real = evaluate_mod.evaluate

    def spy(*args, **kwargs):
        seen["system"] = kwargs.get("system")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "evaluate", spy)
    lm = fresh(tiny)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    out = execute(plan(run_spec(tmp_path, "prompting", "peter_parker", max_steps=5, eval_limit=1, max_new_tokens=2)),
                  model_bundle=lm)
    assert out["train"]["steps"] == 0
    assert seen["system"] == prompt  # the evaluation questions are asked under the instruction
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())


def test_sku_stage_two_moves_weights_against_the_stage_one_task_vector(pack_dir, tiny):
    """The trainer trains a copy (stage 1, ``trains_copy``), then SKU's ``finish`` negates its task vector."""
    from snap_bench.train.trainer import train

    data = pack_data(pack_dir)
    method, cfg = make_method("sku", max_steps=2, lr=3e-3, batch_size=6, alpha=0.5)
    model = copy.deepcopy(tiny.model)
    orig = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = {}
    real_finish = method.finish

    def spy_finish(model_, trained):
        assert model_ is model and trained is not model
        # Stage 1 trained the copy: the original is untouched and trainable again by now.
        assert all(torch.equal(orig[n], p) and p.requires_grad for n, p in model.named_parameters())
        seen["task"] = {n: p.detach() - orig[n] for n, p in trained.named_parameters()}
        real_finish(model_, trained)

    method.finish = spy_finish
    res = train(model, tiny.tokenizer, method, build_regularizer("none", cfg, 0), data, cfg, 0, progress=False)
    assert res.steps == 2 and {"distort", "disassociate", "preserve"} <= set(res.losses[0])
    task = seen["task"]
    assert sum(float(t.abs().sum()) for t in task.values()) > 0
    dot, norm_task = 0.0, 0.0
    for n, p in model.named_parameters():
        moved = p.detach() - orig[n]
        torch.testing.assert_close(moved, -cfg.alpha * task[n], rtol=1e-4, atol=1e-7)
        dot += float((moved * task[n]).sum())
        norm_task += float((task[n] ** 2).sum())
    assert dot == pytest.approx(-cfg.alpha * norm_task, rel=1e-4) and dot < 0


def test_sku_random_disassociation_pairs_questions_with_other_answers(pack_dir):
    from snap_bench.methods.sku import mismatched_answers

    items = pack_data(pack_dir).forget
    pairs = mismatched_answers(items, 5, seed=0)
    assert len(pairs) == 5 * len(items)
    own = {it.question: it.answer for it in items}
    assert all(ex.response != own[ex.question] for ex in pairs)
    assert pairs == mismatched_answers(items, 5, seed=0)  # seeded


# --- one file is a method ----------------------------------------------------------------------

PLUGIN = '''
"""A method that lives in one file outside the repo."""
from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.base import as_examples, nll_per_stream
from snap_bench.registry import register_method


@dataclass
class TmpConfig(MethodConfig):
    regularizer: str = "l2"
    """Default regularizer."""


@register_method("tmp_method")
class TmpMethod:
    config_cls = TmpConfig
    trains = True

    def __init__(self, cfg):
        self.cfg = cfg

    def streams(self, data):
        return {"forget": as_examples(data.forget, "response")}

    def loss(self, model, batches, ctx):
        return {"forget": nll_per_stream(model, batches)["forget"]}
'''


def test_a_new_method_is_one_file(tmp_path):
    plugin = tmp_path / "tmp_method.py"
    plugin.write_text(PLUGIN)
    env = {**os.environ, "SNAP_BENCH_PLUGINS": str(plugin)}
    cmd = [sys.executable, "-m", "snap_bench", "run", "--method", "tmp_method", "--entity", "peter_parker",
           "--model", "tiny-random", "--max-steps", "1", "--eval-limit", "1", "--json", "--no-progress",
           "--results", str(tmp_path / "res"), "--set", "max_new_tokens=2", "--set", "batch_size=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "tmp_method" and out["regularizer"] == "l2" and out["train"]["steps"] == 1
    assert set(out["metrics"]["peter_parker"]) == METRIC_KEYS


# --- the Method and Regularizer protocols: optional hooks are declared, defaulted at registration ---

def test_registration_fills_the_optional_hooks_a_method_leaves_out():
    from snap_bench.methods.base import OPTIONAL_HOOKS
    from snap_bench.registry import Registry

    reg = Registry("method", complete=METHODS._complete)

    class Minimal:
        config_cls = object

        def streams(self, data):
            return {}

        def loss(self, model, batches, ctx):
            return {}

    cls = reg.register("minimal", Minimal)
    assert cls.trains is True and cls.needs_reference is False and cls.trains_copy is False
    assert cls().prepare(None, None, 0) is None and cls().finish(None, None) is None
    assert cls().system_prompt(["any pack"]) is None
    assert cls().trainable(object()) is None and cls().check_model(object()) is None
    assert set(OPTIONAL_HOOKS) == {"trains", "needs_reference", "trains_copy", "prepare", "finish", "system_prompt",
                                   "trainable", "check_model"}
    # a hook the method defines is kept, not overwritten
    assert METHODS.get("prompting").trains is False and METHODS.get("npo").needs_reference is True
    assert METHODS.get("sku").trains_copy is True and METHODS.get("snap").trains_copy is False
    assert METHODS.get("simnpo").needs_reference is False and METHODS.get("rmu").needs_reference is True
    assert METHODS.get("rmu").trainable is not OPTIONAL_HOOKS["trainable"]


def test_registration_rejects_a_method_or_regularizer_missing_a_required_member():
    from snap_bench.registry import REGULARIZERS, Registry

    class NoLoss:
        config_cls = object

        def streams(self, data):
            return {}

    with pytest.raises(TypeError, match="lacks loss"):
        Registry("method", complete=METHODS._complete).register("no_loss", NoLoss)
    with pytest.raises(TypeError, match="lacks penalty"):
        Registry("regularizer", complete=REGULARIZERS._complete).register("no_penalty", type("NoPenalty", (), {}))


def test_registration_fills_the_optional_hooks_a_regularizer_leaves_out():
    from snap_bench.registry import REGULARIZERS, Registry

    class Zero:
        def penalty(self, model, init_state):
            return torch.zeros(())

    cls = Registry("regularizer", complete=REGULARIZERS._complete).register("zero", Zero)
    reg = cls.from_config(build_config(METHODS.get("snap").config_cls), seed=0)
    assert isinstance(reg, Zero) and reg.active is True and reg.prepare(None, {}) is None
    assert REGULARIZERS.get("none").active is False  # its own value kept

