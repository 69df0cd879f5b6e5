"""Direct tile reads of tiled GeoTIFFs (rsmon.io.tiff_tiles) against GDAL's reads of the same files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from rsmon.errors import FormatError
from rsmon.io import tiff_tiles
from rsmon.io.tiff_tiles import tiled_tiff
from tests.paths import SHARED_DATA

pytest.importorskip("imagecodecs")
pytest.importorskip("tifffile")

H, W = 1100, 1300  # not a multiple of the tile size: edge tiles are padded
TRANSFORM = Affine(10, 0, 400000, 0, -10, 4100000)


def _write(path: Path, data: np.ndarray, *, tile: int = 256, nodata=None, windows=None, **options) -> Path:
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                   crs="EPSG:32650", transform=TRANSFORM, tiled=True, blockxsize=tile,
                   blockysize=tile, nodata=nodata, **options)
    with rasterio.open(path, "w", **profile) as dst:
        if windows is None:
            dst.write(data, 1)
        else:  # only these windows: the other tiles stay sparse
            for w in windows:
                dst.write(data[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width], 1, window=w)
    return path


def _data(dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    # smooth plus noise: what the predictor is for, and every value range of the type
    ramp = np.add.outer(np.arange(H) * 3, np.arange(W) * 5) % (int(info.max) - int(info.min) + 1) + int(info.min)
    noise = rng.integers(-3, 4, size=(H, W))
    return np.clip(ramp + noise, info.min, info.max).astype(dtype)


def _windows(rng, n=40):
    out = [(0, 0, H, W), (0, 0, 256, 256), (1024, 1280, H - 1024, W - 1280), (H - 1, W - 1, 1, 1), (255, 255, 2, 2)]
    for _ in range(n):
        r, c = int(rng.integers(0, H)), int(rng.integers(0, W))
        out.append((r, c, int(rng.integers(1, H - r + 1)), int(rng.integers(1, W - c + 1))))
    return out


def _same_as_gdal(path: Path, seed: int = 1) -> None:
    reader = tiled_tiff(path)
    assert reader is not None, f"{path} not read directly"
    rng = np.random.default_rng(seed)
    with rasterio.open(path) as src:
        for r, c, h, w in _windows(rng):
            got = reader.read(r, c, h, w)
            expected = src.read(1, window=Window(c, r, w, h))
            assert got.dtype == expected.dtype and got.shape == (h, w)
            np.testing.assert_array_equal(got, expected, err_msg=f"window {(r, c, h, w)} of {path.name}")


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int16])
@pytest.mark.parametrize("options", [dict(compress="deflate", predictor=2), dict(compress="zstd", predictor=2),
                                     dict(compress="lzw"), dict(compress="deflate"), {}],
                         ids=["deflate-pred2", "zstd-pred2", "lzw", "deflate", "none"])
def test_windows_equal_gdal(tmp_path, dtype, options):
    _same_as_gdal(_write(tmp_path / "band.tif", _data(dtype), **options))


def test_big_endian_and_cog_layout(tmp_path):
    data = _data(np.uint16, seed=3)
    _same_as_gdal(_write(tmp_path / "be.tif", data, compress="deflate", predictor=2, ENDIANNESS="BIG"))
    src = _write(tmp_path / "plain.tif", data, compress="deflate", predictor=2)
    with rasterio.open(src) as s:  # a COG: overviews and a ghost area; page 1 is the full image
        rasterio.shutil.copy(s, tmp_path / "cog.tif", driver="COG", COMPRESS="DEFLATE", PREDICTOR="2",
                             BLOCKSIZE=256, OVERVIEWS="AUTO")
    _same_as_gdal(tmp_path / "cog.tif")


@pytest.mark.parametrize("nodata", [None, 7])
def test_sparse_tiles_read_as_gdal_does(tmp_path, nodata):
    data = _data(np.uint16, seed=2)
    path = _write(tmp_path / "sparse.tif", data, nodata=nodata, windows=[Window(0, 0, 256, 256),
                                                                        Window(512, 768, 256, 256)],
                  compress="deflate", predictor=2, SPARSE_OK="TRUE")
    reader = tiled_tiff(path)
    assert 0 in reader.counts  # the file is sparse indeed
    _same_as_gdal(path)
    assert (reader.read(300, 300, 10, 10) == (nodata or 0)).all()


def test_formats_left_to_gdal(tmp_path, monkeypatch):
    data = _data(np.uint16)
    profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="uint16", crs="EPSG:32650",
                   transform=TRANSFORM)
    striped = tmp_path / "striped.tif"
    with rasterio.open(striped, "w", **profile, compress="deflate") as dst:
        dst.write(data, 1)
    multi = tmp_path / "multi.tif"
    with rasterio.open(multi, "w", **{**profile, "count": 2}, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(np.stack([data, data]))
    envi = tmp_path / "stack.img"
    with rasterio.open(envi, "w", **{**profile, "driver": "ENVI"}) as dst:
        dst.write(data, 1)
    for path in (striped, multi, envi, tmp_path / "missing.tif"):
        assert tiled_tiff(path) is None, path.name
    tiled = _write(tmp_path / "tiled.tif", data, compress="deflate")
    monkeypatch.setenv("RSMON_DIRECT_TIFF", "0")
    assert tiled_tiff(tiled) is None
    monkeypatch.delenv("RSMON_DIRECT_TIFF")
    assert tiled_tiff(tiled) is not None


def test_rewritten_file_is_read_again(tmp_path):
    path = _write(tmp_path / "band.tif", _data(np.uint16, seed=4), compress="deflate")
    first = tiled_tiff(path).read(0, 0, 300, 300)
    new = _data(np.uint16, seed=5)[::-1].copy()
    _write(tmp_path / "band.tif", new, compress="zstd")
    os.utime(path, ns=(1, 1))  # a different version even within the file system's time resolution
    np.testing.assert_array_equal(tiled_tiff(path).read(0, 0, 300, 300), new[:300, :300])
    assert not np.array_equal(first, new[:300, :300])


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    path = _write(tmp_path / "band.tif", _data(np.uint16), compress="deflate", predictor=2)
    reader = tiled_tiff(path)
    raw = bytearray(path.read_bytes())
    offset, count = reader.offsets[5], reader.counts[5]
    raw[offset:offset + count] = b"\x00" * count  # tile 5: not a deflate stream any more
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="bad.tif: tile 5"):
        tiled_tiff(bad).read(0, 5 * 256, 256, W - 5 * 256)  # tile 5 is the last of the first row
    cut = tmp_path / "cut.tif"
    last = max(range(len(reader.offsets)), key=lambda i: reader.offsets[i])
    cut.write_bytes(path.read_bytes()[:reader.offsets[last] + reader.counts[last] // 2])
    with pytest.raises(FormatError, match="cut.tif: tile"):
        cut_reader = tiled_tiff(cut)
        cut_reader.read(0, 0, H, W)
    with pytest.raises(FormatError, match="outside"):
        reader.read(H - 10, 0, 20, 10)


def test_partial_tiles_are_cached_whole_tiles_not(tmp_path, monkeypatch):
    cache = tiff_tiles.TileCache(1 << 20)
    monkeypatch.setattr(tiff_tiles, "_CACHE", cache)
    path = _write(tmp_path / "band.tif", _data(np.uint16, seed=6), compress="deflate")
    reader = tiled_tiff(path)
    reader.read(0, 0, 256, 256)  # exactly tile 0
    assert cache.size == 0
    reader.read(0, 0, 128, 300)  # parts of tiles 0 and 1
    assert cache.size == 2 * 256 * 256 * 2
    for r in range(0, H, 256):  # more than the 1 MB budget: the oldest go
        reader.read(r, 10, min(256, H - r), 100)
    assert cache.size <= 1 << 20


def test_optical_reader_and_change_run_do_not_depend_on_the_read_path(tmp_path, monkeypatch):
    """A simulated Sentinel-2 L2A pair (tiled DEFLATE GeoTIFFs, 20 m bands resampled) read with
    direct tile reads and by GDAL only: the same scene values and the same change rasters."""
    from rsmon.io.optical import open_optical
    from rsmon.io.optical_align import align_pair
    from rsmon.products.change import detect_change_blocks
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    simulate_s2_l2a_pair(tmp_path / "sim", size=1200, seed=5, n_changes=20)
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("RSMON_DIRECT_TIFF", mode)
        after = open_optical(tmp_path / "sim" / "after")
        before = align_pair(open_optical(tmp_path / "sim" / "before"), after)[0]
        assert (tiled_tiff(after.attrs["source_files"][0]) is not None) == (mode == "1")
        blocks = detect_change_blocks(before, after)
        runs[mode] = (after.compute(), blocks)
    (gdal, gdal_blocks), (direct, direct_blocks) = runs["0"], runs["1"]
    for name in gdal.data_vars:
        np.testing.assert_array_equal(direct[name].values, gdal[name].values, err_msg=name)
    assert direct_blocks.n_change > 0
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(direct_blocks, name), getattr(gdal_blocks, name), err_msg=name)


@pytest.mark.parametrize("pattern", ["landsat8-c2l2-decimated/*.TIF", "esa-worldcover-tile/*.tif"])
def test_real_tiled_files_read_as_gdal_reads_them(pattern):
    """Real tiled GeoTIFFs: Landsat 8 Collection 2 L2 bands and QA_PIXEL (LZW, USGS) and an ESA
    WorldCover 10 m tile (36000 x 36000, DEFLATE): whole images and random windows equal GDAL's."""
    files = sorted(SHARED_DATA.glob(pattern))
    if not files:
        pytest.skip(f"real data {SHARED_DATA / pattern} missing")
    rng = np.random.default_rng(11)
    for path in files:
        reader = tiled_tiff(path)
        assert reader is not None, path.name
        with rasterio.open(path) as src:
            h, w = src.height, src.width
            windows = [(0, 0, h, w)] if h * w <= 4_000_000 else []
            for _ in range(12):
                r, c = int(rng.integers(0, h)), int(rng.integers(0, w))
                windows.append((r, c, int(rng.integers(1, min(1500, h - r) + 1)),
                                int(rng.integers(1, min(1500, w - c) + 1))))
            for r, c, wh, ww in windows:
                np.testing.assert_array_equal(reader.read(r, c, wh, ww), src.read(1, window=Window(c, r, ww, wh)),
                                              err_msg=f"{path.name} window {(r, c, wh, ww)}")
