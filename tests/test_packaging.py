"""The four code folders install under the single namespace snap_bench, editable and as a wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_folders_into_one_namespace():
    import snap_bench
    import snap_bench.methods
    import snap_bench.regularizers
    import snap_bench.tasks

    assert Path(snap_bench.__file__).parent == ROOT / "benchmark"
    assert Path(snap_bench.methods.__file__).parent == ROOT / "methods"
    assert Path(snap_bench.regularizers.__file__).parent == ROOT / "regularizers"
    assert Path(snap_bench.tasks.__file__).parent == ROOT / "tasks"


@pytest.mark.slow
def test_wheel_claims_no_generic_top_level_names(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("snap_bench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert all(t == "snap_bench" or t.endswith(".dist-info") for t in tops), tops
    assert "snap_bench/methods/snap.py" in names
    assert "snap_bench/regularizers/swd.py" in names
    assert any(n.startswith("snap_bench/tasks/packs/peter_parker/") for n in names)
    assert "snap_bench/cli/__init__.py" in names
