"""Whether a run needs gradient checkpointing: its estimated training peak against a memory budget.

Checkpointing recomputes the same fp32 arithmetic (tests/test_scaling.py), so turning it on costs time
(+14 % a step for SmolLM2-135M on a 2-core CPU) and changes no number. ``gradient_checkpointing=auto``
turns it on only where the peak estimated WITHOUT it would exceed ``memory_budget_gb``.

The estimate, made when training starts (the model and any frozen reference are loaded):

    peak = resident now                                   (weights, reference, Python, torch, data; after the
                                                           probe below, whose forward pages in every weight)
         + 4 · trainable bytes                            (θ_init, gradients, AdamW's two moments)
         + activations of the largest possible step       (saved-for-backward bytes per token × tokens)
         + 2 · the largest trainable tensor               (the regularizer's transient copies)
         + 0.4 · activations                              (the heap's slack within a step)

The activations per token are measured, not modelled: one forward of a short sequence under
``torch.autograd.graph.saved_tensors_hooks`` counts the bytes autograd keeps for backward (each
storage once), plus the log-probabilities' and their gradient's vocabulary-wide rows that the
losses add. The tokens of the largest step are an upper bound: per stream, the examples drawn a
step times the stream's longest example (padding included). docs/speed.md, "Memory", compares the
estimate with the measured peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

GB = 1e9
PROBE_TOKENS = 32
HEAP_SLACK = 0.4  # of the activations: freed blocks a fragmented heap keeps within a step (module docstring)


@dataclass
class CheckpointingDecision:
    """What ``gradient_checkpointing`` resolved to and why; stored with the run (analysis ``resources``)."""

    requested: str  # auto, true or false
    used: bool
    budget_gb: float
    estimated_peak_gb: float | None  # without checkpointing; None when not estimated (true/false given)
    parts_gb: dict[str, float] | None = None

    def to_json(self) -> dict:
        return asdict(self)


def resident_bytes(device: torch.device | None = None) -> int:
    """Memory in use now where the model lives: on a CUDA device torch's allocated bytes there, else the
    process's resident set (Linux /proc; 0 where there is none)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def saved_bytes_per_token(model, tokens: int = PROBE_TOKENS) -> float:
    """Bytes autograd saves for backward per token of one forward pass (each storage counted once), plus
    the vocabulary-wide log-probabilities and their gradient that the training losses hold per token."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse, meta)
            pass
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    device = next(model.parameters()).device
    ids = torch.zeros((1, tokens), dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    # fork_rng: a model with dropout draws masks here; training must draw the same ones as without the probe.
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            out = model(input_ids=ids, use_cache=False)
        vocab = out.logits.shape[-1]
        del out
    finally:
        model.train(was_training)
    saved = sum(n for ptr, n in seen.items() if ptr not in params)
    return saved / tokens + 2 * vocab * 4  # + log-softmax output and its gradient, fp32


def step_tokens_bound(encoded: dict[str, list[dict]], per_stream: dict[str, int]) -> int:
    """Padded tokens of the largest possible step: per stream, examples a step × its longest example."""
    return sum(per_stream[k] * max((len(ex["input_ids"]) for ex in v), default=0) for k, v in encoded.items())


def estimate_peak(model, encoded, per_stream) -> dict[str, float]:
    """The training peak without checkpointing, in GB, by part (see the module's docstring)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    train_bytes = sum(p.numel() * p.element_size() for p in trainable)
    largest = max((p.numel() * p.element_size() for p in trainable), default=0)
    per_token = saved_bytes_per_token(model)  # first: its forward touches every weight, so they count as resident
    activations = per_token * step_tokens_bound(encoded, per_stream)
    parts = {
        "resident": resident_bytes(next(model.parameters()).device) / GB,
        "optimiser_state": 4 * train_bytes / GB,
        "activations": activations / GB,
        "regularizer": 2 * largest / GB,
        "heap_slack": HEAP_SLACK * activations / GB,
    }
    return {k: round(v, 3) for k, v in parts.items()}


CPU_BUDGET_GB = 6.0  # two default runs side by side fit a 24 GB machine


def budget(configured: float | None, device: torch.device) -> float:
    """``memory_budget_gb``, or its default: 6 GB on a CPU, 90 % of a CUDA device's memory."""
    if configured is not None:
        return float(configured)
    if device.type == "cuda":
        return round(0.9 * torch.cuda.get_device_properties(device).total_memory / GB, 3)
    return CPU_BUDGET_GB


def decide(requested: str, budget_gb: float, model, encoded, per_stream) -> CheckpointingDecision:
    """Resolve ``gradient_checkpointing``: ``true``/``false`` as given; ``auto`` from the estimate."""
    if requested != "auto":
        return CheckpointingDecision(requested, requested == "true", budget_gb, None)
    parts = estimate_peak(model, encoded, per_stream)
    peak = round(sum(parts.values()), 3)
    return CheckpointingDecision(requested, peak > budget_gb, budget_gb, peak, parts)
