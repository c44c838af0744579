"""SNAP (Choi et al. 2024, arXiv 2406.12329): the reference method of this suite.

L = L_f + L_r + λ·SW_p(θ, θ_init)

- L_f: next-token NLL of *obliterated* responses to questions about the entity (negative
  instructions, paper eq. 1);
- L_r: the same NLL on hard retaining data, related questions with their normal answers (with
  ``retain_data=hard+general`` also a separate term ``general``, the NLL on the general set D_g;
  ``nll_per_stream`` gives one term per stream);
- SW_p: the sliced Wasserstein regularizer (``regularizers/swd.py``), added by the trainer.

This file is the one to copy for a new method: a config dataclass, ``streams`` and ``loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.base import StepContext, UnlearnData, as_examples, nll_per_stream
from snap_bench.registry import register_method


@dataclass
class SnapConfig(MethodConfig):
    """SNAP's settings: the shared fields, with the sliced Wasserstein regularizer by default."""

    regularizer: str = "swd"
    """SNAP's regularizer; ``--regularizer l2`` gives the Euclidean baseline, ``none`` the −Wasserstein ablation."""


@register_method("snap")
class Snap:
    config_cls = SnapConfig
    trains = True

    def __init__(self, cfg: SnapConfig):
        self.cfg = cfg

    def streams(self, data: UnlearnData):
        streams = {"forget": as_examples(data.forget, "response")}
        for name, items in data.retain_streams(self.cfg.retain_data).items():  # "retain" (D_r), "general" (D_g)
            streams[name] = as_examples(items, "response")
        return streams

    def loss(self, model, batches, ctx: StepContext):
        return nll_per_stream(model, batches)
