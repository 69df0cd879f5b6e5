"""JPEG 2000 bands read by whole code tiles (rsmon.io.jp2_blocks): GDAL's values, each tile decoded
once (also when two threads want it at once), and a lossless JPEG 2000 Sentinel-2 pair gives the
change of its GeoTIFF original."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsmon.io import jp2_blocks

pytestmark = pytest.mark.skipif("JP2OpenJPEG" not in rasterio.drivers.raster_driver_extensions().values(),
                                reason="this GDAL has no JPEG 2000 (OpenJPEG) driver")


def write_jp2(path: Path, data: np.ndarray, block: int, profile: dict | None = None) -> Path:
    """A lossless JPEG 2000 copy of ``data`` with ``block``-pixel code tiles."""
    prof = dict(profile or {"crs": "EPSG:32650", "transform": rasterio.Affine(10, 0, 399960, 0, -10, 4100040)})
    for key in ("tiled", "blockxsize", "blockysize", "compress", "interleave", "predictor", "driver"):
        prof.pop(key, None)
    prof.update(driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=block, BLOCKYSIZE=block, RESOLUTIONS=2)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data, 1)
    return path


class CountingHandle:
    """A rasterio dataset whose reads are counted (thread-safe)."""

    def __init__(self, handle):
        self._h, self.calls, self._lock = handle, [], threading.Lock()

    def __getattr__(self, name):
        return getattr(self._h, name)

    def read(self, *args, **kwargs):
        with self._lock:
            self.calls.append(kwargs.get("window"))
        return self._h.read(*args, **kwargs)


def test_windows_equal_gdal_and_each_tile_is_decoded_once(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 12000, size=(300, 260), dtype=np.uint16)
    path = str(write_jp2(tmp_path / "b.jp2", data, 64))
    windows = [(0, 0, 300, 260), (10, 20, 100, 50), (60, 60, 70, 70), (250, 200, 50, 60), (63, 63, 2, 2)]
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]  # GDAL's decoding unit (for a narrow image: a strip of code tiles)
        assert bh == 64
        for r0, c0, h, w in windows:
            want = src.read(1, window=Window(c0, r0, w, h))
            got = jp2_blocks.read_by_tiles(src, path, 1, r0, c0, h, w)
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(jp2_blocks.read_by_tiles(src, path, 1, 0, 0, 300, 260), data)
    # decoding units above TILE_PIXELS_MAX (an untiled file) are not decoded whole: GDAL's window read
    counted = CountingHandle(rasterio.open(path))
    monkey = pytest.MonkeyPatch()
    monkey.setattr(jp2_blocks, "TILE_PIXELS_MAX", 64 * 64 - 1)
    try:
        np.testing.assert_array_equal(jp2_blocks.read_by_tiles(counted, path, 1, 10, 20, 100, 50), data[10:110, 20:70])
    finally:
        monkey.undo()
        counted.close()
    assert [(w.row_off, w.col_off, w.height, w.width) for w in counted.calls] == [(10, 20, 100, 50)]
    # a fresh file version: every decoding unit decoded once, though two threads read 32-pixel
    # windows (several per unit) at the same time
    path = str(write_jp2(tmp_path / "c.jp2", data, 64))
    handles = [CountingHandle(rasterio.open(path)) for _ in range(2)]
    blocks = [(r, c) for r in range(0, 300, 32) for c in range(0, 260, 32)]

    def read(k):
        r, c = blocks[k]
        return jp2_blocks.read_by_tiles(handles[k % 2], path, 1, r, c, min(32, 300 - r), min(32, 260 - c))

    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(read, range(len(blocks))))
    for (r, c), part in zip(blocks, parts):
        np.testing.assert_array_equal(part, data[r:r + 32, c:c + 32])
    decoded = [w for h in handles for w in h.calls]
    assert len(decoded) == len(set(map(str, decoded))) == -(-300 // bh) * -(-260 // bw)  # each unit once
    for h in handles:
        h.close()


def _jp2_pair(tmp_path: Path, size: int, block: int) -> Path:
    """A simulated Sentinel-2 pair with its bands in lossless JPEG 2000 (``block``-pixel code tiles)."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    simulate_s2_l2a_pair(tmp_path / "tif", size=size, seed=5, n_changes=15)
    for date in ("before", "after"):
        (tmp_path / "jp2" / date).mkdir(parents=True)
        for f in (tmp_path / "tif" / date).iterdir():
            if f.suffix != ".tif":
                (tmp_path / "jp2" / date / f.name).write_bytes(f.read_bytes())
                continue
            with rasterio.open(f) as src:
                write_jp2(tmp_path / "jp2" / date / (f.stem + ".jp2"), src.read(1), block, dict(src.profile))
    return tmp_path / "jp2"


def test_jpeg2000_scene_gives_the_geotiff_change(tmp_path):
    """A simulated Sentinel-2 pair in lossless JPEG 2000 (as ESA's SAFE bands) gives exactly the
    change rasters and samples of its GeoTIFF original."""
    from rsmon.io.optical import open_optical
    from rsmon.products.change import detect_change_blocks

    _jp2_pair(tmp_path, 512, 128)
    runs = {}
    for kind in ("tif", "jp2"):
        before, after = (open_optical(tmp_path / kind / d, chunks=96) for d in ("before", "after"))
        runs[kind] = detect_change_blocks(before, after)
    assert runs["tif"].n_change > 100
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(runs["jp2"], name), getattr(runs["tif"], name), err_msg=name)
    (fa, va), (fb, vb) = runs["jp2"].index_samples, runs["tif"].index_samples
    np.testing.assert_array_equal(fa, fb)
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=name)


class CountingCache(jp2_blocks.TileCache):
    """The tile cache, counting the decodes of every tile."""

    def __init__(self, *args):
        super().__init__(*args)
        self.made: dict = {}

    def get_or_make(self, key, make):
        def counted():
            self.made[key] = self.made.get(key, 0) + 1
            return make()

        return super().get_or_make(key, counted)


@pytest.mark.parametrize("keep", [True, False])
def test_fit_tiles_are_kept_for_the_pass(tmp_path, monkeypatch, keep):
    """The fit reads 4 blocks spread over the scene; an LRU of 3 MB (the pass's working set:
    about two tile rows of every file) evicts their tiles before the pass reaches them, so without
    the kept tiles some are decoded twice; with them every tile is decoded once, and the result
    is the same."""
    from rsmon.io.optical import open_optical
    from rsmon.products.change import detect_change_blocks
    from rsmon.products.change_params import ChangeParams

    folder = _jp2_pair(tmp_path, 768, 128)
    params = ChangeParams(fit_sample_px=4 * 128 * 128)
    runs = []
    for limit, keep_limit in ((1 << 30, 0), (3 << 20, (64 << 20) if keep else 0)):
        cache = CountingCache(limit, keep_limit)
        monkeypatch.setattr(jp2_blocks, "_CACHE", cache)
        before, after = (open_optical(folder / d, chunks=128) for d in ("before", "after"))
        runs.append((detect_change_blocks(before, after, params), cache))
        assert cache.kept_size == 0  # released after the pass
    (whole, unbounded), (small, counted) = runs
    assert small.attrs["n_fit_blocks"] < 36 and max(unbounded.made.values()) == 1
    assert set(counted.made) == set(unbounded.made)
    if keep:
        assert max(counted.made.values()) == 1
    else:  # the test would see the double decodes
        assert max(counted.made.values()) > 1
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(small, name), getattr(whole, name), err_msg=name)
