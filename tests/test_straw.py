"""Straw-burning classification: land cover at fire points (real ESA WorldCover tile), static
sources (hand-made and FIRMS Germany 2023), categories, admin counts and cropland areas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rasterio
from paths import SEEDS, SHARED_DATA
from rasterio.transform import from_origin

from rsmon.errors import InputError
from rsmon.io.landcover import WORLDCOVER_CLASSES, class_fraction_in_pixel, landcover_at
from rsmon.products.straw import (
    CATEGORIES,
    StrawParams,
    classify,
    counts_by_admin,
    cropland_area_by_admin,
    observation_day,
    static_source_mask,
)

WORLDCOVER = SEEDS / "esa-worldcover-tile" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
PROVINCES = SEEDS / "china-admin" / "100000_full.json"
BEIJING_DISTRICTS = SHARED_DATA / "china-admin-datav" / "110100_full.json"
GERMANY_VIIRS = SHARED_DATA / "firms-germany-2023" / "viirs-snpp_2023_Germany.csv"
R = 6_371_008.8
# Cropland patches on Sao Tome found by scanning the tile (10 m pixels, class 40 is rare here).
CROP_POINT = (6.533045, 0.341792)  # centre of a 5x5 all-cropland block
FOREST_POINT = (6.60, 0.25)  # interior of Sao Tome, tree cover
SEA_POINT = (8.5, 2.5)       # open ocean: WorldCover no data


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not present")


def _write_raster(path, data, transform, crs="EPSG:4326", nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="module")
def synthetic_cover(tmp_path_factory):
    """0.0001 deg (~10 m) raster over 116.0-116.2 E, 40.0-40.2 N: west half cropland (40), east half
    tree cover (10), a built-up square (50) at 116.15-116.16 E, 40.15-40.16 N."""
    data = np.full((2000, 2000), 10, np.uint8)
    data[:, :1000] = 40
    data[400:500, 1500:1600] = 50
    path = tmp_path_factory.mktemp("cover") / "cover.tif"
    return _write_raster(path, data, from_origin(116.0, 40.2, 0.0001, 0.0001))


# --------------------------------------------------------------------------- io.landcover

def test_landcover_at_real_worldcover(tmp_path):
    _need(WORLDCOVER)
    rng = np.random.default_rng(7)
    lon = rng.uniform(6.46, 7.46, 300)
    lat = rng.uniform(0.0, 1.70, 300)
    codes = landcover_at(lon, lat, WORLDCOVER)
    assert codes.dtype == np.int32 and codes.shape == (300,)
    assert set(np.unique(codes)) <= set(WORLDCOVER_CLASSES) | {0}
    assert (codes == 10).any() and (codes == 0).any()  # forest on the islands, sea = no data
    # the same pixels read directly
    with rasterio.open(WORLDCOVER) as ds:
        for i in range(0, 300, 37):
            row, col = ds.index(lon[i], lat[i])
            direct = ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0]
            assert codes[i] == direct
    assert landcover_at([CROP_POINT[0], FOREST_POINT[0]], [CROP_POINT[1], FOREST_POINT[1]], WORLDCOVER).tolist() \
        == [40, 10]
    # off the tile, non-finite coordinates and (with classes) other classes -> 0
    assert landcover_at([5.0, np.nan, 6.6], [1.0, 1.0, 0.25], WORLDCOVER).tolist() == [0, 0, 10]
    assert landcover_at([6.6], [0.25], WORLDCOVER, classes=(40,)).tolist() == [0]


def test_class_fraction_real_worldcover():
    _need(WORLDCOVER)
    lon = np.array([CROP_POINT[0], FOREST_POINT[0], SEA_POINT[0], 5.0])
    lat = np.array([CROP_POINT[1], FOREST_POINT[1], SEA_POINT[1], 1.0])
    crop = class_fraction_in_pixel(lon, lat, WORLDCOVER, {40})
    tree = class_fraction_in_pixel(lon, lat, WORLDCOVER, {10})
    print(f"\nWorldCover N00E006 375 m footprints: cropland {crop.round(3)}, tree {tree.round(3)}")
    assert 0.05 < crop[0] < 0.4  # the densest cropland patch of the tile is small
    assert crop[1] < 0.05 and tree[1] > 0.8
    assert np.isnan(crop[2]) and np.isnan(crop[3])  # all no data / off the tile
    # a 30 m footprint holds 3-4 x 3-4 pixel centres; one of 1 m falls back to the pixel under the point
    for footprint_m in (30.0, 1.0):  # CROP_POINT is the centre of a 5x5 cropland block (50 m)
        assert class_fraction_in_pixel([CROP_POINT[0]], [CROP_POINT[1]], WORLDCOVER, {40}, footprint_m)[0] == 1.0
    with pytest.raises(InputError, match="footprint_m"):
        class_fraction_in_pixel([6.6], [0.25], WORLDCOVER, footprint_m=0)


def test_reprojected_worldcover_gives_same_classes(tmp_path):
    """An EPSG:3857 copy (rasterio.warp, nearest) answers like the EPSG:4326 original."""
    _need(WORLDCOVER)
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    from rasterio.windows import from_bounds

    west, south, east, north = 6.60, 0.30, 6.72, 0.42
    with rasterio.open(WORLDCOVER) as src:
        win = from_bounds(west, south, east, north, transform=src.transform)
        data = src.read(1, window=win)
        src_transform = src.window_transform(win)
        dst_transform, w, h = calculate_default_transform("EPSG:4326", "EPSG:3857", data.shape[1], data.shape[0],
                                                          west, south, east, north, resolution=10.0)
    merc = np.zeros((h, w), np.uint8)
    reproject(data, merc, src_transform=src_transform, src_crs="EPSG:4326", dst_transform=dst_transform,
              dst_crs="EPSG:3857", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    path = _write_raster(tmp_path / "wc_3857.tif", merc, dst_transform, crs="EPSG:3857")

    rng = np.random.default_rng(3)
    lon = rng.uniform(west + 0.005, east - 0.005, 400)
    lat = rng.uniform(south + 0.005, north - 0.005, 400)
    a = landcover_at(lon, lat, WORLDCOVER)
    b = landcover_at(lon, lat, path)
    agree = float(np.mean(a == b))
    fa = class_fraction_in_pixel(lon[:60], lat[:60], WORLDCOVER, {10, 40})
    fb = class_fraction_in_pixel(lon[:60], lat[:60], path, {10, 40})
    print(f"\nEPSG:3857 copy: class agreement {agree:.3f} at 400 points; tree+crop fraction mean |diff| "
          f"{np.nanmean(np.abs(fa - fb)):.4f}")
    assert set(np.unique(b)) <= set(WORLDCOVER_CLASSES) | {0}
    assert agree >= 0.95  # differences only where a point sits within a pixel of a class edge
    assert np.nanmean(np.abs(fa - fb)) < 0.03


def test_class_fraction_synthetic_edges(synthetic_cover):
    # deep inside each half, at the cropland/tree edge (lon 116.1) and on a half-covered footprint
    lon = [116.05, 116.15, 116.1, 116.0]
    lat = [40.05, 40.05, 40.05, 40.05]
    f = class_fraction_in_pixel(lon, lat, synthetic_cover, {40})
    assert f[0] == 1.0 and f[1] == 0.0
    assert f[2] == pytest.approx(0.5, abs=0.03)
    assert f[3] == pytest.approx(0.5, abs=0.03)  # west half of the footprint is off the raster
    assert landcover_at(lon[:2], lat[:2], synthetic_cover).tolist() == [40, 10]


# --------------------------------------------------------------------------- persistence

def _hist(points):
    """(lon, lat, 'YYYY-MM-DD', 'HHMM') -> FIRMS-like history table."""
    return pd.DataFrame(points, columns=["longitude", "latitude", "acq_date", "acq_time"])


def test_static_source_mask_rule():
    d = 150 / (R * math.pi / 180)  # 150 m in degrees of latitude: jitter into the neighbour cell
    hist = _hist([
        (116.0, 40.0, "2023-10-01", "0530"), (116.0, 40.0, "2023-10-01", "0531"),  # same day twice
        (116.0, 40.0 + d, "2023-10-02", "0530"),
        (116.0, 40.0 - d, "2023-10-04", "0530"),
        (117.0, 40.0, "2023-10-03", "0530"), (117.0, 40.0, "2023-10-04", "0530"),  # only 2 days
    ])
    m = static_source_mask(hist, n_days=3, m_days=5, end_date="2023-10-04")
    assert len(m) >= 1 and (m["n_days"] == 3).all()
    assert np.allclose(m["lon"], 116.0, atol=0.01) and m.crs.to_epsg() == 4326
    assert m.attrs["rule"] == "detected on >= 3 of the last 5 days"
    # the window 10-02..10-06 holds only 2 of the days
    assert len(static_source_mask(hist, n_days=3, m_days=5, end_date="2023-10-06")) == 0
    # default end date = last day in the history (10-04)
    assert len(static_source_mask(hist)) == len(m)
    # without the 3x3 neighbourhood the jittered detections fall in 2-3 different cells
    assert len(static_source_mask(hist, end_date="2023-10-04", neighbourhood_cells=0)) == 0
    assert len(static_source_mask(hist, n_days=2, m_days=5, end_date="2023-10-04")) >= 2
    with pytest.raises(InputError, match="n_days"):
        static_source_mask(hist, n_days=6, m_days=5)


def test_observation_day_is_local_solar_date():
    fires = _hist([(120.0, 40.0, "2023-10-01", "1730"), (120.0, 40.0, "2023-10-02", "0530"),
                   (-100.0, 40.0, "2023-10-02", "0330")])
    solar = observation_day(fires).dt.strftime("%Y-%m-%d").tolist()
    assert solar == ["2023-10-02", "2023-10-02", "2023-10-01"]  # night + day overpass on one local day
    assert observation_day(fires, solar=False).dt.strftime("%Y-%m-%d").tolist() == \
        ["2023-10-01", "2023-10-02", "2023-10-02"]


# --------------------------------------------------------------------------- classify

def _fire_rows():
    base = {"acq_date": "2023-10-05", "acq_time": "0530", "daynight": "D", "confidence": "nominal", "type": 0,
            "frp": 3.0}
    rows = [
        dict(base, longitude=116.05, latitude=40.05),                       # 0 cropland -> straw
        dict(base, longitude=116.15, latitude=40.05),                       # 1 forest -> other
        dict(base, longitude=116.05, latitude=40.06, confidence="low"),     # 2 low day -> low_confidence_day
        dict(base, longitude=116.05, latitude=40.07, confidence="low", daynight="N", acq_time="1730"),  # 3 straw
        dict(base, longitude=116.05, latitude=40.08, type=2),               # 4 FIRMS static -> static
        dict(base, longitude=116.05, latitude=40.09, type=3),               # 5 offshore -> other
        dict(base, longitude=117.00, latitude=40.05),                       # 6 off the raster -> other
        dict(base, longitude=116.03, latitude=40.12),                       # 7 persistent -> static
        dict(base, longitude=116.155, latitude=40.155, confidence="low", type=2),  # 8 static beats low
    ]
    return pd.DataFrame(rows)


def test_classify_categories_and_precedence(synthetic_cover):
    fires = _fire_rows()
    # solar days 10-02 and 10-04 (18:00 UTC at 116 E is 01:44 local the next day) + the fire on 10-05
    history = _hist([(116.03, 40.12, "2023-10-02", "0530"), (116.03, 40.12, "2023-10-03", "1800")])
    out = classify(fires, synthetic_cover, history=history)
    assert out["category"].tolist() == [
        "straw_burning_suspected", "other_fire", "low_confidence_day", "straw_burning_suspected",
        "static_source", "other_fire", "other_fire", "static_source", "static_source"]
    assert out["landcover_class"].tolist() == [40, 10, 40, 40, 40, 40, 0, 40, 50]
    assert out["cropland_fraction"].iloc[0] == 1.0 and math.isnan(out["cropland_fraction"].iloc[6])
    assert out["static_source"].tolist() == [False] * 4 + [True, False, False, True, True]
    assert out["low_conf_day"].tolist() == [False, False, True, False, False, False, False, False, True]
    assert set(out["category"]) <= set(CATEGORIES)
    assert out.attrs["straw_params"]["static_n_days"] == 3
    # without history fire 7 is a single detection -> straw; FIRMS type can be ignored
    out2 = classify(fires, synthetic_cover, params=StrawParams(use_firms_type=False))
    assert out2["category"].iloc[7] == "straw_burning_suspected"
    assert out2["category"].iloc[4] == "straw_burning_suspected"
    assert out2["category"].iloc[8] == "low_confidence_day"
    # a stricter cropland threshold; FIRMS-reader style input (time, l/n/h, confidence_class)
    firms_like = fires.assign(time=pd.to_datetime(fires["acq_date"] + " " + fires["acq_time"], utc=True),
                              confidence=fires["confidence"].str[0]).drop(columns=["acq_date", "acq_time"])
    out3 = classify(firms_like, synthetic_cover, history=history)
    assert out3["category"].tolist() == out["category"].tolist()
    with pytest.raises(InputError, match="confidence"):
        classify(fires.assign(confidence="maybe"), synthetic_cover)
    with pytest.raises(InputError, match="min_cropland_fraction"):
        StrawParams(min_cropland_fraction=1.5)


def test_persistence_vs_firms_type2_germany_2023(tmp_path):
    """The 3-of-5-days persistence rule against FIRMS' own static-source flag (type 2) on a real year."""
    _need(GERMANY_VIIRS)
    from scipy.spatial import cKDTree

    from rsmon.io.stations import read_firms

    viirs = read_firms(GERMANY_VIIRS)
    empty = _write_raster(tmp_path / "none.tif", np.zeros((4, 4), np.uint8), from_origin(0, 1, 0.25, 0.25))
    type2 = (viirs["type"] == 2).to_numpy()

    def unit(df):
        lo, la = np.radians(df["longitude"].to_numpy()), np.radians(df["latitude"].to_numpy())
        return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])

    tree = cKDTree(unit(viirs[type2]))
    print("\nS-NPP VIIRS Germany 2023 (16480 points, 10912 FIRMS type 2): persistence rule vs FIRMS type 2")
    results = {}
    for n, m, k in ((3, 5, 1), (3, 5, 0), (5, 30, 1)):
        out = classify(viirs, empty, params=StrawParams(use_firms_type=False, static_n_days=n, static_m_days=m,
                                                        neighbourhood_cells=k))
        flag = out["static_source"].to_numpy()
        other = flag & ~type2
        far = tree.query(unit(viirs[other]))[0] * R > 1000 if other.any() else np.zeros(0, bool)
        results[(n, m, k)] = r = {
            "flags": int(flag.sum()), "type2_recall": (flag & type2).sum() / type2.sum(),
            "non_type2": int(other.sum()), "non_type2_far_from_type2": int(far.sum()),
            "non_type2_by_type": viirs.loc[other, "type"].value_counts().sort_index().to_dict()}
        print(f"{n} of {m} days, {2 * k + 1}x{2 * k + 1} cells: flags {r['flags']}, type-2 recall "
              f"{r['type2_recall']:.3f}, flags not type 2: {r['non_type2']} (by type {r['non_type2_by_type']}), "
              f"of which > 1 km from any type-2 point: {r['non_type2_far_from_type2']}")
    r = results[(3, 5, 1)]
    assert r["type2_recall"] > 0.6
    # flags not marked type 2 sit at the edge of type-2 sites (FIRMS marks the fringe pixels 0) or
    # offshore (type 3 platforms): almost none are elsewhere (multi-day vegetation fires)
    assert r["non_type2_far_from_type2"] < 0.03 * r["flags"]
    assert results[(3, 5, 0)]["type2_recall"] < r["type2_recall"]  # the 3x3 neighbourhood matters


# --------------------------------------------------------------------------- admin units

def test_counts_by_admin_beijing_districts(synthetic_cover):
    import geopandas as gpd

    _need(BEIJING_DISTRICTS)
    districts = gpd.read_file(BEIJING_DISTRICTS)
    assert (~districts.is_valid).sum() == 1  # the real file has one invalid district polygon
    pts = districts.set_index("name").geometry.representative_point()
    names = ["海淀区", "顺义区", "顺义区", "房山区", "房山区", "房山区"]
    cats = ["straw_burning_suspected", "straw_burning_suspected", "other_fire", "static_source",
            "straw_burning_suspected", "straw_burning_suspected"]
    fires = pd.DataFrame({"longitude": [pts[n].x for n in names], "latitude": [pts[n].y for n in names],
                          "acq_date": ["2023-10-05"] * 5 + ["2023-10-06"], "acq_time": "0530", "category": cats})
    fires.loc[len(fires)] = [120.0, 30.0, "2023-10-05", "0530", "other_fire"]  # outside Beijing
    area = pd.Series({"海淀区": 2000.0, "顺义区": 40000.0, "房山区": 0.0})
    c = counts_by_admin(fires, districts, level_name="name", cropland_area_ha=area)
    print("\n" + c.to_string(index=False))
    assert c.attrs["n_outside"] == 1
    row = c.set_index(["name", "date"])
    fs = row.loc[("房山区", pd.Timestamp("2023-10-05"))]
    assert (fs["static_source"], fs["straw_burning_suspected"], fs["n_fires"]) == (1, 1, 2)
    assert math.isnan(fs["straw_per_1000ha"])  # no cropland area -> undefined intensity
    sy = row.loc[("顺义区", pd.Timestamp("2023-10-05"))]
    assert sy["straw_per_1000ha"] == pytest.approx(1 / 40.0) and sy["fires_per_1000ha"] == pytest.approx(2 / 40.0)
    assert row.loc[("海淀区", pd.Timestamp("2023-10-05")), "straw_per_1000ha"] == pytest.approx(0.5)
    assert c["n_fires"].sum() == 6
    with pytest.raises(InputError, match="classify"):
        counts_by_admin(fires.drop(columns="category"), districts)
    with pytest.raises(InputError, match="no column"):
        counts_by_admin(fires, districts, level_name="NAME_3")


def test_counts_by_admin_provinces_and_repair():
    import geopandas as gpd
    from shapely.geometry import Polygon

    _need(PROVINCES)
    provinces = gpd.read_file(PROVINCES)
    assert (~provinces.is_valid).sum() > 0  # DataV outlines: self-intersections in many provinces
    fires = pd.DataFrame({"longitude": [113.65, 117.0, 126.6, 126.7, 123.0],
                          "latitude": [34.76, 36.65, 45.75, 45.8, 30.0],
                          "time": pd.to_datetime(["2023-06-10T05:30Z"] * 5), "category": "straw_burning_suspected"})
    c = counts_by_admin(fires, PROVINCES, level_name="name")  # a path works too
    assert dict(zip(c["name"], c["n_fires"])) == {"河南省": 1, "山东省": 1, "黑龙江省": 2}
    assert c.attrs["n_outside"] == 1  # the East China Sea

    # a self-intersecting "bow-tie" unit: make_valid splits it into two triangles, both counted
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    admin = gpd.GeoDataFrame({"unit": ["bowtie"]}, geometry=[bowtie], crs=4326)
    assert not admin.is_valid.iloc[0]
    pts = pd.DataFrame({"longitude": [1.8, 0.2, 1.0], "latitude": [1.0, 1.0, 1.8],
                        "time": pd.to_datetime(["2023-06-10T05:30Z"] * 3), "category": "other_fire"})
    c = counts_by_admin(pts, admin, level_name="unit")
    assert c["n_fires"].tolist() == [2] and c.attrs["n_outside"] == 1  # (1.0, 1.8) is outside both lobes


def test_cropland_area_synthetic(synthetic_cover):
    import geopandas as gpd
    from shapely.geometry import box

    admin = gpd.GeoDataFrame({"name": ["crop", "mixed", "forest"]},
                             geometry=[box(116.02, 40.02, 116.08, 40.08), box(116.05, 40.0, 116.15, 40.1),
                                       box(116.12, 40.0, 116.14, 40.02)], crs=4326)
    exact = cropland_area_by_admin(admin, synthetic_cover, (40,))
    masked = cropland_area_by_admin(admin, synthetic_cover, (40,), method="rasterio")

    def band_ha(w, s, e, n):
        return R * R * math.radians(e - w) * (math.sin(math.radians(n)) - math.sin(math.radians(s))) / 1e4

    assert exact["crop"] == pytest.approx(band_ha(116.02, 40.02, 116.08, 40.08), rel=1e-6)
    assert exact["mixed"] == pytest.approx(band_ha(116.05, 40.0, 116.10, 40.1), rel=1e-6)
    assert exact["forest"] == 0.0
    pd.testing.assert_series_equal(exact, masked, rtol=1e-6)
    # an equal-area (EPSG:6933) copy of the raster gives the same areas within 1 %
    # (planar pixel areas; nearest resampling moves the class edge by up to a pixel)
    # -- checked on the mixed and crop units only: both are well inside the raster
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(synthetic_cover) as src:
        data = src.read(1)
        tr, w, h = calculate_default_transform(src.crs, "EPSG:6933", src.width, src.height, *src.bounds,
                                               resolution=10.0)
        dst = np.zeros((h, w), np.uint8)
        reproject(data, dst, src_transform=src.transform, src_crs=src.crs, dst_transform=tr, dst_crs="EPSG:6933",
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    ea = _write_raster(synthetic_cover.parent / "cover_6933.tif", dst, tr, crs="EPSG:6933")
    ea_area = cropland_area_by_admin(admin.iloc[:2], ea, (40,))
    assert ea_area["crop"] == pytest.approx(exact["crop"], rel=0.01)
    assert ea_area["mixed"] == pytest.approx(exact["mixed"], rel=0.01)


def test_cropland_area_real_worldcover():
    import geopandas as gpd
    from shapely.geometry import Polygon

    _need(WORLDCOVER)
    # a hexagon around the densest cropland of the tile (Sao Tome, ~8 km across)
    cx, cy, r = 6.66, 0.38, 0.045
    hexagon = Polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 7)[:-1]])
    admin = gpd.GeoDataFrame({"name": ["hex"]}, geometry=[hexagon], crs=4326)
    exact = cropland_area_by_admin(admin, WORLDCOVER, (40,))["hex"]
    masked = cropland_area_by_admin(admin, WORLDCOVER, (40,), method="rasterio")["hex"]
    tree = cropland_area_by_admin(admin, WORLDCOVER, (10,))["hex"]
    hex_ha = admin.to_crs("EPSG:6933").area.iloc[0] / 1e4
    print(f"\nWorldCover hexagon ({hex_ha:.0f} ha): cropland {exact:.2f} ha (exactextract), {masked:.2f} ha "
          f"(rasterio centre-in-polygon), tree cover {tree:.0f} ha")
    assert 1.0 < exact < 100.0
    assert masked == pytest.approx(exact, rel=0.02)
    assert 0.5 * hex_ha < tree < hex_ha
