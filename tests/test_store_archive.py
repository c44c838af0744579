"""The portable results archive (issue 26, item 1): ``snap-bench store export`` / ``store import`` on a
hand-built store: a byte-identical round trip with the same report CSVs, idempotent re-import, conflicts and
corrupt archives refused with one line and the store left exactly as it was, shards split at the size limit,
and runs of every status carried with their reason."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from snap_bench.records import StepResult
from snap_bench.run.execute import RunSpec, plan
from snap_bench.store import Store, StoreReader
from snap_bench.store.archive import MANIFEST, export_archive
from snap_bench.store.schema import DB_NAME

PP, BG = "peter_parker", "bill_gates"


def _metrics(ua, ra):
    return {"UA": ua, "UA_multihop": ua, "RA": ra, "TA": 90.0, "Avg": (2 * ua + ra + 90.0) / 4, "cross_RA": 50.0,
            "leak": 2.0, "degenerate": 1.0}


def _gen(i, entity, eval_set, obliterated):
    return SimpleNamespace(item_id=f"{eval_set}-{i}", entity=entity, eval_set=eval_set, question=f"Wer ist {entity}? «{i}»",
                           response="Je ne sais pas — 不知道" if obliterated else "A hero.", obliterated=obliterated,
                           reason="refusal" if obliterated else None)


def _run(store, method, entity, seed, ua, ra, analyses=None, **kw):
    """One finished run through the store's writer, as the runner writes it: metrics, graded responses, losses."""
    spec = RunSpec(method=method, entities=[entity], model="tiny-random", progress=False, seed=seed, **kw)
    p = plan(spec)
    run_id = store.start_run(config_hash=p.config_hash, method=method, regularizer=p.regularizer, mode="single",
                             entities=[entity], model=spec.model, seed=seed, config=p.record,
                             versions={"snap_bench": "test", "torch": "x"})
    records = [_gen(i, entity, s, i % 2 == 0) for s in ("forget", "retain") for i in range(3)]
    losses = [{"forget": 2.0 - 0.1 * i, "retain": 1.5, "reg": 0.01 * i, "total": 3.5 - 0.09 * i, "lr": 1e-4}
              for i in range(4)]
    store.finish_run(run_id, {"total": 1.0 + seed, "train": 0.5}, [StepResult(0, [], {entity: _metrics(ua, ra)}, records, losses)],
                     judge="rules", analyses=analyses)
    return run_id


def _analyses(entity, delta):
    # entity keys out of alphabetical order: the archive must keep the store's key order
    return {"probes": {entity: {"answer_logprob": {"before": -4.0, "after": -4.0 + delta, "delta": delta}},
                       "aaa_other": {"answer_logprob": {"before": -1.0, "after": -1.0, "delta": 0.0}}},
            "dev": {"metrics": {"16": {"UA": 50.0}}, "chosen_step": 16, "nan": float("nan")}}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A store with finished runs (two methods, seeds, entities, analyses, a saved model), a failed run and one
    still running; and its archive."""
    root = tmp_path_factory.mktemp("archive")
    store = Store(root / "res")
    for seed, (ua, ra) in enumerate([(80.0, 50.0), (90.0, 60.0)]):
        rid = _run(store, "snap", PP, seed, ua, ra, _analyses(PP, 0.1 * seed))
    store.record_saved_model(rid, "/models/snap-pp-1")
    _run(store, "gradient_ascent", PP, 0, 0.0, 100.0)
    _run(store, "snap", BG, 0, 60.0, 70.0)
    failed = store.start_run(config_hash="f" * 16, method="snap", regularizer="swd", mode="single", entities=[PP],
                             model="tiny-random", seed=3, config={"method": "snap"}, versions={"snap_bench": "test"})
    store.fail_run(failed, "non-finite loss at step 7")
    running = store.start_run(config_hash="r" * 16, method="snap", regularizer="swd", mode="single", entities=[BG],
                              model="tiny-random", seed=4, config={"method": "snap"}, versions={"snap_bench": "test"})
    store.close()
    export_archive(root / "res", root / "archive")
    return SimpleNamespace(root=root, res=root / "res", archive=root / "archive", failed=failed, running=running)


def _dump(results: Path):
    """Every row of every table, for before/after comparisons; None when there is no store."""
    if not (results / DB_NAME).is_file():
        return None
    conn = sqlite3.connect(f"{(results / DB_NAME).resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _copy(original, tmp_path, name="copy") -> Path:
    return Path(shutil.copytree(original.archive, tmp_path / name))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]


def _write_shard(archive: Path, name: str, lines: list[dict] | None = None, raw: bytes | None = None) -> None:
    """Rewrite a shard (from run objects or raw bytes) and re-sign it in the manifest, as a forger would."""
    data = raw if raw is not None else gzip.compress("".join(json.dumps(o) + "\n" for o in lines).encode(), mtime=0)
    (archive / name).write_bytes(data)
    m = json.loads((archive / MANIFEST).read_text())
    for s in m["shards"]:
        if s["file"] == name:
            s.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (archive / MANIFEST).write_text(json.dumps(m))


def _refused(cli, args, results: Path) -> str:
    """Run a command that must fail: exit 2, one line on stderr, nothing on stdout, the store unchanged."""
    before = _dump(results)
    r = cli(*args)
    assert r.code == 2 and r.out == "", (r.code, r.out, r.err)
    assert len(r.err.strip().splitlines()) == 1 and r.err.startswith("snap-bench: error: "), r.err
    assert _dump(results) == before
    return r.err


def test_round_trip_is_byte_identical_and_gives_the_same_reports(cli, original, tmp_path):
    from snap_bench.report import build_report

    r = cli("store", "import", original.archive, "--results", tmp_path / "res2", "--json")
    assert r.code == 0, r.err
    assert r.json["imported"] == 6 and r.json["skipped"] == 0
    assert _dump(tmp_path / "res2") == _dump(original.res)  # every row and column, JSON text included
    assert cli("store", "export", "--results", tmp_path / "res2", "--out", tmp_path / "again").code == 0
    assert _files(tmp_path / "again") == _files(original.archive)

    for res, out in ((original.res, tmp_path / "rep1"), (tmp_path / "res2", tmp_path / "rep2")):
        build_report(res, out, progress=False)
    csvs = sorted(p.name for p in (tmp_path / "rep1").glob("*.csv"))
    assert "runs.csv" in csvs and "table1.csv" in csvs
    for name in csvs:
        assert (tmp_path / "rep1" / name).read_bytes() == (tmp_path / "rep2" / name).read_bytes(), name


def test_the_archive_is_deterministic_and_documents_itself(original, tmp_path):
    export_archive(original.res, tmp_path / "b")
    assert _files(tmp_path / "b") == _files(original.archive)
    m = json.loads((original.archive / MANIFEST).read_text())
    assert m["format"] == "snap-bench-archive" and m["version"] == 1 and m["schema_version"] == 2 and m["runs"] == 6
    [shard] = m["shards"]
    raw = (original.archive / shard["file"]).read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # gzip mtime 0, no file name
    assert shard["sha256"] == hashlib.sha256(raw).hexdigest() and shard["bytes"] == len(raw)
    objs = _lines(original.archive / shard["file"])
    assert [o["run_id"] for o in objs] == sorted(o["run_id"] for o in objs)
    assert list(objs[0]) == ["run_id", "run", "metrics", "losses", "generations", "analyses", "saved_model"]
    snap = [o for o in objs if o["analyses"]]
    assert list(snap[0]["analyses"]["probes"]) == [PP, "aaa_other"]  # the store's key order, not sorted
    assert sum(o["saved_model"] is not None for o in objs) == 1


def test_running_and_failed_runs_are_exported_with_status_and_reason(cli, original, tmp_path):
    objs = {o["run_id"]: o for o in _lines(original.archive / "runs-00001.jsonl.gz")}
    assert objs[original.failed]["run"]["status"] == "failed"
    assert objs[original.failed]["run"]["reason"] == "non-finite loss at step 7"
    assert objs[original.running]["run"]["status"] == "running" and objs[original.running]["run"]["heartbeat"]
    assert cli("store", "import", original.archive, "--results", tmp_path / "res").code == 0
    reader = StoreReader(tmp_path / "res")
    try:
        assert reader.run(original.failed)["reason"] == "non-finite loss at step 7"
        assert reader.run(original.running)["status"] == "running"
        assert len(reader.runs("done")) == 4
    finally:
        reader.close()


def test_reimport_skips_what_the_store_holds(cli, original, tmp_path):
    assert cli("store", "import", original.archive, "--results", tmp_path / "res").code == 0
    before = _dump(tmp_path / "res")
    r = cli("store", "import", original.archive, original.archive, "--results", tmp_path / "res")
    assert r.code == 0, r.err
    assert r.out.startswith("imported 0 runs, skipped 12 already present")
    assert _dump(tmp_path / "res") == before


def test_a_run_id_with_other_content_is_refused_naming_archive_and_store(cli, original, tmp_path):
    assert cli("store", "import", original.archive, "--results", tmp_path / "res").code == 0
    forged = _copy(original, tmp_path, "forged")
    objs = _lines(forged / "runs-00001.jsonl.gz")
    done = next(o for o in objs if o["metrics"])
    done["metrics"][0]["value"] += 1.0
    _write_shard(forged, "runs-00001.jsonl.gz", objs)
    err = _refused(cli, ["store", "import", forged, "--results", tmp_path / "res"], tmp_path / "res")
    assert done["run_id"] in err and str(forged) in err and str(tmp_path / "res" / DB_NAME) in err
    # two archives that disagree: both named, nothing written (not even a new store)
    err = _refused(cli, ["store", "import", original.archive, forged, "--results", tmp_path / "new"], tmp_path / "new")
    assert str(original.archive) in err and str(forged) in err
    assert not (tmp_path / "new").exists()


def _truncate(a):
    p = a / "runs-00001.jsonl.gz"
    p.write_bytes(p.read_bytes()[:-40])


def _truncate_resigned(a):
    _write_shard(a, "runs-00001.jsonl.gz", raw=(a / "runs-00001.jsonl.gz").read_bytes()[:-40])


def _flip(a):
    p = a / "runs-00001.jsonl.gz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _bad_json(a):
    lines = gzip.decompress((a / "runs-00001.jsonl.gz").read_bytes()).split(b"\n")
    lines[2] = lines[2][:-9]  # the run count still matches: only the line itself is broken
    _write_shard(a, "runs-00001.jsonl.gz", raw=gzip.compress(b"\n".join(lines), mtime=0))


def _manifest(**change):
    def edit(a):
        m = json.loads((a / MANIFEST).read_text())
        (a / MANIFEST).write_text(json.dumps({**m, **change}))
    return edit


@pytest.mark.parametrize("damage, expect", [
    (_truncate, "truncated"), (_truncate_resigned, "not a valid gzip file"), (_flip, "sha256 differs"),
    (_bad_json, "not valid JSON"), (_manifest(version=2), "archive version 2 is unknown"),
    (_manifest(format="tarball"), "not a snap-bench-archive manifest"), (_manifest(runs=7), "malformed manifest"),
], ids=["truncated", "truncated-resigned", "flipped-byte", "bad-json", "version", "format", "counts"])
def test_a_corrupt_archive_exits_2_and_leaves_the_store_unchanged(cli, original, tmp_path, damage, expect):
    res = tmp_path / "res"
    store = Store(res)
    _run(store, "snap", BG, 9, 10.0, 20.0)  # the target already holds a run of its own
    store.close()
    bad = _copy(original, tmp_path, "bad")
    damage(bad)
    # a good archive first: all or nothing, so its runs are not imported either
    err = _refused(cli, ["store", "import", original.archive, bad, "--results", res], res)
    assert expect in err
    _refused(cli, ["store", "import", bad, "--results", tmp_path / "none"], tmp_path / "none")
    assert not (tmp_path / "none").exists()  # a refused import does not create a store


def test_a_run_that_cannot_be_written_rolls_back_every_run(cli, original, tmp_path):
    """Validated shapes can still clash in SQLite (a duplicated primary key): the one transaction rolls back."""
    bad = _copy(original, tmp_path, "bad")
    objs = _lines(bad / "runs-00001.jsonl.gz")
    last = max(i for i, o in enumerate(objs) if o["metrics"])
    assert last > 0  # runs before it are written first, then rolled back
    objs[last]["metrics"].append(dict(objs[last]["metrics"][0]))
    _write_shard(bad, "runs-00001.jsonl.gz", objs)
    store = Store(tmp_path / "res")
    _run(store, "snap", BG, 9, 10.0, 20.0)
    store.close()
    err = _refused(cli, ["store", "import", bad, "--results", tmp_path / "res"], tmp_path / "res")
    assert "cannot be written" in err and objs[last]["run_id"] in err


def test_shards_split_at_the_size_limit_and_import_back(cli, original, tmp_path):
    export_archive(original.res, tmp_path / "one", shard_bytes=1)  # below any run: one run per shard
    m = json.loads((tmp_path / "one" / MANIFEST).read_text())
    assert len(m["shards"]) == 6 and all(s["runs"] == 1 for s in m["shards"])
    biggest = max(s["jsonl_bytes"] for s in m["shards"])
    export_archive(original.res, tmp_path / "few", shard_bytes=2 * biggest)
    m = json.loads((tmp_path / "few" / MANIFEST).read_text())
    assert 1 < len(m["shards"]) < 6 and sum(s["runs"] for s in m["shards"]) == 6
    assert all(s["jsonl_bytes"] <= 2 * biggest for s in m["shards"])
    assert [f"runs-{i:05d}.jsonl.gz" for i in range(1, len(m["shards"]) + 1)] == [s["file"] for s in m["shards"]]
    r = cli("store", "import", tmp_path / "few", "--results", tmp_path / "res")
    assert r.code == 0 and r.out.startswith("imported 6 runs, skipped 0"), r.err
    export_archive(tmp_path / "res", tmp_path / "few2", shard_bytes=2 * biggest)
    assert _files(tmp_path / "few2") == _files(tmp_path / "few")


def test_export_refuses_a_folder_it_did_not_write_and_replaces_an_earlier_archive(cli, original, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "not a snap-bench archive" in _refused(cli, ["store", "export", "--results", original.res, "--out", out], original.res)
    assert _files(out) == {"notes.txt": b"mine"}
    shutil.copytree(original.archive, tmp_path / "earlier")
    (tmp_path / "earlier" / "runs-00009.jsonl.gz").write_bytes(b"stale")
    r = cli("store", "export", "--results", original.res, "--out", tmp_path / "earlier")
    assert r.code == 0 and "6 runs (4 done, 1 failed, 1 running)" in r.out, r.err
    assert _files(tmp_path / "earlier") == _files(original.archive)  # the stale shard went with the old archive
    _refused(cli, ["store", "export", "--results", tmp_path / "nowhere", "--out", tmp_path / "x"], tmp_path / "nowhere")
    assert not (tmp_path / "x").exists()
    assert "export,import" in _refused(cli, ["store"], original.res)
