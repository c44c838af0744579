"""The training loop. It knows a method only through ``streams``/``loss`` and a regularizer only
through ``penalty``; everything else (batching, optimiser, schedule, clipping, logging) is here.

The loop runs through ``accelerate`` (``scaling.Engine``), so the same code trains in one process
(``snap-bench run``) or on several under ``accelerate launch`` (DDP, DeepSpeed ZeRO). Every process
draws the same global batch of ``batch_size`` examples from the same seeded streams and trains on
its rows ``rank::processes``, so the global batch does not depend on the process count; the logged
losses are the means over processes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from snap_bench import util

from snap_bench.util import faults, heap
from snap_bench.data import Stream, collate, encode_example
from snap_bench.errors import NonFiniteLossError, SnapBenchError
from snap_bench.methods.base import StepContext


class NonFiniteLoss(NonFiniteLossError):
    def __init__(self, step: int, terms: dict[str, float]):
        super().__init__(f"non-finite loss at step {step}")
        self.step = step
        self.terms = terms


@dataclass
class PrepareContext:
    """What a regularizer's ``prepare`` may use (e.g. the Fisher pass over retain data)."""

    tokenizer: object
    encoded: dict[str, list[dict[str, list[int]]]]  # stream name -> encoded examples
    pad_id: int
    cfg: object
    seed: int

    def batches(self, stream: str, size: int):
        """Collated batches over one stream, in order (no shuffling)."""
        items = self.encoded.get(stream, [])
        for i in range(0, len(items), size):
            yield collate(items[i : i + size], self.pad_id)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens: int
    losses: list[dict[str, float]] = field(default_factory=list)  # per step: term -> value, plus "total"
    checkpointing: dict | None = None  # train/memory.py's decision (gradient_checkpointing, budget, estimate)


def stream_weight(cfg, name: str) -> float:
    """A stream's shares of the batch: ``forget`` 1, ``general`` (D_g) ``general_ratio``, any other
    (``retain``, SKU's ``shuffled``, ...) ``retain_ratio``."""
    if name == "forget":
        return 1.0
    return cfg.general_ratio if name == "general" else cfg.retain_ratio


def plan_steps(cfg, stream_sizes: dict[str, int]) -> tuple[int, dict[str, int]]:
    """(total optimiser steps, examples drawn from each stream per step).

    Each stream gets ``max(1, round(batch_size * w / Σw))`` examples per step, w its weight from
    :func:`stream_weight` (forget 1, retain ``retain_ratio``, general ``general_ratio``) and ``round``
    Python's (half to even); the shares are rounded independently, so they may add up to a little
    less or more than ``batch_size`` (16 over forget/retain/general at 1/1/1: 5 + 5 + 5 = 15).
    ``epochs`` counts passes over the forget stream (or the largest stream when there is no forget
    stream); the other streams are drawn from as often as that takes (cycling when they run out).
    """
    weights = {k: stream_weight(cfg, k) for k in stream_sizes}
    total_w = sum(weights.values()) or 1.0
    per_stream = {k: max(1, round(cfg.batch_size * w / total_w)) for k, w in weights.items()}
    if cfg.max_steps is not None:
        return cfg.max_steps, per_stream
    anchor = "forget" if "forget" in stream_sizes else max(stream_sizes, key=stream_sizes.get)
    return math.ceil(cfg.epochs * stream_sizes[anchor] / per_stream[anchor]), per_stream


def encode_streams(method, data, tokenizer, cfg) -> dict[str, list[dict[str, list[int]]]]:
    """The method's non-empty training streams, each example encoded (``max_length``, ``system_prompt``).
    :func:`train` trains on these; ``snap-bench bench`` counts its FLOPs over the same examples."""
    streams = {k: v for k, v in method.streams(data).items() if v}
    return {k: [encode_example(tokenizer, ex, cfg.max_length, cfg.system_prompt) for ex in v]
            for k, v in streams.items()}


def seeded_streams(encoded, cfg, seed: int) -> tuple[int, dict[str, int], dict[str, Stream]]:
    """(total steps, examples per stream per step, one seeded :class:`Stream` per stream in name order).

    Step after step, :func:`train` takes ``per_stream[k]`` examples from each ``streams[k]``; the seeds and
    length buckets are set here alone, so ``snap-bench bench`` replays the very same batches."""
    total, per_stream = plan_steps(cfg, {k: len(v) for k, v in encoded.items()})
    streams = {
        k: Stream(v, seed=seed * 1000 + i, bucket=cfg.length_bucket * per_stream[k])
        for i, (k, v) in enumerate(sorted(encoded.items()))
    }
    return total, per_stream, streams


def _optimizer(model, cfg) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def _trainable_names(method, model, cfg) -> list[str] | None:
    """The method's ``trainable`` choice, checked: every name a parameter of ``model``, none with LoRA."""
    names = method.trainable(model)
    if names is None:
        return None
    if cfg.lora_r:
        raise SnapBenchError("this method trains only some of the weights itself; it cannot run with LoRA "
                             "(--set lora_r=0)")
    known = {n for n, _ in model.named_parameters()}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SnapBenchError(f"the method chose parameters the model does not have: {', '.join(unknown) or 'none'}")
    return list(names)


def _freeze_all_but(model, names: list[str] | None) -> list[torch.nn.Parameter]:
    """Turn ``requires_grad`` off for every trainable parameter not in ``names`` (None: keep all); returns
    those turned off, for the caller to turn back on after training."""
    if names is None:
        return []
    keep = set(names)
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and n not in keep]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _lr_lambda(cfg, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant" or total <= cfg.warmup_steps:
            return 1.0
        return max(0.0, (total - step) / (total - cfg.warmup_steps))

    return f


def _check_shards(per_stream: dict[str, int], processes: int) -> None:
    """Each stream's share of the global batch must split evenly, so every process sees the same mix."""
    for k, n in per_stream.items():
        if n % processes:
            raise SnapBenchError(f"{n} {k} examples per step cannot be split evenly over {processes} processes; "
                                 f"choose --set batch_size so that each stream's share is a multiple of {processes}")


def train(model, tokenizer, method, regularizer, data, cfg, seed: int, *, reference=None, progress: bool = True,
          on_step: Callable[[int, dict[str, float]], None] | None = None, local: bool = False) -> TrainResult:
    """Unlearn in place: the one place where every method, and the relearning attack, trains.
    Raises :class:`NonFiniteLoss` if any loss term turns NaN/inf.

    The method's hooks run here in order: ``prepare`` (tokenizer, data, seed), ``trainable`` (the only
    parameters to train; the rest are frozen for the run), the loop over ``streams``/``loss`` — on a deep
    copy of the model with the original frozen as the reference when the method ``trains_copy`` —, then
    ``finish(model, trained)``, whose time counts as training.
    ``local=True`` trains in this process alone even under ``accelerate launch`` (for analyses that
    only the main process runs, such as the relearning attack).
    """
    method.prepare(tokenizer, data, seed)
    trained, frozen = model, []
    if method.trains_copy:
        model.eval()
        trained, reference = copy.deepcopy(model), model
        frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)  # the original is the reference: no gradients into it
    try:
        result = _train(trained, tokenizer, method, regularizer, data, cfg, seed, reference=reference,
                        progress=progress, on_step=on_step, local=local)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    t0 = time.perf_counter()
    method.finish(model, trained)
    result.seconds += time.perf_counter() - t0
    model.eval()
    return result


def _train(model, tokenizer, method, regularizer, data, cfg, seed: int, *, reference, progress: bool,
           on_step: Callable[[int, dict[str, float]], None] | None, local: bool) -> TrainResult:
    """The loop of :func:`train` on ``model`` itself: encode the streams, then optimise."""
    from snap_bench.train import memory
    from snap_bench.train.scaling import attach_lora, checkpointing, detach_lora, make_engine, set_checkpointing

    torch.manual_seed(seed)
    encoded = encode_streams(method, data, tokenizer, cfg)
    if not encoded:
        raise SnapBenchError(f"method has no training data (retain_data={cfg.retain_data}, forget set empty?)")
    total, per_stream, streams = seeded_streams(encoded, cfg, seed)
    result = TrainResult(steps=0, seconds=0.0, tokens=0)
    if total == 0:
        return result

    engine = make_engine(cfg, local=local, micro_batch=sum(per_stream.values()))
    if engine.num_processes > 1:
        _check_shards(per_stream, engine.num_processes)
    pad_id = util.pad_id(tokenizer)
    engine.place(model, reference)
    names = _trainable_names(method, model, cfg)  # before LoRA, which it excludes
    lora = attach_lora(model, cfg) if cfg.lora_r else None
    wrapped, frozen = model, _freeze_all_but(model, names)
    switch_checkpointing = False
    try:
        # Decided once the trainable set is final (LoRA adapters, a method's own choice): what AdamW will hold.
        decision = memory.decide(cfg.gradient_checkpointing, memory.budget(cfg.memory_budget_gb, engine.device),
                                 model, encoded, per_stream)
        result.checkpointing = decision.to_json()
        switch_checkpointing = decision.used and not checkpointing(model)
        if switch_checkpointing:
            set_checkpointing(model, decision.mode)
        # Under LoRA only the adapters require grad: θ_init, the optimiser and the regularizer see them alone.
        init_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        use_reg = cfg.lambda_reg > 0 and regularizer.active
        if use_reg:
            regularizer.prepare(model, init_state, PrepareContext(tokenizer, encoded, pad_id, cfg, seed))
        model.train()
        opt = _optimizer(model, cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
        # The forward pass goes through ``wrapped`` (DDP / DeepSpeed sync gradients there); the
        # regularizer reads the same parameters by name on the plain ``model``.
        wrapped, opt, sched = engine.prepare(model, opt, sched)
        loop = _Loop(engine, wrapped, model, method, regularizer if use_reg else None, init_state, reference, cfg, opt,
                     sched)
        loop.run(streams, per_stream, pad_id, total, result, progress, on_step)
    finally:
        model = engine.release(wrapped)
        for p in frozen:
            p.requires_grad_(True)
        if switch_checkpointing:
            set_checkpointing(model, False)
        if lora is not None:
            detach_lora(model, lora)
        model.eval()
    return result


@dataclass
class _Loop:
    engine: object
    wrapped: object  # what the forward pass goes through
    model: object  # the plain model whose parameters init_state names
    method: object
    regularizer: object | None  # None: no penalty term
    init_state: dict
    reference: object
    cfg: object
    opt: object = None
    sched: object = None

    def run(self, streams, per_stream, pad_id, total, result, progress, on_step) -> None:
        eng, cfg = self.engine, self.cfg
        processes, rank = eng.num_processes, eng.process_index
        bar = util.progress_bar(progress and eng.is_main_process, total, "train", unit="step")
        t0 = time.perf_counter()
        try:
            for step in range(total):
                # Every process draws the same global batch and keeps its rows (one process: all of them).
                batches = {k: eng.to_device(collate(s.take(per_stream[k])[rank::processes], pad_id))
                           for k, s in streams.items()}
                ctx = StepContext(step=step, total_steps=total, init_state=self.init_state, reference=self.reference)
                with eng.autocast():
                    terms = dict(self.method.loss(self.wrapped, batches, ctx))
                if self.regularizer is not None:  # outside autocast: distances between weights want fp32
                    terms["reg"] = cfg.lambda_reg * self.regularizer.penalty(self.model, self.init_state)
                loss = sum(terms.values())
                tokens = sum(int(b["attention_mask"].sum()) for b in batches.values())
                values, tokens = eng.global_values(terms, loss, tokens)
                if not all(math.isfinite(v) for v in values.values()):
                    raise NonFiniteLoss(step, values)
                self.opt.zero_grad(set_to_none=True)
                eng.backward(loss)
                if cfg.max_grad_norm:
                    eng.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.opt.step()
                self.sched.step()
                result.steps = step + 1
                faults.point("train_step")
                heap.step_done()  # under the trim policy, the step's freed pages go back to the OS
                result.tokens += tokens
                values["lr"] = self.sched.get_last_lr()[0]
                result.losses.append(values)
                if on_step:
                    on_step(step, values)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items() if k != "lr"}, refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            result.seconds = time.perf_counter() - t0
