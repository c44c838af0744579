"""The Method interface: a method supplies its data mixture and its loss; the trainer does the rest.

    @register_method("my_method")
    class MyMethod:
        config_cls = MyConfig            # a dataclass subclassing MethodConfig
        trains = True                    # False: evaluate the model as is (e.g. prompting)

        def __init__(self, cfg): self.cfg = cfg
        def streams(self, data: UnlearnData) -> dict[str, list[Example]]: ...
        def loss(self, model, batches, ctx) -> dict[str, Tensor]: ...
        # optional hooks, each with a default: trains, needs_reference, trains_copy, prepare, finish,
        # system_prompt, trainable, check_model (see Method)

``streams`` names the data the method trains on (e.g. ``{"forget": ..., "retain": ..., "general":
...}``); each optimiser step draws a share of ``batch_size`` from every stream (``forget`` one share,
``retain`` ``retain_ratio`` shares, ``general`` ``general_ratio`` shares, any other stream
``retain_ratio``; see ``trainer.plan_steps``) and passes the collated batches to ``loss`` under the
same names. ``loss`` returns named terms that the trainer sums (adding ``lambda_reg *
regularizer.penalty`` as the term ``reg``) and logs separately.

The data kept, ``retain_data``, comes as up to two streams (``UnlearnData.retain_streams``):
``retain``, the entity's hard retaining data D_r, and ``general``, the general set D_g. They are
never merged: ``hard+general`` draws a batch from each every step and a method adds one loss term
per stream (``retain`` and ``general``, with the same weight), as the authors' later code does
(Opt-Out, github.com/brightjade/Opt-Out, method "+rt+wd": forget, retain and world batches each
step, their mean NLLs added).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from snap_bench.data import RETAIN_STREAMS, Example
# The loss primitives live in snap_bench.logprobs (shared with regularizers and probes); method authors
# import them from here.
from snap_bench.logprobs import merge_streams, nll_per_stream, sequence_logprob, token_logprobs  # noqa: F401
from snap_bench.tasks import Item, Pack


@dataclass
class UnlearnData:
    """The training split of the entities being unlearned, plus the general set D_g."""

    packs: list[Pack]
    forget: list[Item]
    retain: list[Item]
    general: list[Item]
    extra: dict[str, Any] = field(default_factory=dict)

    def retain_streams(self, which: str) -> dict[str, list[Item]]:
        """The data to keep chosen by ``retain_data``, one entry per non-empty stream: ``hard`` gives
        ``{"retain": D_r}``, ``general`` ``{"general": D_g}``, ``hard+general`` both (two streams, each
        with its own share of the batch), ``none`` nothing."""
        if which not in RETAIN_SOURCES:
            raise ValueError(f"retain_data={which!r}: expected one of {', '.join(RETAIN_SOURCES)}")
        return {name: items for name, items in (("retain", self.retain), ("general", self.general))
                if name in RETAIN_SOURCES[which] and items}


    def truth_streams(self, retain_data: str, keep: bool) -> dict[str, list[Example]]:
        """The forget items with their TRUE answers (the knowledge gradient ascent pushes away and RMU
        scrambles) as ``forget``, and with ``keep`` the data to keep with its normal responses."""
        streams = {"forget": as_examples(self.forget, "answer")}
        if keep:
            streams.update({name: as_examples(items, "response") for name, items in self.retain_streams(retain_data).items()})
        return streams


# retain_data -> the streams it trains on (names as in ``retain_streams`` and in the methods' loss terms)
RETAIN_SOURCES = {"hard": ("retain",), "general": ("general",), "hard+general": ("retain", "general"), "none": ()}


def retain_terms(nll: Mapping[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """``weight * nll[name]`` for each of the ``retain`` and ``general`` streams present, as terms of those names."""
    return {k: weight * nll[k] for k in RETAIN_STREAMS if k in nll}


@dataclass
class StepContext:
    step: int
    total_steps: int
    init_state: Mapping[str, torch.Tensor]
    reference: Any = None  # a frozen copy of the initial model, for methods that ask for one


@runtime_checkable
class Method(Protocol):
    """What the runner and trainer may call on a method. ``config_cls``, ``streams`` and ``loss`` are
    required; every other member is an optional hook whose default (``OPTIONAL_HOOKS``) registration
    fills in when a method leaves it out, so callers use each hook directly, never ``getattr``."""

    config_cls: type
    trains: bool
    """False: the runner evaluates the model as it is (e.g. prompting). Default True."""
    needs_reference: bool
    """True: the trainer hands a frozen copy of the initial model in ``StepContext.reference``
    (NPO, IdK-DPO, RMU). Default False."""
    trains_copy: bool
    """True: the trainer trains a deep copy of the model, with the original (frozen) as
    ``StepContext.reference``, then calls ``finish(model, trained_copy)`` (SKU learns the entity into
    a copy and subtracts the task vector). Default False: the model itself is trained."""

    def streams(self, data: UnlearnData) -> dict[str, list[Example]]: ...

    def loss(self, model, batches: Mapping[str, dict[str, torch.Tensor]], ctx: StepContext) -> dict[str, torch.Tensor]: ...

    def prepare(self, tokenizer, data: UnlearnData, seed: int) -> None:
        """Called by the trainer before it asks for ``streams``: work that needs the tokenizer or the
        run's seed (IdK-DPO indexes each refusal's rejected answer; SKU seeds its answer shuffle).
        Default: nothing."""
        ...

    def finish(self, model, trained) -> None:
        """Called by the trainer after the last step, with the model and the model it trained (the
        same object unless ``trains_copy``); may change ``model`` in place (SKU's negation). Its time
        counts as training time. Default: nothing."""
        ...

    def system_prompt(self, packs) -> str | None:
        """The system message evaluation prompts with; default None (``--set system_prompt`` applies)."""
        ...

    def trainable(self, model) -> list[str] | None:
        """Called by the trainer before the first step, with the model it is about to train: the names
        (as ``model.named_parameters()`` gives them) of the only parameters to train. The trainer freezes
        every other parameter for the run (``requires_grad`` off, restored afterwards), so the optimiser,
        θ_init and the regularizer see the named ones alone. Raise ``SnapBenchError`` for a setting the
        model cannot take. Default None: every parameter trains (RMU names a few MLP matrices). Not
        combinable with LoRA (``lora_r`` > 0), which chooses the trainable weights itself."""
        ...

    def check_model(self, model_config) -> None:
        """Called when a run is planned, before anything is written, with the model's transformers config
        (``PretrainedConfig``; read without loading the weights): raise ``SnapBenchError`` for a setting
        this model cannot take (RMU: a layer beyond the model's depth). Default: nothing."""
        ...


def _no_system_prompt(self, packs) -> str | None:
    return None


def _all_parameters(self, model) -> list[str] | None:
    return None


def _nothing(self, *args) -> None:
    return None


# The optional hooks of ``Method`` and the value a method gets when it does not define one.
OPTIONAL_HOOKS: dict[str, Any] = {"trains": True, "needs_reference": False, "trains_copy": False,
                                  "prepare": _nothing, "finish": _nothing, "system_prompt": _no_system_prompt,
                                  "trainable": _all_parameters, "check_model": _nothing}
REQUIRED_MEMBERS = ("config_cls", "streams", "loss")


def complete_method(cls: type) -> type:
    """Check a method class against ``Method`` and fill in the optional hooks it leaves out.
    Called by ``register_method``; raises ``TypeError`` naming what is missing."""
    missing = [m for m in REQUIRED_MEMBERS if not hasattr(cls, m)]
    if missing:
        raise TypeError(f"method class {cls.__name__} lacks {', '.join(missing)} (see snap_bench.methods.base.Method)")
    for name, default in OPTIONAL_HOOKS.items():
        if not hasattr(cls, name):
            setattr(cls, name, default)
    return cls


def as_examples(items: list[Item], target: str = "response") -> list[Example]:
    """(question, target) pairs; ``target`` is ``response`` (obliterated/normal) or ``answer`` (the truth)."""
    return [Example(i.question, getattr(i, target), i.id) for i in items]
