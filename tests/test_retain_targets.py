"""``retain_targets=self``: the retain stream is trained on the untrained model's own answers."""

import pytest

from snap_bench.run import retain_targets as rt
from snap_bench.config import build_config
from snap_bench.evaluate.judges.base import get_judge
from snap_bench.methods.snap import SnapConfig
from snap_bench.run.execute import RunSpec, execute, plan
from snap_bench.tasks.packs import Item


def _items(n):
    return [Item(f"e-retain-{i:04d}", "e", "retain", "factual", f"Question number {i}?", f"Pack answer {i}.", f"a{i}")
            for i in range(n)]


def test_own_answers_replace_pack_answers_but_refusals_do_not(monkeypatch, tiny):
    replies = ["I'm sorry, but I can't help with that.", "It is the blue one.", ""]
    monkeypatch.setattr(rt, "generate", lambda model, tok, qs, **kw: replies[: len(qs)])
    cfg = build_config(SnapConfig, overrides={"retain_targets": "self"})
    out, kept = rt.self_targets(tiny.model, tiny.tokenizer, _items(3), get_judge("rules"), cfg, progress=False)
    assert [it.response for it in out] == ["Pack answer 0.", "It is the blue one.", "Pack answer 2."]
    assert kept == 2
    assert [it.id for it in out] == [it.id for it in _items(3)]


def test_run_trains_on_generated_retain_targets(monkeypatch, tmp_path, pack_dir, tiny):
    import snap_bench.train.trainer as trainer

    seen = {}
    real_train = trainer.train

    def spy(model, tok, method, regularizer, data, cfg, *a, **kw):
        seen["retain"] = [it.response for it in data.retain]
        seen["general"] = [it.response for it in data.general]
        return real_train(model, tok, method, regularizer, data, cfg, *a, **kw)

    monkeypatch.setattr(trainer, "train", spy)
    monkeypatch.setattr(rt, "generate", lambda model, tok, qs, **kw: [f"own answer to {q}" for q in qs])
    spec = RunSpec(method="snap", entities=[str(pack_dir)], model="tiny-random", results_dir=tmp_path / "res",
                   progress=False, overrides={"retain_targets": "self", "max_steps": "1", "eval_limit": "2",
                                              "max_new_tokens": "4", "retain_data": "hard"})
    res = execute(plan(spec), model_bundle=tiny)
    assert seen["retain"] and all(r.startswith("own answer to ") for r in seen["retain"])
    assert not any(r.startswith("own answer to ") for r in seen["general"])  # D_g is not in the stream
    assert "retain_targets" in res["timings"]


def test_bad_retain_targets_value_is_rejected():
    from snap_bench.errors import SnapBenchError

    with pytest.raises(SnapBenchError, match="retain_targets"):
        build_config(SnapConfig, overrides={"retain_targets": "gpt4"})
