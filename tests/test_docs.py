"""The documentation: a short README that keeps its promises, and a docs/ site that builds and cannot drift.

The `--set` table (docs/configuration.md) and the CLI reference (docs/cli.md) are generated from the code
between marker lines; these tests fail when a page's copy differs from what the code generates, so a
field, default or flag changed without regenerating the page is caught. The mkdocs-material site must
build with `mkdocs build --strict` (no broken link or anchor, every page in nav); under CI a missing
mkdocs is a failure, not a skip.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _page(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def test_the_settings_table_in_the_docs_is_the_one_the_code_generates():
    """docs/configuration.md's `--set` table is generated from the config docstrings; a hand edit, or a field or
    default changed without `python -m snap_bench.cli.settings_doc docs/configuration.md`, fails here."""
    from snap_bench.cli.settings_doc import doc_block, settings_table

    assert doc_block(_page("configuration.md")) == settings_table()


def test_the_cli_reference_in_the_docs_is_the_one_the_parser_generates():
    """docs/cli.md is generated from build_parser(); a flag or help text changed without
    `python -m snap_bench.cli.docs_gen docs/cli.md` fails here."""
    from snap_bench.cli.docs_gen import BEGIN, END, cli_reference
    from snap_bench.cli.settings_doc import doc_block

    assert doc_block(_page("cli.md"), BEGIN, END) == cli_reference()


def test_the_cli_reference_covers_every_command_and_flag():
    from snap_bench.cli import build_parser
    from snap_bench.cli.docs_gen import cli_reference, commands

    text = cli_reference()
    for parser, _ in commands(build_parser()):
        assert f"### `{parser.prog}`" in text
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag == "-h" or flag == "--help" or f"`{flag}" in text or f", {flag}" in text, (parser.prog, flag)
    for name in ("run", "sweep", "report", "ask", "chat", "generate", "nlp", "judge", "bench", "tasks validate"):
        assert f"### `snap-bench {name}`" in text


@pytest.mark.parametrize("module, page", [("settings_doc", "configuration.md"), ("docs_gen", "cli.md")])
def test_check_mode_passes_on_the_page_and_bites_on_a_stale_copy(module, page, tmp_path):
    """`--check` exits 0 on the committed page, 1 (writing nothing) on a stale one; without it the block is rewritten."""
    from snap_bench.cli.settings_doc import doc_block

    mod = importlib.import_module(f"snap_bench.cli.{module}")
    assert mod.main([str(ROOT / "docs" / page), "--check"]) == 0

    fresh = _page(page)
    block = doc_block(fresh, mod.BEGIN, mod.END)
    stale = tmp_path / page
    stale.write_text(fresh.replace(block, f"{mod.BEGIN}\n| hand-edited |\n{mod.END}"), encoding="utf-8")
    assert mod.main([str(stale), "--check"]) == 1
    assert "hand-edited" in stale.read_text(encoding="utf-8")
    assert mod.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == fresh


def test_generators_refuse_a_page_without_markers(tmp_path):
    from snap_bench.cli import settings_doc

    page = tmp_path / "page.md"
    page.write_text("# no markers here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        settings_doc.main([str(page)])


# Skipped only outside CI: mkdocs-material is in the dev extra that `make test` installs, and under CI a
# missing mkdocs is a failure.
def test_the_docs_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must build the docs: mkdocs-material is missing (pip install -e '.[dev]')")
        pytest.skip("mkdocs-material is not installed (pip install -e '.[dev]')")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNING" not in out.stderr, out.stderr[-3000:]
    for page in sorted((ROOT / "docs").glob("*.md")):
        built = tmp_path / "site" / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"


def test_readme_is_short_and_keeps_the_two_commands():
    """README ≤ 300 lines; its two commands are the Makefile's targets, and CI runs the second."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "make run" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)


def test_readme_links_resolve():
    """Every relative link of the README points at a file of the repository (GitHub shows them as they are)."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in relative)
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_repeats_no_measured_result():
    """Measured numbers live once, in docs/results.md (or reports/): the README links there and shows none.
    A decimal such as 80.5 or a mean ± std in the README would be a second copy that can drift."""
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # the printed-row example holds only placeholders
    assert not re.search(r"\d+\.\d+ ± \d", prose)
    percent = r"(?<![\w.=])\d{2,3}\.\d(?![\d.])"  # 56.4; not λ 0.1, a version (2.13.0) or an arXiv id
    assert not re.search(percent, prose), re.findall(r".{0,30}" + percent + r".{0,10}", prose)
    assert "docs/results.md" in text
