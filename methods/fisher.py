"""Fisher baseline: SNAP's objective with a Fisher-weighted (EWC) distance to the initial weights.

L = L_f + L_r + λ·Σ_i F_i (θ_i − θ_init,i)², F the diagonal empirical Fisher of the retain data
(``regularizers/fisher.py``; Kirkpatrick et al. 2017, arXiv 1612.00796). The data and loss are
SNAP's (Choi et al. 2024, arXiv 2406.12329): negative instructions on the forget questions and
normal answers on the hard retaining data. Where SNAP's sliced Wasserstein distance lets rows move
as long as their distribution stays, this penalty pins the individual weights that the retain
answers depend on and frees the others.

With ``--set retain_data=none`` there is no retain stream and F is estimated on the forget stream
instead (see the regularizer's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.config import MethodConfig
from snap_bench.errors import SnapBenchError
from snap_bench.methods.snap import Snap
from snap_bench.registry import register_method


@dataclass
class FisherConfig(MethodConfig):
    """SNAP's settings with the Fisher regularizer by default, plus how to estimate F."""

    regularizer: str = "fisher"
    """Σ F_i (θ_i − θ_init,i)²; ``--regularizer`` swaps it like for any method."""
    fisher_batch_size: int = 1
    """Examples per backward pass of the Fisher estimate: 1 = exact per-example empirical Fisher (default);
    b > 1 squares mini-batch gradients instead (b times faster, biased; see ``regularizers/fisher.py``)."""
    fisher_normalize: bool = True
    """Divide F by its mean so the penalty is on the scale of ‖θ − θ_init‖² and λ transfers across models."""
    fisher_max_examples: int | None = 32
    """Examples in the Fisher pass, a seeded random sample of the retain stream (one backward pass each at
    ``fisher_batch_size`` 1, a few seconds apiece for SmolLM2 on 2 cores); None uses the whole stream."""

    def validate(self) -> None:
        super().validate()
        if self.fisher_batch_size < 1:
            raise SnapBenchError(f"--set fisher_batch_size={self.fisher_batch_size}: must be >= 1")
        if self.fisher_max_examples is not None and self.fisher_max_examples < 1:
            raise SnapBenchError(f"--set fisher_max_examples={self.fisher_max_examples}: must be >= 1")


@register_method("fisher")
class Fisher(Snap):
    config_cls = FisherConfig
    trains = True
