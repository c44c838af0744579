"""The two aggregates every probe reports: a mean over finite values and a percentage of flags."""

from __future__ import annotations

import math
from typing import Sequence


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None



def _pct(flags: Sequence[bool]) -> float | None:
    return 100.0 * sum(flags) / len(flags) if flags else None
