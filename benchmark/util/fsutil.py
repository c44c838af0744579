"""Safe file writes: atomic replace-by-rename, and a preflight check of an output folder.

Everything snap-bench writes as a file (pack files, reports, caches) goes to a temporary file in
the same folder and is renamed over the target, so a crash or a full disk leaves either the old
file or the new one, never half of one. :func:`preflight_dir` is called before any training
starts, so a full disk or an unwritable results folder is a one-line error up front instead of
a lost hour.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from snap_bench.errors import SnapBenchError

ENV_MIN_FREE_MB = "SNAP_BENCH_MIN_FREE_MB"
# A tiny-model run stores a few hundred KB, a full paper sweep a few tens of MB; 100 MiB leaves
# room for SQLite's WAL and a report render without being a nuisance on a small disk.
DEFAULT_MIN_FREE_MB = 100


def atomic_write_bytes(path: Path | str, data: bytes, shared: bool = False) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync it, then rename it.

    The temp file is private (0600); ``shared=True`` gives the result the umask's usual
    permissions instead, for files meant to be read by others (reports)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if shared:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path | str, text: str, shared: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), shared=shared)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def min_free_bytes() -> int:
    raw = os.environ.get(ENV_MIN_FREE_MB, "").strip()
    if not raw:
        return DEFAULT_MIN_FREE_MB * 2**20
    try:
        mb = float(raw)
        if mb < 0 or mb != mb:
            raise ValueError
    except ValueError:
        raise SnapBenchError(f"{ENV_MIN_FREE_MB}={raw!r}: expected a number of MiB >= 0") from None
    return int(mb * 2**20)


def preflight_dir(path: Path | str, what: str = "results dir", check_space: bool = True) -> Path:
    """Refuse ``path`` when its disk has less free space than the minimum; otherwise create it if needed
    and prove it takes a write. The space check comes first, so a refused folder is not created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SnapBenchError(f"{what} {path}: exists and is not a directory")
    if check_space:
        need = min_free_bytes()
        anchor = path
        while not anchor.exists() and anchor != anchor.parent:
            anchor = anchor.parent  # the nearest folder that exists is on the disk the new one will be on
        try:
            free = shutil.disk_usage(anchor).free
        except OSError as exc:
            raise SnapBenchError(f"{what} {path}: cannot check free space ({exc.strerror or exc})") from None
        if free < need:
            raise SnapBenchError(f"{what} {path}: only {free / 2**20:.0f} MiB free, need at least {need / 2**20:.0f} MiB "
                                 f"(free some space or lower {ENV_MIN_FREE_MB})")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # os.access says yes to root on a read-only mount; only a real write answers truly.
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        try:
            os.write(fd, b"snap-bench write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise SnapBenchError(f"{what} {path}: not writable ({exc.strerror or exc})") from None
    return path


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``. An earlier ``final`` (or an empty one) is moved aside
    first, since rename cannot replace a full folder, put back if the rename fails, and removed once ``tmp`` is
    in place. Raises the OSError of a failed rename."""
    old: Path | None = None
    try:
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.rename(final, old / "previous")
        os.rename(tmp, final)
    except OSError:
        if old is not None and not final.exists():
            os.rename(old / "previous", final)  # put the earlier folder back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
