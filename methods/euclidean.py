"""Euclidean baseline: SNAP's objective with ‖θ − θ_init‖₂ instead of the sliced Wasserstein distance.

SNAP (Choi et al. 2024, arXiv 2406.12329, Table 1 "Euclidean") trains on the same negative
instructions and hard retaining data and swaps the regularizer for the L2 distance to the initial
weights (``regularizers/l2.py``): L = L_f + L_r + λ·‖θ − θ_init‖₂, λ = 0.1 as in the paper.

It is ``snap --regularizer l2`` under its own name, so tables can list it as a method. The data
streams and loss are SNAP's (inherited); only the default regularizer differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.methods.snap import Snap
from snap_bench.registry import register_method


@dataclass
class EuclideanConfig(MethodConfig):
    """SNAP's settings with the Euclidean regularizer by default."""

    regularizer: str = "l2"
    """The paper's Euclidean baseline regularizer, ‖θ − θ_init‖₂ (not squared)."""


@register_method("euclidean")
class Euclidean(Snap):
    config_cls = EuclideanConfig
    trains = True
