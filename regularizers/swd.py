"""Sliced Wasserstein distance to the initial weights (SNAP, paper eqs. 4-6).

Each weight matrix is a point cloud: its rows are samples in R^d (a 1-D tensor is one row).
Both clouds are projected on random unit directions; in 1-D the optimal transport plan just
matches sorted values, so W_p^p along a direction is the mean of |sorted(Xθ) - sorted(Yθ)|^p.
Averaging over directions and taking the 1/p root gives SW_p; the penalty sums it over tensors.

Unlike L2, SW compares the *distributions* of rows: permuting the rows of a matrix costs
nothing, so the model may reorganise its neurons as long as their overall distribution stays.
"""

from __future__ import annotations

from typing import Mapping

import torch

from snap_bench.registry import register_regularizer
from snap_bench.regularizers.base import safe_root, trainable


def random_directions(d: int, n: int, generator: torch.Generator | None = None, dtype=torch.float32,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` unit vectors in R^d, as the columns of a (d, n) matrix."""
    theta = torch.randn(d, n, generator=generator, dtype=torch.float32)
    theta = theta / theta.norm(dim=0, keepdim=True)
    return theta.to(device=device, dtype=dtype)


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1) if t.dim() <= 1 else t.reshape(t.shape[0], -1)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 100, p: float = 2,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """SW_p between two point clouds ``x`` and ``y`` of shape (n, d) (1-D tensors are one point).

    Monte Carlo over ``n_projections`` random unit directions drawn from ``generator``.
    """
    x, y = _as_rows(x), _as_rows(y)
    if x.shape != y.shape:
        raise ValueError(f"point clouds must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    theta = random_directions(x.shape[1], n_projections, generator, x.dtype, x.device)
    px = (x @ theta).sort(dim=0).values
    py = (y @ theta).sort(dim=0).values
    return safe_root((px - py).abs().pow(p).mean(), p)


@register_regularizer("swd")
class SlicedWassersteinRegularizer:
    """Σ_tensors SW_p(θ_t, θ_init,t).

    The directions are drawn once per run (per column width, from a seeded generator) and the
    sorted projections of θ_init are computed once and reused, since θ_init never changes.
    """

    def __init__(self, n_projections: int = 100, p: float = 2, seed: int = 0):
        self.n_projections = n_projections
        self.p = p
        self.seed = seed
        self._directions: dict[int, torch.Tensor] = {}
        self._init_sorted: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, cfg, seed: int) -> "SlicedWassersteinRegularizer":
        return cls(n_projections=cfg.swd_projections, p=cfg.swd_p, seed=seed)

    def _prepare_cache(self, model, init_state) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        for name, param, init in trainable(model, init_state):
            rows = _as_rows(init)
            d = rows.shape[1]
            if d not in self._directions:
                self._directions[d] = random_directions(d, self.n_projections, gen, param.dtype, param.device)
            with torch.no_grad():
                self._init_sorted[name] = (rows @ self._directions[d]).sort(dim=0).values

    def prepare(self, model, init_state, ctx=None) -> None:
        self._directions.clear()
        self._init_sorted.clear()
        self._prepare_cache(model, init_state)

    def penalty(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self._init_sorted:
            self._prepare_cache(model, init_state)
        total = None
        for name, param, _ in trainable(model, init_state):
            rows = _as_rows(param)
            proj = (rows @ self._directions[rows.shape[1]]).sort(dim=0).values
            sw = safe_root((proj - self._init_sorted[name]).abs().pow(self.p).mean(), self.p)
            total = sw if total is None else total + sw
        return total if total is not None else torch.zeros(())
