"""Scale-out for the training loop: processes (accelerate: DDP or DeepSpeed ZeRO), mixed precision,
gradient checkpointing switches and LoRA adapters (peft).

``snap-bench run`` in one process and ``accelerate launch -m snap_bench run`` on several run the
same loop (``trainer.py``); this module holds everything that differs between the two, behind
:class:`Engine`, so the loop reads like a plain PyTorch one. See docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from snap_bench.errors import SnapBenchError

_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Rank 0 evaluates between the phases of a sequential run while the other ranks wait in the next
# collective; the default 30-minute collective timeout is too short for a 7B evaluation with probes.
COLLECTIVE_TIMEOUT = timedelta(hours=3)
_NO_PEFT = "--set lora_r needs peft: pip install 'snap-bench[scale]' (or pip install peft)"


@dataclass(frozen=True)
class ProcessInfo:
    index: int
    count: int
    distributed_type: str

    @property
    def is_main(self) -> bool:
        return self.index == 0


def launched_processes() -> int:
    """How many processes the launcher (accelerate launch / torchrun) started; 1 when run directly."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def process_info() -> ProcessInfo:
    """This process's rank among the launched ones. Starts the process group when launched."""
    if launched_processes() <= 1:
        return ProcessInfo(0, 1, "NO")
    from accelerate import PartialState

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=use_cpu, timeout=COLLECTIVE_TIMEOUT)
    if state.num_processes != launched_processes():
        # Each process would train alone on the whole batch and store its own copy of the run.
        raise SnapBenchError(f"launched as {launched_processes()} processes, but accelerate set up "
                             f"{state.num_processes} ({state.distributed_type.value}): no GPU per process? "
                             "On a CPU-only machine set ACCELERATE_USE_CPU=true")
    return ProcessInfo(state.process_index, state.num_processes, str(state.distributed_type.value))


def check_scaling(cfg) -> ProcessInfo:
    """What config validation cannot know without torch and the launcher: raise before anything runs."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise SnapBenchError("--set mixed_precision=fp16 needs a CUDA GPU; on a CPU use no (fp32) or bf16")
    if cfg.lora_r:
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            raise SnapBenchError(_NO_PEFT)
    return process_info()


# --- precision ---------------------------------------------------------------------------------

FAST_BF16_ENV = "SNAP_BENCH_FAST_BF16"


def training_device_type() -> str:
    """Where training will run: ``cuda`` when accelerate will pick a GPU, else ``cpu``."""
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fast_bf16(device_type: str | None = None) -> bool:
    """Whether bf16 arithmetic is fast on the training device (what ``precision=auto`` follows).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: bf16 instructions in the cores, AMX-BF16 (AMX tiles)
    or AVX512-BF16, from torch (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``)
    or else the ``amx_bf16`` / ``avx512_bf16`` flags of ``/proc/cpuinfo``; a CPU without them (e.g.
    AVX2, or AVX-512 without BF16) emulates bf16 and is slower in it than in fp32. The environment
    variable ``SNAP_BENCH_FAST_BF16=1|0`` overrides the answer (tests; a machine torch misjudges).
    """
    forced = os.environ.get(FAST_BF16_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    device_type = device_type or training_device_type()
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu":
        return False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails says nothing
            pass
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def resolve_precision(cfg, fast: bool | None = None) -> str:
    """The precision a run uses: ``fp32``, ``bf16`` or ``fp16``, from ``precision`` and ``mixed_precision``.

    ``mixed_precision`` (accelerate's name), when set, is taken as it is (config validation has checked
    that ``precision`` agrees with it); else ``auto`` is bf16 exactly when :func:`fast_bf16` says so.
    """
    from snap_bench.config import MIXED_OF_PRECISION

    if cfg.mixed_precision != "no":
        return {v: k for k, v in MIXED_OF_PRECISION.items()}[cfg.mixed_precision]
    if cfg.precision == "auto":
        return "bf16" if (fast_bf16() if fast is None else fast) else "fp32"
    return cfg.precision


def apply_precision(cfg, fast: bool | None = None) -> dict[str, Any]:
    """Resolve the precision in place (``cfg.precision`` becomes the one used and ``cfg.mixed_precision``
    accelerate's name for it); returns what the run's environment records about it."""
    from snap_bench.config import MIXED_OF_PRECISION

    requested = cfg.precision
    if fast is None and requested == "auto" and cfg.mixed_precision == "no":
        fast = fast_bf16()
    used = resolve_precision(cfg, fast)
    cfg.precision, cfg.mixed_precision = used, MIXED_OF_PRECISION[used]
    env = {"precision": used, "precision_requested": requested}
    if fast is not None:
        env["fast_bf16"] = bool(fast)
    return env


def load_dtype(cfg, info: ProcessInfo) -> str:
    """The dtype to load the weights in: fp32, unless no fp32 copy of them is trained in the model.

    DeepSpeed with bf16/fp16 keeps the fp32 masters in its optimizer and casts the model anyway;
    under LoRA the base weights are frozen and peft keeps the adapters in fp32. Loading the half
    dtype directly then halves the host memory of every process (13.5 instead of 27 GB for 7B).
    """
    if cfg.mixed_precision in _HALF and (info.distributed_type == "DEEPSPEED" or cfg.lora_r):
        return {"bf16": "bfloat16", "fp16": "float16"}[cfg.mixed_precision]
    return "float32"


class Engine:
    """The distributed operations the trainer needs, over an ``accelerate.Accelerator``.

    ``accelerator=None`` is the plain single-process path, for training that only this process
    does (``train(..., local=True)``) while others may be waiting.
    """

    def __init__(self, accelerator=None, mixed_precision: str = "no", device: torch.device | None = None):
        self.acc = accelerator
        self.mixed_precision = mixed_precision
        self.device = accelerator.device if accelerator is not None else device
        self.num_processes = accelerator.num_processes if accelerator is not None else 1
        self.process_index = accelerator.process_index if accelerator is not None else 0
        self.is_main_process = self.process_index == 0

    @property
    def deepspeed_plugin(self):
        return getattr(self.acc.state, "deepspeed_plugin", None) if self.acc is not None else None

    def place(self, model, reference=None) -> None:
        """Model (and reference) to this process's device before θ_init is taken, so θ_init and the
        regularizer's caches live where the weights will. DeepSpeed keeps bf16/fp16 weights (fp32
        masters in its optimizer), so under it the weights are cast first, too."""
        if self.device is None:
            self.device = next(model.parameters()).device
            return
        dtype = _HALF.get(self.mixed_precision) if self.deepspeed_plugin is not None else None
        for m in (model, reference):
            if m is not None:
                m.to(device=self.device, dtype=dtype) if dtype is not None else m.to(self.device)

    def prepare(self, model, optimizer, scheduler):
        if self.acc is None:
            return model, optimizer, scheduler
        return self.acc.prepare(model, optimizer, scheduler)

    def autocast(self):
        if self.acc is not None:
            return self.acc.autocast()
        if self.mixed_precision in _HALF:
            return torch.autocast(self.device.type, dtype=_HALF[self.mixed_precision])
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device is None or self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward() if self.acc is None else self.acc.backward(loss)

    def clip_grad_norm_(self, parameters, max_norm: float) -> None:
        # Under DeepSpeed this is a no-op: the engine clips (``gradient_clipping`` in its config).
        if self.acc is None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        else:
            self.acc.clip_grad_norm_(parameters, max_norm)

    def global_values(self, terms: dict[str, torch.Tensor], loss: torch.Tensor, tokens: int) -> tuple[dict[str, float], int]:
        """Loss terms as means over processes and the token count as their sum (one collective)."""
        names = list(terms)
        if self.num_processes == 1:
            values = {k: float(v.detach()) for k, v in terms.items()}
            values["total"] = float(loss.detach())
            return values, tokens
        local = torch.stack([terms[k].detach().float().reshape(()) for k in names] + [loss.detach().float().reshape(())])
        summed = self.acc.reduce(torch.cat([local, torch.tensor([float(tokens)], device=local.device)]), "sum")
        means = (summed[:-1] / self.num_processes).tolist()
        values = dict(zip(names + ["total"], means))
        return values, int(round(float(summed[-1])))

    def release(self, wrapped):
        """The plain model back (no DDP/DeepSpeed wrapper, no autocast-patched forward) and the
        optimiser state freed, so evaluation and a later phase start clean."""
        if self.acc is None:
            return wrapped
        model = self.acc.unwrap_model(wrapped, keep_fp32_wrapper=False)
        if self.deepspeed_plugin is not None or self.device.type != "cpu":
            # DeepSpeed's engine must be destroyed; on a GPU the device cache is worth emptying. On a
            # CPU the optimiser state goes with the Accelerator, without free_memory's 0.3 s gc pass.
            self.acc.free_memory()
        return model


def make_engine(cfg, *, local: bool, micro_batch: int) -> Engine:
    """A fresh Accelerator for this training call (or the local engine).

    ``micro_batch`` is the global batch; each process trains on ``micro_batch / processes`` rows,
    which DeepSpeed needs to know because no DataLoader passes through ``prepare``.
    """
    info = process_info()
    if local and info.count > 1:
        return Engine(None, cfg.mixed_precision, device=None)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    # accelerate keeps one AcceleratorState per process; a run's phases and its analyses may ask for
    # different precisions, so each call starts from the launch environment again (the process
    # group, PartialState, is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    # split_batches: the batch the trainer hands over is the global one, so the scheduler steps once
    # per optimiser step whatever the process count.
    acc = Accelerator(mixed_precision=cfg.mixed_precision, dataloader_config=DataLoaderConfiguration(split_batches=True))
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None:
        ds = plugin.deepspeed_config
        if plugin.is_auto("train_micro_batch_size_per_gpu") or "train_micro_batch_size_per_gpu" not in ds:
            ds["train_micro_batch_size_per_gpu"] = max(1, micro_batch // acc.num_processes)
        if plugin.is_auto("gradient_clipping") or "gradient_clipping" not in ds:
            ds["gradient_clipping"] = float(cfg.max_grad_norm)
    return Engine(acc, cfg.mixed_precision)


# --- gradient checkpointing --------------------------------------------------------------------


def checkpointing(model) -> bool:
    """Whether the model recomputes activations in backward (transformers 5 calls it activation checkpointing)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


# Selective activation checkpointing saves what is dear to recompute (the matmul and attention outputs) and
# recomputes the cheap elementwise rest (norms, SiLU, products, rotary): in fp32 the same arithmetic as full
# checkpointing with about a third of the matmul FLOPs not redone (docs/speed.md, "Selective checkpointing").
SELECTIVE_SAVE_OPS = ("mm", "addmm", "bmm", "_scaled_dot_product_flash_attention_for_cpu",
                      "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                      "_scaled_dot_product_cudnn_attention")


def selective_save_ops() -> set:
    """The aten overload packets whose outputs selective checkpointing keeps (those this torch has)."""
    return {getattr(torch.ops.aten, name) for name in SELECTIVE_SAVE_OPS if hasattr(torch.ops.aten, name)}


def _selective_context():
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    save = selective_save_ops()

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op.overloadpacket in save else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def set_checkpointing(model, mode: bool | str) -> None:
    """Checkpointing ``off`` (False), ``full`` (True: each decoder layer recomputed whole) or ``selective``."""
    mode = {True: "full", False: "off"}.get(mode, mode)
    # Non-reentrant: works with frozen base weights (LoRA) and under DDP, and is what selective needs.
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = _selective_context  # called afresh for every checkpointed layer call
    on = mode != "off"
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs) if on \
            else model.activation_checkpointing_disable()
    else:  # transformers < 5
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs) if on \
            else model.gradient_checkpointing_disable()


# --- LoRA (peft) -----------------------------------------------------------------------------


@dataclass
class LoraHandle:
    peft_model: Any
    requires_grad: dict[str, bool]


def attach_lora(model, cfg) -> LoraHandle:
    """Inject LoRA adapters into ``model`` in place (peft); only the adapters stay trainable.

    The trainer keeps calling ``model`` itself: peft replaces its linear layers with adapter-wrapped
    ones, so the usual forward, ``named_parameters`` and θ_init all see the adapters.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SnapBenchError(_NO_PEFT) from None
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    targets = cfg.lora_targets.strip()
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=target_modules, bias="none", task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:  # e.g. no module matches lora_targets
        raise SnapBenchError(f"--set lora_targets={cfg.lora_targets}: {str(exc).splitlines()[0]}") from None
    return LoraHandle(peft_model, flags)


def detach_lora(model, handle: LoraHandle) -> None:
    """Merge the adapters into the weights and restore the plain model (and its requires_grad flags),
    so evaluation, ``--save`` and a later phase see an ordinary transformers model."""
    handle.peft_model.merge_and_unload()
    for n, p in model.named_parameters():
        p.requires_grad_(handle.requires_grad.get(n, True))
    if "peft_config" in model.__dict__:
        del model.__dict__["peft_config"]
