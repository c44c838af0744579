"""No regularizer: the −Wasserstein ablation."""

from __future__ import annotations

import torch

from snap_bench.registry import register_regularizer


@register_regularizer("none")
class NoRegularizer:
    active = False  # lets the trainer skip the call entirely

    def __init__(self, **_: object):
        pass

    def penalty(self, model, init_state) -> torch.Tensor:
        return torch.zeros(())
