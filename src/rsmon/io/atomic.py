"""Atomic file output: write to a temporary file beside the target, then rename.

Writers alone write (ARCHITECTURE.md); they all go through :func:`atomic_output`, so a crash or an
error never leaves a partial file under the final name and never clobbers an existing good one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import Iterator

from rsmon.errors import OutputError


def check_output_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that it is writable.

    Raises
    ------
    OutputError
        The folder cannot be created or is not writable.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output folder {folder}: cannot create it ({exc.strerror or exc})") from None
    if not folder.is_dir():
        raise OutputError(f"output folder {folder}: exists and is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder}: not writable")
    return folder


@functools.lru_cache(maxsize=1)
def _process_umask() -> int:
    """The process umask, read without changing it (``os.umask`` is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _apply_default_mode(path: str | os.PathLike) -> None:
    """Give a finished temporary output the mode a normal ``open()`` would (0666 & ~umask).

    ``tempfile.mkstemp`` (behind :func:`~rsmon.io.atomic.atomic_output`) creates files 0600,
    which would make published products unreadable to other users (web servers, analysts).
    """
    os.chmod(path, 0o666 & ~_process_umask())


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    The temporary name starts with ``.`` and ends with ``.partial`` plus the target's suffix (so
    GDAL and netCDF pick the right driver). On any exception the temporary file is removed and the
    exception propagates; an existing file at ``path`` is left untouched.
    """
    path = Path(path)
    folder = check_output_dir(path.parent)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _apply_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
