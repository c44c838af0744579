"""Fisher-weighted distance to the initial weights, Σ F_i (θ_i − θ_init,i)² (EWC-style).

Elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in
neural networks", PNAS, arXiv 1612.00796) penalises moving the parameters that matter for the
knowledge to keep. Importance is the diagonal of the empirical Fisher information of the retain
data, F_i = E_x[(∂ℓ(x)/∂θ_i)²], with ℓ(x) the example's mean token NLL of its response:

    penalty(θ) = Σ_i F_i · (θ_i − θ_init,i)²

Choices, all recorded here:

- **When and on what**: F is computed once, in ``prepare`` (before the first step), in one pass
  over a sample (see below) of the method's data to keep: its ``retain`` stream (D_r, retain
  questions with their normal answers) followed by its ``general`` stream (D_g) when it has them,
  so ``retain_data=hard+general`` estimates F on D_r ∪ D_g although the trainer draws the two as
  separate streams. A method with neither (``--set retain_data=none``, or pure gradient ascent)
  falls back to the ``forget`` stream, then to the first stream it has: F then protects what the
  forget data exercises, a weaker, different prior, but the regularizer stays usable with every
  method.
- **Per-example or per-batch**: with ``fisher_batch_size = 1`` (default) every example gets its own
  backward pass and F is the exact mean of squared per-example gradients. With b > 1, F is the mean
  of squared *mini-batch* gradients, E[ḡ²] = μ² + σ²/b instead of μ² + σ² (μ, σ² the mean and
  variance of per-example gradients): b times fewer backward passes, a biased estimate that
  under-weights noisy coordinates; the normalisation below removes the overall 1/b scale.
- **Storage**: one fp32 tensor per trainable parameter (tied weights once, frozen ones skipped),
  on the parameter's device; nothing else is kept.
- **Scale**: with ``fisher_normalize`` (default) F is divided by its mean over all entries, so
  mean(F) = 1 and the penalty is on the scale of the *squared* Euclidean distance ‖θ − θ_init‖²
  (note ``l2`` is the unsquared norm): λ (``lambda_reg``) means the same across models and data
  sizes. Without it the raw Fisher is used (EWC's convention; λ must then be tuned per model).
- **Cost and sample**: a backward pass per example is the price of exactness: SmolLM2-135M on a
  busy 2-core CPU took about 3 s per example (measured), so the whole 100-item retain stream would
  add several minutes to a run. ``fisher_max_examples`` (default 32) caps the pass at a random
  sample of the stream, seeded by ``--seed`` (random because the stream is ordered by item id,
  which groups categories); None uses every example.

The three ``fisher_*`` settings are fields of the ``fisher`` method's config; any other method
run with ``--regularizer fisher`` uses their defaults.
"""

from __future__ import annotations

import random
from typing import Mapping

import torch

from snap_bench.data import FORGET_STREAM, RETAIN_STREAMS, collate
from snap_bench.logprobs import nll_per_stream
from snap_bench.registry import register_regularizer
from snap_bench.regularizers.base import trainable

KEEP_STREAMS = RETAIN_STREAMS
DEFAULT_MAX_EXAMPLES = 32


def pick_streams(encoded: Mapping[str, list]) -> list[str]:
    """``retain`` and/or ``general`` if the method has them, else ``forget``, else the first non-empty stream."""
    keep = [name for name in KEEP_STREAMS if encoded.get(name)]
    if keep:
        return keep
    if encoded.get(FORGET_STREAM):
        return [FORGET_STREAM]
    return [k for k, v in encoded.items() if v][:1]


@register_regularizer("fisher")
class FisherRegularizer:
    """Σ F_i (θ_i − θ_init,i)² with F the diagonal empirical Fisher of the retain stream."""

    def __init__(self, batch_size: int = 1, normalize: bool = True, max_examples: int | None = DEFAULT_MAX_EXAMPLES,
                 seed: int = 0, **_: object):
        self.batch_size = max(1, int(batch_size))
        self.normalize = normalize
        self.max_examples = max_examples
        self.seed = seed
        self.fisher: dict[str, torch.Tensor] = {}
        self.stream: str | None = None  # which stream(s) F was computed on, e.g. "retain+general"
        self.examples = 0  # how many examples went into F

    @classmethod
    def from_config(cls, cfg, seed: int) -> "FisherRegularizer":
        return cls(batch_size=getattr(cfg, "fisher_batch_size", 1), normalize=getattr(cfg, "fisher_normalize", True),
                   max_examples=getattr(cfg, "fisher_max_examples", DEFAULT_MAX_EXAMPLES), seed=seed)

    def estimate(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor], batches) -> None:
        """Accumulate F from an iterable of collated batches (each one ``fisher_batch_size`` examples)."""
        named = [(n, p) for n, p, _ in trainable(model, init_state)]
        acc = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
        was_training = model.training
        model.eval()  # no dropout: the Fisher of the model as it is
        n_batches, n_examples = 0, 0
        try:
            device = named[0][1].device if named else None
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}  # the weights may be on a GPU
                loss = nll_per_stream(model, {"s": batch})["s"]
                grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
                for a, g in zip(acc, grads):
                    if g is not None:
                        g = g.detach().float()
                        a.addcmul_(g, g)
                n_batches += 1
                n_examples += batch["input_ids"].shape[0]
        finally:
            model.train(was_training)
        if n_batches == 0:
            raise RuntimeError("fisher regularizer: no examples to estimate the Fisher information from")
        for a in acc:
            a.div_(n_batches)
        if self.normalize:
            total = sum(float(a.sum()) for a in acc)
            count = sum(a.numel() for a in acc)
            mean = total / max(count, 1)
            if mean > 0:
                for a in acc:
                    a.div_(mean)
        self.fisher = {n: a for (n, _), a in zip(named, acc)}
        self.examples = n_examples

    def prepare(self, model, init_state, ctx=None) -> None:
        if ctx is None:
            raise RuntimeError("fisher regularizer: prepare() needs the trainer's PrepareContext (the data to estimate F on)")
        names = pick_streams(ctx.encoded)
        if not names:
            raise RuntimeError("fisher regularizer: the method has no training data to estimate F on")
        self.stream = "+".join(names)
        items = [ex for name in names for ex in ctx.encoded[name]]
        if self.max_examples is not None and len(items) > self.max_examples:
            keep = sorted(random.Random(self.seed).sample(range(len(items)), self.max_examples))
            items = [items[i] for i in keep]
        batches = (collate(items[i : i + self.batch_size], ctx.pad_id) for i in range(0, len(items), self.batch_size))
        self.estimate(model, init_state, batches)

    def penalty(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.fisher:
            raise RuntimeError("fisher regularizer: penalty() called before prepare()")
        total = None
        for name, param, init in trainable(model, init_state):
            f = self.fisher.get(name)
            if f is None:
                continue
            term = (f * (param.float() - init.float()).pow(2)).sum()
            total = term if total is None else total + term
        return total if total is not None else torch.zeros(())
