"""The per-item values behind a run's refusal metrics, and the 95 % interval of a table cell built from them.

UA, UA♣, RA, TA and cross_RA are percentages over items: UA is the % of the entity's forget questions whose
response was obliterated, RA the % of its retain questions whose response was not, and so on. Their definition
is ``evaluate/metrics.py``'s; here they are rebuilt item by item from the stored generations (each response's
verdict, at the run's last step), so a cell can carry an interval over items and seeds (``report/intervals.py``):
Wilson's over the items for one seed, the seeded two-level bootstrap for two or more. tests/test_report_items.py
checks that the item means equal the stored metrics.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable

# metric -> (eval set, the verdict that counts: obliterated for UA, not obliterated for the rest)
ITEM_METRICS = {"UA": ("forget", True), "UA_multihop": ("multihop", True), "RA": ("retain", False),
                "TA": ("general", False), "cross_RA": ("cross", False)}
SHARED_SETS = ("general", "cross")  # asked once per run, not per entity


def item_rows(generations: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """(entity, eval set, item id, obliterated) of the last step's generations: all a cell's interval needs."""
    rows = list(generations)
    last = max((g["step"] for g in rows), default=0)
    return [(g["entity"], g["eval_set"], g["item_id"], bool(g["obliterated"])) for g in rows if g["step"] == last]


def item_values(rows: list[tuple[str, str, str, bool]], entity: str, metric: str) -> dict[str, float]:
    """item id -> 100 when the item counts toward ``metric`` for ``entity``, else 0 (mean = the metric)."""
    eval_set, want = ITEM_METRICS[metric]
    shared = eval_set in SHARED_SETS
    return {item: 100.0 * (obl == want) for ent, s, item, obl in rows if s == eval_set and (shared or ent == entity)}


def cell_interval(per_seed: list[list[dict[str, float]]], key: str) -> tuple[float, float] | None:
    """(lo, hi) of a cell: ``per_seed`` holds, per seed, the item values of each of that seed's runs (several runs
    of one seed are averaged item by item first). One seed: Wilson over its items; more: the two-level bootstrap,
    seeded by ``key`` (the table, row and metric) so a report is the same every time. None without items."""
    from snap_bench.report.intervals import two_level_bootstrap, wilson

    seeds = []
    for runs in per_seed:
        common = set.intersection(*(set(v) for v in runs)) if runs else set()
        if not common:
            return None
        seeds.append([sum(v[i] for v in runs) / len(runs) for i in sorted(common)])
    if not seeds:
        return None
    if len(seeds) == 1:
        items = seeds[0]
        w = wilson(sum(items) / 100.0, len(items))
        return None if w is None else (100.0 * w[0], 100.0 * w[1])
    out = two_level_bootstrap(seeds, seed=zlib.crc32(key.encode()))
    return None if out is None else (out[1], out[2])
