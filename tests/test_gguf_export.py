"""GGUF export (models/gguf_export.py) and GGUF loading (load_model on a .gguf file), on tiny-random.

A written file, loaded back through transformers' GGUF reader, must give exactly the weights that
evaluate/quant.py's fake_quantize computes in memory (so the quantized evaluation describes the file),
and therefore the same greedy answers.
"""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from snap_bench import models
from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.generation import generate
from snap_bench.evaluate.quant import fake_quantize
from snap_bench.models.gguf_export import check_exportable, check_tokenizer, tensor_qtype, write_gguf

QUESTIONS = ["Who is Peter Parker?", "What is the capital of France?", "How many legs does a spider have?"]


def _load_fresh(path, cache):
    """load_model(path) converting into ``cache``, not the user's cache (a stale conversion would hide a bug)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "cache_dir", lambda: cache)
        return models.load_model(str(path))


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """qtype -> (file, the file loaded back), for the default q8_0 and q4_1 exports of tiny-random; "cache":
    the cache folder they were converted into."""
    root = tmp_path_factory.mktemp("gguf")
    out = {"cache": root / "cache"}
    for qtype in ("q8_0", "q4_1"):
        path = write_gguf(tiny.model, tiny.tokenizer, root / f"tiny.{qtype}.gguf", qtype)
        out[qtype] = (path, _load_fresh(path, out["cache"]))
    return out


def _expected(model, qtype):
    """The model quantized as the export stores it: fake_quantize at ``qtype``, except that at q4_0/q4_1 the
    (tied) output head is Q8_0, as llama-quantize leaves it (tensor_qtype says which)."""
    expected = fake_quantize(model, qtype)
    head = tensor_qtype("token_embd.weight", tuple(model.get_input_embeddings().weight.shape), qtype)
    if head.name.lower() != qtype:
        head_model = fake_quantize(model, head.name.lower())
        with torch.no_grad():
            expected.get_input_embeddings().weight.copy_(head_model.get_input_embeddings().weight)
    return expected


@pytest.mark.parametrize("qtype", ["q8_0", "q4_1"])
def test_every_weight_round_trips_exactly_to_its_quantized_value(tiny, exported, qtype):
    path, back = exported[qtype]
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    expected = _expected(tiny.model, qtype).state_dict()
    got = back.model.state_dict()
    assert set(got) == set(expected)
    for name, w in expected.items():
        # q/k were permuted by the writer and un-permuted by transformers' loader: exact, not close.
        assert torch.equal(got[name], w), name
    emb = tiny.model.get_input_embeddings().weight
    assert not torch.equal(got["model.embed_tokens.weight"], emb)  # it was quantized, not copied
    assert back.model.get_output_embeddings().weight is back.model.get_input_embeddings().weight  # still tied
    assert back.model.config.num_key_value_heads == tiny.model.config.num_key_value_heads
    assert back.model.config.head_dim == tiny.model.config.head_dim


@pytest.mark.parametrize("qtype", ["q8_0", "q4_1"])
def test_greedy_answers_equal_the_in_memory_quantized_models(tiny, exported, qtype):
    _, back = exported[qtype]
    expected = _expected(tiny.model, qtype)
    # The loaded tokenizer (rebuilt from the GGUF's tokenizer keys) must build the same prompts.
    assert [back.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                add_generation_prompt=True) for q in QUESTIONS] == \
           [tiny.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                add_generation_prompt=True) for q in QUESTIONS]
    from snap_bench.data import prompt_ids

    prompts = [prompt_ids(tiny.tokenizer, q) for q in QUESTIONS]
    assert [prompt_ids(back.tokenizer, q) for q in QUESTIONS] == prompts
    assert generate(back.model, back.tokenizer, QUESTIONS, max_new_tokens=8) == \
           generate(expected, tiny.tokenizer, QUESTIONS, max_new_tokens=8)
    # Untrained tiny-random answers mostly whitespace (empty after strip): the logits say more.
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        assert torch.equal(back.model(ids).logits, expected(ids).logits)


def test_q4_1_keeps_the_output_head_at_q8_0_unless_asked():
    shape = (49152, 576)
    assert tensor_qtype("token_embd.weight", shape, "q4_1").name == "Q8_0"
    assert tensor_qtype("token_embd.weight", shape, "q4_1", head_qtype="q4_1").name == "Q4_1"
    assert tensor_qtype("token_embd.weight", shape, "q4_1", tied=False).name == "Q4_1"  # output.weight is the head
    assert tensor_qtype("output.weight", shape, "q4_0", tied=False).name == "Q8_0"
    assert tensor_qtype("blk.0.attn_q.weight", (576, 576), "q4_1").name == "Q4_1"
    assert tensor_qtype("blk.0.attn_norm.weight", (576,), "q4_1").name == "F32"
    assert tensor_qtype("blk.0.ffn_down.weight", (64, 40), "q8_0").name == "F32"  # rows of 40: no whole blocks
    assert tensor_qtype("blk.0.ffn_down.weight", (64, 40), "f16").name == "F16"


def test_load_model_reuses_the_conversion_keyed_by_the_files_hash(exported):
    import hashlib

    path, back = exported["q8_0"]
    assert back.source == str(path.resolve())
    folder = exported["cache"] / "models" / f"gguf-{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    assert (folder / "config.json").is_file()
    before = sorted(p.name for p in folder.parent.iterdir())
    assert len(before) == 2  # one per file: q8_0 and q4_1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "cache_dir", lambda: exported["cache"])
        assert models.model_config(str(path)).num_hidden_layers == 2
        models.check_model_spec(str(path))
    assert sorted(p.name for p in folder.parent.iterdir()) == before  # no second conversion


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(SnapBenchError, match="no such GGUF file"):
        models.load_model(str(tmp_path / "missing.gguf"))
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf")
    with pytest.raises(SnapBenchError, match="could not convert GGUF file"):
        _load_fresh(bogus, tmp_path / "cache")
    with pytest.raises(SnapBenchError, match="unknown GGUF type"):
        write_gguf(tiny.model, tiny.tokenizer, tmp_path / "x.gguf", "q5_k")
    from transformers import GPT2Config

    with pytest.raises(SnapBenchError, match="Llama-architecture models"):
        check_exportable(GPT2Config())

    class OtherTokenizer:
        def get_vocab(self):
            return {"a": 0, "b": 1}

    with pytest.raises(SnapBenchError, match="SmolLM2's tokenizer only"):
        check_tokenizer(OtherTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def _main(*args):
    from snap_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


RUN = ("run", "--method", "snap", "--entity", "peter_parker", "--model", "tiny-random", "--max-steps", "0",
       "--eval-limit", "1", "--no-progress")


def test_gguf_without_save_exits_2_before_anything_runs(tmp_path):
    code, out, err = _main(*RUN, "--gguf", "q4_1", "--results", tmp_path / "res")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "give --save DIR too" in err, err
    assert not (tmp_path / "res").exists()
    code, _, err = _main(*RUN, "--gguf", "q9", "--save", tmp_path / "m", "--results", tmp_path / "res")
    assert code == 2 and "invalid choice" in err and not (tmp_path / "res").exists()


def test_run_save_gguf_writes_the_file_into_the_save_and_ask_loads_it(exported, tmp_path):
    code, out, err = _main(*RUN, "--save", tmp_path / "m", "--gguf", "q8_0", "--results", tmp_path / "res",
                           "--json")
    assert code == 0, err
    card = json.loads((tmp_path / "m" / "snap_bench_card.json").read_text())
    gfile = tmp_path / "m" / "model.q8_0.gguf"
    assert card["gguf"] == {"file": "model.q8_0.gguf", "type": "q8_0", "bytes": gfile.stat().st_size}
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": QUESTIONS[0]}) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "cache_dir", lambda: exported["cache"])
        code, out, err = _main("ask", "--model", gfile, "--input", q, "--json", "--max-new-tokens", "4")
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 1
