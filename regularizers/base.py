"""The Regularizer interface and small numerical helpers shared by regularizers."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch


@runtime_checkable
class Regularizer(Protocol):
    """``penalty`` returns a scalar tensor differentiable w.r.t. the model's trainable weights.

    ``init_state`` maps parameter names (as in ``model.named_parameters()``) to frozen copies of
    their values before training. ``penalty`` is required; the other members are optional hooks
    whose defaults (``OPTIONAL_HOOKS``) registration fills in, so the trainer calls them directly.
    """

    active: bool
    """False: the trainer never calls ``penalty`` (the ``none`` regularizer). Default True."""

    def penalty(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor]) -> torch.Tensor: ...

    def prepare(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor], ctx: Any = None) -> None:
        """Called once before the first step (e.g. Fisher's diagonal, SWD's flattened θ_init).
        Default: nothing."""
        ...

    @classmethod
    def from_config(cls, cfg: Any, seed: int) -> "Regularizer":
        """Build from the run's config (the fields it reads) and seed. Default: ``cls()``."""
        ...


def _no_prepare(self, model, init_state, ctx=None) -> None:
    return None


def _from_nothing(cls, cfg, seed: int):
    return cls()


# The optional hooks of ``Regularizer`` and the value a regularizer gets when it does not define one.
OPTIONAL_HOOKS: dict[str, Any] = {"active": True, "prepare": _no_prepare, "from_config": classmethod(_from_nothing)}


def complete_regularizer(cls: type) -> type:
    """Check a regularizer class against ``Regularizer`` and fill in the optional hooks it leaves out.
    Called by ``register_regularizer``."""
    if not hasattr(cls, "penalty"):
        raise TypeError(f"regularizer class {cls.__name__} lacks penalty (see snap_bench.regularizers.base.Regularizer)")
    for name, default in OPTIONAL_HOOKS.items():
        if not hasattr(cls, name):
            setattr(cls, name, default)
    return cls


def safe_root(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x ** (1/p)`` whose gradient at ``x == 0`` is 0 instead of inf*0 = NaN.

    At the start of training θ == θ_init, so every distance is exactly 0; a plain sqrt would
    poison the first step with NaN gradients.
    """
    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, safe ** (1.0 / p), torch.zeros_like(x))


def trainable(model: torch.nn.Module, init_state: Mapping[str, Any]):
    """(name, parameter, initial value) for every trainable parameter that has an initial value."""
    for name, param in model.named_parameters():
        if param.requires_grad and name in init_state:
            yield name, param, init_state[name]


def build_regularizer(name: str, cfg: Any, seed: int) -> Regularizer:
    """Instantiate a registered regularizer through its ``from_config`` hook."""
    from snap_bench.registry import REGULARIZERS

    cls = REGULARIZERS.get(name)
    return cls.from_config(cfg, seed)
