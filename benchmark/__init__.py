"""snap-bench: a benchmark suite for selective unlearning in instruction-tuned LLMs.

The core lives here (``snap_bench``); methods, regularizers and task packs live in the
sibling packages ``snap_bench.methods``, ``snap_bench.regularizers`` and ``snap_bench.tasks``.
"""

__version__ = "0.1.0"
