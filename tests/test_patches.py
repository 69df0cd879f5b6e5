"""Change patches: known-answer pixel counts and areas (UTM and EPSG:4326), zonal means, redline
clipping and repair, stable ids across reruns and months, empty results."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from rsmon.errors import InputError
from rsmon.products.patches import (
    INDEX_VARIABLES,
    PATCH_COLUMNS,
    ChangeClass,
    Confidence,
    RedlineColumns,
    patches_from_change,
)

UTM = "EPSG:32650"  # central meridian 117 E; the scene lies about 1 degree east of it, near 30 N
X0, Y0, RES = 596000.0, 3322000.0, 10.0
SHAPE = (200, 240)
# (row slice, col slice, class, confidence)
RECT_A = (slice(20, 60), slice(30, 80), ChangeClass.construction, Confidence.low)  # 40 x 50 = 2000 px
RECT_B = (slice(100, 160), slice(120, 170), ChangeClass.vegetation_clearing, Confidence.high)  # 60 x 50 = 3000 px


def index_field(name: str, shape) -> np.ndarray:
    """Values that encode their pixel position, different per variable."""
    rows, cols = np.indices(shape, dtype=np.float64)
    k = INDEX_VARIABLES.index(name) + 1
    return (0.001 * cols + 0.0001 * rows * k - 0.1 * k).astype(np.float32)


def make_scene(rects=(RECT_A, RECT_B), *, crs=UTM, transform=None, shape=SHAPE, change=None, classes=None,
               confidence=None, after="2024-06-01T03:10:00Z", before="2023-06-03T03:10:00Z") -> xr.Dataset:
    """A change dataset as the change-detection engineer delivers it (after grid, rioxarray CRS)."""
    transform = transform or Affine(RES, 0, X0, 0, -RES, Y0)
    if change is None:
        change = np.zeros(shape, np.uint8)
        classes = np.zeros(shape, np.uint8)
        confidence = np.zeros(shape, np.uint8)
        for rows, cols, cls, conf in rects:
            change[rows, cols] = 1
            classes[rows, cols] = cls
            confidence[rows, cols] = conf
        change[-5:, :] = 255  # a no-data strip (scene edge)
    data = {"change": change, "change_class": classes, "confidence": confidence}
    data.update({name: index_field(name, shape) for name in INDEX_VARIABLES})
    ys = transform.f + transform.e * (np.arange(shape[0]) + 0.5)
    xs = transform.c + transform.a * (np.arange(shape[1]) + 0.5)
    ds = xr.Dataset({k: (("y", "x"), v) for k, v in data.items()}, coords={"y": ys, "x": xs},
                    attrs={"before_datetime": before, "after_datetime": after, "before_source": "S2A_before",
                           "after_source": "S2B_after", "sensor": "Sentinel-2 MSI"})
    return ds.rio.write_crs(crs).rio.write_transform(transform)


def rect_box(rows: slice, cols: slice):
    return shapely.box(X0 + cols.start * RES, Y0 - rows.stop * RES, X0 + cols.stop * RES, Y0 - rows.start * RES)


@pytest.fixture(scope="module")
def scene() -> xr.Dataset:
    ds = make_scene()
    ds["confidence"][25, 40] = Confidence.highest  # one confirmed pixel makes the patch "highest"
    ds["ndvi_after"][30, 35] = np.nan  # skipped by the zonal mean
    return ds


@pytest.fixture(scope="module")
def patches(scene) -> gpd.GeoDataFrame:
    return patches_from_change(scene)


def by_class(gdf, cls: ChangeClass):
    rows = gdf[gdf["change_class"] == cls.name]
    assert len(rows) == 1
    return rows.iloc[0]


def test_schema_and_counts(patches):
    assert list(patches.columns) == [*PATCH_COLUMNS, "geometry"]
    assert patches.crs == UTM
    assert len(patches) == 2
    a, b = by_class(patches, ChangeClass.construction), by_class(patches, ChangeClass.vegetation_clearing)
    assert (a["n_pixels"], b["n_pixels"]) == (2000, 3000)
    assert (a["class_code"], b["class_code"]) == (1, 4)
    assert (a["confidence"], a["confidence_code"], b["confidence"]) == ("highest", 3, "high")
    assert a["geometry"].equals(rect_box(*RECT_A[:2]))
    assert (a["before_date"], a["after_date"], a["first_detected"], a["last_detected"]) == (
        "2023-06-03", "2024-06-01", "2024-06-01", "2024-06-01")
    assert a["sensor"] == "Sentinel-2 MSI" and a["after_source"] == "S2B_after"
    assert a["redline_id"] is None
    assert patches["patch_id"].is_unique and patches["patch_id"].str.startswith("chg-").all()


def test_area_is_equal_area_metres(patches):
    for cls, n in ((ChangeClass.construction, 2000), (ChangeClass.vegetation_clearing, 3000)):
        row = by_class(patches, cls)
        # ground area = grid area / k^2, k (UTM scale) about 0.9997 here: within 0.1 %
        assert row["area_m2"] == pytest.approx(n * RES * RES, rel=1e-3)
        assert row["area_m2"] > n * RES * RES
    a = by_class(patches, ChangeClass.construction)
    lon, lat = Transformer.from_crs(UTM, 4326, always_xy=True).transform(X0 + 550.0, Y0 - 400.0)
    assert (a["centroid_lon"], a["centroid_lat"]) == pytest.approx((lon, lat), abs=1e-6)


def test_zonal_means_by_hand(scene, patches):
    a = by_class(patches, ChangeClass.construction)
    rows, cols = RECT_A[:2]
    for name in INDEX_VARIABLES:
        values = scene[name].values[rows, cols].astype(np.float64)
        assert a[name] == pytest.approx(np.nanmean(values), rel=1e-9), name
    assert np.isnan(scene["ndvi_after"].values[rows, cols]).sum() == 1


def test_dask_backed_input_gives_the_same_table(scene, patches):
    lazy = patches_from_change(scene.chunk({"y": 64, "x": 64}))
    assert lazy.drop(columns="geometry").equals(patches.drop(columns="geometry"))
    assert lazy.geometry.geom_equals(patches.geometry).all()


def test_same_scene_in_lonlat_gives_the_same_area(patches):
    """The UTM rectangles rasterised on a ~1.1 m EPSG:4326 grid: area within 0.5 % of the UTM truth."""
    boxes = gpd.GeoSeries([shapely.segmentize(rect_box(*r[:2]), 10.0) for r in (RECT_A, RECT_B)], crs=UTM)
    lonlat = boxes.to_crs(4326)
    west, south, east, north = lonlat.total_bounds
    res = 1e-5
    transform = Affine(res, 0, west - 20 * res, 0, -res, north + 20 * res)
    shape = (int((north - south) / res) + 40, int((east - west) / res) + 40)
    codes = rasterio.features.rasterize(zip(lonlat, (1, 2)), out_shape=shape, transform=transform, dtype="uint8")
    classes = np.choose(codes, [0, RECT_A[2], RECT_B[2]]).astype(np.uint8)
    ds = make_scene(crs="EPSG:4326", transform=transform, shape=shape, change=(codes > 0).astype(np.uint8),
                    classes=classes, confidence=(codes > 0).astype(np.uint8))
    got = patches_from_change(ds)
    assert len(got) == 2
    for cls in (ChangeClass.construction, ChangeClass.vegetation_clearing):
        assert by_class(got, cls)["area_m2"] == pytest.approx(by_class(patches, cls)["area_m2"], rel=5e-3)


def test_classless_change_pixels_are_other_and_classes_split_touching_regions():
    ds = make_scene([(slice(10, 20), slice(10, 20), ChangeClass.construction, Confidence.low),
                     (slice(10, 20), slice(20, 30), ChangeClass.none, Confidence.low),
                     (slice(10, 20), slice(30, 35), 255, Confidence.low)])
    got = patches_from_change(ds)
    assert sorted(got["change_class"]) == ["construction", "other"]
    assert list(got["n_pixels"]) == [150, 100]


def test_connectivity_diagonal_pixels():
    ds = make_scene([(slice(10, 11), slice(10, 11), ChangeClass.other, Confidence.low),
                     (slice(11, 12), slice(11, 12), ChangeClass.other, Confidence.low)])
    eight = patches_from_change(ds)
    assert len(eight) == 1 and eight["n_pixels"].iat[0] == 2 and eight.geometry.is_valid.all()
    assert len(patches_from_change(ds, connectivity=4)) == 2
    with pytest.raises(InputError, match="connectivity"):
        patches_from_change(ds, connectivity=6)


def test_no_change_gives_an_empty_table_with_the_full_schema():
    got = patches_from_change(make_scene(rects=()))
    assert len(got) == 0
    assert list(got.columns) == [*PATCH_COLUMNS, "geometry"]
    assert got.crs == UTM
    assert {c: str(got[c].dtype) for c in PATCH_COLUMNS} == PATCH_COLUMNS


def test_missing_inputs_are_named():
    ds = make_scene()
    with pytest.raises(InputError, match="'confidence'"):
        patches_from_change(ds.drop_vars("confidence"))
    with pytest.raises(InputError, match="after_datetime"):
        patches_from_change(ds.assign_attrs(after_datetime=None))
    with pytest.raises(InputError, match="after_datetime"):
        patches_from_change(ds.assign_attrs(after_datetime="June 2024"))


# --------------------------------------------------------------------------------------------
# redlines
# --------------------------------------------------------------------------------------------
def split_redlines(crs="EPSG:4326") -> gpd.GeoDataFrame:
    """Two adjacent redline polygons whose common edge cuts patch A inside pixel column 55."""
    cut = X0 + 553.0
    west = shapely.box(X0, Y0 - 900.0, cut, Y0)
    east = shapely.box(cut, Y0 - 900.0, X0 + 1000.0, Y0)
    gdf = gpd.GeoDataFrame({"ID": ["R1", "R2"], "NAME": ["West hills", "East valley"], "zone": ["core", "general"]},
                           geometry=[shapely.segmentize(g, 50.0) for g in (west, east)], crs=UTM)
    return gdf.to_crs(crs)


def test_patch_crossing_two_redlines_becomes_two_rows(scene, patches):
    got = patches_from_change(scene, redlines=split_redlines())
    assert sorted(got["redline_id"]) == ["R1", "R2"]  # patch B lies outside both: dropped
    assert set(got["change_class"]) == {"construction"}
    whole = by_class(patches, ChangeClass.construction)
    assert got["area_m2"].sum() == pytest.approx(whole["area_m2"], rel=1e-9)
    r1 = got[got["redline_id"] == "R1"].iloc[0]
    assert (r1["redline_name"], r1["redline_zone"]) == ("West hills", "core")
    assert got.set_index("redline_id")["n_pixels"].to_dict() == {"R1": 1000, "R2": 1000}
    # index means of a piece are over its own pixels (centres west of the cut: columns 30-54)
    values = scene["ndbi_before"].values[20:60, 30:55].astype(np.float64)
    assert r1["ndbi_before"] == pytest.approx(values.mean(), rel=1e-9)
    assert r1["confidence"] == "highest" and got.set_index("redline_id").at["R2", "confidence"] == "low"
    assert got["patch_id"].is_unique
    assert shapely.union_all(got.geometry.to_numpy()).equals_exact(whole.geometry, tolerance=1e-6) or \
        shapely.union_all(got.geometry.to_numpy()).symmetric_difference(whole.geometry).area < 1e-3


def test_redlines_in_another_crs_and_explicit_columns(scene):
    red = split_redlines("EPSG:3857").rename(columns={"ID": "hx_code", "NAME": "hx_title"})
    got = patches_from_change(scene, redlines=red, redline_columns=RedlineColumns(id="hx_code", name="hx_title"))
    assert sorted(got["redline_name"]) == ["East valley", "West hills"]
    with pytest.raises(InputError, match="'nope'"):
        patches_from_change(scene, redlines=red, redline_columns=RedlineColumns(id="nope"))


def test_invalid_bowtie_redline_is_repaired_with_a_warning(scene):
    x0, x1, y0, y1 = X0 + 200.0, X0 + 900.0, Y0 - 700.0, Y0
    bowtie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    assert not bowtie.is_valid
    red = gpd.GeoDataFrame({"redline_id": ["BT-7"]}, geometry=[bowtie], crs=UTM)
    with pytest.warns(UserWarning, match="BT-7"):
        got = patches_from_change(scene, redlines=red)
    assert len(got) >= 1 and set(got["redline_id"]) == {"BT-7"}
    assert got.geometry.is_valid.all()
    assert got["area_m2"].sum() < by_class(patches_from_change(scene), ChangeClass.construction)["area_m2"]


def test_unrepairable_or_non_polygon_redlines_are_named(scene):
    flat = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 - 100), (X0 + 200, Y0 - 200), (X0, Y0)])
    red = gpd.GeoDataFrame({"id": ["ok", "FLAT-3"]}, geometry=[rect_box(*RECT_A[:2]), flat], crs=UTM)
    with pytest.raises(InputError, match="FLAT-3"):
        patches_from_change(scene, redlines=red)
    line = gpd.GeoDataFrame({"id": ["L1"]}, geometry=[shapely.LineString([(X0, Y0), (X0 + 1, Y0)])], crs=UTM)
    with pytest.raises(InputError, match="L1.*polygon"):
        patches_from_change(scene, redlines=line)
    with pytest.raises(InputError, match="no CRS"):
        patches_from_change(scene, redlines=gpd.GeoDataFrame({"id": ["x"]}, geometry=[rect_box(*RECT_A[:2])]))


# --------------------------------------------------------------------------------------------
# stable ids
# --------------------------------------------------------------------------------------------
def test_rerun_gives_identical_ids(scene, patches):
    again = patches_from_change(scene)
    assert list(again["patch_id"]) == list(patches["patch_id"])
    with_previous = patches_from_change(scene, previous=patches)
    assert list(with_previous["patch_id"]) == list(patches["patch_id"])
    assert list(with_previous["first_detected"]) == list(patches["first_detected"])


def test_next_month_grown_patch_keeps_its_id_new_patch_gets_a_new_one(patches):
    grown_a = (slice(17, 63), slice(27, 86), ChangeClass.construction, Confidence.high)
    new_c = (slice(20, 30), slice(180, 195), ChangeClass.mining_quarrying, Confidence.low)
    month2 = make_scene([grown_a, RECT_B, new_c], before="2023-07-01T03:10:00Z", after="2024-07-06T03:10:00Z")
    previous = patches.to_crs(4326)  # e.g. read back from the GeoJSON / alert store
    got = patches_from_change(month2, previous=previous)
    old = patches.set_index("change_class")["patch_id"]
    a = by_class(got, ChangeClass.construction)
    assert a["patch_id"] == old["construction"]
    assert (a["first_detected"], a["last_detected"]) == ("2024-06-01", "2024-07-06")
    assert by_class(got, ChangeClass.vegetation_clearing)["patch_id"] == old["vegetation_clearing"]
    c = by_class(got, ChangeClass.mining_quarrying)
    assert c["patch_id"] not in set(old) and c["first_detected"] == "2024-07-06"
    assert got["patch_id"].is_unique


def test_split_patch_keeps_the_id_on_its_best_overlapping_part(patches):
    left = (slice(20, 60), slice(30, 62), ChangeClass.construction, Confidence.low)
    right = (slice(20, 60), slice(64, 80), ChangeClass.construction, Confidence.low)
    got = patches_from_change(make_scene([left, right, RECT_B]), previous=patches)
    old_a = by_class(patches, ChangeClass.construction)["patch_id"]
    parts = got[got["change_class"] == "construction"].sort_values("n_pixels")
    assert list(parts["patch_id"] == old_a) == [False, True]
    assert got["patch_id"].is_unique


def test_ids_are_unique_when_patches_share_an_id_cell():
    rects = [(slice(r, r + 2), slice(c, c + 2), ChangeClass.construction, Confidence.low)
             for r in (0, 3, 6) for c in (0, 3, 6)]  # nine 2x2 patches inside one 100 m cell
    got = patches_from_change(make_scene(rects))
    assert len(got) == 9 and got["patch_id"].is_unique
    assert list(patches_from_change(make_scene(rects))["patch_id"]) == list(got["patch_id"])
