"""Behaviour of the training loop on the tiny model: it must actually unlearn."""

import torch

from snap_bench.run.execute import RunSpec, execute, plan


def _run(tmp_path, pack_dir, tiny, **overrides):
    spec = RunSpec(method="snap", entities=[str(pack_dir)], model="tiny-random", results_dir=tmp_path / "res",
                   progress=False, overrides={k: str(v) for k, v in overrides.items()})
    return execute(plan(spec), model_bundle=tiny)


def test_training_moves_ua_on_the_tiny_model(tmp_path, pack_dir):
    from snap_bench.models import load_model

    before = _run(tmp_path, pack_dir, load_model("tiny-random"), max_steps=0)
    after = _run(tmp_path, pack_dir, load_model("tiny-random"), max_steps=40, lr=3e-3, retain_data="none",
                 max_new_tokens=24, lambda_reg=0.0)
    ua0 = before["metrics"]["zorblax"]["UA"]
    ua1 = after["metrics"]["zorblax"]["UA"]
    assert ua0 == 0.0
    assert ua1 >= 75.0, after


def test_forget_loss_falls_and_regularizer_grows(tmp_path, pack_dir):
    from snap_bench.models import load_model
    from snap_bench.store import Store

    res = _run(tmp_path, pack_dir, load_model("tiny-random"), max_steps=6, lr=3e-3, eval_limit=2, max_new_tokens=4)
    store = Store(tmp_path / "res")
    rows = store.conn.execute("SELECT step, term, value FROM losses WHERE run_id=? ORDER BY step", (res["run_id"],)).fetchall()
    forget = [v for s, t, v in rows if t == "forget"]
    reg = [v for s, t, v in rows if t == "reg"]
    assert len(forget) == 6 and forget[-1] < forget[0]
    assert reg[0] == 0.0 and reg[-1] > 0.0


def test_untrained_run_leaves_weights_untouched(tmp_path, pack_dir):
    from snap_bench.models import load_model

    lm = load_model("tiny-random")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    _run(tmp_path, pack_dir, lm, max_steps=0, eval_limit=2, max_new_tokens=4)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
