"""95 % intervals for the report's cells, and paired comparisons between rows (issue 26; docs/statistics.md).

A cell's metric is a mean over items (UA: the % of forget questions obliterated, ...) and, over seeds, the mean of
the seeds' values. Its interval accounts for both sources of chance the cell rests on:

- **one seed**: the Wilson score interval of the proportion over the items (Wilson 1927), which stays inside
  [0, 100] and is honest near 0 and 100 %, where the normal interval is not;
- **two or more seeds**: a seeded two-level bootstrap. A replicate draws the seeds with replacement, then, for each
  drawn seed, that seed's items with replacement (independently each time a seed is drawn), and takes the mean over
  the drawn seeds of their item means. The interval is the 2.5th and 97.5th percentiles of ``B`` replicates
  (B = 2,000 by default). With 3 seeds the seed level is coarse: the interval is wide, and it should be.

**Comparing two rows** (a method against the table's reference row): a paired bootstrap over the SAME items and
seeds: per seed, the per-item differences (row − reference), resampled at both levels as above. A difference is
marked only when its interval excludes 0. Rows measured on different items or seeds are not paired, and not
compared.

Every draw comes from ``numpy.random.default_rng`` seeded by the caller, so a report is the same every time.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
B_DEFAULT = 2000


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials, as proportions in [0, 1]; None when n = 0."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding would leave it a hair inside.
    return (0.0 if k <= 0 else max(0.0, centre - half)), (1.0 if k >= n else min(1.0, centre + half))


def _resampled_means(samples: list[np.ndarray], b: int, rng: np.random.Generator) -> np.ndarray:
    """(b,) replicates of the two-level bootstrap of the mean over seeds of the seeds' item means."""
    s = len(samples)
    chosen = rng.integers(s, size=(b, s))  # replicate -> the seeds it draws, one per slot
    out = np.empty((b, s))
    for i, items in enumerate(samples):
        # Item means of this seed for every (replicate, slot), each from its own draw; used where slot picks it.
        draws = items[rng.integers(len(items), size=(b, s, len(items)))].mean(axis=2)
        mask = chosen == i
        out[mask] = draws[mask]
    return out.mean(axis=1)


def two_level_bootstrap(samples: Sequence[Sequence[float]], b: int = B_DEFAULT, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float] | None:
    """(mean, lo, hi) of the mean over seeds of each seed's item mean; ``samples`` holds one sequence of item
    values per seed. None when a seed has no items or there are none."""
    arrays = [np.asarray(x, dtype=float) for x in samples]
    if not arrays or any(a.size == 0 for a in arrays):
        return None
    point = float(np.mean([a.mean() for a in arrays]))
    reps = _resampled_means(arrays, b, np.random.default_rng(seed))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return point, float(lo), float(hi)


def paired_difference(row: Sequence[dict[str, float]], ref: Sequence[dict[str, float]], b: int = B_DEFAULT,
                      seed: int = 0, level: float = 0.95) -> tuple[float, float, float] | None:
    """(mean, lo, hi) of row − reference over the items both measured, per seed paired (``row[i]`` and
    ``ref[i]`` are the same seed's item id -> value). None unless both have the same seeds and every seed shares
    items; with one seed the bootstrap runs over items alone."""
    if len(row) != len(ref) or not row:
        return None
    diffs = []
    for a, r in zip(row, ref):
        common = sorted(set(a) & set(r))
        if not common:
            return None
        diffs.append([a[i] - r[i] for i in common])
    return two_level_bootstrap(diffs, b, seed, level)


def excludes_zero(interval: tuple[float, float, float] | None) -> bool:
    """Whether a (mean, lo, hi) difference is distinguishable from none at its level."""
    return interval is not None and (interval[1] > 0 or interval[2] < 0)
