"""Sliced Wasserstein distance to the initial weights (SNAP, paper eqs. 4-6).

Each weight matrix is a point cloud: its rows are samples in R^d (a 1-D tensor is one row).
Both clouds are projected on random unit directions; in 1-D the optimal transport plan just
matches sorted values, so W_p^p along a direction is the mean of |sorted(Xθ) - sorted(Yθ)|^p.
Averaging over directions and taking the 1/p root gives SW_p; the penalty sums it over tensors.

Unlike L2, SW compares the *distributions* of rows: permuting the rows of a matrix costs
nothing, so the model may reorganise its neurons as long as their overall distribution stays.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    The directions are drawn once per run (per column width, from a seeded generator, in the
    order the widths first appear) and θ_init is projected once per direction and sorted, since
    it never changes. Each step then costs, per group of same-shape tensors, one batched
    projection, one gather and one batched sort:

    - each tensor is projected exactly as before (``rows @ θ``, so the values are bitwise the
      old ones) and the projections are stacked as (directions, rows), so each sort runs over a
      contiguous row;
    - before sorting, the current projections are put in θ_init's sorted order. θ stays close to
      θ_init, so that array is nearly sorted and sorts ~3× faster than a random one (the sort,
      not the matmul, dominated the old per-tensor penalty). The sorted values are the same, so
      the penalty and its gradient are unchanged (up to float summation order).
    """

    def __init__(self, n_projections: int = 100, p: float = 2, seed: int = 0):
        self.n_projections = n_projections
        self.p = p
        self.seed = seed
        self._directions: dict[int, torch.Tensor] = {}  # column width d -> (d, n_projections)
        self._groups: list[_ShapeGroup] = []

    @classmethod
    def from_config(cls, cfg, seed: int) -> "SlicedWassersteinRegularizer":
        return cls(n_projections=cfg.swd_projections, p=cfg.swd_p, seed=seed)

    def _prepare_cache(self, model, init_state) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        by_shape: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
        for name, param, init in trainable(model, init_state):
            rows = _as_rows(init)
            d = rows.shape[1]
            if d not in self._directions:
                self._directions[d] = random_directions(d, self.n_projections, gen, param.dtype, param.device)
            by_shape.setdefault((tuple(rows.shape), param.dtype, param.device), []).append((name, rows))
        with torch.no_grad():
            for (_, _, _), members in by_shape.items():
                theta = self._directions[members[0][1].shape[1]]
                proj = torch.stack([(rows @ theta).t() for _, rows in members])  # (k, n, rows)
                init_sorted, order = proj.sort(dim=-1)
                self._groups.append(_ShapeGroup([n for n, _ in members], theta, init_sorted, order))

    def prepare(self, model, init_state, ctx=None) -> None:
        self._directions.clear()
        self._groups.clear()
        self._prepare_cache(model, init_state)

    def penalty(self, model: torch.nn.Module, init_state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self._groups:
            self._prepare_cache(model, init_state)
        params = {name: param for name, param, _ in trainable(model, init_state)}
        total = None
        for g in self._groups:
            proj = torch.stack([(_as_rows(params[n]) @ g.theta).t() for n in g.names])
            cur = proj.gather(-1, g.init_order).sort(dim=-1).values
            diff = cur - g.init_sorted
            # p = 2 skips abs (|x|² = x² exactly): one fewer 20M-element tensor kept for backward.
            w = diff * diff if self.p == 2 else diff.abs().pow(self.p)
            sw = safe_root(w.mean(dim=(1, 2)), self.p).sum()
            total = sw if total is None else total + sw
        return total if total is not None else torch.zeros(())


@dataclass
class _ShapeGroup:
    """Trainable tensors of one shape: their names, the shared directions and θ_init's sorted projections."""

    names: list[str]
    theta: torch.Tensor  # (d, n_projections)
    init_sorted: torch.Tensor  # (k, n_projections, rows): sorted projections of θ_init
    init_order: torch.Tensor  # same shape: the permutation that sorts them
