"""Euclidean distance to the initial weights, ‖θ − θ_init‖₂ (not squared): the paper's baseline."""

from __future__ import annotations

import torch

from snap_bench.registry import register_regularizer
from snap_bench.regularizers.base import safe_root, trainable


@register_regularizer("l2")
class EuclideanRegularizer:
    """One norm over the whole trainable parameter vector."""

    def __init__(self, **_: object):
        pass

    def penalty(self, model, init_state) -> torch.Tensor:
        sq = None
        for _, param, init in trainable(model, init_state):
            s = (param - init).pow(2).sum()
            sq = s if sq is None else sq + s
        return safe_root(sq, 2) if sq is not None else torch.zeros(())
