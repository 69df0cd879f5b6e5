"""JPEG 2000 bands read by whole code tiles, each decoded once.

Sentinel-2 products from ESA (SAFE) store every band as lossless JPEG 2000 (the
``COMPRESSION_REVERSIBILITY=LOSSLESS`` T29UNU sample in ``../shared/data``) in code tiles of their
own, not the readers' 512-pixel blocks. Through GDAL (OpenJPEG), a block window decodes the code
tiles under it, so a 1024-pixel tile read by its four 512-pixel blocks was decoded about four times:
a simulated tile pair in lossless JPEG 2000 took 330 s and 646 CPU-s of which a single decode of
its bands is 137 CPU-s (``benchmarks/bench_change_tile.py --compressions jp2``,
``docs/benchmarks.md``). Here a window is served from whole code tiles (GDAL's block size for the
file, up to :data:`TILE_PIXELS_MAX` pixels), each read by GDAL once and kept in an LRU
(:data:`CACHE_BYTES`: a tile row of every band of a pair with margin) while the blocks under it
are read; threads asking for a tile being decoded wait for it instead of decoding it again. The
values are GDAL's (tested).

The change fit reads 16 blocks spread over the scene long before the pass gets to them; the LRU,
sized for the pass's sweep, dropped their tiles meanwhile, so about a quarter of a tile pair was
decoded twice (172 CPU-s against 137). Tiles decoded inside :func:`keeping_tiles` (the fit, and
the pass's first blocks read alongside it) are kept outside the LRU until
:func:`release_tiles` (the pass is over), up to :data:`KEEP_BYTES`.
"""

from __future__ import annotations

import contextlib

import numpy as np

from rsmon.io.archive import file_stat
from rsmon.io.tiff_tiles import TileCache, tile_cache

__all__ = ["CACHE_BYTES", "JP2_DRIVERS", "KEEP_BYTES", "TILE_PIXELS_MAX", "keeping_tiles", "read_by_tiles",
           "release_tiles"]

#: Decoded JPEG 2000 tiles kept (all files together): a Sentinel-2 tile pair's row of 1024-pixel
#: tiles is ~250 MB (eight 10 m bands, six 20 m bands whose tiles span twice as many rows).
CACHE_BYTES = 512 << 20

#: GDAL drivers whose files are read by whole tiles here.
JP2_DRIVERS = frozenset({"JP2OpenJPEG", "JP2KAK", "JP2ECW", "JP2Grok", "JPEG2000"})

#: Larger decoding units (an untiled JPEG 2000 is one unit) are not decoded whole: GDAL decodes
#: just the window's area then, as before.
TILE_PIXELS_MAX = 2048 * 2048

#: Decoded tiles kept outside the LRU while a fit reads its blocks (:func:`keeping_tiles`): a
#: Sentinel-2 tile pair's 16 spread-out fit blocks lie in ~420 MB of code tiles (one 10 m and one
#: 20 m tile per band and scene each), and the pass's first blocks read meanwhile in ~170 MB.
KEEP_BYTES = 640 << 20

_CACHE = TileCache(CACHE_BYTES, KEEP_BYTES)


@contextlib.contextmanager
def keeping_tiles():
    """Context: the JPEG 2000 tiles decoded meanwhile are kept until :func:`release_tiles` (up to
    :data:`KEEP_BYTES`), so blocks read early (the fit's, spread over the scene) do not cost a
    second decode of their tiles when the pass reaches them; so are partly read GeoTIFF tiles
    (:data:`rsmon.io.tiff_tiles.KEEP_BYTES`: a shifted scene's)."""
    with _CACHE.keeping(), tile_cache().keeping():
        yield


def release_tiles() -> None:
    """Drop the tiles kept by :func:`keeping_tiles` (the pass is over)."""
    _CACHE.release()
    tile_cache().release()


def read_by_tiles(handle, path: str, band: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Band ``band`` of the open rasterio dataset ``handle`` (the file ``path``) on a window inside
    the image, assembled from its whole tiles (each decoded once while it stays cached)."""
    from rasterio.windows import Window

    bh, bw = handle.block_shapes[band - 1]
    if bh * bw > TILE_PIXELS_MAX:
        return handle.read(band, window=Window(col0, row0, width, height))
    st = file_stat(path)
    token = (path, st.st_mtime_ns, st.st_size, band)
    out = np.empty((height, width), handle.dtypes[band - 1])
    for ty in range(row0 // bh, (row0 + height - 1) // bh + 1):
        r0, r1 = max(row0, ty * bh), min(row0 + height, (ty + 1) * bh)
        for tx in range(col0 // bw, (col0 + width - 1) // bw + 1):
            c0, c1 = max(col0, tx * bw), min(col0 + width, (tx + 1) * bw)
            tile_w = min(bw, handle.width - tx * bw)
            tile_h = min(bh, handle.height - ty * bh)
            tile = _CACHE.get_or_make((token, ty, tx), lambda: handle.read(
                band, window=Window(tx * bw, ty * bh, tile_w, tile_h)))
            out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = tile[r0 - ty * bh:r1 - ty * bh,
                                                                 c0 - tx * bw:c1 - tx * bw]
    return out
