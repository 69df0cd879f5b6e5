"""Scratch files for a change pass too large to hold in memory: rasters and samples by block row.

:class:`ChangeSpill` is the sink :func:`rsmon.products.change_blocks.detect_change_blocks` writes
its outputs into when a scene is streamed (``spill=``): each block row of the three uint8 rasters
(``change``, ``change_class``, ``confidence``) is written to a raw row-major file with
``os.pwrite`` once the row is final, and the index samples of its change pixels are appended to a
samples file; nothing of a finished row stays in memory. The rasters are read back as lazily
indexed arrays (:meth:`ChangeSpill.array`: rows read with ``os.pread``, so nothing read stays in
the process's resident set beyond the arrays it was read into), the samples by rows (:meth:`ChangeSpill.samples`).

The files live in a hidden temporary folder (``.rsmon-spill-*``) inside the folder given (the
job's output folder, on the same disk as its outputs) and are removed by :meth:`ChangeSpill.close`
(or leaving the ``with`` block), whatever happened. They are scratch, never an output: the
job's writers produce the published files from them.

Disk: 3 bytes per pixel plus 40 bytes per change pixel (a Sentinel-2 tile: 362 MB + a few hundred
MB), mostly served from the page cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from xarray.backends import BackendArray
from xarray.core import indexing

from rsmon.errors import OutputError

__all__ = ["ChangeSpill", "SPILL_RASTERS"]

#: The rasters of a change pass, in the order the sink hands them out.
SPILL_RASTERS = ("change", "change_class", "confidence")


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class _RowReader(BackendArray):
    """One raw raster file as a lazily indexed xarray array (an xarray backend array).

    A window is cut from its rows, read whole with one ``os.pread`` (no memory map whose pages
    would stay in the process's resident set). The rows of a window short of the right edge are
    kept until a window of the same rows reaching the right edge is read, so the column blocks of
    one block row (a COG writer's blocks, left to right) share one read; full-width windows (the
    patch table's) are not kept.
    """

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(np.uint8)
        self._lock = threading.Lock()
        self._last: tuple[int, int, np.ndarray] | None = None

    def _rows(self, r0: int, r1: int, keep: bool) -> np.ndarray:
        with self._lock:
            if self._last is not None and self._last[0] == r0 and self._last[1] == r1:
                rows = self._last[2]
                if not keep:
                    self._last = None
                return rows
        width = self.shape[1]
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                data = os.pread(fd, (r1 - r0) * width, r0 * width)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"scratch file {self.path}: cannot read rows {r0}-{r1} ({exc.strerror or exc})") from None
        if len(data) != (r1 - r0) * width:
            raise OutputError(f"scratch file {self.path}: rows {r0}-{r1} cut short (removed or truncated meanwhile?)")
        rows = np.frombuffer(data, np.uint8).reshape(r1 - r0, width)
        with self._lock:
            self._last = (r0, r1, rows) if keep else None
        return rows

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._window)

    def _window(self, key: tuple) -> np.ndarray:
        key = tuple(key) + (slice(None),) * (2 - len(key))
        rows, cols = (k if isinstance(k, slice) else slice(int(k), int(k) + 1) for k in key)
        (r0, r1, rs), (c0, c1, cs) = (k.indices(n) for k, n in zip((rows, cols), self.shape))
        if r1 <= r0 or c1 <= c0:
            out = np.empty((max(r1 - r0, 0), max(c1 - c0, 0)), np.uint8)
        else:
            out = self._rows(r0, r1, keep=c1 < self.shape[1])[::rs, c0:c1:cs].copy()
        return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key)]


class ChangeSpill:
    """The rasters and samples of one change pass on disk, written block row by block row.

    Parameters
    ----------
    folder : path
        Existing, writable folder to create the scratch folder in.
    shape : (int, int)
        Height and width of the change rasters.
    sample_names : sequence of str
        Names of the index sample planes (float32 each), in the order the pass gives them.

    Raises
    ------
    OutputError
        The scratch folder or its files cannot be created or written (names the folder).
    """

    def __init__(self, folder: str | os.PathLike, shape: tuple[int, int], sample_names) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.sample_names = tuple(sample_names)
        try:
            self.folder = Path(tempfile.mkdtemp(prefix=".rsmon-spill-", dir=folder))
        except OSError as exc:
            raise OutputError(f"scratch folder in {folder}: cannot create it ({exc.strerror or exc})") from None
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._samples_end = 0
        self._records: list[tuple[int, int, int, int]] = []  # (row0, row1, offset, n) per block
        try:
            size = self.shape[0] * self.shape[1]
            for name in (*SPILL_RASTERS, "samples"):
                self._fds[name] = os.open(self.folder / f"{name}.raw", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                if name != "samples":
                    os.ftruncate(self._fds[name], size)
        except OSError as exc:
            self.close()
            raise OutputError(f"scratch folder {self.folder}: cannot write ({exc.strerror or exc})") from None

    # -- the sink of detect_change_blocks --------------------------------------------------------
    def rows(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New buffers for the rasters' rows ``row0:row1`` (the pass fills them, then :meth:`done`)."""
        return tuple(np.empty((row1 - row0, self.shape[1]), np.uint8) for _ in SPILL_RASTERS)

    def done(self, row0: int, row1: int, buffers, pieces) -> bool:
        """Write the final rows ``row0:row1`` (``buffers`` from :meth:`rows`) and the samples of
        their blocks, ``pieces = [(flat int64, [plane float32, ...]), ...]``; True: the caller
        need not keep them."""
        try:
            for name, buffer in zip(SPILL_RASTERS, buffers):
                _pwrite_all(self._fds[name], memoryview(np.ascontiguousarray(buffer)).cast("B"),
                            row0 * self.shape[1])
            for flat, planes in pieces:
                n = len(flat)
                if not n:
                    continue
                parts = [np.ascontiguousarray(flat, np.int64)] + [np.ascontiguousarray(p, np.float32) for p in planes]
                with self._lock:
                    offset = self._samples_end
                    self._samples_end += sum(p.nbytes for p in parts)
                    self._records.append((row0, row1, offset, n))
                for part in parts:
                    _pwrite_all(self._fds["samples"], memoryview(part).cast("B"), offset)
                    offset += part.nbytes
        except OSError as exc:
            raise OutputError(f"scratch folder {self.folder}: cannot write ({exc.strerror or exc})") from None
        return True

    # -- reading back ----------------------------------------------------------------------------
    def array(self, name: str):
        """Raster ``name`` as a lazily indexed array for an :class:`xarray.Variable` (a window is
        read when its values are asked for; no dask graph)."""
        return indexing.LazilyIndexedArray(_RowReader(self.folder / f"{name}.raw", self.shape))

    def rasters(self) -> tuple:
        """The three rasters (:data:`SPILL_RASTERS`) as :meth:`array` gives them."""
        return tuple(self.array(name) for name in SPILL_RASTERS)

    def samples(self, row0: int, row1: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The samples of the block rows overlapping rows ``row0:row1``: ``[(flat, {name: values}), ...]``
        (flat = ``row * width + col``; a block's samples may lie outside ``row0:row1``)."""
        out = []
        fd = self._fds["samples"]
        for r0, r1, offset, n in self._records:
            if r0 >= row1 or r1 <= row0:
                continue
            flat = np.frombuffer(self._pread(fd, 8 * n, offset), np.int64)
            offset += 8 * n
            values = {}
            for name in self.sample_names:
                values[name] = np.frombuffer(self._pread(fd, 4 * n, offset), np.float32)
                offset += 4 * n
            out.append((flat, values))
        return out

    def _pread(self, fd: int, size: int, offset: int) -> bytes:
        try:
            data = os.pread(fd, size, offset)
        except OSError as exc:
            raise OutputError(f"scratch folder {self.folder}: cannot read the samples ({exc.strerror or exc})") from None
        if len(data) != size:
            raise OutputError(f"scratch folder {self.folder}: samples cut short (removed or truncated meanwhile?)")
        return data

    def close(self) -> None:
        """Close and remove the scratch files (idempotent)."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ChangeSpill:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
