"""The dev split (carved from training items, never trained on, never held-out) and dev checkpoint selection."""

from __future__ import annotations

from snap_bench.run.dev import dev_score
from snap_bench.run.spec import RunSpec, plan
from snap_bench.run.splits import make_splits


def _ids(items):
    return {it.id for it in items}


def test_dev_split_comes_from_training_items_and_is_held_out_of_training():
    base = make_splits(plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                                overrides={"dev_size": "0"})))
    sp = make_splits(plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                              overrides={"dev_size": "10"})))
    e, e0 = sp.per_entity["peter_parker"], base.per_entity["peter_parker"]
    for s in ("forget", "retain"):
        dev, train = _ids(e["dev"][s]), _ids(e["train"][s])
        assert len(dev) == 10 and dev.isdisjoint(train)
        assert dev | train == _ids(e0["train"][s])  # carved from the training split...
        assert dev.isdisjoint(_ids(e["eval"][s]))  # ...never from the held-out set
        assert _ids(e["eval"][s]) == _ids(e0["eval"][s])  # which a dev split leaves unchanged
    assert len(sp.g_dev) == 10 and _ids(sp.g_dev).isdisjoint(_ids(sp.g_train) | _ids(sp.g_eval))
    # the other entities' dev questions are their TRAINING forget items, their cross_RA ones held out
    assert len(sp.cross_dev) == 10 and _ids(sp.cross_dev).isdisjoint(_ids(sp.cross_eval))
    assert {it.entity for it in sp.cross_eval} == {"black_panther", "doctor_strange", "bill_gates"}


def test_the_cpu_preset_carves_a_dev_split_and_selects_on_it():
    p = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random"))
    assert p.cfg.dev_size == 20 and p.cfg.select == "dev"
    sp = make_splits(p)
    assert len(sp.per_entity["peter_parker"]["train"]["forget"]) == 80


def test_dev_score_is_the_stated_criterion():
    m = {"a": {"UA": 80.0, "RA": 60.0, "TA": 100.0, "cross_RA": 40.0}, "b": {"UA": 0.0, "RA": 100.0, "TA": 100.0,
                                                                           "cross_RA": None}}
    assert dev_score(m, "mean4") == (70.0 + 200 / 3) / 2
    assert dev_score(m) == ((80.0 + 200 / 3) / 2 + (0.0 + 100.0) / 2) / 2


def test_the_balanced_criterion_never_prefers_a_model_that_forgets_nothing():
    untrained = {"e": {"UA": 0.0, "RA": 100.0, "TA": 100.0, "cross_RA": 100.0}}
    unlearned = {"e": {"UA": 85.0, "RA": 50.0, "TA": 100.0, "cross_RA": 40.0}}  # the default's dev metrics
    assert dev_score(untrained) == 50.0 < dev_score(unlearned)
    assert dev_score(untrained, "mean4") > dev_score(unlearned, "mean4")  # why mean4 is no longer the default


def test_select_dev_scores_checkpoints_and_stores_the_choice(cli, tmp_path):
    from snap_bench.store import Store

    res = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "3",
              "--eval-limit", "4", "--json", "--no-progress", "--results", tmp_path / "res",
              "--set", "dev_size=4", "--set", "select=dev", "--set", "select_every=2")
    assert res.code == 0, res.err
    dev = res.json["dev"]
    assert set(dev["metrics"]["peter_parker"]) >= {"UA", "RA", "TA", "cross_RA"}
    assert dev["sizes"] == {"forget": 4, "retain": 4, "general": 4, "cross": 4}
    sel = dev["selection"][0]
    assert [h["step"] for h in sel["history"]] == [2, 3]  # every 2 steps, and the last
    best = max(sel["history"], key=lambda h: h["score"])
    assert sel["selected_step"] == best["step"] and "dev split" in sel["criterion"]
    assert Store(tmp_path / "res").analyses(res.json["run_id"])["dev"]["selection"][0]["selected_step"] == best["step"]


def test_preset_dev_selection_falls_back_to_last_under_lora_and_an_explicit_request_is_refused():
    import pytest

    from snap_bench.errors import SnapBenchError

    p = plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random", overrides={"lora_r": "4"}))
    assert p.cfg.select == "last" and p.record["config"]["select"] == "last"
    with pytest.raises(SnapBenchError, match="select=dev cannot put a checkpoint back here: LoRA"):
        plan(RunSpec(method="snap", entities=["peter_parker"], model="tiny-random",
                     overrides={"lora_r": "4", "select": "dev"}))


def test_best_weights_round_trip_bit_for_bit_through_a_temporary_file(tiny):
    """The dev selector keeps the best checkpoint on disk, not as a second copy of θ in RAM."""
    import copy
    import os

    import torch

    from snap_bench.run.dev import BestWeights

    m = copy.deepcopy(tiny.model)
    want = {n: t.detach().clone() for n, t in m.state_dict().items()}
    best = BestWeights()
    best.save(m)
    folder = best.dir
    assert folder and os.listdir(folder) == ["best.safetensors"]
    with torch.no_grad():
        for q in m.parameters():
            q.add_(torch.randn_like(q))
    assert not all(torch.equal(want[n], t) for n, t in m.state_dict().items())
    best.load_into(m)
    for n, t in m.state_dict().items():
        assert torch.equal(t, want[n]), n
    if getattr(m.config, "tie_word_embeddings", False):  # a tied matrix is stored once and stays tied
        assert m.get_output_embeddings().weight.data_ptr() == m.get_input_embeddings().weight.data_ptr()
    best.close()
    assert not os.path.exists(folder)
