"""report/intervals.py: Wilson intervals against closed forms, the two-level bootstrap and paired differences."""

from __future__ import annotations

import math

import pytest

from snap_bench.report.intervals import excludes_zero, paired_difference, two_level_bootstrap, wilson


def test_wilson_matches_closed_forms():
    z2 = 1.959963984540054 ** 2
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2))  # k = 0: the upper end is z²/(n + z²)
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2))
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # symmetric about 1/2
    assert wilson(51, 60) == pytest.approx((0.7388, 0.9190), abs=1e-4)  # the "85 % of 60: about 74-92"
    assert wilson(3, 0) is None


def test_bootstrap_of_constant_items_is_a_point_and_is_seeded():
    assert two_level_bootstrap([[1.0] * 5, [1.0] * 7]) == (1.0, 1.0, 1.0)
    data = [[1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 1, 1], [1, 1, 1, 0, 1, 1]]
    a, b = two_level_bootstrap(data, seed=3), two_level_bootstrap(data, seed=3)
    assert a == b and a[1] <= a[0] <= a[2]
    scores = [[0.13, 0.71, 0.42, 0.98, 0.05, 0.66, 0.31], [0.52, 0.27, 0.88, 0.09, 0.44], [0.61, 0.17, 0.93, 0.38]]
    assert two_level_bootstrap(scores, seed=4) != two_level_bootstrap(scores, seed=3)  # another seed, other draws
    assert two_level_bootstrap([]) is None and two_level_bootstrap([[1.0], []]) is None


def test_bootstrap_widens_with_the_spread_between_seeds():
    """Many items per seed: the item level is tight, so the interval is set by how far apart the seeds are."""
    near = [[1.0] * 50 + [0.0] * 50, [1.0] * 52 + [0.0] * 48, [1.0] * 48 + [0.0] * 52]
    far = [[1.0] * 20 + [0.0] * 80, [1.0] * 80 + [0.0] * 20, [1.0] * 50 + [0.0] * 50]
    n_mean, n_lo, n_hi = two_level_bootstrap(near, b=2000, seed=0)
    f_mean, f_lo, f_hi = two_level_bootstrap(far, b=2000, seed=0)
    assert n_mean == pytest.approx(0.5) and f_mean == pytest.approx(0.5)
    assert (f_hi - f_lo) > 2 * (n_hi - n_lo)
    assert f_lo < 0.35 and f_hi > 0.65  # the seed means 0.2, 0.8, 0.5 dominate


def test_one_seed_bootstrap_agrees_with_wilson_in_the_middle():
    items = [1.0] * 60 + [0.0] * 40
    _, lo, hi = two_level_bootstrap([items], b=4000, seed=1)
    w_lo, w_hi = wilson(60, 100)
    assert lo == pytest.approx(w_lo, abs=0.02) and hi == pytest.approx(w_hi, abs=0.02)


def test_paired_difference_needs_the_same_seeds_and_items():
    ref = [{"a": 0.0, "b": 100.0, "c": 0.0}, {"a": 100.0, "b": 0.0, "c": 0.0}]
    same = paired_difference(ref, ref)
    assert same == (0.0, 0.0, 0.0) and not excludes_zero(same)
    up = [{k: v + 10 for k, v in s.items()} for s in ref]
    assert paired_difference(up, ref) == pytest.approx((10.0, 10.0, 10.0)) and excludes_zero(paired_difference(up, ref))
    assert paired_difference(up[:1], ref) is None  # other seeds: not paired
    assert paired_difference([{"x": 1.0}, {"y": 1.0}], ref) is None  # no item in common
    only_common = paired_difference([{"a": 5.0, "z": 99.0}], [{"a": 0.0}])
    assert only_common == (5.0, 5.0, 5.0)
    assert not math.isnan(only_common[0])
