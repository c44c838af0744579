"""Fake quantization in the GGUF formats (issue 25, evaluate/quant.py): each format against a hand computation
of ggml's formulas and against the gguf package's own round trip, idempotence, which tensors of a model are
quantized (and that the original is left untouched), the scheme names, and, on the real default model,
that ``shipped`` is the identity: its fp32 weights were dequantized from the GGUF, so they sit on its grid."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T

from snap_bench import models
from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.quant import (SCHEMES, fake_quantize, ggml_type, parse_schemes, quantize_tensor,
                                       source_gguf_types)
from snap_bench.evaluate import quant

F32 = np.float32


def _fp16(v) -> np.float32:
    """A scale as ggml stores it: rounded to fp16, read back as fp32."""
    return F32(np.float16(v))


def _block(seed: int, amax: float, n: int = 32) -> np.ndarray:
    """n fp32 values in [-amax, amax] with one of them at -amax exactly."""
    rng = np.random.default_rng(seed)
    b = (rng.uniform(-1, 1, n) * amax).astype(F32)
    b[3] = F32(-amax)
    return b


# --- each format against a hand computation of ggml's formulas -------------------------------------------

def _hand_q8_0(b: np.ndarray) -> tuple[list, float]:
    d = F32(np.abs(b).max() / F32(127))
    inv = F32(1) / d
    # roundf: half away from zero (exact in double: a fp32 value + 0.5 is exact there)
    q = [math.copysign(math.floor(abs(float(F32(v * inv))) + 0.5), float(v)) for v in b]
    return [F32(qi) * _fp16(d) for qi in q], float(d)


def test_q8_0_against_a_hand_computation_and_within_half_a_step():
    exact = _block(0, 127 / 128)  # step 1/128: exact in fp16, so the bound is exactly half a step
    exact[5], exact[6] = F32(2.5 / 128), F32(-2.5 / 128)  # ties: ggml's roundf goes away from zero
    rounded = _block(1, 0.3)  # step 0.3/127: the fp16 scale differs from it
    x = torch.from_numpy(np.stack([exact, rounded]))
    got = quantize_tensor(x, "q8_0")
    assert got.dtype == torch.float32 and got.shape == x.shape
    for row, b in enumerate((exact, rounded)):
        want, step = _hand_q8_0(b)
        assert got[row].tolist() == [float(w) for w in want]
        err = (got[row] - x[row]).abs()
        # q is rounded against the fp32 step and multiplied back by the fp16 one: |q| <= 127 of that rounding
        assert err.max().item() <= step / 2 + 127 * abs(float(_fp16(step)) - step)
    assert (got[0] - x[0]).abs().max().item() <= (1 / 128) / 2
    assert got[0, 5].item() == 3 / 128 and got[0, 6].item() == -3 / 128


def _hand_q4_0(b: np.ndarray) -> list:
    big = b[np.abs(b).argmax()]  # the signed value of largest magnitude
    d = F32(big / F32(-8))
    inv = F32(1) / d
    q = [min(15, math.trunc(float(F32(F32(v * inv) + F32(8.5))))) for v in b]
    return [_fp16(d) * F32(qi - 8) for qi in q]


def _hand_q4_1(b: np.ndarray) -> list:
    lo, hi = b.min(), b.max()
    d = F32((hi - lo) / F32(15))
    inv = F32(1) / d
    q = [min(15, math.trunc(float(F32(F32((v - lo) * inv) + F32(0.5))))) for v in b]
    return [F32(_fp16(d) * F32(qi)) + _fp16(lo) for qi in q]


@pytest.mark.parametrize("name,hand", [("q4_0", _hand_q4_0), ("q4_1", _hand_q4_1)])
def test_4_bit_formats_against_a_hand_computation(name, hand):
    neg = _block(2, 0.8)
    pos = -_block(3, 0.05)  # largest magnitude positive: Q4_0's scale is negative there
    pos += F32(0.02)  # and off-centre, for Q4_1's minimum
    x = torch.from_numpy(np.concatenate([neg, pos]))[None, :]  # one row, two blocks
    got = quantize_tensor(x, name)[0].tolist()
    assert got == [float(v) for v in hand(neg) + hand(pos)]
    assert len(set(got[:32])) <= 16 and len(set(got[32:])) <= 16


def test_int4_g32_is_symmetric_round_to_nearest_with_an_fp16_scale():
    b = _block(4, 0.6, 64)
    got = quantize_tensor(torch.from_numpy(b), "int4_g32").numpy()
    for g in range(2):
        xs, ys = b[32 * g:32 * (g + 1)], got[32 * g:32 * (g + 1)]
        scale = _fp16(np.abs(xs).max() / F32(7))
        q = ys / scale
        assert np.array_equal(q, np.round(q)) and np.abs(q).max() == 7  # levels -7..7; -8 unused
        assert np.array_equal(q, np.clip(np.round(xs / scale), -8, 7))  # nearest level (ties to even)


@pytest.mark.parametrize("name,qtype", [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)])
def test_the_values_are_the_gguf_packages_own_round_trip(name, qtype):
    x = torch.randn(5, 96, generator=torch.Generator().manual_seed(5)) * 0.05
    want = gguf.quants.dequantize(gguf.quants.quantize(x.numpy(), qtype), qtype)
    assert torch.equal(quantize_tensor(x, name), torch.from_numpy(want))


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1", "int4_g32"])
def test_quantizing_twice_is_quantizing_once(name):
    x = torch.randn(16, 128, generator=torch.Generator().manual_seed(6)) * 0.1
    x[3, :32] = 0  # an all-zero block
    once = quantize_tensor(x, name)
    assert not torch.equal(once, x)
    assert torch.equal(quantize_tensor(once, name), once)


def test_a_result_keeps_dtype_and_shares_no_storage():
    x = torch.randn(2, 32)
    for name in ("f32", "q8_0", "int4_g32"):
        y = quantize_tensor(x, name)
        assert y.dtype == x.dtype and y.data_ptr() != x.data_ptr()
    assert quantize_tensor(x.bfloat16(), "q4_1").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_tensor(torch.randn(2, 40), "q4_1")


def test_ggml_type_names():
    assert ggml_type("q4_1") is T.Q4_1 and ggml_type("q8_0") is T.Q8_0 and ggml_type("f32") is T.F32
    for bad in ("int4_g32", "shipped", "q3_zz"):
        with pytest.raises(SnapBenchError):
            ggml_type(bad)


# --- a model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["q8_0", "q4_1", "int4_g32"])
def test_fake_quantize_quantizes_matrices_only_and_leaves_the_model_untouched(tiny, scheme):
    model = tiny.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = fake_quantize(model, scheme)
    orig = dict(model.named_parameters())
    params = dict(copy.named_parameters())
    assert params.keys() == orig.keys()
    for name, p in params.items():
        assert p.data_ptr() != orig[name].data_ptr() and p.dtype == orig[name].dtype
        if p.ndim == 1:  # norms
            assert torch.equal(p, orig[name]), name
        else:
            assert not torch.equal(p, orig[name]), name
            assert torch.equal(p, quantize_tensor(orig[name], scheme)), name
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    # tied: one tensor in the copy, as in the original
    assert model.config.tie_word_embeddings
    assert copy.lm_head.weight is copy.model.embed_tokens.weight
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_a_matrix_whose_rows_are_not_whole_blocks_stays_unquantized():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.Linear(32, 4))
    copy = fake_quantize(model, "q4_0")
    assert torch.equal(copy[0].weight, model[0].weight)  # 40 columns: not whole blocks of 32
    assert not torch.equal(copy[1].weight, model[1].weight)
    assert torch.equal(copy[1].bias, model[1].bias)


def test_shipped_needs_a_gguf_of_origin(tiny):
    assert source_gguf_types(tiny.model) is None
    with pytest.raises(SnapBenchError, match="no GGUF of origin") as err:
        fake_quantize(tiny.model, "shipped")
    assert "\n" not in str(err.value)


def test_the_default_models_folder_is_recognised(tiny):
    # tiny-random is built from the default model's tokenizer, so its converted copy exists by now.
    assert models.smollm2_dir().name == quant.SMOLLM2_FOLDER
    fake = SimpleNamespace(config=SimpleNamespace(name_or_path=str(models.smollm2_dir())))
    assert quant._comes_from_default_gguf(fake)
    assert quant._comes_from_default_gguf(SimpleNamespace(config=SimpleNamespace(name_or_path="SmolLM2-135M-Instruct")))
    assert not quant._comes_from_default_gguf(SimpleNamespace(config=SimpleNamespace(name_or_path="")))


# --- scheme names ----------------------------------------------------------------------------------------

def test_parse_schemes():
    assert parse_schemes("q4_1, Q8_0,q4_1,,") == ("q4_1", "q8_0")
    assert parse_schemes("shipped,int4_g32,q4_0") == ("shipped", "int4_g32", "q4_0")
    for off in ("", "  ", "off", "none", " None "):
        assert parse_schemes(off) == ()
    with pytest.raises(SnapBenchError) as err:
        parse_schemes("q8_0,q3_zz")
    msg = str(err.value)
    assert "q3_zz" in msg and "\n" not in msg and all(s in msg for s in SCHEMES)
    with pytest.raises(SnapBenchError, match="int4_g32"):
        fake_quantize(torch.nn.Linear(32, 2), "q3_zz")


# --- the real default model ------------------------------------------------------------------------------

@pytest.mark.slow
def test_shipped_leaves_the_default_model_exactly_as_it_is():
    """The issue's premise: SmolLM2's fp32 weights were dequantized from its Q4_1 GGUF, so quantizing each
    tensor back to its GGUF type changes no bit."""
    lm = models.load_model(models.DEFAULT_MODEL)
    types = source_gguf_types(lm.model)
    assert Counter(t.name for t in types.values()) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert types["model.embed_tokens.weight"] is T.Q8_0
    assert types["model.layers.3.self_attn.q_proj.weight"] is T.Q4_1 and types["model.norm.weight"] is T.F32
    copy = fake_quantize(lm.model, "shipped")
    orig = dict(lm.model.named_parameters())
    changed = {name: (p != orig[name]).sum().item() for name, p in copy.named_parameters()
               if not torch.equal(p, orig[name])}
    assert changed == {}, sorted(changed.items())[:10]
    assert copy.lm_head.weight is copy.model.embed_tokens.weight
