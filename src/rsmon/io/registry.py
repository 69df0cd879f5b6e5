"""Reader registry: declared readers, picked by sniffing a path (satpy's habit).

Each reader module declares itself at import with :func:`register`. The registry imports the modules
listed in :data:`READER_MODULES` lazily, on first use, so adding a sensor means adding a module and
one entry to that list, and ``import rsmon`` stays fast.

>>> from rsmon.io.registry import find_reader, open_any
>>> find_reader("S5P_OFFL_L2__NO2____...nc").name     # doctest: +SKIP
's5p'
>>> ds = open_any("S5P_OFFL_L2__NO2____...nc")        # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from rsmon.errors import FormatError, UnsupportedFormatError

log = logging.getLogger(__name__)

__all__ = ["READER_MODULES", "ReaderSpec", "available_readers", "find_reader", "get_reader",
           "open_any", "read_metadata_any", "register"]

#: Modules that register readers, tried in this order when sniffing (first match wins).
READER_MODULES: tuple[str, ...] = (
    "rsmon.io.s5p",
    "rsmon.io.viirs",
    "rsmon.io.optical",
)


@dataclass(frozen=True)
class ReaderSpec:
    """A declared reader.

    Attributes
    ----------
    name : str
        Short name (``"s5p"``), used by ``rsmon info`` and ``get_reader``.
    description : str
        One line for humans.
    sniff : callable
        ``sniff(path) -> bool``: cheap check (file name, magic bytes, a few attributes); never raises.
    open : callable
        ``open(path, **kw) -> xarray.Dataset``: lazy dataset with standard names.
    metadata : callable
        ``metadata(path) -> dict``: granule facts (product, times, footprint, variables...) without
        reading pixel values.
    """

    name: str
    description: str
    sniff: Callable[[Path], bool]
    open: Callable[..., xr.Dataset]
    metadata: Callable[[Path], dict[str, Any]]


_REGISTRY: dict[str, ReaderSpec] = {}
_LOADED = False
_LOCK = threading.RLock()


def register(spec: ReaderSpec) -> ReaderSpec:
    """Add (or replace, by name) a reader. Returns ``spec`` so it can be used as an expression."""
    with _LOCK:
        if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
            log.debug("reader %r re-registered", spec.name)
        _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    """Import the reader modules once; a module whose optional dependency is missing is skipped."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        for module in READER_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                log.warning("reader module %s not available: %s", module, exc)
        _LOADED = True


def available_readers() -> list[ReaderSpec]:
    """All registered readers, in sniffing order."""
    _load()
    order = {name: i for i, name in enumerate(_REGISTRY)}
    return sorted(_REGISTRY.values(), key=lambda spec: order[spec.name])


def get_reader(name: str) -> ReaderSpec:
    """The reader called ``name``.

    Raises
    ------
    UnsupportedFormatError
        No reader has that name (the message lists the known readers).
    """
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedFormatError(f"no reader named {name!r} (known readers: {_names()})") from None


def _names() -> str:
    return ", ".join(_REGISTRY) or "none"


def find_reader(path: str | Path) -> ReaderSpec:
    """The first registered reader whose ``sniff`` accepts ``path``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ReaderSpec

    Raises
    ------
    FormatError
        The path does not exist.
    UnsupportedFormatError
        No reader recognises the file (the message names the file and lists the known readers).
    """
    _load()
    p = Path(path).expanduser()
    if not p.exists():
        raise FormatError(f"{p}: file does not exist")
    for spec in available_readers():
        try:
            if spec.sniff(p):
                return spec
        except Exception:  # a sniffer must never break the search for another reader
            log.exception("reader %s: sniff(%s) raised", spec.name, p)
    raise UnsupportedFormatError(f"{p}: no reader recognises this file (known readers: {_names()})")


def open_any(path: str | Path, reader: str | None = None, **kwargs: Any) -> xr.Dataset:
    """Open ``path`` lazily with the reader that recognises it (or the one named ``reader``).

    Parameters
    ----------
    path : str or Path
    reader : str, optional
        Skip sniffing and use this reader.
    **kwargs
        Passed to the reader's ``open`` (e.g. ``product=``, ``chunks=`` for ``s5p``).

    Raises
    ------
    FormatError, UnsupportedFormatError, NoDataError
        As the reader raises them.
    """
    spec = get_reader(reader) if reader else find_reader(path)
    return spec.open(path, **kwargs)


def read_metadata_any(path: str | Path, reader: str | None = None) -> dict[str, Any]:
    """Granule metadata of ``path`` from the reader that recognises it (``"reader"`` key included)."""
    spec = get_reader(reader) if reader else find_reader(path)
    meta = dict(spec.metadata(path))
    meta.setdefault("reader", spec.name)
    return meta
