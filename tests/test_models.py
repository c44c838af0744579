import pytest

from snap_bench.errors import SnapBenchError
from snap_bench.models import _COMPLETE, _atomic_materialise, load_model


def test_cache_write_is_atomic(tmp_path):
    final = tmp_path / "models" / "m"

    def crash(tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        _atomic_materialise(final, crash)
    assert not final.exists()
    assert list((tmp_path / "models").iterdir()) == []  # no half-written temp left behind

    calls = []

    def build(tmp):
        calls.append(1)
        (tmp / "model.safetensors").write_bytes(b"ok")

    assert _atomic_materialise(final, build) == final
    assert (final / _COMPLETE).is_file() and (final / "model.safetensors").read_bytes() == b"ok"
    _atomic_materialise(final, build)
    assert calls == [1]  # a complete cache is never rebuilt


def test_tiny_random_is_a_small_llama_with_the_smollm2_tokenizer(tiny):
    assert tiny.model.config.model_type == "llama"
    assert sum(p.numel() for p in tiny.model.parameters()) < 5_000_000
    assert tiny.tokenizer.chat_template and "<|im_start|>" in tiny.tokenizer.chat_template
    assert tiny.model.dtype.is_floating_point


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    with pytest.raises(SnapBenchError, match="only pickle weights"):
        load_model(str(tmp_path))


def test_unknown_model_lists_presets():
    with pytest.raises(SnapBenchError, match="valid presets: smollm2-135m, tiny-random"):
        load_model("not-a-model")
