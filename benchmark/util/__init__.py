"""Two small helpers every stage shares, kept in one place so their behaviour cannot drift apart."""

from __future__ import annotations

import sys


def pad_id(tokenizer) -> int:
    """The token id batches are padded with: the tokenizer's pad token, else its end-of-sequence token
    (SmolLM2 and Llama tokenizers ship without a pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "q"):
    """A tqdm bar on stderr (stdout stays clean for ``--json``), or None when progress is off.
    Callers write ``bar.update(n)`` behind ``if bar is not None`` and close it in ``finally``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
