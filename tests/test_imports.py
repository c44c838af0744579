"""Import rules (issue 15): the import-linter contracts in pyproject.toml ([tool.importlinter]) hold, and
they bite.

import-linter's graph builder (grimp) finds a package's modules by walking its one folder, but
snap_bench's subpackages methods, regularizers and tasks live in sibling folders (pyproject's
package-dir), so ``lint-imports`` run on the repo as it is sees no ``snap_bench.methods``. The contracts
are therefore checked on a *view*: a folder ``<tmp>/snap_bench`` laid out like the installed package,
made of symlinks to the repo's files (copies where a test edits one), first on ``PYTHONPATH``.

``python tests/test_imports.py [lint-imports options]`` (``make lint-imports``) prints the full report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
# lint-imports' own entry point, run by this interpreter (no console-script path to guess)
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def _config(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))


def contracts(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Contract id -> name."""
    return {c["id"]: c["name"] for c in _config(pyproject)["tool"]["importlinter"]["contracts"]}


def _not_python(folder: str, names: list[str]) -> list[str]:
    """What a copied view leaves out: caches and every file but .py (e.g. the packs' data)."""
    return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or (Path(folder) / n).is_dir())]


def build_view(dest: Path, copy: bool = False) -> Path:
    """Lay the code folders out under ``dest`` as pyproject's package-dir maps them (``dest/snap_bench``
    from benchmark/, ``dest/snap_bench/methods`` from methods/, ...): symlinks, or copies of the .py files."""
    mapping = {name: ROOT / folder for name, folder in _config()["tool"]["setuptools"]["package-dir"].items()}
    for name in sorted(mapping, key=lambda n: n.count(".")):
        src, target = mapping[name], dest.joinpath(*name.split("."))
        if copy:
            shutil.copytree(src, target, dirs_exist_ok=True, ignore=_not_python)
        elif any(other.startswith(name + ".") for other in mapping):  # holds mapped subpackages: link its children
            target.mkdir(parents=True)
            for child in src.iterdir():
                if child.name != "__pycache__" and f"{name}.{child.name}" not in mapping:
                    (target / child.name).symlink_to(child, target_is_directory=child.is_dir())
        else:
            target.symlink_to(src, target_is_directory=True)
    return dest


def lint_imports(view: Path, pyproject: Path = PYPROJECT, *args: str) -> subprocess.CompletedProcess:
    """Run lint-imports on the package in ``view`` with ``pyproject``'s contracts, from the repo root."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(view), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "COLUMNS": "1000"}  # one line per contract in the report, however long its name
    return subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", *args, str(pyproject)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def verdicts(output: str, pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Contract id -> KEPT or BROKEN, read from lint-imports' report."""
    found = {}
    for cid, name in contracts(pyproject).items():
        m = re.search(re.escape(name) + r" (KEPT|BROKEN)", output)
        found[cid] = m.group(1) if m else "missing"
    return found


def add_import(path: Path, statement: str) -> None:
    """Put ``statement`` among the module's first imports (after ``from __future__`` if it has one)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("from __future__ import")), 0)
    lines.insert(at, statement + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def test_import_contracts_hold(tmp_path):
    out = lint_imports(build_view(tmp_path / "view"))
    report = out.stdout + out.stderr
    assert out.returncode == 0, f"lint-imports failed (exit {out.returncode}):\n{report}"
    assert set(verdicts(report).values()) == {"KEPT"}, report
    # the view holds the sibling folders: without them the methods/regularizers/tasks rules check nothing
    analysed = int(re.search(r"Analyzed (\d+) files", report).group(1))
    assert analysed >= len(list(ROOT.glob("methods/*.py"))) + len(list(ROOT.glob("benchmark/*.py")))


def _copy(tmp_path: Path) -> tuple[Path, Path, Path]:
    view = build_view(tmp_path / "view", copy=True)
    pyproject = tmp_path / "pyproject.toml"
    shutil.copyfile(PYPROJECT, pyproject)
    return view, view / "snap_bench", pyproject


def test_a_method_importing_the_trainer_breaks_the_contracts(tmp_path):
    view, pkg, pyproject = _copy(tmp_path)
    add_import(pkg / "methods" / "snap.py", "import snap_bench.train.trainer")
    out = lint_imports(view, pyproject)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    broken = {cid for cid, v in verdicts(report, pyproject).items() if v == "BROKEN"}
    assert broken == {"methods-do-not-train", "layers"}, report
    assert "snap_bench.methods.snap -> snap_bench.train.trainer" in report


def test_every_contract_bites(tmp_path):
    # one forbidden import per contract, all in one copy (one lint run)
    view, pkg, pyproject = _copy(tmp_path)
    for module, statement in [
        ("tasks/packs.py", "import snap_bench.evaluate.scores"),            # layers: tasks -> evaluate
        ("report/render.py", "import snap_bench.store.migrations"),         # report-reads
        ("bench/targets.py", "import snap_bench.store.writer"),             # bench-reads
        ("methods/euclidean.py", "import snap_bench.regularizers.l2"),      # methods-do-not-train
        ("regularizers/l2.py", "import snap_bench.methods.base"),           # plugins-know-no-methods
        ("util/jsonl.py", "import snap_bench.cli.output"),                  # cli-is-the-top
        ("data.py", "import snap_bench.train.trainer"),                     # foundations
    ]:
        add_import(pkg / module, statement)
    out = lint_imports(view, pyproject)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert verdicts(report, pyproject) == {cid: "BROKEN" for cid in contracts(pyproject)}, report


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        done = lint_imports(build_view(Path(tmp)), PYPROJECT, *sys.argv[1:])
    print(done.stdout + done.stderr, end="")
    sys.exit(done.returncode)
