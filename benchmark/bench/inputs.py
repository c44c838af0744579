"""The default run's data, step by step: its plan, the encoded training streams and the batches of
each step (both from the trainer's own functions, so the FLOP count replays what training draws),
and the evaluation prompts the generation benchmark answers."""

from __future__ import annotations

from snap_bench.bench.config import BenchConfig
from snap_bench.errors import SnapBenchError


def default_plan(cfg: BenchConfig, overrides: dict[str, str] | None = None):
    from snap_bench.run.spec import RunSpec, plan

    return plan(RunSpec(method=cfg.method, entities=[cfg.entity], model=cfg.model, overrides=dict(overrides or {}),
                        progress=False))


def training_inputs(p, tokenizer):
    """(method, UnlearnData, encoded streams) of a single-entity plan; the streams are encoded by
    ``trainer.encode_streams``, as training encodes them."""
    from snap_bench.methods.base import UnlearnData
    from snap_bench.run.splits import make_splits
    from snap_bench.train.trainer import encode_streams

    sp = make_splits(p)
    pack = p.packs[0]
    data = UnlearnData(packs=[pack], forget=sp.per_entity[pack.slug]["train"]["forget"],
                       retain=sp.per_entity[pack.slug]["train"]["retain"], general=sp.g_train)
    method = p.method_cls(p.cfg)
    return method, data, encode_streams(method, data, tokenizer, p.cfg)


def step_batches(encoded, cfg, seed: int, steps: int | None = None) -> list[list[dict[str, list[int]]]]:
    """The examples of each training step, drawn exactly as ``trainer.train`` draws them: from the
    trainer's ``seeded_streams`` (same streams, seeds and length buckets; checked in the tests)."""
    from snap_bench.train.trainer import seeded_streams

    total, per_stream, streams = seeded_streams(encoded, cfg, seed)
    n = total if steps is None else min(steps, total)
    return [[e for k, s in streams.items() for e in s.take(per_stream[k])] for _ in range(n)]


def eval_prompts(p, tok, n: int) -> list[list[int]]:
    """``n`` evaluation questions spread evenly over the default split's eval sets, tokenised."""
    from snap_bench.data import prompt_ids
    from snap_bench.run.splits import make_splits

    sp = make_splits(p)
    sets = sp.per_entity[p.packs[0].slug]["eval"]
    items = [*sets["forget"], *sets["multihop"], *sets["retain"], *sp.g_eval, *sp.cross_eval]
    if not items:
        raise SnapBenchError("bench: the default split has no evaluation questions")
    stride = max(1, len(items) // n)
    return [prompt_ids(tok, it.question, p.cfg.system_prompt) for it in items[::stride][:n]]
