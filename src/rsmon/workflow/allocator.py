"""Tune glibc's allocator for block-wise raster processing (once per process).

A change pass over a tile allocates and frees thousands of 0.25-16 MB block arrays from two
worker threads. glibc serves allocations above its mmap threshold (128 kB at start, adapting
upwards) with fresh ``mmap`` calls and gives freed memory back to the kernel, so the same
working set is faulted in again and again. On the virtual machines this project runs on, a page
fault costs several microseconds: a one-off redline run on a Sentinel-2 tile pair spent 1.3-2.7 s
more system time than the same run in a warm process. With the tuning the one-off run takes
0.47 s less system time and 0.3 s less wall on average (5 runs each, 2026-11-30,
``docs/benchmarks.md``). ``rsmon redline detect`` applies it; a long-running process (the
scheduler) need not.

:func:`tune_allocator` keeps such blocks in the heap and the heap's freed memory in the process
(``mallopt`` ``M_MMAP_THRESHOLD`` 64 MB, ``M_TRIM_THRESHOLD`` 1 GB, ``M_TOP_PAD`` 64 MB): the
process then keeps about its peak working set, which the redline run bounds anyway. Arrays of
4 MB and more still get NumPy's transparent-huge-page advice.

It also caps glibc's malloc arenas at one per core (``M_ARENA_MAX``; glibc's default is eight per
core). Every worker thread of the pass, the patch table and the COG writers otherwise gets its
own arena, each keeping its freed blocks: with the cap the one-off run on the DEFLATE tile pair
peaks at 2.04-2.09 GB instead of 2.34-2.36 GB, and a pair of twice the area at 2.9 GB instead of
3.4 GB, in the same time (2026-11-30, ``docs/benchmarks.md``). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

__all__ = ["tune_allocator"]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_SETTINGS = ((_M_MMAP_THRESHOLD, 64 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20),
             (_M_ARENA_MAX, max(os.cpu_count() or 1, 2)))
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the settings of the module doc once; True when glibc took them."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _done
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    log.debug("glibc allocator tuned for block processing: %s", _done)
    return _done
