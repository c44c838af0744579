"""The untrained model's own answers, generated once and cached (for RA_known).

RA counts any non-refusal as retained, even a wrong answer the model never knew. RA_known
restricts it to the retain questions the model answered correctly *before* unlearning, which
needs that model's answers. They are generated before training and cached on disk, keyed by a
fingerprint of the weights and everything that shapes a greedy answer (prompt settings, token
budget, the chat template), so every later run on the same model, split and seed reuses them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

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
