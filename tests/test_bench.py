"""`snap-bench bench` on tiny-random: the code path of every figure, in seconds (speed itself is
measured by `snap-bench bench` and the pytest-benchmark suite in tests/speed/, not here)."""

import dataclasses
import math

import pytest

from snap_bench import bench
from snap_bench.evaluate.generation import generate_ids


def test_bench_smoke_prints_every_figure(cli, tmp_path):
    r = cli("bench", "--model", "tiny-random", "--steps", "1", "--gen-prompts", "3", "--max-new-tokens", "6",
            "--matmul-size", "128", "--repeats", "1", "--results", tmp_path / "empty", "--json")
    assert r.code == 0, r.err
    out = r.json
    names = [f["name"] for f in out["figures"]]
    for want in ("matmul peak (fp32)", "model load", "train tokens/s", "train fraction of peak", "swd overhead / step",
                 "l2 overhead / step", "fisher overhead / step", "generation speedup", "generation identical to HF",
                 "generation speedup vs HF batched", "generation identical to HF batched", "e2e wall / floor", "peak RSS (training steps)"):
        assert want in names
    by = {f["name"]: f for f in out["figures"]}
    for name in ("matmul peak (fp32)", "train tokens/s", "train fraction of peak", "swd overhead / step",
                 "generation speedup", "peak RSS (training steps)"):
        v = by[name]["value"]
        assert isinstance(v, float) and math.isfinite(v) and v > 0, name
        assert by[name]["status"] in ("pass", "miss", "info")
    assert by["generation identical to HF"]["value"] is True
    assert by["generation speedup vs HF batched"]["value"] > 0
    assert by["generation identical to HF batched"]["value"] is True
    assert out["e2e"]["source"].startswith("none:")  # the empty store holds no default run
    # Where the time goes (issue 24): the kernel's share and the faults, per training step and generated batch.
    from snap_bench.util import heap

    assert out["allocator"] == heap.policy()
    for name in ("train sys share", "generation sys share"):
        assert 0 <= by[name]["value"] <= 1 and by[name]["target"] == "<= 0.10" and out["allocator"] in by[name]["note"]
    assert by["train minor faults / step"]["value"] >= 0 and by["generation minor faults / batch"]["value"] >= 0
    tr = out["training"]
    assert tr["usage"]["n"] == 1 and tr["sys_share"] == by["train sys share"]["value"]
    assert tr["checkpointing"]["requested"] == "auto" and tr["checkpointing"]["estimated_peak_gb"] > 0
    assert out["generation"]["per_batch"]["n"] >= 1
    assert by["e2e wall / floor"]["status"] == "n/a"
    assert 0 <= out["training"]["padding_waste"] < 1


def test_bench_table_and_bad_input(cli, tmp_path):
    r = cli("bench", "--steps", "0")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    r = cli("bench", "--model", "tiny-random", "--regularizers", "nope")
    assert r.code == 2 and "nope" in r.err


def test_step_batches_are_the_trainers_batches(tiny, monkeypatch):
    """The FLOP count replays the trainer's data order; it must be the order the trainer draws."""
    import snap_bench.train.trainer as trainer
    from snap_bench.regularizers.base import build_regularizer

    p = bench.default_plan(bench.BenchConfig(model="tiny-random"))
    method, data, encoded = bench.training_inputs(p, tiny.tokenizer)
    seen = []
    real_collate = trainer.collate

    def spy(items, pad_id):
        seen.append(list(items))
        return real_collate(items, pad_id)

    monkeypatch.setattr(trainer, "collate", spy)
    cfg = dataclasses.replace(p.cfg, max_steps=3)
    snapshot = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    try:
        res = trainer.train(tiny.model, tiny.tokenizer, method, build_regularizer("none", cfg, 0), data, cfg, 0,
                            progress=False)
    finally:
        tiny.model.load_state_dict(snapshot)
    n = len(encoded)  # one collate per stream per step (forget, general, retain under the cpu preset)
    drawn = [sum(seen[i:i + n], []) for i in range(0, len(seen), n)]
    assert bench.step_batches(encoded, cfg, 0, 3) == drawn
    assert sum(bench.step_stats(ex)["tokens"] for ex in drawn) == res.tokens


def test_flop_formulas_by_hand():
    s = bench.ModelShape(body_params=100, all_params=150, hidden=4, vocab=10, layers=2, attn_width=4)
    # two rows of 3 and 2 tokens, 3 labelled positions: body 6·100·5, head 6·4·10·3, attention 12·2·4·(6+3)
    assert bench.train_step_flops(s, [3, 2], 3) == 3000 + 720 + 864
    assert bench.train_step_flops(s, [3, 2], 3, swd_projections=10) == 3000 + 720 + 864 + 6 * 150 * 10
    assert bench.train_step_flops(s, [3, 2], 3, swd_projections=10, swd_form="normalized") == 3000 + 720 + 864 + 4 * 150 * 10
    # prompt 3, 2 generated: 4 tokens fed, head twice, attention over 10 causal pairs
    assert bench.generation_flops(s, 3, 2) == 2 * 100 * 4 + 2 * 4 * 10 * 2 + 4 * 2 * 4 * 10


def test_model_shape_counts_tied_embedding_once(tiny):
    s = bench.ModelShape.of(tiny.model)
    total = sum(p.numel() for p in tiny.model.parameters())  # parameters() yields a tied weight once
    emb = tiny.model.get_input_embeddings().weight.numel()
    assert s.all_params == total and s.body_params == total - emb
    assert s.vocab * s.hidden == emb


def test_batched_generation_identical_to_hf_one_at_a_time(tiny):
    """Several batches (batch_size 2 over 5 prompts) of different lengths; greedy ids must match HF's."""
    tok = tiny.tokenizer
    qs = ["Hi", "Who is Peter Parker?", "Name three colours of the rainbow, please, in order.", "What is 2+2?",
          "Tell me about the Avengers and their headquarters in New York."]
    from snap_bench.data import prompt_ids

    prompts = [prompt_ids(tok, q) for q in qs]
    ours = generate_ids(tiny.model, tok, prompts, max_new_tokens=10, batch_size=2)
    ref = bench.hf_generate_one_at_a_time(tiny.model, tok, prompts, 10)
    assert ours == ref
    assert all(len(r) > 0 for r in ref)
    # HF's batched generate, in batches of 2 left-padded prompts, gives the same greedy ids in fp32.
    assert bench.hf_generate_batched(tiny.model, tok, prompts, 10, batch_size=2) == ref


def test_matmul_gflops_is_2n3_over_the_best_time(monkeypatch):
    # Two timed repeats of 0.5 s and 0.25 s: the figure is 2·n³ FLOPs over the faster one, for both precisions.
    for precision in ("fp32", "bf16"):
        ticks = iter([0.0, 0.5, 1.0, 1.25])
        monkeypatch.setattr(bench.measure.time, "perf_counter", lambda: next(ticks))
        assert bench.matmul_gflops(64, repeats=2, precision=precision) == pytest.approx(2 * 64**3 / 0.25 / 1e9)
    monkeypatch.undo()
    for precision in ("fp32", "bf16"):  # and a real measurement runs, in bf16 too
        assert 0 < bench.matmul_gflops(64, repeats=2, precision=precision) < math.inf


def test_e2e_figures_from_a_stored_run(cli, tmp_path):
    store = tmp_path / "res"
    run = cli("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "2",
              "--eval-limit", "2", "--results", store, "--no-progress", "--json")
    assert run.code == 0, run.err
    run_id = run.json["run_id"]
    r = cli("bench", "--model", "tiny-random", "--steps", "1", "--gen-prompts", "2", "--max-new-tokens", "4",
            "--matmul-size", "128", "--repeats", "1", "--regularizers", "l2", "--results", store, "--run-id", run_id,
            "--json")
    assert r.code == 0, r.err
    e2e = r.json["e2e"]
    assert e2e["run_id"] == run_id and e2e["source"].startswith(f"stored run {run_id}")
    assert e2e["train_steps"] == 2 and e2e["eval_questions"] == 10  # --eval-limit 2 on 5 sets (with cross)
    assert e2e["wall_s"] > 0 and 0 < e2e["floor_s"] < e2e["wall_s"] and e2e["ratio"] == e2e["wall_s"] / e2e["floor_s"]
    # The run's own record of where its time went, as the bench reads it back from the store.
    res = e2e["resources"]
    stored = run.json["resources"]
    assert res["train_s"] == run.json["timings"]["train"] and res["eval_s"] == run.json["timings"]["eval_0"]
    assert (res["user_s"], res["sys_s"], res["minor_faults"]) == (stored["run"]["user_s"], stored["run"]["sys_s"],
                                                                  stored["run"]["minor_faults"])
    assert res["peak_rss_gb"] == stored["peak_rss_gb"] > 0 and res["allocator"] == stored["allocator"]
    by = {f["name"]: f for f in r.json["figures"]}
    assert by["run sys share"]["value"] == res["sys_share"] and by["run peak RSS"]["target"] == "<= 6"
    assert cli("bench", "--e2e", "--run-id", run_id).code == 2
    assert cli("bench", "--model", "tiny-random", "--results", store, "--run-id", "nope").code == 2


def test_peak_for_judges_against_the_precision_in_use():
    peaks = {"fp32": [100.0, 120.0], "bf16": [300.0, 250.0]}
    assert bench.peak_for("fp32", peaks) == (120.0, "fp32")
    assert bench.peak_for("bf16", peaks) == (300.0, "bf16")
    assert bench.peak_for("fp16", peaks) == (120.0, "fp32")  # never measured: the fp32 peak
    assert bench.peak_for("bf16", {"fp32": [100.0], "bf16": []}) == (100.0, "fp32")


def test_figures_say_which_peak(monkeypatch):
    r = {"matmul": {"size": 8, "gflops": 100.0, "measured": [100.0], "bf16_gflops": 300.0, "bf16_measured": [300.0],
                    "in_use": "bf16"},
         "load_s": 1.0, "load_warm_s": 0.5,
         "training": {"regularizer": "swd", "step_s": 1.0, "tokens_per_step": 10.0, "tokens_per_s": 10.0, "gflops": 150.0,
                      "peak_fraction": 0.5, "none_peak_fraction": 0.6, "padding_waste": 0.1, "peak_rss_gb": 1.0,
                      "precision": "bf16", "peak_precision": "bf16"},
         "regularizers": {}, "peak_rss_gb": 1.0,
         "generation": {"batched_tokens_per_s": 1.0, "generated_tokens": 3, "hf_tokens_per_s": 1.0, "speedup": 1.0,
                        "identical": True, "mismatches": 0},
         "e2e": {"source": "none"}}
    by = {f["name"]: f for f in bench.figures(r)}
    assert by["matmul peak (bf16)"]["value"] == 300.0 and "in use" in by["matmul peak (bf16)"]["note"]
    assert "in use" not in by["matmul peak (fp32)"]["note"]
    assert "of the bf16 peak (training in bf16)" in by["train fraction of peak"]["note"]
