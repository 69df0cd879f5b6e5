"""Direct tile reads of tiled single-band GeoTIFFs: tifffile finds the tiles, imagecodecs decodes them.

The optical readers read scenes block by block (:mod:`rsmon.io.optical_raster`). For the formats
the large inputs come in (Sentinel-2 L2A and Landsat Collection 2 bands as tiled GeoTIFF or COG,
DEFLATE, ZSTD, LZW or uncompressed, horizontal predictor), this module reads a window's tiles
itself: the compressed bytes with ``os.pread`` (thread-safe, no shared file position), decoded
by tifffile's decoder for the file (:attr:`tifffile.TiffPage.decode`: imagecodecs' libdeflate /
zstd / LZW codecs and predictor), outside the GIL on the caller's thread. On the simulated
Sentinel-2 tile pair (DEFLATE, predictor 2) this decodes a 10 m band in 0.54 s of CPU instead of
GDAL's 0.82 s (same values): 2.3 of the 7.4 CPU-seconds GDAL needs for the pair's 14 files
(``benchmarks/bench_change_tile.py``, ``docs/benchmarks.md``). Everything else (JPEG 2000, ENVI,
striped or multi-band TIFFs, JPEG/LERC/WebP tiles, files tifffile cannot parse) is read by GDAL as
before: :func:`tiled_tiff` returns None for them.

The values are the DN GDAL returns for band 1 of the full-resolution image: sparse tiles (no
bytes) hold the nodata value of the file (``GDAL_NODATA``), or 0 without one, as in GDAL.

A tile read whole is not kept; a tile read in part (a 20 m tile under several 10 m blocks, a
block straddling tiles) is kept in a small LRU cache (:data:`CACHE_BYTES`) for the reads that need
its other parts, so it is decoded once.

A GeoTIFF stored uncompressed inside an archive (every member of a Landsat ``.tar``, stored zip
members; :func:`rsmon.io.archive.member_location`) is read the same way, at its offset in the
archive file. A deflated zip member is left to GDAL's ``/vsizip/``.

Setting the environment variable ``RSMON_DIRECT_TIFF=0`` turns the direct reads off (GDAL reads
everything), e.g. to compare the two.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections import OrderedDict

import numpy as np

from rsmon.errors import FormatError
from rsmon.io.archive import file_stat, member_location

__all__ = ["CACHE_BYTES", "KEEP_BYTES", "TileCache", "tile_cache", "TiledTiff", "tiled_tiff"]

#: TIFF compressions read directly: none, LZW, Adobe deflate, deflate, ZSTD (imagecodecs decodes
#: each faster than GDAL's libtiff path); the others are left to GDAL.
DIRECT_COMPRESSIONS = frozenset({1, 5, 8, 32946, 50000})

#: Bytes of decoded partial tiles kept for later reads (all files together): about three tile
#: rows of a Sentinel-2 tile pair whose before scene is read on shifted windows (a co-registered
#: or re-gridded scene, :class:`rsmon.io.optical_align.AlignedBlocks`, reads every tile in parts):
#: the pass has ~2 block rows in flight and a window reaches into the tile rows on both sides.
CACHE_BYTES = 512 << 20
#: Partial tiles decoded by a change fit (:func:`rsmon.io.jp2_blocks.keeping_tiles`: its blocks
#: spread over the scene) kept outside the LRU until the pass is over: 16 blocks of a shifted
#: scene lie in ~9 tiles each (seven bands).
KEEP_BYTES = 384 << 20

_FILES_KEPT = 64
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class TileCache:
    """A thread-safe LRU of decoded tiles bounded in bytes.

    Inside :meth:`keeping` (e.g. while a fit reads blocks spread over the scene, which the pass
    reads again much later), new tiles are kept outside the LRU, up to ``keep_limit`` bytes, until
    :meth:`release`: an LRU sized for the pass's sweep would evict them before the pass gets there.
    """

    def __init__(self, limit: int, keep_limit: int = 0) -> None:
        self.limit, self.size = limit, 0
        self.keep_limit, self.kept_size, self._keeping = keep_limit, 0, 0
        self._items: OrderedDict = OrderedDict()
        self._kept: dict = {}
        self._lock = threading.Lock()
        self._pending: dict = {}

    @contextlib.contextmanager
    def keeping(self):
        """Keep the tiles decoded meanwhile (by any thread) until :meth:`release`."""
        with self._lock:
            self._keeping += 1
        try:
            yield
        finally:
            with self._lock:
                self._keeping -= 1

    def release(self) -> None:
        """Drop the kept tiles (those still wanted are decoded again)."""
        with self._lock:
            self._kept.clear()
            self.kept_size = 0

    def clear(self) -> None:
        """Drop every tile (kept or cached)."""
        with self._lock:
            self._items.clear()
            self._kept.clear()
            self.size = self.kept_size = 0

    def get_or_make(self, key, make):
        """The tile of ``key``, kept read-only; ``make()`` decodes it once even when several threads
        ask for it at the same time (the others wait for it instead of decoding it again)."""
        tile = self.get(key)
        if tile is not None:
            return tile
        with self._lock:
            pending = self._pending.setdefault(key, threading.Lock())
        try:
            with pending:
                tile = self.get(key)
                if tile is None:
                    tile = make()
                    tile.flags.writeable = False
                    self.put(key, tile)
        finally:
            with self._lock:
                self._pending.pop(key, None)
        return tile

    def get(self, key):
        with self._lock:
            tile = self._items.get(key)
            if tile is not None:
                self._items.move_to_end(key)
                return tile
            return self._kept.get(key)

    def put(self, key, tile: np.ndarray) -> None:
        with self._lock:
            if key in self._items or key in self._kept:
                return
            if self._keeping and self.kept_size + tile.nbytes <= self.keep_limit:
                self._kept[key] = tile
                self.kept_size += tile.nbytes
                return
            if tile.nbytes > self.limit:
                return
            self._items[key] = tile
            self.size += tile.nbytes
            while self.size > self.limit:
                self.size -= self._items.popitem(last=False)[1].nbytes


_CACHE = TileCache(CACHE_BYTES, KEEP_BYTES)


def tile_cache() -> TileCache:
    """The cache of decoded partial tiles (all files together)."""
    return _CACHE


class TiledTiff:
    """Band 1 of a tiled single-band TIFF, read by windows of its full-resolution image.

    Use :func:`tiled_tiff` (which caches one instance per file version and returns None for the
    files GDAL should read)."""

    def __init__(self, path: str, page, token: tuple, file: str | None = None, base: int = 0) -> None:
        """``file``/``base``: the file holding the TIFF and the TIFF's first byte in it (an archive
        member); by default ``path`` itself from byte 0."""
        self.path, self.token = path, token
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.tile_h, self.tile_w = int(page.tilelength), int(page.tilewidth)
        self.tiles_across = math.ceil(self.width / self.tile_w)
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        self.offsets = tuple(base + int(v) for v in page.dataoffsets)
        self.counts = tuple(int(v) for v in page.databytecounts)
        nodata = page.nodata
        self.fill = nodata if nodata is not None and np.can_cast(np.min_scalar_type(nodata), self.dtype) else 0
        self._decode = page.decode
        self._fd = os.open(file or path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def _tile(self, index: int) -> np.ndarray:
        """Tile ``index`` (row-major), decoded, full tile size (edge tiles padded)."""
        offset, count = self.offsets[index], self.counts[index]
        if count == 0:  # sparse tile: GDAL reads the nodata value (or 0)
            return np.full((self.tile_h, self.tile_w), self.fill, self.dtype)
        data = os.pread(self._fd, count, offset)
        if len(data) != count:
            raise FormatError(f"{self.path}: tile {index} is cut short ({len(data)} of {count} bytes; "
                              f"truncated file?)")
        try:
            tile, _, _ = self._decode(data, index)
        except Exception as exc:  # imagecodecs raises its own error types per codec
            raise FormatError(f"{self.path}: tile {index} cannot be decoded (corrupt file?): {exc}") from None
        return tile.reshape(self.tile_h, self.tile_w)

    def read(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        """DN of the window (inside the image) as a new ``(height, width)`` array; for a window that
        is exactly one tile, the decoded tile itself (a view, possibly read-only)."""
        if row0 < 0 or col0 < 0 or row0 + height > self.height or col0 + width > self.width or height <= 0 \
                or width <= 0:
            raise FormatError(f"{self.path}: window rows {row0}+{height}, cols {col0}+{width} outside the "
                              f"{self.height} x {self.width} image")
        th, tw = self.tile_h, self.tile_w
        ty0, ty1 = row0 // th, (row0 + height - 1) // th
        tx0, tx1 = col0 // tw, (col0 + width - 1) // tw
        if row0 % th == 0 and col0 % tw == 0 and height == min(th, self.height - row0) \
                and width == min(tw, self.width - col0):  # exactly one tile: its decoded array, not kept
            return self._get((row0 // th) * self.tiles_across + col0 // tw, keep=False)[:height, :width]
        out = np.empty((height, width), self.dtype)
        for ty in range(ty0, ty1 + 1):
            r0, r1 = max(row0, ty * th), min(row0 + height, (ty + 1) * th)
            for tx in range(tx0, tx1 + 1):
                c0, c1 = max(col0, tx * tw), min(col0 + width, (tx + 1) * tw)
                # kept unless this window takes all of the tile's pixels
                whole = (r1 - r0 == min(th, self.height - ty * th)) and (c1 - c0 == min(tw, self.width - tx * tw))
                tile = self._get(ty * self.tiles_across + tx, keep=not whole)
                out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = tile[r0 - ty * th:r1 - ty * th,
                                                                     c0 - tx * tw:c1 - tx * tw]
        return out

    def _get(self, index: int, keep: bool) -> np.ndarray:
        key = (self.token, index)
        if keep:  # decoded once, also when the blocks sharing it are read at the same time
            return _CACHE.get_or_make(key, lambda: self._tile(index))
        tile = _CACHE.get(key)
        return tile if tile is not None else self._tile(index)


_FILES: OrderedDict = OrderedDict()
_FILES_LOCK = threading.Lock()


def _probe(path: str, token: tuple) -> TiledTiff | None:
    location = member_location(path) if path.startswith("/vsi") else None
    file, base, size = location if location is not None else (path, 0, None)
    try:
        with open(file, "rb") as fh:
            fh.seek(base)
            if fh.read(4) not in _TIFF_MAGIC:
                return None
        import imagecodecs  # noqa: F401  (without it tifffile decodes deflate with zlib, slower than GDAL)
        import tifffile
    except (OSError, ImportError):
        return None
    try:
        with tifffile.TiffFile(file, offset=base or None, size=size) as tif:
            page = tif.pages.first
            if not (page.is_tiled and page.samplesperpixel == 1 and page.imagedepth == 1
                    and int(page.compression) in DIRECT_COMPRESSIONS and page.dtype is not None
                    and np.dtype(page.dtype).kind in "uif" and page.tiledepth == 1
                    and len(page.dataoffsets) == math.ceil(page.imagelength / page.tilelength)
                    * math.ceil(page.imagewidth / page.tilewidth)):
                return None
            if size is not None and any(int(o) + int(c) > size for o, c in zip(page.dataoffsets,
                                                                               page.databytecounts)):
                return None  # tiles past the member's end: GDAL reads it and reports the damage
            page.decode  # noqa: B018  (built while the file is open; it raises nothing here)
            return TiledTiff(path, page, token, file, base)
    except Exception:  # tifffile rejects the layout: GDAL reads it (and reports what is wrong)
        return None


def tiled_tiff(path: str | os.PathLike) -> TiledTiff | None:
    """The direct reader of ``path``, or None when GDAL should read it (not a tiled single-band
    TIFF with a compression of :data:`DIRECT_COMPRESSIONS`, tifffile or imagecodecs missing, or
    ``RSMON_DIRECT_TIFF=0``). One reader per file version (path, modification time, size)."""
    if os.environ.get("RSMON_DIRECT_TIFF", "1") == "0":
        return None
    path = os.fspath(path)
    try:
        st = file_stat(path)
    except OSError:
        return None
    token = (path, st.st_mtime_ns, st.st_size)
    with _FILES_LOCK:
        if token in _FILES:
            _FILES.move_to_end(token)
            return _FILES[token]
    reader = _probe(path, token)
    with _FILES_LOCK:
        _FILES[token] = reader
        while len(_FILES) > _FILES_KEPT:
            _FILES.popitem(last=False)
    return reader
