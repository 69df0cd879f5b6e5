"""Land cover given as several tiles or a folder: one VRT mosaic for the run (rsmon.io.landcover.landcover_mosaic)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from paths import SEEDS
from rasterio.windows import Window
from shapely.geometry import box

from rsmon.errors import FormatError, InputError
from rsmon.io.landcover import class_share_of_polygons, landcover_at, landcover_mosaic

WORLDCOVER = SEEDS / "esa-worldcover-tile" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
pytestmark = pytest.mark.skipif(not WORLDCOVER.exists(), reason="seeds/esa-worldcover-tile not present")

R0, C0, N = 15000, 15800, 1200  # a window over Principe island (land, sea and nodata)


def _split(src: Path, folder: Path, windows) -> list[Path]:
    """Write windows (row, col, height, width) of ``src`` as GeoTIFF tiles with its profile."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with rasterio.open(src) as ds:
        for k, (r, c, h, w) in enumerate(windows):
            win = Window(c, r, w, h)
            profile = dict(ds.profile, width=w, height=h, transform=ds.window_transform(win), blockxsize=256,
                           blockysize=256)
            path = folder / f"tile{k}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(ds.read(1, window=win), 1)
            out.append(path)
    return out


@pytest.fixture(scope="module")
def quadrants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quadrants")
    h = N // 2
    return _split(WORLDCOVER, folder, [(R0, C0, h, h), (R0, C0 + h, h, h), (R0 + h, C0, h, h), (R0 + h, C0 + h, h, h)])


def test_mosaic_of_real_worldcover_quadrants_equals_the_tile(quadrants):
    with rasterio.open(WORLDCOVER) as ds:
        whole = ds.read(1, window=Window(C0, R0, N, N))
        transform = ds.window_transform(Window(C0, R0, N, N))
    for given in (quadrants[0].parent, [str(p) for p in reversed(quadrants)]):  # a folder; a list in any order
        with landcover_mosaic(given) as (path, files):
            assert sorted(files) == sorted(quadrants) and str(path).endswith(".vrt")
            with rasterio.open(path) as v:
                assert v.crs.to_epsg() == 4326 and v.nodata == 0 and v.transform.almost_equals(transform)
                np.testing.assert_array_equal(v.read(1), whole)
            # points and polygons across the seams answer as on the original tile
            rng = np.random.default_rng(1)
            lon = transform.c + rng.uniform(0, N, 400) * transform.a
            lat = transform.f + rng.uniform(0, N, 400) * transform.e
            np.testing.assert_array_equal(landcover_at(lon, lat, path), landcover_at(lon, lat, WORLDCOVER))
            d = transform.a
            seam = gpd.GeoDataFrame(geometry=[box(transform.c + 500 * d, transform.f - 700 * d,
                                                  transform.c + 700 * d, transform.f - 500 * d)], crs="EPSG:4326")
            np.testing.assert_allclose(class_share_of_polygons(seam, path, (10,)),
                                       class_share_of_polygons(seam, WORLDCOVER, (10,)))
        assert not Path(path).exists()  # the VRT lives while the context does


def test_one_file_is_used_as_is():
    with landcover_mosaic(WORLDCOVER) as (path, files):
        assert Path(path) == WORLDCOVER and files == [WORLDCOVER] and path.files == [WORLDCOVER]


def test_mosaic_errors_name_the_file(tmp_path, quadrants):
    with pytest.raises(InputError, match="nosuch.tif: no such file"):
        with landcover_mosaic([quadrants[0], tmp_path / "nosuch.tif"]):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no GeoTIFF"):
        with landcover_mosaic(tmp_path / "empty"):
            pass
    # a tile half a cell off the grid
    with rasterio.open(quadrants[1]) as ds:
        profile, data = ds.profile, ds.read(1)
    off = tmp_path / "off.tif"
    t = profile["transform"]
    with rasterio.open(off, "w", **dict(profile, transform=t * t.translation(0.5, 0))) as dst:
        dst.write(data, 1)
    with pytest.raises(InputError, match="off.tif: not on the grid"):
        with landcover_mosaic([quadrants[0], off]):
            pass
    # another CRS
    utm = tmp_path / "utm.tif"
    with rasterio.open(utm, "w", **dict(profile, crs="EPSG:32632")) as dst:
        dst.write(data, 1)
    with pytest.raises(InputError, match="utm.tif: CRS or data type differ"):
        with landcover_mosaic([quadrants[0], utm]):
            pass
    # another pixel size
    coarse = tmp_path / "coarse.tif"
    with rasterio.open(coarse, "w", **dict(profile, transform=t * t.scale(2))) as dst:
        dst.write(data, 1)
    with pytest.raises(InputError, match="coarse.tif: pixel size"):
        with landcover_mosaic([quadrants[0], coarse]):
            pass
    # not one band of codes
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(rgb, "w", **dict(profile, count=3)) as dst:
        dst.write(np.stack([data] * 3))
    with pytest.raises(FormatError, match="rgb.tif: expected one band"):
        with landcover_mosaic([quadrants[0], rgb]):
            pass


def test_redline_run_with_landcover_tiles_equals_one_file(tmp_path):
    """The simulated pair's land cover cut in two tiles gives the same screen as the whole map."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    pair = simulate_s2_l2a_pair(tmp_path / "pair", size=256, seed=3, n_changes=8, landcover=True)
    with rasterio.open(pair.landcover) as ds:
        h, w = ds.height, ds.width
    tiles = _split(pair.landcover, tmp_path / "lc", [(0, 0, h // 2, w), (h // 2, 0, h - h // 2, w)])
    one = run_redline_detect(pair.before, pair.after, tmp_path / "one", quicklooks=False, checksums=False,
                             landcover=pair.landcover)
    two = run_redline_detect(pair.before, pair.after, tmp_path / "two", quicklooks=False, checksums=False,
                             landcover=tiles[0].parent)
    assert one.screened == two.screened and one.screened["crop_cycle"] > 0

    def ids(folder, name, layer):
        return sorted(gpd.read_file(folder / name, layer=layer)["patch_id"])

    for name, layer in (("patches.gpkg", "patches"), ("screened.gpkg", "screened")):
        assert ids(tmp_path / "one", name, layer) == ids(tmp_path / "two", name, layer)
    with rasterio.open(tmp_path / "two" / "change.tif") as ds:
        prov = json.loads(ds.tags()["rsmon_provenance"])
    assert sorted(prov["parameters"]["landcover"]) == sorted(str(t) for t in tiles)  # the tiles, not the VRT
