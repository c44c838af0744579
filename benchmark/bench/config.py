"""What ``snap-bench bench`` measures and how long it spends on each part: :class:`BenchConfig`,
built by the ``bench`` command from its flags and validated before anything is measured."""

from __future__ import annotations

from dataclasses import dataclass

from snap_bench.errors import SnapBenchError

REGULARIZERS = ("swd", "l2", "fisher")


@dataclass
class BenchConfig:
    """What ``snap-bench bench`` measures and how long it spends on each part."""

    model: str = "smollm2-135m"
    """Model preset, HF id or path; the targets are set for the default."""
    entity: str = "peter_parker"
    """Entity of the default run whose data and config the step and generation benchmarks use."""
    method: str = "snap"
    """Method of the default run (its default regularizer is the one the training step runs with)."""
    steps: int = 3
    """Timed training steps per configuration (after ``warmup`` untimed ones); the median counts."""
    warmup: int = 1
    """Untimed training steps first (allocator and kernel warm-up)."""
    repeats: int = 3
    """Timed repeats of each regularizer's penalty (forward + backward); the median counts."""
    gen_prompts: int = 16
    """Evaluation questions (spread over the default split's eval sets) both generators answer."""
    max_new_tokens: int | None = None
    """Generation budget; None uses the run config's ``max_new_tokens`` (64 on the cpu preset)."""
    matmul_size: int = 2048
    """Side of the square matmuls (fp32 and bf16) that set the peaks."""
    threads: int | None = None
    """torch intra-op threads; None keeps torch's default (one per physical core)."""
    e2e: bool = False
    """Run the default ``snap-bench run`` now in a child process and time it (about 12 min on 2 cores)."""
    results: str | None = None
    """Results store to read a finished default run from when ``e2e`` is off (default ./results)."""
    fisher_examples: int = 8
    """Examples in the Fisher estimate the bench times (the run's default is 32; prepare time scales with it)."""
    run_id: str | None = None
    """A finished run in ``results`` to use for the end-to-end figures instead of the latest default one."""
    regularizers: tuple[str, ...] = REGULARIZERS
    """Regularizers whose per-step overhead is measured."""

    def validate(self) -> None:
        for name in ("steps", "repeats", "gen_prompts", "matmul_size", "fisher_examples"):
            if getattr(self, name) < 1:
                raise SnapBenchError(f"bench --{name.replace('_', '-')} must be >= 1")
        if self.warmup < 1:
            raise SnapBenchError("bench --warmup must be >= 1 (the first step's time is not a step's time)")
        if self.threads is not None and self.threads < 1:
            raise SnapBenchError("bench --threads must be >= 1")
        if self.e2e and self.run_id:
            raise SnapBenchError("bench: --e2e times a new run; --run-id reads a stored one: pass one of them")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise SnapBenchError("bench --max-new-tokens must be >= 1")
