"""Experiment tracking: ``--set log_with=tensorboard|wandb|mlflow`` sends a run's numbers where researchers look.

accelerate's tracker classes do the writing (the same ones ``Accelerator(log_with=...)`` builds), so each
backend behaves as it does in any accelerate training script. What is logged, under the run id:

- every loss term of every training step and the lr, as the store keeps them (``losses`` table), tagged
  ``train/<term>`` at a global step that counts on across the phases of a sequential run;
- the final metrics, ``final/<entity>/<metric>``, at the last step;
- the run's settings (scalars only) as the tracker's hyper-parameters.

Only the main process tracks. TensorBoard writes under ``<results>/tensorboard/<run_id>`` (or ``log_dir``);
W&B and MLflow read their own configuration (``WANDB_*``, ``MLFLOW_TRACKING_URI``) from the environment, and
snap-bench neither reads nor records their keys. Tracking is an execution setting: outside the config hash.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError

# tracker -> the package it needs (checked when the run is planned, so a missing one writes nothing)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
PROJECT = "snap-bench"  # W&B project (unless WANDB_PROJECT is set) and MLflow experiment name


def check_available(name: str) -> None:
    """Raise a one-line error when the chosen tracker's package is not installed."""
    if name == "none":
        return
    pkg = PACKAGES[name]  # the config validated the name
    if importlib.util.find_spec(pkg) is None:
        raise SnapBenchError(f"--set log_with={name}: the {pkg} package is not installed "
                             f"(pip install {pkg}, or the track extra: pip install 'snap-bench[track]')")


class RunTracker:
    """One run's tracker: ``log_step`` per training step, ``log_final`` once, ``close`` always."""

    def __init__(self, name: str, run_id: str, log_dir: Path, settings: dict[str, Any]):
        import os

        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        cls = LOGGER_TYPE_TO_CLASS[name]
        if name == "tensorboard":
            self._t = cls(run_id, str(log_dir))
        elif name == "wandb":
            self._t = cls(os.environ.get("WANDB_PROJECT", PROJECT), name=run_id)
        else:
            self._t = cls(experiment_name=PROJECT, run_name=run_id)
        try:
            self._t.start()
            self._t.store_init_configuration(settings)
        except Exception as exc:  # the user's tracker configuration (server, credentials, store) is at fault
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SnapBenchError(f"--set log_with={name}: the tracker did not start ({type(exc).__name__}: "
                                 f"{first[:300]})") from None
        self.offset = 0  # global step of the current phase's first step
        self.last = -1

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.last = self.offset + step
        self._t.log({f"train/{k}": float(v) for k, v in values.items()}, step=self.last)

    def end_phase(self) -> None:
        self.offset = self.last + 1

    def log_final(self, metrics: dict[str, dict[str, Any]]) -> None:
        flat = {f"final/{ent}/{k}": float(v) for ent, m in metrics.items() for k, v in m.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._t.log(flat, step=max(self.last, 0))

    def close(self) -> None:
        self._t.finish()


def open_tracker(p, run_id: str) -> RunTracker | None:
    """The plan's tracker for ``run_id``, or None when ``log_with=none``."""
    from snap_bench.store import default_results_dir

    cfg, spec = p.cfg, p.spec
    if cfg.log_with == "none":
        return None  # the package was checked when the run was planned; a worker without it fails to start
    log_dir = Path(cfg.log_dir) if cfg.log_dir else Path(spec.results_dir or default_results_dir()) / "tensorboard"
    settings = {"run_id": run_id, "method": spec.method, "regularizer": p.regularizer, "mode": spec.mode,
                "entities": ",".join(pk.slug for pk in p.packs), "model": spec.model, "seed": spec.seed,
                "config_hash": p.config_hash}
    settings.update({k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.to_dict().items()})
    return RunTracker(cfg.log_with, run_id, log_dir, settings)
