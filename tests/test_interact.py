"""`run --save`, `ask` and `chat` on a tiny-random model trained just enough to answer question-dependently."""

import io
import json
import os
import select
import shutil
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from snap_bench.models.saving import CARD_NAME
from snap_bench.store import Store

# lr 1e-3 for 6 steps: untrained tiny-random answers every question with the same newlines
# (empty after strip); this moves it to answers whose length depends on the question.
TRAIN = ("--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "6",
         "--set", "lr=1e-3", "--eval-limit", "3", "--no-progress")


def _main(*args):
    from snap_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(save dir, results dir, the run's JSON) of one tiny-random run with --save."""
    root = tmp_path_factory.mktemp("saved")
    code, out, err = _main("run", *TRAIN, "--save", root / "model", "--results", root / "res", "--json")
    assert code == 0, err
    return root / "model", root / "res", json.loads(out)


def _questions_file(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows))
    return path


def test_save_writes_a_transformers_dir_a_card_and_a_store_row(saved):
    model_dir, res, result = saved
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", CARD_NAME} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) or n.startswith(".") for n in names)
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".model.")]  # no temp dir left behind
    card = json.loads((model_dir / CARD_NAME).read_text())
    assert card["run_id"] == result["run_id"] and card["method"] == "snap" and card["entities"] == ["peter_parker"]
    assert card["metrics"] == result["metrics"] and card["base_model"] == "tiny-random"
    assert card["eval"] == {"system_prompt": None, "max_new_tokens": 64, "batch_size": 128}
    assert result["saved"] == str(model_dir.absolute())
    store = Store(res)
    try:
        assert store.saved_model(result["run_id"]) == str(model_dir.absolute())
        assert store.run(result["run_id"])["status"] == "done"
    finally:
        store.close()


def test_ask_on_the_save_repeats_the_runs_own_evaluation(saved, tmp_path):
    model_dir, res, result = saved
    store = Store(res)
    gens = store.generations(result["run_id"])
    store.close()
    assert len(gens) == 15  # forget, multi-hop, retain, general (3 each) + 3 of the other entities' forget questions
    expected = {g["question"]: g["response"] for g in gens}
    assert len(set(expected.values())) > 2, "the fixture model should answer question-dependently"
    q = _questions_file(tmp_path / "q.jsonl", gens)

    code, out, err = _main("ask", "--model", model_dir, "--input", q, "--json", "--no-progress")
    assert code == 0, err
    got = json.loads(out)
    assert got["n"] == 15 and got["defaults_from"] == "card"
    assert {r["question"]: r["response"] for r in got["results"]} == expected
    assert set(got["results"][0]) == {"question", "response", "obliterated", "reason"}
    assert got["obliterated_pct"] == 100.0 * sum(r["obliterated"] for r in got["results"]) / 15

    # The comparison can fail: another system prompt changes the answers.
    code, out, _ = _main("ask", "--model", model_dir, "--input", q, "--json", "--no-progress",
                         "--system-prompt", "You are a pirate.")
    assert code == 0
    assert {r["question"]: r["response"] for r in json.loads(out)["results"]} != expected


def test_ask_prints_a_readable_listing(saved, tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "Who is Peter Parker?", "keywords": ["Spider-Man"]}) + "\n")
    code, out, err = _main("ask", "--model", saved[0], "--input", q, "--no-progress", "--max-new-tokens", "8")
    assert code == 0, err
    assert "[1] " in out and "  Q: Who is Peter Parker?" in out and "  A: " in out
    assert "1 questions, " in out and "% obliterated (judge rules)" in out


@pytest.mark.parametrize("args,needle", [
    (["--input", "missing.jsonl"], "missing.jsonl: no such file"),
    (["--input", "{bad}"], ":1: invalid JSON"),
    (["--input", "{good}", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--input", "{good}", "--max-new-tokens", "0"], "--max-new-tokens 0: must be a positive integer"),
    (["--input", "{good}", "--judge", "oracle"], "unknown judge 'oracle'"),
])
def test_ask_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    (tmp_path / "good.jsonl").write_text('{"question": "hi"}\n')
    args = [str(tmp_path / "bad.jsonl") if a == "{bad}" else str(tmp_path / "good.jsonl") if a == "{good}" else a
            for a in args]
    if "--model" not in args:
        args += ["--model", "tiny-random"]
    code, out, err = _main("ask", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_the_save_loads_in_plain_transformers_without_snap_bench(saved, tiny):
    model_dir = saved[0]
    script = textwrap.dedent("""
        import json, sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(sys.argv[1])
        model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
        msgs = [{"role": "user", "content": "Who is Peter Parker?"}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=64, do_sample=False)
        print(json.dumps({
            "snap_bench_imported": sorted(m for m in sys.modules if m.split(".")[0] in ("snap_bench", "benchmark")),
            "text": tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip(),
            "chat_template": tok.chat_template,
        }))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-I", "-c", script, str(model_dir)], capture_output=True, text=True,
                          env=env, cwd=model_dir.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["snap_bench_imported"] == []
    assert got["text"], "the fixture model should say something within 64 tokens"
    assert got["chat_template"] == tiny.tokenizer.chat_template

    from snap_bench.evaluate.generation import generate
    from snap_bench.models import load_model

    lm = load_model(str(model_dir))
    assert got["text"] == generate(lm.model, lm.tokenizer, ["Who is Peter Parker?"], max_new_tokens=64)[0]


def test_chat_streams_pieces_while_generating(saved):
    from snap_bench.evaluate.generation import generate
    from snap_bench.cli.interact import resolve_settings, stream_answer
    from snap_bench.models import load_model

    lm = load_model(str(saved[0]))
    settings = resolve_settings(str(saved[0]), None, 64, None)
    forwards = []
    hook = lm.model.register_forward_hook(lambda *_: forwards.append(1))
    pieces = []  # (piece, forward passes so far)
    try:
        answer = stream_answer(lm, "Who is Peter Parker?", settings, lambda s: pieces.append((s, len(forwards))))
    finally:
        hook.remove()
    assert answer and answer == generate(lm.model, lm.tokenizer, ["Who is Peter Parker?"], max_new_tokens=64)[0]
    assert "".join(p for p, _ in pieces).strip() == answer
    assert len(pieces) > 1 and pieces[0][1] < len(forwards), "the first piece must be written before decoding ends"


def _read_until(fd, buf: bytearray, needle: bytes, count: int = 1, timeout: float = 600) -> None:
    """Read the terminal into ``buf`` until ``needle`` has appeared ``count`` times."""
    deadline = time.monotonic() + timeout
    while buf.count(needle) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {bytes(buf)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"chat ended before {needle!r}; got {bytes(buf)!r}"
            buf += chunk


@pytest.mark.parametrize("ending", [b"/exit\n", b"\x04"], ids=["exit-command", "ctrl-d"])
def test_chat_session_through_a_pseudo_terminal(saved, ending):
    from snap_bench.evaluate.generation import generate
    from snap_bench.models import load_model

    question = "Who is Peter Parker?"
    lm = load_model(str(saved[0]))
    expected = generate(lm.model, lm.tokenizer, [question])[0]
    assert expected

    master, slave = os.openpty()
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TERM="dumb")
    proc = subprocess.Popen([sys.executable, "-m", "snap_bench", "chat", "--model", str(saved[0])],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    buf = bytearray()
    try:
        _read_until(master, buf, b"you> ")
        os.write(master, question.encode() + b"\n")
        _read_until(master, buf, b"you> ", count=2)  # the streamed answer, then the next prompt
        os.write(master, ending)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = buf.decode("utf-8", "replace").replace("\r\n", "\n")
    assert "model> " + expected in text, text


def test_save_refuses_a_foreign_non_empty_dir_before_anything_runs(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    code, out, err = _main("run", *TRAIN, "--save", target, "--results", tmp_path / "res")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "is not empty and is not a snap-bench save" in err, err
    assert not (tmp_path / "res").exists()  # refused before the store or the model were touched
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    code, _, err = _main("run", *TRAIN, "--save", tmp_path / "afile", "--results", tmp_path / "res")
    assert code == 2 and "exists and is not a directory" in err


def test_sequential_run_continues_from_a_save_and_replaces_it_with_the_final_model(saved, tmp_path):
    from safetensors.torch import load_file

    first_dir, _, first = saved
    work = tmp_path / "work"
    shutil.copytree(first_dir, work)  # an earlier save: --save may replace it, even while it is --model
    before = load_file(work / "model.safetensors")
    res = tmp_path / "res"
    code, out, err = _main("run", "--method", "snap", "--entity", "peter_parker", "--entity", "bill_gates",
                           "--mode", "sequential", "--model", work, "--max-steps", "2", "--set", "lr=1e-3",
                           "--eval-limit", "1", "--no-progress", "--save", work, "--results", res, "--json")
    assert code == 0, err
    result = json.loads(out)
    card = json.loads((work / CARD_NAME).read_text())
    assert card["run_id"] == result["run_id"] and card["base_run_id"] == first["run_id"]
    assert card["mode"] == "sequential" and [s["trained_on"] for s in card["steps"]] == [["peter_parker"], ["bill_gates"]]
    after = load_file(work / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before), "the save must hold the newly trained weights"

    # The saved weights are the model after the LAST step: ask repeats that step's evaluation.
    store = Store(res)
    gens = store.generations(result["run_id"], step=1)
    store.close()
    q = _questions_file(tmp_path / "q.jsonl", gens)
    code, out, err = _main("ask", "--model", work, "--input", q, "--json", "--no-progress")
    assert code == 0, err
    assert {r["question"]: r["response"] for r in json.loads(out)["results"]} == {g["question"]: g["response"] for g in gens}


def test_an_older_store_gains_the_saved_models_table(tmp_path):
    store = Store(tmp_path)
    store.conn.execute("DROP TABLE saved_models")  # what a store written before this table existed looks like
    run_id = store.start_run(config_hash="h", method="snap", regularizer="swd", mode="single", entities=["e"],
                             model="m", seed=0, config={}, versions={})
    store.close()
    store = Store(tmp_path)
    try:
        store.record_saved_model(run_id, "/somewhere")
        assert store.saved_model(run_id) == "/somewhere" and store.saved_model("other") is None
    finally:
        store.close()


def test_nlp_scores_a_save(saved):
    code, out, err = _main("nlp", "--model", saved[0], "--tasks", "mmlu", "--limit", "8", "--json", "--no-progress")
    assert code == 0, err
    got = json.loads(out)
    assert got["model"] == str(saved[0]) and got["tasks"]["mmlu"]["n"] == 8
    assert 0.0 <= got["tasks"]["mmlu"]["acc"] <= 1.0
