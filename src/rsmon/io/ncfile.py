"""Shared netCDF4/HDF5 file access for the NetCDF readers (S5P, VIIRS, ...).

What every NetCDF-4 reader needs and nothing product-specific:

* :func:`existing_file` and :func:`netcdf_signature`: cheap checks before any library call (the
  file exists, its first bytes are a NetCDF classic or HDF5 signature);
* :data:`NC_LOCK` (:class:`NCLock`): the one lock held while a file is opened or its metadata read,
  and handed to xarray for the later chunk reads;
* :func:`cached_file_manager` / :func:`open_netcdf`: one shared netCDF4 handle per file (version)
  in xarray's file cache, so metadata reads and lazy datasets of the same file never hold two
  handles at once;
* :func:`open_group_dataset`: one group as a lazy (dask) xarray dataset through that handle;
* small netCDF4 helpers: :func:`get_group`, :func:`nc_attrs`, :func:`data_variables`,
  :func:`read_values`.

Why the lock and the shared handle: netCDF4/HDF5 are not thread-safe, and ``xr.open_dataset``
reads variable metadata without a lock. Several HDF5 handles on one file that holds
variable-length string variables (e.g. S5P ``PRODUCT/time_utc``), used from several threads,
corrupt HDF5's global-heap cache ("bad global heap collection signature", then segfaults).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from rsmon.errors import FormatError

__all__ = [
    "NC_LOCK",
    "NCLock",
    "cached_file_manager",
    "data_variables",
    "existing_file",
    "get_group",
    "nc_attrs",
    "nc_lock",
    "netcdf_signature",
    "open_group_dataset",
    "open_netcdf",
    "read_values",
]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CDF_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
# HDF5 looks for its superblock at 0, 512, 1024, 2048, ... (a user block may precede it).
_HDF5_OFFSETS = (0, 512, 1024, 2048)


# --------------------------------------------------------------------------------------------------
# Cheap checks (no NetCDF library involved)
# --------------------------------------------------------------------------------------------------


#: HDF5 chunk cache per open variable (bytes). netCDF-C's default is 64 MiB per variable, which
#: costs hundreds of MB when a reader touches a dozen variables; TROPOMI chunks are 0.5-30 MB.
CHUNK_CACHE_BYTES = 4 * 1024 * 1024
netCDF4.set_chunk_cache(CHUNK_CACHE_BYTES)

def existing_file(path: str | Path) -> Path:
    """The absolute path of an existing regular file.

    Parameters
    ----------
    path : str or Path
        File path; ``~`` is expanded.

    Returns
    -------
    Path
        The resolved path.

    Raises
    ------
    FormatError
        The path does not exist or is not a regular file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FormatError(f"{p}: file does not exist")
    if not p.is_file():
        raise FormatError(f"{p}: not a regular file")
    return p.resolve()


def netcdf_signature(path: Path) -> str | None:
    """``"hdf5"``, ``"cdf"`` or None from the file's first bytes (no NetCDF library involved).

    ``"cdf"`` is NetCDF classic / 64-bit offset / CDF-5; ``"hdf5"`` (NetCDF-4) is recognised with
    a user block of up to 2048 bytes before the superblock.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    with open(path, "rb") as fh:
        head = fh.read(_HDF5_OFFSETS[-1] + len(_HDF5_MAGIC))
    if head[:4] in _CDF_MAGICS:
        return "cdf"
    if any(head[o:o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "hdf5"
    return None


# --------------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------------

try:  # the lock xarray holds around its netCDF4/HDF5 reads; the libraries are not thread-safe
    from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK as _BASE_LOCK
except ImportError:  # pragma: no cover - private xarray name moved
    from dask.utils import SerializableLock

    _BASE_LOCK = SerializableLock()


class NCLock:
    """xarray's netCDF4/HDF5 lock, re-entrant for the thread that holds it.

    ``xr.open_dataset`` reads variable metadata without a lock (only chunk reads are locked), so
    two threads opening files, or one opening while another computes, can crash HDF5. We hold this
    lock for the whole open and hand the same lock to xarray for later chunk reads; re-entry keeps
    xarray's own acquire inside the open from deadlocking. It pickles to the process's instance
    (dask.distributed ships it with the dataset). Use the one instance :data:`NC_LOCK`.
    """

    _local = threading.local()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        depth = getattr(self._local, "depth", 0)
        if depth:
            if not blocking:
                # xarray's only non-blocking acquire is CachingFileManager.__del__, which then closes
                # a file: never let garbage collection do that in the middle of our own HDF5 calls
                return False
            self._local.depth = depth + 1
            return True
        if not _BASE_LOCK.acquire(blocking):
            return False
        self._local.depth = 1
        return True

    def release(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            _BASE_LOCK.release()

    def __enter__(self) -> "NCLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def locked(self) -> bool:
        return getattr(self._local, "depth", 0) > 0 or bool(_BASE_LOCK.locked())

    def __reduce__(self):
        return (nc_lock, ())


#: The process-wide lock: hold it while opening a file or reading its metadata.
NC_LOCK = NCLock()


def nc_lock() -> NCLock:
    """The process's :data:`NC_LOCK` (what an unpickled :class:`NCLock` becomes)."""
    return NC_LOCK


# --------------------------------------------------------------------------------------------------
# Shared handles
# --------------------------------------------------------------------------------------------------

def cached_file_manager(path: Path):
    """xarray's cached file manager for ``path``: one shared netCDF4 handle per file version.

    Every open of the same file in this process (a reader's metadata reads, the lazy stores of its
    groups, unpickled copies on a dask worker) shares one handle in xarray's LRU file cache. With
    several simultaneous handles on one file that holds variable-length strings (e.g. S5P
    PRODUCT/time_utc), threads computing different datasets corrupted HDF5's global-heap cache
    ("bad global heap collection signature", then segfaults; netCDF4 1.7.5 / HDF5 2.2, reproduced
    with plain ``xr.open_dataset(..., drop_variables=["time_utc"])``). The id includes mtime and
    size so a rewritten file gets a fresh handle.

    Parameters
    ----------
    path : Path
        Absolute path of an existing file (see :func:`existing_file`).

    Returns
    -------
    xarray.backends.CachingFileManager
        Opens ``netCDF4.Dataset(path, "r")`` on ``acquire()``, with :data:`NC_LOCK`.
    """
    import netCDF4
    from xarray.backends import CachingFileManager

    st = path.stat()
    return CachingFileManager(netCDF4.Dataset, str(path), mode="r", lock=NC_LOCK,
                              manager_id=f"rsmon.ncfile:{path}:{st.st_mtime_ns}:{st.st_size}")


def open_netcdf(path: Path):
    """``(manager, root netCDF4.Dataset)`` for ``path``; library errors become FormatError.

    Call with :data:`NC_LOCK` held (dask workers may be reading through xarray meanwhile), and do
    not close the handle: it is shared (see :func:`cached_file_manager`) and closed when unused.

    Raises
    ------
    FormatError
        The file cannot be read, has no NetCDF/HDF5 signature, or the library cannot open it
        (truncated or corrupt).
    """
    try:
        kind = netcdf_signature(path)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if kind is None:
        raise FormatError(f"{path}: not a NetCDF/HDF5 file (no NetCDF or HDF5 signature in its first bytes)")
    manager = cached_file_manager(path)
    try:
        return manager, manager.acquire()
    except (OSError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FormatError(f"{path}: cannot be opened as NetCDF/HDF5 (truncated or corrupt?): {reason}") from None


def open_group_dataset(path: Path, manager, group: str, drop: Sequence[str], chunks: dict[str, int],
                       **kw) -> xr.Dataset:
    """Lazily open one group with dask through the shared handle of ``manager``.

    Parameters
    ----------
    path : Path
        The file (for messages).
    manager : xarray.backends.CachingFileManager
        From :func:`open_netcdf` / :func:`cached_file_manager`.
    group : str
        Group path, e.g. ``"PRODUCT/SUPPORT_DATA/GEOLOCATIONS"``.
    drop : sequence of str
        Variables not to open.
    chunks : dict
        Dask chunks by dimension.
    **kw
        More ``xr.open_dataset`` arguments (e.g. ``mask_and_scale``). Times, timedeltas and
        coordinates are never decoded.

    Raises
    ------
    FormatError
        The library cannot open the group (the message names it).
    """
    from xarray.backends import NetCDF4DataStore
    from xarray.backends.store import StoreBackendEntrypoint

    try:
        store = NetCDF4DataStore(manager, group=group, lock=NC_LOCK)
        with warnings.catch_warnings():
            # dask chunks that split a stored HDF5 chunk are a performance hint, not an error
            warnings.filterwarnings("ignore", message="The specified chunks separate", category=UserWarning)
            # The backend class, not a name: naming an engine makes xarray load every installed
            # backend plugin (rioxarray alone costs ~0.8 s of start-up).
            return xr.open_dataset(
                store, engine=StoreBackendEntrypoint, chunks=chunks, drop_variables=list(drop),
                decode_times=False, decode_timedelta=False, decode_coords=False, **kw,
            )
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: cannot open group {group}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# netCDF4 helpers (call under NC_LOCK)
# --------------------------------------------------------------------------------------------------

def read_values(var, key: Any = slice(None)) -> np.ndarray:
    """``var[key]`` as float64 with fill -> NaN (call under :data:`NC_LOCK`).

    The handle is shared with xarray, which turns auto-masking off before each of its reads; we
    turn it on for ours.
    """
    var.set_auto_maskandscale(True)
    return np.ma.filled(np.ma.asarray(var[key], dtype=np.float64), np.nan)


def get_group(nc, group_path: str):
    """The netCDF4 group at ``group_path`` ("A/B/C") or None."""
    node = nc
    for part in group_path.split("/"):
        node = node.groups.get(part) if hasattr(node, "groups") else None
        if node is None:
            return None
    return node


def nc_attrs(obj) -> dict[str, Any]:
    """The attributes of a netCDF4 dataset, group or variable as a dict."""
    return {k: obj.getncattr(k) for k in obj.ncattrs()}


def data_variables(group) -> list[str]:
    """Variables of a netCDF4 group that are not dimension coordinates."""
    return [name for name in group.variables if name not in group.dimensions]
