"""``snap-bench bench``: how close a run comes to the arithmetic this machine can do.

Every figure is measured in one process, next to the reference it is compared with, so that a
busy CPU slows both sides alike and the ratios stay meaningful:

- **matmul peaks**: fp32 and bf16 GFLOP/s of a square ``torch.mm`` (best of a few), the yardsticks;
  every fraction is judged against the peak of the precision in use (the run config's resolved
  ``precision``: training in bf16 against the bf16 peak; evaluation generates in fp32 always);
- **model load**: seconds to load the model from its cached safetensors;
- **training step** at the default config (SNAP + SWD, ``cpu`` preset): real tokens/s and the
  achieved FLOP/s as a fraction of the matmul peak of its precision (FLOPs counted by :func:`train_step_flops`);
- **regularizer overhead**: the penalty's forward + backward for ``swd``, ``l2`` and ``fisher``
  on the model as it is after those steps, over a step without regularizer;
- **generation**: generated tokens/s of the suite's batched generator against one-at-a-time HF
  ``generate`` on the same prompts, whose greedy outputs must be identical, and against HF's own
  batched ``generate`` (same prompts, batch size and length order), the stronger baseline;
- **end-to-end**: the default run's wall time against its floor, training FLOPs / the peak of its
  precision + evaluation FLOPs / the fp32 peak, from a run measured now (``--e2e``) or read from a results store;
- **peak memory**: the peak RSS of this process (or of the ``--e2e`` child run).

FLOP counts are the useful arithmetic only (no padding, causal attention only over the pairs a
token may attend to), so padding and any other waste show up as a lower fraction.

The pieces live in submodules: :mod:`.config` (what to measure), :mod:`.flops` (FLOP accounting),
:mod:`.inputs` (the default run's data, drawn by the trainer's own functions), :mod:`.measure`
(peaks, training steps, regularizers), :mod:`.generation`, :mod:`.e2e`, :mod:`.targets` (figures
against targets), :mod:`.suite` (the whole bench, step by step) and :mod:`.command` (the CLI).
"""

from snap_bench.bench.command import add_parser, cmd_bench
from snap_bench.bench.config import REGULARIZERS, BenchConfig
from snap_bench.bench.e2e import end_to_end
from snap_bench.bench.flops import (ModelShape, causal_pairs, generation_flops, run_train_flops, step_stats,
                                    train_step_flops)
from snap_bench.bench.generation import generation_bench, hf_generate_batched, hf_generate_one_at_a_time
from snap_bench.bench.inputs import default_plan, eval_prompts, step_batches, training_inputs
from snap_bench.bench.measure import (PEAK_PRECISIONS, matmul_gflops, peak_for, peak_rss_gb, regularizer_overheads,
                                      with_moved_weights)
from snap_bench.bench.suite import run_bench
from snap_bench.bench.targets import SWD_TARGET, Figure, figures, format_table

__all__ = ["BenchConfig", "REGULARIZERS", "SWD_TARGET", "PEAK_PRECISIONS", "ModelShape", "causal_pairs",
           "train_step_flops", "generation_flops", "step_stats", "run_train_flops", "default_plan", "training_inputs",
           "step_batches", "eval_prompts", "matmul_gflops", "peak_for", "peak_rss_gb", "regularizer_overheads",
           "with_moved_weights", "hf_generate_one_at_a_time", "hf_generate_batched", "generation_bench", "end_to_end",
           "run_bench", "Figure", "figures", "format_table", "add_parser", "cmd_bench"]
