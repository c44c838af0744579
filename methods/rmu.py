"""RMU (Li et al. 2024): steer the forget data's hidden states at one layer to a fixed random vector.

Representation Misdirection for Unlearning, from "The WMDP Benchmark: Measuring and Reducing Malicious
Use With Unlearning" (Li et al., ICML 2024, arXiv 2403.03218, §5), code github.com/centerforaisafety/wmdp,
``rmu/unlearn.py`` (``run_rmu``). With h_ℓ(x) the output of decoder layer ℓ at each token, θ the model
being trained and θ_0 the frozen initial model (``needs_reference``):

    L = mean_t ‖h_ℓ(x_f; θ)_t − c·u‖² / d  +  α · mean_t ‖h_ℓ(x_r; θ)_t − h_ℓ(x_r; θ_0)_t‖² / d

u is a fixed random unit vector (the code's ``torch.rand`` — uniform on [0, 1)^d, so not an isotropic
direction — divided by its norm; here drawn once per run from the run's seed), c the steering
coefficient, d the hidden size, t the tokens of the forget (x_f) and retain (x_r) batches. Pushing the
forget activations to a large, meaningless c·u scrambles what later layers read from them, while the
retain term keeps the layer's output on other data where it was. Only the MLPs of layers ℓ−2, ℓ−1 and ℓ
train: the trainer freezes every other weight for the run (the ``trainable`` hook). With
``retain_data=hard+general`` the general set D_g is a second retain stream with its own term ``general``
(same α); α = 0 drops the retain streams.

"Layer ℓ" is the output of ``model.model.layers[ℓ]`` (0-based; the code's ``module_str`` with a forward
hook), which is transformers' ``hidden_states[ℓ + 1]`` (``hidden_states[0]`` is the embeddings; for the
last layer that entry has the final norm applied, the hook's output does not).

Defaults, from the code: ``rmu/unlearn.py``'s arguments ``--layer_id 7``, ``--layer_ids 5,6,7`` and
``--param_ids 6`` (the 7th parameter of a Mistral decoder layer, ``mlp.down_proj.weight``: only the MLP's
output projection trains), and the Zephyr-7B run that made the released checkpoint (the README's
reproduction command and ``run_rmu_zephyr.ipynb``: ``--steering_coeffs 6.5,6.5 --alpha 1200,1200 --lr 5e-5
--batch_size 4 --max_num_batches 150``). Scaled to this suite's models as follows:

- ℓ: Zephyr-7B has 32 decoder layers and RMU steers layer 7, so ℓ = round(7·L/32) (Python's round,
  clamped to 0..L−1) for a model of L layers: 7 for SmolLM2-135M (L = 30; 6.56 rounds to 7), 0 for
  tiny-random (L = 2, so only layer 0's MLP trains). ``rmu_layer`` sets it directly.
- c: the coefficient only means something relative to the norm of the layer's activations, which differs
  by orders of magnitude between models (the paper tunes c per model; Adaptive RMU, Dang et al. 2024,
  arXiv 2408.06223, scales it with that norm). In the notebook's verbose log, Zephyr's frozen layer-7
  forget activations have a mean token norm of 2.5 (cyber) to 3.2 (bio), so c = 6.5 is about 2.3 times
  that norm. SmolLM2-135M's layer-7 output has a mean token norm of about 130 on this suite's forget
  questions and answers (119 over the answer tokens, 134 over all tokens; measured on 16 peter_parker
  items), so the default is c = 300 ≈ 2.3 × 130. It is a fixed number tuned for the default model: for
  another model set ``rmu_steering_coeff`` to about 2.3 times its layer-ℓ token norm (``--set
  rmu_steering_coeff=6.5`` is Zephyr's own value). On tiny-random it is merely large.
- α = 1200 as for Zephyr: both terms are squared distances over d, so with c proportional to the
  activation norm their ratio, and so α, carries over.

The text: each forget item's question and TRUE answer under the chat template (the forget stream of the
NPO family), and each retain item's question and answer (``retain_data``). The code steers every token
of raw documents, padding included; here the MSE runs over the answer tokens only by default
(``rmu_positions=answer``: the chat template's prefix is the same for forget and retain items, so its
hidden states cannot both move to c·u and stay put) or over every token but padding (``all``); padding
never counts. The code's optimiser (AdamW, lr 5e-5, no weight decay, batches of 4 + 4 texts, 150 steps)
is replaced by the suite's shared fields, as for every method. Not combinable with LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snap_bench.config import MethodConfig
from snap_bench.data import IGNORE_INDEX
from snap_bench.errors import SnapBenchError
from snap_bench.methods.base import RETAIN_STREAMS, StepContext, UnlearnData, merge_streams
from snap_bench.registry import register_method

# The code's Zephyr-7B setting: steer layer 7 of 32 (``--layer_id 7``), train ℓ−2..ℓ (``--layer_ids 5,6,7``).
PAPER_LAYER, PAPER_DEPTH, TRAINED_LAYERS = 7, 32, 3
RMU_PARAMS = ("down_proj", "mlp")
RMU_POSITIONS = ("answer", "all")


def scaled_layer(n_layers: int) -> int:
    """The paper's layer 7 of 32 at the same relative depth of an ``n_layers`` model: round(7·L/32), in 0..L−1."""
    return min(n_layers - 1, max(0, round(PAPER_LAYER * n_layers / PAPER_DEPTH)))


@dataclass
class RmuConfig(MethodConfig):
    """RMU's settings: the shared fields plus the layer, the steering coefficient c, the retain weight α and
    which weights and tokens train (the code's Zephyr-7B run, scaled to the model; see the module docstring)."""

    regularizer: str = "none"
    """Li et al. use no parameter regularizer: only a few MLP matrices train, and the retain term anchors them."""
    rmu_layer: int | None = None
    """Decoder layer ℓ (0-based) whose output is steered; the MLPs of ℓ−2..ℓ train. None: the code's
    ``--layer_id 7`` of Zephyr-7B's 32 layers at the same relative depth, round(7·L/32): 7 for SmolLM2-135M
    (30 layers), 0 for tiny-random (2). Must be below the model's depth (checked before anything is written)."""
    rmu_steering_coeff: float = 300.0
    """Steering coefficient c: the forget activations are pushed to c·u, ‖u‖ = 1. It is relative to the layer's
    activation norm: Zephyr's 6.5 (``--steering_coeffs 6.5,6.5``, README command) is about 2.3 times its
    layer-7 token norm (2.5–3.2 in ``run_rmu_zephyr.ipynb``'s log); 300 is 2.3 times SmolLM2-135M's (about
    130). Set about 2.3 times the layer-ℓ token norm for another model."""
    rmu_alpha: float = 1200.0
    """Weight α of the retain (and general) activation-matching terms: Zephyr's ``--alpha 1200,1200`` (README
    command and notebook). 0 = the forget term alone (no retain stream is built)."""
    rmu_params: str = "down_proj"
    """Which weights of layers ℓ−2..ℓ train: ``down_proj`` (the MLP's output projection alone, the code's
    ``--param_ids 6``; the released Zephyr_RMU differs from Zephyr only there) or ``mlp`` (every MLP weight,
    for architectures without a ``down_proj``)."""
    rmu_positions: str = "answer"
    """Tokens the two MSEs average over: ``answer`` (the answer tokens, where every method's loss acts) or
    ``all`` (every token but padding: the question and the chat template too, as the code's raw documents).
    Padding never counts (the code's does)."""

    def validate(self) -> None:
        super().validate()
        self.require_positive("rmu_steering_coeff")
        self.require_nonnegative("rmu_alpha")
        if self.rmu_layer is not None and self.rmu_layer < 0:
            raise SnapBenchError(f"--set rmu_layer={self.rmu_layer}: must be >= 0 (or none: round(7·L/32))")
        for key, valid in (("rmu_params", RMU_PARAMS), ("rmu_positions", RMU_POSITIONS)):
            if getattr(self, key) not in valid:
                raise SnapBenchError(f"--set {key}={getattr(self, key)}: expected one of {', '.join(valid)}")
        if self.lora_r:
            raise SnapBenchError(f"--set lora_r={self.lora_r}: rmu trains a few MLP weights itself and cannot "
                                 "run with LoRA; use lora_r=0")


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """(name, module) of the model's list of decoder layers: the first ``ModuleList`` named ``layers``
    (Llama, Mistral, Qwen: ``model.layers``), ``h`` (GPT-2) or ``blocks``, under any wrapper."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks"):
            return name, module
    raise SnapBenchError("rmu: cannot find the model's decoder layers (a ModuleList named layers, h or blocks)")


class _Stop(Exception):
    """Raised by the capture hook to skip the layers after ℓ (their output is not used)."""


def layer_output(model, batch, index: int) -> torch.Tensor:
    """Decoder layer ``index``'s output (batch, tokens, hidden), with its graph. A plain transformers model
    stops after that layer; a wrapped one (DDP, DeepSpeed) runs to the end, because its gradient
    synchronisation is set up only when its forward returns."""
    from transformers import PreTrainedModel

    _, layers = decoder_layers(model)
    stop = isinstance(model, PreTrainedModel)
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        if stop:
            raise _Stop

    handle = layers[index].register_forward_hook(hook)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[-1]


def masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens where ``mask`` is set and over the hidden dimensions of (h − target)²."""
    per_token = (h.float() - target.float()).pow(2).mean(-1)
    sel = mask.bool()
    return per_token[sel].mean() if bool(sel.any()) else per_token.sum() * 0.0


@register_method("rmu")
class Rmu:
    """Forget activations at layer ℓ steered to c·u, retain activations held at the frozen model's."""

    config_cls = RmuConfig
    trains = True
    needs_reference = True

    def __init__(self, cfg: RmuConfig):
        self.cfg = cfg
        self.seed = 0
        self._u: torch.Tensor | None = None

    def prepare(self, tokenizer, data: UnlearnData, seed: int) -> None:
        self.seed, self._u = seed, None  # u is drawn from the run's seed (once per phase)

    def layer(self, n_layers: int) -> int:
        """ℓ for a model of ``n_layers`` decoder layers (``rmu_layer``, else the scaled paper layer)."""
        if self.cfg.rmu_layer is None:
            return scaled_layer(n_layers)
        if self.cfg.rmu_layer >= n_layers:
            raise SnapBenchError(f"--set rmu_layer={self.cfg.rmu_layer}: the model has {n_layers} decoder layers, "
                                 f"numbered 0 to {n_layers - 1}")
        return self.cfg.rmu_layer

    def check_model(self, model_config) -> None:
        n_layers = getattr(model_config, "num_hidden_layers", None)
        if isinstance(n_layers, int):
            self.layer(n_layers)

    def trainable(self, model) -> list[str]:
        """The MLP weights (``rmu_params``) of layers ℓ−2..ℓ."""
        prefix, layers = decoder_layers(model)
        top = self.layer(len(layers))
        mlp = self.cfg.rmu_params == "mlp"
        names = [f"{prefix}.{i}.{n}" for i in range(max(0, top - TRAINED_LAYERS + 1), top + 1)
                 for n, _ in layers[i].named_parameters()
                 if n.startswith("mlp.") and (mlp or ".down_proj." in n)]
        if not names:
            raise SnapBenchError(f"--set rmu_params={self.cfg.rmu_params}: layer {top} of this model has no such "
                                 "MLP weights (mlp.down_proj); try rmu_params=mlp")
        return names

    def streams(self, data: UnlearnData):
        # the truth, whose representation is scrambled, and the data to keep ("retain", "general")
        return data.truth_streams(self.cfg.retain_data, keep=self.cfg.rmu_alpha > 0)

    def direction(self, d: int) -> torch.Tensor:
        """u: ``torch.rand`` (uniform on [0, 1)^d, as the code) normalised to length 1, from the run's seed."""
        if self._u is None or self._u.numel() != d:
            u = torch.rand(d, generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64)
            self._u = (u / u.norm()).float()
        return self._u

    def loss(self, model, batches, ctx: StepContext):
        if ctx.reference is None:
            raise RuntimeError("rmu needs the frozen initial model in ctx.reference (needs_reference = True)")
        keep = [k for k in RETAIN_STREAMS if k in batches]
        names = ["forget", *keep]
        merged = merge_streams(batches, names)
        top = self.layer(len(decoder_layers(model)[1]))
        h = layer_output(model, merged, top)  # one pass over the forget and retain streams
        mask = merged["labels"] != IGNORE_INDEX if self.cfg.rmu_positions == "answer" else merged["attention_mask"]
        bounds, start = {}, 0
        for n in names:
            bounds[n] = slice(start, start + batches[n]["input_ids"].shape[0])
            start += bounds[n].stop - bounds[n].start
        target = self.cfg.rmu_steering_coeff * self.direction(h.shape[-1]).to(h.device)
        f = bounds["forget"]
        terms = {"forget": masked_mse(h[f], target, mask[f])}
        if keep:
            rows = slice(f.stop, start)
            with torch.no_grad():
                frozen = layer_output(ctx.reference, {k: v[rows] for k, v in merged.items()}, top)
            for k in keep:
                b = bounds[k]
                ref = frozen[b.start - f.stop : b.stop - f.stop]
                terms[k] = self.cfg.rmu_alpha * masked_mse(h[b], ref, mask[b])
        return terms
