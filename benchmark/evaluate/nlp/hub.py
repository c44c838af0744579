"""Hugging Face hub reachability for ``snap-bench nlp``, and keeping the hub libraries quiet.

When the hub is unreachable we switch the hub libraries to offline mode, so a task whose
dataset is not already in the local ``datasets`` cache fails in milliseconds instead of
retrying for ~25 s.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

HUB_PROBE_TIMEOUT_S = 3.0


def _hub_offline_already() -> bool:
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(k, "").lower() in truthy for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        import huggingface_hub.constants as hc

        return bool(hc.HF_HUB_OFFLINE)
    except ImportError:
        return False


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the Hugging Face hub answers; else a short reason. Any HTTP status counts as up."""
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
        return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{endpoint}: {reason}"


@contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Put huggingface_hub and datasets in offline mode for the block, then restore them.

    Both libraries read HF_HUB_OFFLINE into module constants at import time, and transformers
    has already imported them by the time a model is loaded, so the constants are patched too.
    """
    if not enabled:
        yield
        return
    import datasets.config as dc
    import huggingface_hub.constants as hc

    env_keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    saved = [(hc, "HF_HUB_OFFLINE", hc.HF_HUB_OFFLINE), (dc, "HF_HUB_OFFLINE", dc.HF_HUB_OFFLINE),
             (dc, "HF_DATASETS_OFFLINE", getattr(dc, "HF_DATASETS_OFFLINE", None))]
    for k in env_keys:
        os.environ[k] = "1"
    for mod, attr, _ in saved:
        setattr(mod, attr, True)
    try:
        yield
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _quiet_libraries(progress: bool) -> Iterator[None]:
    """lm-eval warns freely (e.g. that --limit is for testing); our own lines say what matters."""
    import logging

    loggers = [logging.getLogger(n) for n in ("lm_eval", "datasets", "huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    bars = None
    if not progress:
        try:
            import datasets

            bars = datasets.utils.logging.is_progress_bar_enabled()
            datasets.disable_progress_bars()
        except (ImportError, AttributeError):
            bars = None
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
        if bars:
            import datasets

            datasets.enable_progress_bars()
