"""Saving an unlearned model as a plain transformers directory (``snap-bench run --save DIR``).

The directory holds ``model.safetensors``, ``config.json``, ``generation_config.json``, the
tokenizer files with the chat template, and ``snap_bench_card.json``: the run id, method,
entities, metrics and the evaluation's generation settings. With ``run --gguf TYPE`` it also holds
``model.TYPE.gguf`` (see gguf_export.py), whose name, type and size the card records. It loads with
``AutoModelForCausalLM.from_pretrained(DIR)`` alone, and as ``--model DIR`` in every command.

Policy for an existing DIR (checked before training and again before writing): a missing or
empty DIR is fine; a DIR holding a card (an earlier snap-bench save) is replaced; anything else
is refused, so a save never deletes files snap-bench did not write. The model is written to a
temp sibling and renamed into place, so a crash mid-write never leaves a half-written DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from snap_bench import __version__
from snap_bench.errors import SnapBenchError
from snap_bench.util.fsutil import replace_dir

CARD_NAME = "snap_bench_card.json"


def read_card(path: str | Path) -> dict[str, Any] | None:
    """The card of a snap-bench save, or None for any other directory (a preset, a hub model)."""
    p = Path(path) / CARD_NAME
    if not p.is_file():
        return None
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapBenchError(f"{p}: unreadable snap-bench card ({exc})") from None
    if not isinstance(card, dict):
        raise SnapBenchError(f"{p}: a snap-bench card must be a JSON object")
    return card


def check_save_dir(path: str | Path) -> Path:
    """Raise SnapBenchError unless ``path`` may receive a save (see the module docstring)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SnapBenchError(f"--save {path}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not (p / CARD_NAME).is_file():
        raise SnapBenchError(f"--save {path}: directory exists, is not empty and is not a snap-bench save; "
                             "choose a new or empty directory")
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise SnapBenchError(f"--save {path}: {parent} is not writable")
    return p


def save_model(model, tokenizer, path: str | Path, card: dict[str, Any], gguf: str | None = None) -> Path:
    """Write model + tokenizer + card to ``path`` atomically; returns the resolved path. ``gguf`` (a type
    such as ``q4_1``, ``run --gguf``) also writes ``model.<type>.gguf`` there, named in the card."""
    final = check_save_dir(path).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        card = {"snap_bench": __version__, "saved_at": time.time(), **card}
        if gguf is not None:  # inside the temp dir: the GGUF appears with the rest of the save or not at all
            from snap_bench.models.gguf_export import write_gguf

            gfile = write_gguf(model, tokenizer, tmp / f"model.{gguf}.gguf", gguf)
            card["gguf"] = {"file": gfile.name, "type": gguf, "bytes": gfile.stat().st_size}
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
        _plain_permissions(tmp)
        replace_dir(tmp, final)  # an earlier save is replaced, and put back if the rename fails
    except OSError as exc:
        raise SnapBenchError(f"--save {path}: could not write the model ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plain_permissions(folder: Path) -> None:
    """mkdtemp makes a 0700 dir: give the save the modes a plain mkdir/open would (umask applies)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)
