"""The seeded item sets of a run: per-entity train / dev / eval splits, the general split and the
cross-entity sets. Held-out (``eval``) items are for reporting only; settings are chosen on ``dev``,
which is carved from the training split and never trained on."""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.run.spec import Plan
from snap_bench.tasks import Item, load_pack, shipped_entities, split_items, stratified_sample

@dataclass
class Splits:
    """Every item set a run touches, all seeded and drawn by :func:`stratified_sample`.

    ``per_entity[slug]`` holds ``train`` (forget, retain), ``eval`` (forget, multihop, retain: held out)
    and ``dev`` (forget, retain: carved from the training split, never trained on). ``cross_*`` are the
    other shipped entities' forget questions: held-out ones for cross_RA, training ones for the dev split.
    """

    per_entity: dict[str, dict[str, dict[str, list[Item]]]]
    g_train: list[Item]
    g_eval: list[Item]
    g_dev: list[Item]
    cross_eval: list[Item]
    cross_dev: list[Item]


def _dev_n(dev_size: int, train: list[Item]) -> int:
    """A dev split never takes more than half of a training set (a small custom pack must keep data to train on)."""
    return min(dev_size, len(train) // 2)


def make_splits(p: Plan) -> Splits:
    """Per-entity train/dev/eval splits, the general split and the cross-entity sets, all seeded."""
    cfg, seed = p.cfg, p.spec.seed
    limit, dev = cfg.eval_limit, cfg.dev_size
    per_entity = {}
    for pack in p.packs:
        f_train, f_eval = split_items(pack["forget"], cfg.train_size, seed)
        r_train, r_eval = split_items(pack["retain"], cfg.train_size, seed)
        f_dev, f_train = stratified_sample(f_train, _dev_n(dev, f_train), seed, "dev")
        r_dev, r_train = stratified_sample(r_train, _dev_n(dev, r_train), seed, "dev")
        per_entity[pack.slug] = {
            "train": {"forget": f_train, "retain": r_train},
            "eval": {s: stratified_sample(v, limit, seed, "eval")[0]
                     for s, v in (("forget", f_eval), ("multihop", pack["multihop"]), ("retain", r_eval))},
            "dev": {"forget": f_dev, "retain": r_dev},
        }
    g_train, g_eval = split_items(p.general["general"], cfg.train_size, seed)
    g_dev, g_train = stratified_sample(g_train, _dev_n(dev, g_train), seed, "dev")
    g_eval = stratified_sample(stratified_sample(g_eval, cfg.general_eval_size, seed, "general")[0], limit, seed, "eval")[0]
    cross_eval: list[Item] = []
    cross_dev: list[Item] = []
    if cfg.cross_eval:
        others = [load_pack(slug) for slug in shipped_entities() if slug not in {pk.slug for pk in p.packs}]
        for pack in others:
            o_train, o_eval = split_items(pack["forget"], cfg.train_size, seed)
            cross_eval += o_eval
            cross_dev += o_train
        cross_eval = stratified_sample(cross_eval, limit, seed, "cross")[0]
        cross_dev = stratified_sample(cross_dev, dev, seed, "cross-dev")[0] if dev else []
    return Splits(per_entity, g_train, g_eval, g_dev, cross_eval, cross_dev)
