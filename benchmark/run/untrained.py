"""The untrained model's own answers, generated once and cached (for RA_known).

RA counts any non-refusal as retained, even a wrong answer the model never knew. RA_known
restricts it to the retain questions the model answered correctly *before* unlearning, which
needs that model's answers. They are generated before training and cached on disk, keyed by a
fingerprint of the weights and everything that shapes a greedy answer (prompt settings, token
budget, the chat template), so every later run on the same model, split and seed reuses them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from snap_bench.util.fsutil import atomic_write_text
from snap_bench.models import cache_dir
from snap_bench.tasks import Item


def weights_fingerprint(model) -> str:
    """A hash of every parameter's name, shape, dtype and (float64) sum and sum of squares.

    Two models with the same fingerprint give the same greedy answers for all practical purposes;
    reading the stats costs a fraction of a second on a 135M model, far less than hashing the bytes.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            x = t.detach().to(torch.float64)
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|{float(x.sum()):.12e}|{float((x * x).sum()):.12e}".encode())
    return h.hexdigest()[:20]


def _cache_path(model, tokenizer, system: str | None, max_new_tokens: int) -> Path:
    settings = json.dumps({"weights": weights_fingerprint(model), "system": system, "max_new_tokens": max_new_tokens,
                           "template": getattr(tokenizer, "chat_template", None) or "", "torch": torch.__version__},
                          sort_keys=True)
    key = hashlib.sha256(settings.encode()).hexdigest()[:24]
    return cache_dir() / "untrained" / f"{key}.json"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or torn by a crash elsewhere: regenerate
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def untrained_responses(model, tokenizer, items: Sequence[Item], cfg, *, system: str | None = None,
                        progress: bool = True) -> dict[str, str]:
    """item id -> the model's greedy answer to the item's question, generating only what the cache lacks."""
    from snap_bench.evaluate.metrics import _generate

    path = _cache_path(model, tokenizer, system, cfg.max_new_tokens)
    cached = _read(path)
    missing = sorted({it.question for it in items if it.question not in cached})
    if missing:
        answers = _generate(model, tokenizer, missing, cfg, system, progress, "untrained answers")
        cached = {**_read(path), **dict(zip(missing, answers))}  # merge what another run may have added meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cached, ensure_ascii=False, sort_keys=True))
    return {it.id: cached[it.question] for it in items}


@functools.lru_cache(maxsize=1)
def measuring_code() -> str:
    """A hash of the source of every module that shapes a measurement: ``evaluate/`` (metrics, probes, MIA,
    quantization, judges) and the encoding and log-probability helpers it uses."""
    import importlib.util

    evaluate = Path(importlib.util.find_spec("snap_bench.evaluate").origin).parent
    helpers = [Path(importlib.util.find_spec(m).origin) for m in ("snap_bench.logprobs", "snap_bench.data",
                                                                  "snap_bench.methods.base")]
    h = hashlib.sha256()
    for f in sorted(evaluate.rglob("*.py")) + helpers:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:20]


def cached_measurement(kind: str, model, tokenizer, settings: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """``compute()``, a measurement of the model as it is before training, cached on disk.

    The key is ``kind``, the weights fingerprint, the chat template, torch's version and ``settings``:
    everything else that shapes the value (the item ids in order, the system prompt, the batch size, the
    probe's settings). Every run of a sweep on one model, entity, sample size and seed measures the same
    untrained reference; with the cache it is measured once (issue 26). The source of the code that measures
    (:func:`measuring_code`) is in the key too, so a change to a metric never reads an older value. The value goes through JSON on a
    miss too, so a first run and a later one hand on the same types and the same floats (JSON keeps a
    float's every digit, and NaN)."""
    blob = json.dumps({"kind": kind, "weights": weights_fingerprint(model), "torch": torch.__version__,
                       "code": measuring_code(), "template": getattr(tokenizer, "chat_template", None) or "",
                       "settings": settings}, sort_keys=True, default=str)
    path = cache_dir() / "untrained" / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # missing, or torn by a crash elsewhere: measure
    text = json.dumps(compute())  # insertion order kept: callers iterate these dicts
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return json.loads(text)
