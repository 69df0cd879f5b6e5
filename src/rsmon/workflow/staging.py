"""All-or-nothing output folders for the jobs: stage every file, then rename them into place.

A job computes everything first, writes its files into a hidden staging folder inside the output
folder (each file itself through :func:`rsmon.io.atomic.atomic_output`) and renames them into place
at the end. On any error the staging folder is removed, so a run leaves either all its files or
none, and files of an earlier run under the same names are replaced only at the final rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from rsmon.errors import OutputError
from rsmon.io.atomic import check_output_dir

__all__ = ["precheck_output_dir", "publish", "staging"]


def precheck_output_dir(folder: str | os.PathLike) -> Path:
    """Check that ``folder`` is (or can be created as) a writable folder, without creating it.

    Raises
    ------
    OutputError
        The folder exists and is not a writable folder, or its nearest existing ancestor is not a
        writable folder.
    """
    folder = Path(folder)
    if folder.exists():
        return check_output_dir(folder)
    parent = folder.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"output folder {folder}: cannot create it ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder}: cannot create it ({parent} is not writable)")
    return folder


@contextlib.contextmanager
def staging(out: Path, prefix: str = ".rsmon-"):
    """A hidden temporary folder inside ``out`` (created if needed), removed at the end whatever
    happens; ``out`` itself is removed again on failure when this run created it and it is empty."""
    out = Path(out)
    created = not out.exists()
    out = check_output_dir(out)
    try:
        stage = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=out))
    except OSError as exc:
        raise OutputError(f"output folder {out}: cannot write in it ({exc.strerror or exc})") from None
    ok = False
    try:
        yield stage
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty


def publish(written: dict[str, Path], out: Path) -> dict[str, Path]:
    """Rename the staged files (or folders) into ``out`` (same file system, so each rename is atomic).

    A staged folder replaces a folder of the same name as a whole: the old one is first moved aside
    and deleted only once every new entry is in place (it is put back if a later rename fails).
    """
    final: dict[str, Path] = {}
    done: list[Path] = []
    aside: list[tuple[Path, Path]] = []
    try:
        for key, path in written.items():
            path = Path(path)
            target = out / path.name
            if path.is_dir() and target.exists():
                old = Path(tempfile.mkdtemp(prefix=".rsmon-old-", dir=out)) / target.name
                os.replace(target, old)
                aside.append((old, target))
            os.replace(path, target)
            done.append(target)
            final[key] = target
    except OSError as exc:
        for target in done:
            with contextlib.suppress(OSError):
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        for old, target in aside:
            with contextlib.suppress(OSError):
                os.replace(old, target)
                old.parent.rmdir()
        raise OutputError(f"output folder {out}: cannot move results into place ({exc.strerror or exc})") from None
    for old, _ in aside:
        shutil.rmtree(old.parent, ignore_errors=True)
    return final
