"""Scoring on the dev split, and ``select=dev``: keep the training checkpoint with the best dev score.

It only evaluates (the trainer calls :meth:`DevSelector.on_step`); training stays in the trainer.
"""

from __future__ import annotations

from typing import Any

from snap_bench.evaluate.dev_score import dev_score
from snap_bench.run.spec import Plan
from snap_bench.run.splits import Splits
from snap_bench.tasks import Item, Pack

def dev_sets(sp: Splits, packs: list[Pack]) -> dict[str, dict[str, list[Item]]]:
    return {pk.slug: {"forget": sp.per_entity[pk.slug]["dev"]["forget"], "retain": sp.per_entity[pk.slug]["dev"]["retain"]}
            for pk in packs}


def dev_sizes(sp: Splits, packs: list[Pack]) -> dict[str, int]:
    sets = dev_sets(sp, packs)
    return {"forget": sum(len(v["forget"]) for v in sets.values()), "retain": sum(len(v["retain"]) for v in sets.values()),
            "general": len(sp.g_dev), "cross": len(sp.cross_dev)}


def dev_metrics(p: Plan, model, tok, judge, sp: Splits, packs: list[Pack], system, progress: bool = False):
    """UA, RA, TA, cross_RA (and the rest) on the dev split: items carved from training, never trained on."""
    from snap_bench.evaluate.metrics import evaluate

    metrics, _ = evaluate(model, tok, dev_sets(sp, packs), sp.g_dev, judge, p.cfg, system=system, progress=progress,
                          cross=sp.cross_dev, desc="dev")
    return metrics


class DevSelector:
    """``select=dev``: score the dev split every ``select_every`` steps and at the last step, keep a copy of the
    best weights, and put them back after training. It only evaluates: training stays in the trainer."""

    def __init__(self, p: Plan, model, tok, judge, sp: Splits, phase: list[Pack], k: int):
        self.p, self.model, self.tok, self.judge, self.sp, self.phase, self.k = p, model, tok, judge, sp, phase, k
        self.best: tuple[float, int] | None = None
        self.best_state = BestWeights()
        self.history: list[dict[str, Any]] = []

    def on_step(self, step: int, values: dict[str, float]) -> None:
        if (step + 1) % self.p.cfg.select_every == 0:
            self._score(step + 1)

    def _score(self, step: int) -> None:
        was_training = self.model.training
        self.model.eval()
        metrics = dev_metrics(self.p, self.model, self.tok, self.judge, self.sp, self.phase, self.p.cfg.system_prompt)
        if was_training:
            self.model.train()
        score = dev_score(metrics, self.p.cfg.select_criterion)
        self.history.append({"step": step, "score": score, "metrics": metrics})
        if self.best is None or score > self.best[0]:
            self.best = (score, step)
            self.best_state.save(self.model)

    def restore_best(self, final_step: int) -> dict[str, Any]:
        """Score the final weights too (unless just scored), then load the best checkpoint's."""
        try:
            if final_step and (not self.history or self.history[-1]["step"] != final_step):
                self._score(final_step)
            if self.best is not None and self.best[1] != final_step:
                self.best_state.load_into(self.model)
        finally:
            self.best_state.close()
        from snap_bench.config import SELECT_CRITERIA

        return {"phase": self.k, "criterion": SELECT_CRITERIA[self.p.cfg.select_criterion], "selected_step": self.best[1] if self.best else None,
                "score": self.best[0] if self.best else None, "history": self.history}


class BestWeights:
    """The best checkpoint's weights, in a temporary safetensors file rather than in memory: a copy of θ in RAM
    costs as much as the model (0.54 GB for SmolLM2-135M in fp32) at the moment training holds θ, θ_init,
    gradients and AdamW's two moments. The file holds each parameter and buffer once (tied weights once),
    bit for bit, and is removed when the selection ends (or with the process's temp folder on a crash)."""

    def __init__(self) -> None:
        self.dir: str | None = None

    @staticmethod
    def _tensors(model) -> dict[str, Any]:
        named = dict(model.named_parameters())
        named.update(model.named_buffers())
        return named

    def save(self, model) -> None:
        import os
        import tempfile

        from safetensors.torch import save_file

        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="snap-bench-best-")
        path = os.path.join(self.dir, "best.safetensors")
        save_file({n: t.detach().contiguous() for n, t in self._tensors(model).items()}, path + ".tmp")
        os.replace(path + ".tmp", path)

    def load_into(self, model) -> None:
        import os

        import torch
        from safetensors import safe_open

        assert self.dir is not None, "no checkpoint saved"
        with safe_open(os.path.join(self.dir, "best.safetensors"), framework="pt") as f, torch.no_grad():
            for n, t in self._tensors(model).items():
                t.copy_(f.get_tensor(n))  # one tensor at a time: no second copy of θ

    def close(self) -> None:
        import shutil

        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
