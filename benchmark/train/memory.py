"""Which gradient checkpointing a run needs: its estimated training peak against a memory budget.

Checkpointing recomputes the same fp32 arithmetic (tests/test_scaling.py), so it changes no number; it
trades time for memory. Three levels, cheapest memory last:

``off``        every activation autograd wants is kept;
``selective``  inside each decoder layer only the matmul and attention outputs are kept, the elementwise
               rest (norms, SiLU, products, rotary) is recomputed in backward (train/scaling.py);
``full``       each decoder layer keeps only its input and is recomputed whole in backward.

``gradient_checkpointing=auto`` takes the first level whose estimated peak fits ``memory_budget_gb``
(``full`` when none is estimated to fit); ``false``, ``selective`` and ``true`` (full) force one.

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
losses add. For ``selective`` the same forward also records, under a dispatch mode, which storages
the decoder layers made and which of them the kept ops made: what is saved then is everything saved
outside the layers, every kept op's output inside them (kept whether backward needs it or not), and
each layer's input. The tokens of the largest step are an upper bound: per stream, the examples drawn a
step times the stream's longest example (padding included). docs/speed.md, "Memory", compares the
estimate with the measured peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

GB = 1e9
PROBE_TOKENS = 32
HEAP_SLACK = 0.4  # of the activations: freed blocks a fragmented heap keeps within a step (module docstring)


MODES = ("off", "selective", "full")
_FORCED = {"false": "off", "selective": "selective", "true": "full"}


@dataclass
class CheckpointingDecision:
    """What ``gradient_checkpointing`` resolved to and why; stored with the run (analysis ``resources``)."""

    requested: str  # auto, true, selective or false
    used: bool  # any checkpointing (mode != off); kept for records written before the selective level
    budget_gb: float
    estimated_peak_gb: float | None  # without checkpointing; None when not estimated (a level was forced)
    parts_gb: dict[str, float] | None = None
    mode: str = "off"  # off, selective or full
    selective_peak_gb: float | None = None  # the estimate with selective checkpointing (auto only)

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
    return saved_bytes_per_token_by_mode(model, tokens)["off"]


def _layer_classes() -> tuple[type, ...]:
    try:  # the modules transformers wraps in a checkpoint (transformers >= 4.52)
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return ()
    return (GradientCheckpointingLayer,)


def _storage(t: torch.Tensor) -> tuple[int, int]:
    st = t.untyped_storage()
    return st.data_ptr(), st.nbytes()


class _Tally:
    """Storages (pointer -> bytes) seen during the probe's forward: what autograd saves (``pack``), what the
    decoder layers make and which of that the kept ops make (``mode``), and each layer's input (hooks)."""

    def __init__(self, save_ops: set):
        self.saved: dict[int, int] = {}
        self.made_inside: set[int] = set()
        self.kept: dict[int, int] = {}
        self.layer_inputs: dict[int, int] = {}
        self.depth = 0
        self.save_ops = save_ops

    def pack(self, t: torch.Tensor):
        try:
            ptr, n = _storage(t)
            self.saved[ptr] = n
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse, meta)
            pass
        return t

    def enter(self, module, args, kwargs):
        if self.depth == 0:
            for t in [*args, *kwargs.values()]:
                if isinstance(t, torch.Tensor) and t.requires_grad:
                    ptr, n = _storage(t)
                    self.layer_inputs[ptr] = n
        self.depth += 1

    def leave(self, module, args, output):
        self.depth -= 1

    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tally = self

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if tally.depth:
                    for t in out if isinstance(out, (tuple, list)) else (out,):
                        if isinstance(t, torch.Tensor):
                            ptr, n = _storage(t)
                            tally.made_inside.add(ptr)
                            if func.overloadpacket in tally.save_ops:
                                tally.kept[ptr] = n
                return out

        return Record()


def saved_bytes_per_token_by_mode(model, tokens: int = PROBE_TOKENS) -> dict[str, float | None]:
    """Per token: ``off``, what autograd saves with no checkpointing; ``selective``, what it saves with the
    decoder layers selectively checkpointed (None where the model has no checkpointable layers); both plus
    the losses' vocabulary-wide rows (see the module's docstring)."""
    from snap_bench.train.scaling import selective_save_ops

    tally = _Tally(selective_save_ops())
    layers = [m for m in model.modules() if isinstance(m, _layer_classes())]
    handles = [h for m in layers for h in (m.register_forward_pre_hook(tally.enter, with_kwargs=True),
                                           m.register_forward_hook(tally.leave))]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    device = next(model.parameters()).device
    ids = torch.zeros((1, tokens), dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    # fork_rng: a model with dropout draws masks here; training must draw the same ones as without the probe.
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.autograd.graph.saved_tensors_hooks(tally.pack, lambda t: t), torch.enable_grad(), tally.mode():
            out = model(input_ids=ids, use_cache=False)
        vocab = out.logits.shape[-1]
        del out
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    losses = 2 * vocab * 4  # log-softmax output and its gradient, fp32
    saved = {ptr: n for ptr, n in tally.saved.items() if ptr not in params}
    outside = sum(n for ptr, n in saved.items() if ptr not in tally.made_inside)
    selective = outside + sum(tally.kept.values()) + sum(tally.layer_inputs.values())
    return {"off": sum(saved.values()) / tokens + losses,
            "selective": selective / tokens + losses if layers else None}


def step_tokens_bound(encoded: dict[str, list[dict]], per_stream: dict[str, int]) -> int:
    """Padded tokens of the largest possible step: per stream, examples a step × its longest example."""
    return sum(per_stream[k] * max((len(ex["input_ids"]) for ex in v), default=0) for k, v in encoded.items())


def estimate_peak(model, encoded, per_stream) -> dict[str, float]:
    """The training peak without checkpointing, in GB, by part (see the module's docstring)."""
    return estimate_peaks(model, encoded, per_stream)[0]


def estimate_peaks(model, encoded, per_stream) -> tuple[dict[str, float], float | None]:
    """The training peak without checkpointing, in GB by part, and the total with selective checkpointing
    (None where the model has no checkpointable layers)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    train_bytes = sum(p.numel() * p.element_size() for p in trainable)
    largest = max((p.numel() * p.element_size() for p in trainable), default=0)
    per_token = saved_bytes_per_token_by_mode(model)  # first: its forward touches every weight (resident)
    tokens = step_tokens_bound(encoded, per_stream)

    def parts(activations: float) -> dict[str, float]:
        return {k: round(v, 3) for k, v in {
            "resident": resident_bytes(next(model.parameters()).device) / GB,
            "optimiser_state": 4 * train_bytes / GB,
            "activations": activations / GB,
            "regularizer": 2 * largest / GB,
            "heap_slack": HEAP_SLACK * activations / GB,
        }.items()}

    off = parts(per_token["off"] * tokens)
    sel = per_token["selective"]
    return off, None if sel is None else round(sum(parts(sel * tokens).values()), 3)


CPU_BUDGET_GB = 6.0  # two default runs side by side fit a 24 GB machine


def budget(configured: float | None, device: torch.device) -> float:
    """``memory_budget_gb``, or its default: 6 GB on a CPU, 90 % of a CUDA device's memory."""
    if configured is not None:
        return float(configured)
    if device.type == "cuda":
        return round(0.9 * torch.cuda.get_device_properties(device).total_memory / GB, 3)
    return CPU_BUDGET_GB


def decide(requested: str, budget_gb: float, model, encoded, per_stream) -> CheckpointingDecision:
    """Resolve ``gradient_checkpointing``: ``false``/``selective``/``true`` as given; ``auto`` takes the first
    of off, selective and full whose estimated peak fits the budget (full when neither estimate does)."""
    if requested != "auto":
        mode = _FORCED[requested]
        return CheckpointingDecision(requested, mode != "off", budget_gb, None, mode=mode)
    parts, selective = estimate_peaks(model, encoded, per_stream)
    peak = round(sum(parts.values()), 3)
    if peak <= budget_gb:
        mode = "off"
    elif selective is not None and selective <= budget_gb:
        mode = "selective"
    else:
        mode = "full"
    return CheckpointingDecision(requested, mode != "off", budget_gb, peak, parts, mode=mode,
                                 selective_peak_gb=selective)
