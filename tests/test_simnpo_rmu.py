"""SimNPO and RMU (issue 16): each loss against a hand computation on a hand-built batch, RMU's choice of
trainable weights through the trainer's ``trainable`` hook, and bad settings refused before anything is
written. The tests over every registered method (tests/test_methods.py) run both as well."""

import copy
import math

import pytest
import torch

from snap_bench.config import build_config
from snap_bench.errors import SnapBenchError
from snap_bench.methods.base import StepContext, UnlearnData
from snap_bench.registry import METHODS
from toy_lm import ToyLM


def make_method(name, **overrides):
    cls = METHODS.get(name)
    cfg = build_config(cls.config_cls, "cpu", {k: str(v) for k, v in overrides.items()})
    return cls(cfg), cfg


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# --- SimNPO ------------------------------------------------------------------------------------


# Row 0 answers tokens (1, 2), row 1 token 3; the second row's first two positions are prompt.
BATCH = {"input_ids": torch.tensor([[0, 1, 2], [0, 0, 3]]), "attention_mask": torch.ones(2, 3, dtype=torch.long),
         "labels": torch.tensor([[-100, 1, 2], [-100, -100, 3]])}
LOGITS = [0.0, 1.0, 2.0, 0.5]


def test_simnpo_defaults_are_the_authors_tofu_forget05_setting():
    method, cfg = make_method("simnpo")
    assert (cfg.beta, cfg.gamma, cfg.forget_weight, cfg.retain_weight, cfg.regularizer) == (2.5, 0.0, 0.1375, 1.0, "none")
    assert method.needs_reference is False and method.forget_target == "answer"


@pytest.mark.parametrize("beta,gamma", [(2.5, 0.0), (0.7, 1.5)])
def test_simnpo_loss_matches_its_formula_on_a_hand_built_case(beta, gamma):
    method, cfg = make_method("simnpo", beta=beta, gamma=gamma, forget_weight=0.5)
    log_z = math.log(sum(math.exp(v) for v in LOGITS))
    # length-normalised log-probabilities: row 0 has two answer tokens, row 1 one
    mean_logp = [((1.0 - log_z) + (2.0 - log_z)) / 2, 0.5 - log_z]
    expected = 0.5 * -(2 / beta) * sum(log_sigmoid(-beta * m - gamma) for m in mean_logp) / 2
    model = ToyLM(LOGITS)
    ctx = StepContext(step=0, total_steps=1, init_state={}, reference=None)  # reference-free
    terms = method.loss(model, {"forget": BATCH}, ctx)
    assert set(terms) == {"forget"}
    assert terms["forget"].item() == pytest.approx(expected, rel=1e-6)
    # a gradient step lowers the answers' length-normalised log-probability (ascent on their NLL)
    from snap_bench.methods.simnpo import mean_token_logprob

    terms["forget"].backward()
    before = mean_token_logprob(model, BATCH)[0].sum().item()
    with torch.no_grad():
        model.bias -= 0.5 * model.bias.grad
    assert mean_token_logprob(model, BATCH)[0].sum().item() < before


def test_simnpo_adds_the_weighted_retain_terms():
    method, _ = make_method("simnpo", retain_weight=2.0)
    ctx = StepContext(step=0, total_steps=1, init_state={}, reference=None)
    terms = method.loss(ToyLM(LOGITS), {"forget": BATCH, "retain": BATCH, "general": BATCH}, ctx)
    log_z = math.log(sum(math.exp(v) for v in LOGITS))
    nll = -((1.0 - log_z) + (2.0 - log_z) + (0.5 - log_z)) / 3  # mean token NLL over the three answer tokens
    assert set(terms) == {"forget", "retain", "general"}
    assert terms["retain"].item() == pytest.approx(2.0 * nll, rel=1e-6)
    assert terms["general"].item() == pytest.approx(2.0 * nll, rel=1e-6)


# --- RMU: loss -----------------------------------------------------------------------------------


class ToyDecoder(torch.nn.Module):
    """Embeddings, then layers that each add a fixed vector: layer ℓ's output is E[x] + Σ_{i≤ℓ} b_i."""

    def __init__(self, emb, biases):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.tensor(emb, dtype=torch.float32))
        self.layers = torch.nn.ModuleList(_Add(b) for b in biases)

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        h = self.emb[input_ids]
        for layer in self.layers:
            h = layer(h)[0]
        return h


class _Add(torch.nn.Module):
    def __init__(self, b):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(b, dtype=torch.float32))

    def forward(self, h):
        return (h + self.b,)  # a tuple, as transformers' decoder layers used to return


EMB = [[1.0, 0.0], [0.0, 2.0], [3.0, -1.0], [0.5, 0.5]]
# forget: row 0 answers positions 1-2; retain: row 0 answers position 2, padded at position 3 (its
# padding would change both MSEs if it counted: token 0's embedding differs from the others).
FORGET = {"input_ids": torch.tensor([[3, 1, 2]]), "attention_mask": torch.tensor([[1, 1, 1]]),
          "labels": torch.tensor([[-100, 1, 2]])}
RETAIN = {"input_ids": torch.tensor([[3, 2, 1, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0]]),
          "labels": torch.tensor([[-100, -100, 1, -100]])}


def _rmu_case(positions):
    method, cfg = make_method("rmu", rmu_layer=1, rmu_steering_coeff=3.0, rmu_alpha=10.0, rmu_positions=positions)
    method.prepare(None, None, seed=7)
    model = ToyDecoder(EMB, [[1.0, 1.0], [0.0, -1.0], [5.0, 5.0]])
    reference = ToyDecoder(EMB, [[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    ctx = StepContext(step=0, total_steps=1, init_state={}, reference=reference)
    return method.loss(model, {"forget": FORGET, "retain": RETAIN}, ctx), model


@pytest.mark.parametrize("positions", ["answer", "all"])
def test_rmu_loss_matches_a_hand_computation(positions):
    terms, model = _rmu_case(positions)
    u = torch.rand(2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    u = (u / u.norm()).tolist()  # the code's torch.rand direction, from the run's seed
    shift = [1.0, 0.0]  # layers 0 and 1 of the trained model add (1, 1) + (0, −1); the frozen ones add 0
    forget_tokens = [1, 2] if positions == "answer" else [3, 1, 2]
    retain_tokens = [1] if positions == "answer" else [3, 2, 1]  # never the padding

    def sq(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b)) / 2  # mean over the 2 hidden dimensions

    h = {t: [EMB[t][0] + shift[0], EMB[t][1] + shift[1]] for t in range(4)}
    forget = sum(sq(h[t], [3.0 * u[0], 3.0 * u[1]]) for t in forget_tokens) / len(forget_tokens)
    retain = 10.0 * sum(sq(h[t], EMB[t]) for t in retain_tokens) / len(retain_tokens)
    assert set(terms) == {"forget", "retain"}
    assert terms["forget"].item() == pytest.approx(forget, rel=1e-6)
    assert terms["retain"].item() == pytest.approx(retain, rel=1e-6)
    # gradients reach layers 0-1 only: layer 2 (after ℓ) plays no part
    sum(terms.values()).backward()
    assert model.layers[2].b.grad is None and model.layers[0].b.grad is not None


def test_rmu_layer_is_the_papers_7_of_32_at_the_same_depth():
    from snap_bench.methods.rmu import scaled_layer

    assert [scaled_layer(n) for n in (32, 30, 24, 2, 1)] == [7, 7, 5, 0, 0]


def test_rmu_layer_output_is_hidden_states_l_plus_1(tiny):
    """Layer ℓ's output (a forward hook that stops the plain model there) is transformers' hidden_states[ℓ+1]."""
    from snap_bench.methods.rmu import layer_output

    batch = {"input_ids": torch.tensor([[1, 5, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        hs = tiny.model(**batch, output_hidden_states=True).hidden_states
        assert torch.allclose(layer_output(tiny.model, batch, 0), hs[1])


# --- RMU: only the chosen MLP weights train ----------------------------------------------------------


def _train_rmu(tiny, pack_dir, **overrides):
    from snap_bench.regularizers.base import build_regularizer
    from snap_bench.tasks import load_pack
    from snap_bench.train.trainer import train

    pack = load_pack(str(pack_dir))
    data = UnlearnData(packs=[pack], forget=pack["forget"], retain=pack["retain"], general=[])
    method, cfg = make_method("rmu", max_steps=2, batch_size=4, retain_data="hard", rmu_steering_coeff=5.0,
                              **overrides)
    model = copy.deepcopy(tiny.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference = copy.deepcopy(tiny.model).eval().requires_grad_(False)
    res = train(model, tiny.tokenizer, method, build_regularizer("l2", cfg, 0), data, cfg, 0, reference=reference,
                progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    return res, changed, model


def test_rmu_trains_only_the_down_proj_of_layers_l_minus_2_to_l(tiny, pack_dir):
    res, changed, model = _train_rmu(tiny, pack_dir)
    assert res.steps == 2 and {"forget", "retain", "reg"} <= set(res.losses[0])
    # tiny-random has 2 layers: ℓ = round(7·2/32) = 0, so only layer 0's MLP output projection moves
    assert changed == {"model.layers.0.mlp.down_proj.weight"}
    assert all(p.requires_grad for p in model.parameters())  # the freeze is lifted after the run


def test_rmu_params_mlp_trains_every_mlp_weight_of_the_chosen_layers(tiny, pack_dir):
    _, changed, _ = _train_rmu(tiny, pack_dir, rmu_layer=1, rmu_params="mlp")
    assert changed == {f"model.layers.{i}.mlp.{w}_proj.weight" for i in (0, 1) for w in ("gate", "up", "down")}


def test_rmu_layer_beyond_the_depth_is_refused_by_the_trainer_too(tiny, pack_dir):
    """Library callers skip the CLI's check; the ``trainable`` hook refuses the layer when the model is known."""
    with pytest.raises(SnapBenchError, match="rmu_layer=5: the model has 2 decoder layers"):
        _train_rmu(tiny, pack_dir, rmu_layer=5)


def test_the_trainer_refuses_a_trainable_choice_with_lora_or_unknown_names(tiny):
    from snap_bench.config import MethodConfig
    from snap_bench.train.trainer import _trainable_names

    class Picky:
        def __init__(self, names):
            self.names = names

        def trainable(self, model):
            return self.names

    with pytest.raises(SnapBenchError, match="LoRA"):
        _trainable_names(Picky(["model.norm.weight"]), tiny.model, MethodConfig(lora_r=4))
    with pytest.raises(SnapBenchError, match="model.nope"):
        _trainable_names(Picky(["model.nope"]), tiny.model, MethodConfig())
    assert _trainable_names(Picky(None), tiny.model, MethodConfig(lora_r=4)) is None


# --- bad settings: exit 2, one line, nothing written -----------------------------------------------------


@pytest.mark.parametrize("method,setting,needle", [
    ("rmu", "rmu_layer=999", "rmu_layer=999: the model has 2 decoder layers, numbered 0 to 1"),
    ("rmu", "rmu_steering_coeff=-1", "rmu_steering_coeff=-1.0: must be a positive number"),
    ("rmu", "rmu_layer=-1", "rmu_layer=-1: must be >= 0"),
    ("rmu", "lora_r=4", "cannot run with LoRA"),
    ("simnpo", "beta=0", "beta=0.0: must be a positive number"),
    ("simnpo", "gamma=-1", "gamma=-1.0: must be >= 0"),
])
def test_bad_simnpo_and_rmu_settings_are_one_line_exit_2_and_write_nothing(cli, tmp_path, method, setting, needle):
    results = tmp_path / "res"
    r = cli("run", "--method", method, "--entity", "peter_parker", "--model", "tiny-random", "--results", results,
            "--set", setting)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.err
    assert "Traceback" not in r.err and not results.exists()


def test_rmu_layer_beyond_the_depth_is_refused_when_planned(tmp_path):
    """The depth check runs in plan(), so a sweep or a library caller hears it before any store is opened."""
    from snap_bench.errors import SnapBenchError
    from snap_bench.run.spec import RunSpec, plan

    with pytest.raises(SnapBenchError, match="rmu_layer"):
        plan(RunSpec(method="rmu", entities=["peter_parker"], model="tiny-random", overrides={"rmu_layer": "999"},
                     results_dir=tmp_path / "res"))
    assert not (tmp_path / "res").exists()
