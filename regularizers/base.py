"""The Regularizer interface and small numerical helpers shared by regularizers."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch


@runtime_checkable
class Regularizer(Protocol):
    """``penalty`` returns a scalar tensor differentiable w.r.t. the model's trainable weights.

    ``init_state`` maps parameter names (as in ``model.named_parameters()``) to frozen copies of
    their values before training. Optional: ``prepare(model, init_state, ctx)``, called once
    before the first step.
    """

    def penalty(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


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
    """Instantiate a registered regularizer; classes with ``from_config`` read their own fields."""
    from snap_bench.registry import REGULARIZERS

    cls = REGULARIZERS.get(name)
    return cls.from_config(cfg, seed) if hasattr(cls, "from_config") else cls()
