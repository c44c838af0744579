"""Bad input on every command and file format: exit code 2, ONE line on stderr naming the file, field
or line and what is expected, no traceback, and nothing written (no results store, no output folder).

Each case is a distinct real bad input. A case is (id, build, needle): ``build(tmp_path, pack)``
prepares any files and returns the CLI arguments; ``needle`` must appear in the error line.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from packmaker import make_pack

RUN = ["run", "--method", "snap", "--model", "tiny-random", "--no-progress"]


def _run(*extra):
    return lambda tmp, pack: [*RUN, "--entity", "peter_parker", *extra]


def _run_pack(mutate):
    """`run` on a copy of the synthetic pack after ``mutate(pack_dir, tmp)`` broke it."""

    def build(tmp, pack):
        mutate(pack, tmp)
        return [*RUN, "--entity", str(pack)]

    return build


def _rewrite_line(name: str, **changes):
    """Change fields of the first item of ``name``.jsonl (a value of ``DROP`` removes the field)."""

    def mutate(pack, tmp):
        f = pack / f"{name}.jsonl"
        lines = f.read_text().splitlines()
        obj = json.loads(lines[0])
        for k, v in changes.items():
            if v is DROP:
                obj.pop(k)
            else:
                obj[k] = v
        lines[0] = json.dumps(obj)
        f.write_text("\n".join(lines) + "\n")

    return mutate


DROP = object()


def _write(name: str, data: bytes | str):
    def mutate(pack, tmp):
        (pack / name).write_bytes(data if isinstance(data, bytes) else data.encode())

    return mutate


def _meta(**changes):
    def mutate(pack, tmp):
        meta = json.loads((pack / "meta.json").read_text())
        for k, v in changes.items():
            if v is DROP:
                meta.pop(k)
            else:
                meta[k] = v
        (pack / "meta.json").write_text(json.dumps(meta))

    return mutate


def _symlink_out(name: str):
    def mutate(pack, tmp):
        outside = tmp / "outside" / name
        outside.parent.mkdir(exist_ok=True)
        outside.write_bytes((pack / name).read_bytes())
        (pack / name).unlink()
        (pack / name).symlink_to(outside)

    return mutate


def _dup_id(pack, tmp):
    forget = json.loads((pack / "forget.jsonl").read_text().splitlines()[0])
    lines = (pack / "retain.jsonl").read_text().splitlines()
    obj = json.loads(lines[0])
    obj["id"] = forget["id"]
    lines[0] = json.dumps(obj)
    (pack / "retain.jsonl").write_text("\n".join(lines) + "\n")


def _dup_id_same_file(pack, tmp):
    lines = (pack / "forget.jsonl").read_text().splitlines()
    (pack / "forget.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")


def _suite(text: str | bytes):
    def build(tmp, pack):
        f = tmp / "suite.yaml"
        body = text.replace("PACK", str(pack)) if isinstance(text, str) else text
        f.write_bytes(body if isinstance(body, bytes) else textwrap.dedent(body).encode())
        return ["sweep", "--suite", str(f), "--no-progress"]

    return build


GOOD_ENTRY = "  - methods: [snap]\n    entities: [[PACK]]\n"


def _sweep_seeds(seeds: str):
    """A good suite with a bad ``--seeds``: the flag is refused before the suite is even read."""
    good = _suite("grid:\n" + GOOD_ENTRY)
    return lambda tmp, pack: [*good(tmp, pack), "--seeds", seeds]


def _judge_input(data: bytes | str, *extra):
    def build(tmp, pack):
        f = tmp / "in.jsonl"
        f.write_bytes(data if isinstance(data, bytes) else data.encode())
        return ["judge", "--input", str(f), *extra]

    return build


def _model_dir(kind: str):
    def build(tmp, pack):
        d = tmp / "model"
        d.mkdir()
        if kind == "pickle":
            (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
            (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
        return [*RUN[:3], "--entity", "peter_parker", "--model", str(d), "--no-progress"]

    return build


def _results_under_a_file(tmp, pack):
    (tmp / "afile").write_text("x")
    return [*RUN, "--entity", "peter_parker", "--results", str(tmp / "afile" / "res")]


def _results_is_a_file(tmp, pack):
    (tmp / "res").write_text("x")
    return [*RUN, "--entity", "peter_parker"]


def _generate(*extra):
    return lambda tmp, pack: ["generate", "--entity", "Wanda Maximoff", "--base-url", "http://127.0.0.1:9/v1",
                              "--model", "m", "--out", str(tmp / "gen"), *extra]


Q = {"question": "Who is Peter Parker's aunt?", "response": "I can't say."}

CASES = [
    # --- run: --set values -------------------------------------------------------------------
    ("set-lr-negative", _run("--set", "lr=-1"), "--set lr=-1.0: must be a positive number"),
    ("set-lambda-abc", _run("--set", "lambda_reg=abc"), "--set lambda_reg=abc: expected float"),
    ("set-unknown-key", _run("--set", "colour=red"), "--set colour: unknown key; valid keys:"),
    ("set-int-given-float", _run("--set", "max_steps=1.5"), "--set max_steps=1.5: expected int"),
    ("set-batch-zero", _run("--set", "batch_size=0"), "--set batch_size=0: must be a positive number"),
    ("set-lr-nan", _run("--set", "lr=nan"), "--set lr=nan: expected float"),
    ("set-lr-inf", _run("--set", "lr=inf"), "--set lr=inf: expected float"),
    ("set-bool-maybe", _run("--set", "probes=maybe"), "--set probes=maybe: expected bool"),
    ("set-mia-maybe", _run("--set", "mia=maybe"), "--set mia=maybe: expected bool"),
    ("set-mia-limit-zero", _run("--set", "mia=true", "--set", "mia_limit=0"), "--set mia_limit=0: must be a positive number"),
    ("set-retain-data", _run("--set", "retain_data=everything"), "--set retain_data=everything: expected one of hard"),
    ("set-select-bogus", _run("--set", "select=bogus"), "--set select=bogus: expected one of last, dev"),
    ("set-select-criterion-bogus", _run("--set", "select_criterion=best"),
     "--set select_criterion=best: expected one of balanced, mean4"),
    ("set-select-dev-no-dev-split", _run("--set", "select=dev", "--set", "dev_size=0"), "needs a dev split"),
    ("set-dev-size-negative", _run("--set", "dev_size=-1"), "--set dev_size=-1: must be >= 0"),
    ("set-select-every-zero", _run("--set", "select_every=0"), "--set select_every=0: must be a positive number"),
    ("set-no-equals", _run("--set", "lr"), "--set lr: expected key=value"),
    ("set-empty-key", _run("--set", "=3"), "--set =3: empty key"),
    ("set-twice", _run("--set", "lr=1", "--set", "lr=2"), "--set lr given twice"),
    ("set-eval-limit-negative", _run("--set", "eval_limit=-3"), "--set eval_limit=-3: must be >= 0"),
    ("set-schedule", _run("--set", "lr_schedule=cosine"), "--set lr_schedule=cosine: expected linear or constant"),
    ("set-swd-form", _run("--set", "swd_form=bogus"), "--set swd_form=bogus: expected authors or normalized"),
    ("set-precision-fp16", _run("--set", "precision=fp16"), "--set precision=fp16: expected one of auto, fp32, bf16"),
    ("set-precision-bogus", _run("--set", "precision=bogus"), "--set precision=bogus: expected one of auto, fp32, bf16"),
    ("set-precision-vs-mixed", _run("--set", "precision=fp32", "--set", "mixed_precision=bf16"),
     "--set precision=fp32 and mixed_precision=bf16 contradict"),
    ("set-nlp-task", _run("--set", "eval_nlp=true", "--set", "nlp_tasks=hellaswag,squad"), "unknown task 'squad'"),
    ("max-steps-negative", _run("--max-steps", "-1"), "--set max_steps=-1: must be >= 0"),
    ("max-steps-not-int", _run("--max-steps", "abc"), "--max-steps: invalid int value: 'abc'"),
    # --- run: names --------------------------------------------------------------------------
    ("unknown-method", lambda t, p: [*RUN[:1], "--method", "snapp", "--entity", "peter_parker"],
     "unknown method 'snapp'; valid methods: "),
    ("unknown-regularizer", _run("--regularizer", "xx"), "unknown regularizer 'xx'; valid regularizers:"),
    ("unknown-mode", _run("--mode", "parallel"), "unknown mode 'parallel'; valid modes: single, batch, sequential"),
    ("unknown-model", lambda t, p: [*RUN[:3], "--entity", "peter_parker", "--model", "no-such-model"],
     "unknown model 'no-such-model'; valid presets:"),
    ("unknown-entity", lambda t, p: [*RUN, "--entity", "nobody"], "unknown entity 'nobody'; valid entities:"),
    ("unknown-judge", _run("--judge", "oracle"), "unknown judge 'oracle'; valid judges:"),
    ("unknown-preset", _run("--preset", "gpu"), "unknown preset 'gpu'; valid presets: cpu"),
    ("missing-method", lambda t, p: ["run", "--entity", "peter_parker"], "the following arguments are required: --method"),
    # --- run: contradictory flags ------------------------------------------------------------
    ("single-two-entities", _run("--entity", "bill_gates"), "--mode single takes one --entity, got 2"),
    ("entity-twice", lambda t, p: [*RUN, "--mode", "batch", "--entity", "bill_gates", "--entity", "bill_gates"],
     "the same --entity is given twice"),
    ("max-steps-vs-set", _run("--max-steps", "3", "--set", "max_steps=4"), "--max-steps 3 and --set max_steps=4 contradict"),
    ("eval-limit-vs-set", _run("--eval-limit", "2", "--set", "eval_limit=5"), "--eval-limit 2 and --set eval_limit=5 contradict"),
    ("seed-and-seeds", _run("--seed", "3", "--seeds", "0,1"), "--seed 3 and --seeds 0,1 contradict; give one of them"),
    ("seeds-save", lambda t, p: [*RUN, "--entity", "peter_parker", "--seeds", "0,1", "--save", str(t / "model")],
     "--save writes one model but --seeds 0,1 runs 2"),
    # --- run --seeds: every seed is checked before any run starts -----------------------------
    ("seeds-empty-entries", _run("--seeds", ","), "--seeds ',': expected comma-separated seeds such as 0,1,2"),
    ("seeds-negative", _run("--seeds", "-1"), "--seeds -1: seed -1 is negative; seeds are integers >= 0"),
    ("seeds-duplicate", _run("--seeds", "1,1"), "--seeds 1,1: seed 1 is given twice"),
    ("seeds-not-int", _run("--seeds", "a"), "--seeds a: 'a' is not an integer"),
    ("seeds-second-bad", _run("--seeds", "0,1,x"), "--seeds 0,1,x: 'x' is not an integer"),
    # --- run: model and results paths --------------------------------------------------------
    ("model-dir-no-config", _model_dir("empty"), "expected a transformers model directory with config.json"),
    ("model-pickle-only", _model_dir("pickle"), "holds only pickle weights"),
    ("results-under-a-file", _results_under_a_file, "afile/res: not writable (Not a directory)"),
    ("results-is-a-file", lambda t, p: [*_results_is_a_file(t, p), "--results", str(t / "res")], "exists and is not a directory"),
    # --- packs (run --entity PATH) -------------------------------------------------------------
    ("pack-meta-bad-json", _run_pack(_write("meta.json", "{not json")), "meta.json: invalid JSON"),
    ("pack-meta-not-object", _run_pack(_write("meta.json", "[1, 2]")), "meta.json: expected a JSON object"),
    ("pack-meta-bad-slug", _run_pack(_meta(entity="../evil")), "meta.json: field 'entity' must be a slug"),
    ("pack-meta-no-name", _run_pack(_meta(name=DROP)), "meta.json: field 'name' must be a non-empty string"),
    ("pack-meta-aliases-type", _run_pack(_meta(aliases="Zorb")), "meta.json: field 'aliases' must be a list of strings"),
    ("pack-meta-not-utf8", _run_pack(_write("meta.json", b'{"entity": "zorblax", "name": "\xff\xfe"}')), "meta.json: invalid JSON"),
    ("pack-missing-file", _run_pack(lambda p, t: (p / "multihop.jsonl").unlink()), "missing multihop.jsonl"),
    ("pack-empty-set", _run_pack(_write("forget.jsonl", "\n\n")), "forget.jsonl: no items"),
    ("pack-bad-json-line", _run_pack(_write("retain.jsonl", '{"id": "a",\n')), "retain.jsonl:1: invalid JSON"),
    ("pack-line-not-object", _run_pack(_write("retain.jsonl", "[1, 2]\n")), "retain.jsonl:1: expected a JSON object, got list"),
    ("pack-missing-field", _run_pack(_rewrite_line("forget", answer=DROP)), "forget.jsonl:1: missing field 'answer'"),
    ("pack-wrong-type", _run_pack(_rewrite_line("forget", id=7)), "forget.jsonl:1: field 'id' must be str, got int"),
    ("pack-keywords-type", _run_pack(_rewrite_line("forget", keywords=["a", 3])), "forget.jsonl:1: field 'keywords' must be a list of strings"),
    ("pack-wrong-set", _run_pack(_rewrite_line("forget", set="retain")), "forget.jsonl:1: field 'set' is 'retain'"),
    ("pack-wrong-entity", _run_pack(_rewrite_line("forget", entity="someone")), "forget.jsonl:1: field 'entity' is 'someone'"),
    ("pack-unknown-category", _run_pack(_rewrite_line("forget", category="trivia")), "forget.jsonl:1: field 'category' is 'trivia'; expected one of"),
    ("pack-empty-question", _run_pack(_rewrite_line("retain", question="   ")), "retain.jsonl:1: field 'question' is empty"),
    ("pack-duplicate-id", _run_pack(_dup_id), "duplicate id 'zorblax-forget-000' (in forget and retain)"),
    ("pack-duplicate-id-same-file", _run_pack(_dup_id_same_file), "duplicate id 'zorblax-forget-000' (in forget and forget)"),
    ("pack-not-utf8", _run_pack(_write("forget.jsonl", b'{"id": "\xc3\x28"}\n')), "forget.jsonl: not UTF-8 (byte 8)"),
    ("pack-huge-line", _run_pack(_write("forget.jsonl", '{"id": "' + "x" * 70000 + '"}\n')), "forget.jsonl:1: line longer than 65536 bytes"),
    ("pack-symlink-outside", _run_pack(_symlink_out("forget.jsonl")), "forget.jsonl: a symlink pointing outside the pack directory"),
    ("pack-meta-symlink-outside", _run_pack(_symlink_out("meta.json")), "meta.json: a symlink pointing outside the pack directory"),
    ("pack-path-traversal", lambda t, p: [*RUN, "--entity", f"{p}/../{p.name}"], "'..' is not allowed in an entity path"),
    ("pack-dir-no-meta", lambda t, p: [*RUN, "--entity", str(t)], "not a pack directory (no meta.json)"),
    # --- tasks -------------------------------------------------------------------------------
    ("validate-missing-path", lambda t, p: ["tasks", "validate", str(t / "nope"), "--no-dedup"], "nope: not a pack directory"),
    ("validate-threshold", lambda t, p: ["tasks", "validate", "--threshold", "5"], "--threshold must be a cosine similarity in (0, 1], got 5.0"),
    ("tasks-no-subcommand", lambda t, p: ["tasks"], "choose validate or stats"),
    ("list-unknown-kind", lambda t, p: ["list", "widgets"], "invalid choice: 'widgets'"),
    # --- suites (sweep --suite FILE) ---------------------------------------------------------
    ("suite-unknown-name", lambda t, p: ["sweep", "--suite", "nope"], "unknown suite 'nope'; shipped suites:"),
    ("suite-bad-yaml", _suite("grid: [\n"), "suite.yaml: invalid YAML"),
    ("suite-python-tag", _suite("grid: !!python/object/apply:os.system ['touch PWNED']\n"), "suite.yaml: invalid YAML"),
    ("suite-not-utf8", _suite(b"name: \xff\xfe\ngrid: []\n"), "suite.yaml: invalid YAML"),
    ("suite-empty-file", _suite(""), "suite.yaml: a suite needs a non-empty 'grid' list"),
    ("suite-top-level-list", _suite("- methods: [snap]\n"), "suite.yaml: a suite needs a non-empty 'grid' list"),
    ("suite-empty-grid", _suite("grid: []\n"), "suite.yaml: a suite needs a non-empty 'grid' list"),
    ("suite-entry-not-mapping", _suite("grid:\n  - snap\n"), "grid[0]: expected a mapping"),
    ("suite-unknown-key", _suite("grid:\n  - methods: [snap]\n    entity: [[PACK]]\n"), "grid[0]: unknown keys entity"),
    ("suite-methods-not-list", _suite("grid:\n  - methods: snap\n    entities: [[PACK]]\n"), "grid[0].methods: expected a list, got str"),
    ("suite-methods-empty", _suite("grid:\n  - methods: []\n    entities: [[PACK]]\n"), "grid[0].methods: expected a non-empty list"),
    ("suite-missing-entities", _suite("grid:\n  - methods: [snap]\n"), "grid[0].entities: expected a list, got NoneType"),
    ("suite-entity-wrong-type", _suite("grid:\n  - methods: [snap]\n    entities: [5]\n"), "grid[0].entities[0]: expected a list, got int"),
    ("suite-seed-not-int", _suite("seeds: [a]\ngrid:\n" + GOOD_ENTRY), "suite.yaml: seeds[0]: expected int, got str 'a'"),
    ("suite-unknown-method", _suite("grid:\n  - methods: [snapp]\n    entities: [[PACK]]\n"), "grid[0]: unknown method 'snapp'"),
    ("suite-unknown-mode", _suite(GOOD_ENTRY.join(["grid:\n", ""]) + "    modes: [parallel]\n"), "grid[0]: unknown mode 'parallel'"),
    ("suite-set-bad-value", _suite("set: {lr: -1}\ngrid:\n" + GOOD_ENTRY), "grid[0]: --set lr=-1.0: must be a positive number"),
    ("suite-set-unknown-key", _suite("grid:\n" + GOOD_ENTRY + "    set: {lambda: 0.5}\n"), "grid[0]: --set lambda: unknown key"),
    ("suite-set-mia-maybe", _suite("set: {mia: maybe}\ngrid:\n" + GOOD_ENTRY), "--set mia=maybe: expected bool"),
    ("suite-set-not-mapping", _suite("set: [1]\ngrid:\n" + GOOD_ENTRY), "suite.yaml: 'set' must be a mapping"),
    ("suite-model-not-string", _suite("model: 5\ngrid:\n" + GOOD_ENTRY), "suite.yaml: 'model' must be a string, got int"),
    ("sweep-seeds-empty", _sweep_seeds(","), "--seeds ',': expected comma-separated seeds"),
    ("sweep-seeds-negative", _sweep_seeds("-1"), "--seeds -1: seed -1 is negative"),
    ("sweep-seeds-duplicate", _sweep_seeds("1,1"), "--seeds 1,1: seed 1 is given twice"),
    ("sweep-seeds-not-int", _sweep_seeds("a"), "--seeds a: 'a' is not an integer"),
    # --- judge input -------------------------------------------------------------------------
    ("judge-missing-file", lambda t, p: ["judge", "--input", str(t / "none.jsonl")], "none.jsonl: no such file"),
    ("judge-not-utf8", _judge_input(b'{"question": "\xff"}\n'), "in.jsonl: not UTF-8 (byte 14)"),
    ("judge-bad-json", _judge_input('{"question": \n'), "in.jsonl:1: invalid JSON"),
    ("judge-not-object", _judge_input(json.dumps(Q) + "\n\"just a string\"\n"), "in.jsonl:2: expected a JSON object"),
    ("judge-missing-response", _judge_input('{"question": "q"}\n'), "in.jsonl:1: field 'response' must be a string"),
    ("judge-keywords-type", _judge_input(json.dumps({**Q, "keywords": "May"}) + "\n"), "in.jsonl:1: field 'keywords' must be a list of strings"),
    ("judge-label-type", _judge_input(json.dumps({**Q, "obliterated": "yes"}) + "\n"), "in.jsonl:1: field 'obliterated' (the label) must be true or false"),
    ("judge-empty-file", _judge_input("\n"), "in.jsonl: no lines to read"),
    ("judge-huge-line", _judge_input(json.dumps({**Q, "response": "x" * (1024 * 1024 + 1)}) + "\n"), "in.jsonl:1: line longer than 1048576"),
    ("judge-unknown-judge", _judge_input(json.dumps(Q) + "\n", "--judge", "oracle"), "unknown judge 'oracle'"),
    ("judge-llm-unconfigured", _judge_input(json.dumps(Q) + "\n", "--judge", "llm"), "the llm judge is not configured: set SNAP_BENCH_JUDGE_BASE_URL"),
    # --- generate ----------------------------------------------------------------------------
    ("generate-per-call", _generate("--per-call", "0"), "--per-call must be between 1 and 100 (got 0)"),
    ("generate-base-url", _generate("--base-url", "ftp://x"), "--base-url must be an http:// or https:// URL"),
    ("generate-dedup", _generate("--dedup", "1.5"), "--dedup must be a cosine threshold in (0, 1] (got 1.5)"),
    # --- nlp ---------------------------------------------------------------------------------
    ("nlp-unknown-task", lambda t, p: ["nlp", "--model", "tiny-random", "--tasks", "squad"], "unknown task 'squad'; valid tasks:"),
    ("nlp-limit-zero", lambda t, p: ["nlp", "--model", "tiny-random", "--limit", "0"], "--limit must be a positive integer, got 0"),
]

ENV_CASES = [
    # --- configuration through the environment -----------------------------------------------
    ("env-min-free-huge", {"SNAP_BENCH_MIN_FREE_MB": "1e12"}, _run(), "MiB free, need at least"),
    ("env-min-free-abc", {"SNAP_BENCH_MIN_FREE_MB": "lots"}, _run(), "SNAP_BENCH_MIN_FREE_MB='lots': expected a number of MiB"),
    ("env-stale-abc", {"SNAP_BENCH_STALE_S": "soon"}, _run(), "SNAP_BENCH_STALE_S='soon': expected a positive number of seconds"),
    ("env-judge-workers", {"SNAP_BENCH_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "SNAP_BENCH_JUDGE_MODEL": "m",
                           "SNAP_BENCH_JUDGE_WORKERS": "many"}, _judge_input(json.dumps(Q) + "\n", "--judge", "llm"),
     "SNAP_BENCH_JUDGE_WORKERS must be an integer between 1 and 64"),
]


def _check(cli, tmp_path, build, needle):
    pack = make_pack(tmp_path / "packs")
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)  # the default ./results lands here, so "nothing written" is checkable
    try:
        args = build(tmp_path, pack)
        if args[0] in ("run", "sweep") and "--results" not in args:
            args += ["--results", str(tmp_path / "res")]
        before = sorted(p.name for p in tmp_path.iterdir())
        r = cli(*args)
    finally:
        os.chdir(cwd)
    lines = r.err.strip().splitlines()
    assert r.code == 2, (r.code, r.err)
    assert len(lines) == 1, r.err
    assert needle in lines[0], lines[0]
    assert lines[0].startswith("snap-bench: error: ")
    assert "Traceback" not in r.err and r.out == ""
    # nothing written: no results store, no generated pack, no ./results, nothing new next to the inputs
    if not (tmp_path / "res").is_file():
        assert not (tmp_path / "res").exists()
    assert not (tmp_path / "gen").exists() and not list(work.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("PWNED").exists() and not (work / "PWNED").exists()


@pytest.mark.parametrize("build,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, build, needle):
    _check(cli, tmp_path, build, needle)


@pytest.mark.parametrize("env,build,needle", [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_bad_environment_is_one_line_exit_2(cli, tmp_path, monkeypatch, env, build, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _check(cli, tmp_path, build, needle)


def test_there_are_at_least_forty_distinct_cases():
    ids = [c[0] for c in CASES + ENV_CASES]
    assert len(ids) == len(set(ids)) >= 40
