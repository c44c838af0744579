"""Probe 4: the share of degenerate responses (empty, or stuck in a repetition loop).

A method that "forgets" by breaking generation is visible as such.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from snap_bench.evaluate.probes.stats import _pct
from snap_bench.evaluate.scores import degenerate  # noqa: F401  (re-exported: probes' fluency is built on it)


def fluency(responses: Sequence[str]) -> float | None:
    """% of degenerate responses (see :func:`snap_bench.evaluate.scores.degenerate`); lower is better; None for no responses."""
    return _pct([degenerate(r) is not None for r in responses])


def fluency_by_set(responses: Mapping[str, Sequence[str]]) -> dict[str, float | None]:
    """:func:`fluency` per named group (e.g. eval set or framing)."""
    return {k: fluency(v) for k, v in responses.items()}
