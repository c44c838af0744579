"""``snap-bench sweep``: a YAML grid expands to runs, and a re-run skips what is done."""

import textwrap


def _suite(tmp_path, pack_dir):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(f"""
        name: t
        model: tiny-random
        seeds: [0]
        set: {{max_steps: 1, eval_limit: 2, max_new_tokens: 4}}
        grid:
          - methods: [snap]
            regularizers: [default, l2]
            entities: [["{pack_dir}"]]
          - methods: [prompting]
            entities: [["{pack_dir}"]]
    """))
    return path


def test_sweep_runs_the_grid_then_resumes(cli, tmp_path, pack_dir):
    suite, res = _suite(tmp_path, pack_dir), tmp_path / "res"
    dry = cli("sweep", "--suite", suite, "--results", res, "--dry-run", "--json", "--no-progress")
    assert dry.code == 0 and dry.json["total"] == 3 and dry.json["ran"] == 0
    assert "snap+l2" in dry.err and "would run" in dry.err
    first = cli("sweep", "--suite", suite, "--results", res, "--json", "--no-progress")
    assert first.code == 0, first.err
    assert first.json["ran"] == 3 and first.json["skipped"] == 0
    assert all("UA" in next(iter(r["metrics"].values())) for r in first.json["runs"])
    again = cli("sweep", "--suite", suite, "--results", res, "--json", "--no-progress")
    assert again.json["ran"] == 0 and again.json["skipped"] == 3
    assert [r["run_id"] for r in again.json["runs"]] == [r["run_id"] for r in first.json["runs"]]


def test_unknown_suite_and_bad_method_are_one_line_errors(cli, tmp_path, pack_dir):
    r = cli("sweep", "--suite", "nope", "--results", tmp_path / "res")
    assert r.code == 2 and "shipped suites: " in r.err and len(r.err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"grid:\n  - methods: [snapp]\n    entities: [['{pack_dir}']]\n")
    r = cli("sweep", "--suite", bad, "--results", tmp_path / "res")
    assert r.code == 2 and "snapp" in r.err and "snap" in r.err


def test_sweep_seeds_flag_replaces_the_suites_seeds(cli, tmp_path, pack_dir):
    suite, res = _suite(tmp_path, pack_dir), tmp_path / "res"
    dry = cli("sweep", "--suite", suite, "--results", res, "--dry-run", "--json", "--no-progress", "--seeds", "3,5")
    assert dry.code == 0, dry.err
    assert dry.json["total"] == 6  # 3 grid points x 2 seeds instead of the suite's one
    assert dry.err.count("seed=3") == 3 and dry.err.count("seed=5") == 3 and "seed=0" not in dry.err
