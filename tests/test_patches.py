"""Change patches: known-answer pixel counts and areas (UTM and EPSG:4326), zonal means, redline
clipping and repair, stable ids across reruns and months, empty results."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio.features
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from rsmon.errors import InputError
from rsmon.products.patch_regions import label_regions
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


def test_touching_classes_form_one_patch_of_the_majority_class():
    """A connected change area is one patch (the MMU applies to it); classless pixels count as other."""
    ds = make_scene([(slice(10, 20), slice(10, 20), ChangeClass.construction, Confidence.low),
                     (slice(10, 20), slice(20, 30), ChangeClass.none, Confidence.low),
                     (slice(10, 20), slice(30, 35), 255, Confidence.low)])
    got = patches_from_change(ds)
    assert list(got["change_class"]) == ["other"] and list(got["n_pixels"]) == [250]  # 100 vs 150 other
    ds2 = make_scene([(slice(10, 20), slice(10, 22), ChangeClass.construction, Confidence.low),
                      (slice(10, 20), slice(22, 30), ChangeClass.mining_quarrying, Confidence.low)])
    got2 = patches_from_change(ds2)
    assert list(got2["change_class"]) == ["construction"] and list(got2["n_pixels"]) == [200]
    regions = label_regions(np.asarray(ds2["change"].values), np.asarray(ds2["change_class"].values), 8)
    assert regions.n == 1 and list(regions.label_class) == [0, ChangeClass.construction]


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


def test_chinese_field_names_cgcs2000_and_3d_redlines(scene):
    """A redline layer as Chinese GIS delivers it: fields 红线编号 / 红线名称 / 管控分区, CGCS2000
    (EPSG:4490) and 3-D polygons. The attributes are found without being named, and the patches
    are 2-D pieces identical to those of the 2-D layer."""
    from shapely.ops import transform

    red = split_redlines("EPSG:4490").rename(columns={"ID": "红线编号", "NAME": "红线名称", "zone": "管控分区"})
    red3d = red.set_geometry([transform(lambda x, y, z=None: (x, y, np.full(len(x), 35.0)), g) for g in red.geometry])
    assert red3d.geometry.has_z.all()
    got = patches_from_change(scene, redlines=red3d)
    assert not got.geometry.has_z.any()
    assert sorted(got["redline_id"]) == ["R1", "R2"]
    assert set(zip(got["redline_name"], got["redline_zone"])) == {("West hills", "core"), ("East valley", "general")}
    flat = patches_from_change(scene, redlines=red)
    assert got.geometry.geom_equals_exact(flat.geometry, tolerance=1e-9).all()


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


# --------------------------------------------------------------------------------------------
# the fast path against the plain whole-raster algorithm, and the fused pass's samples
# --------------------------------------------------------------------------------------------
def random_scene(shape=(240, 320), seed=3) -> xr.Dataset:
    """Irregular blobs with holes, islands and diagonal joins; classes that touch inside a blob,
    unknown class codes, mixed confidence, NaN index values; a no-data strip."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 2.5)
    blobs = field > np.quantile(field, 0.72)
    blobs ^= rng.random(shape) < 0.004  # stray pixels and pin holes
    field = ndimage.gaussian_filter(rng.random(shape), 10)  # classes in broad zones crossing blobs
    classes = np.floor((field - field.min()) / np.ptp(field) * 6).clip(0, 5).astype(np.uint8) + 1
    classes[rng.random(shape) < 0.003] = 0
    classes[rng.random(shape) < 0.003] = 255
    change = blobs.astype(np.uint8)
    change[:, -4:] = 255
    confidence = rng.integers(1, 4, shape).astype(np.uint8) * blobs
    ds = make_scene(shape=shape, change=change, classes=classes, confidence=confidence)
    ds["ndbi_after"].values[rng.random(shape) < 0.05] = np.nan
    return ds


def random_redlines() -> gpd.GeoDataFrame:
    """Wiggly, partly overlapping features (edges never through pixel centres by design)."""
    rng = np.random.default_rng(8)
    geoms = []
    for cx, cy, r in ((900.0, -800.0, 700.0), (2200.0, -1500.0, 900.0), (1500.0, -1000.0, 350.0)):
        theta = np.linspace(0, 2 * np.pi, 90, endpoint=False)
        radius = r * (1 + 0.2 * np.sin(5 * theta) + 0.03 * rng.standard_normal(theta.size))
        geoms.append(shapely.Polygon(np.c_[X0 + cx + radius * np.cos(theta) + 0.123,
                                           Y0 + cy + radius * np.sin(theta) + 0.321]))
    return gpd.GeoDataFrame({"id": ["A", "B", "C"]}, geometry=geoms, crs=UTM)


def reference_patches(ds: xr.Dataset, redlines=None) -> pd.DataFrame:
    """The plain algorithm (one ndimage.label, majority class per region, GDALPolygonize of the whole raster,
    make_valid, each piece rasterised on the whole grid, means by hand) for the same columns."""
    from scipy import ndimage

    transform = ds.rio.transform()
    change, classes, conf = (ds[v].values for v in ("change", "change_class", "confidence"))
    codes = np.where(change == 1, np.where((classes >= 1) & (classes <= 6), classes, 6), 0)
    labels, count = ndimage.label(codes > 0, structure=np.ones((3, 3), bool))
    label_class = [0] + [int(np.bincount(codes[labels == k], minlength=7).argmax()) for k in range(1, count + 1)]
    geoms = {}
    for geojson, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=8, transform=transform):
        geoms[int(value)] = shapely.make_valid(shapely.geometry.shape(geojson))
    pieces = [(k, geoms[k], None) for k in sorted(geoms)]
    if redlines is not None:
        zones = redlines.to_crs(UTM)
        pieces = [(k, piece, rid) for k, g, _ in pieces for rid, z in zip(zones["id"], zones.geometry)
                  for piece in [shapely.intersection(g, z)] if piece.area > 0]
    pixels = ndimage.value_indices(labels, ignore_value=0)
    index = {v: ds[v].values.astype(np.float64) for v in INDEX_VARIABLES}
    rows = []
    for k, geom, rid in pieces:
        at = pixels[k]
        if redlines is not None:  # the pixels whose centre the piece holds (each piece on its own)
            mine = rasterio.features.rasterize([(geom, 1)], out_shape=labels.shape, transform=transform,
                                               dtype="uint8")[at] == 1
            at = tuple(a[mine] for a in at) if mine.any() else at  # a sliver: its patch's values
            n_pixels = int(mine.sum())
        else:
            n_pixels = len(at[0])
        rows.append({"redline_id": rid, "class_code": label_class[k], "geometry": geom, "n_pixels": n_pixels,
                     "confidence_code": int(conf[at].max()),
                     **{v: np.nanmean(values[at]) if np.isfinite(values[at]).any() else np.nan
                        for v, values in index.items()}})
    return pd.DataFrame(rows)


def sort_key(table) -> pd.DataFrame:
    bounds = shapely.bounds(np.asarray(table["geometry"]))
    return table.assign(minx=bounds[:, 0], miny=bounds[:, 1]).sort_values(
        ["redline_id", "class_code", "n_pixels", "minx", "miny"], na_position="first").reset_index(drop=True)


@pytest.mark.parametrize("with_redlines", [False, True])
def test_fast_path_equals_the_plain_algorithm(with_redlines):
    ds = random_scene()
    redlines = random_redlines() if with_redlines else None
    got = sort_key(patches_from_change(ds, redlines=redlines))
    want = sort_key(reference_patches(ds, redlines))
    assert len(got) == len(want) > 100
    assert got.geometry.is_valid.all()
    assert shapely.equals(got.geometry.to_numpy(), np.asarray(want["geometry"])).all()
    for col in ("class_code", "n_pixels", "confidence_code"):
        assert list(got[col]) == list(want[col]), col
    assert [r or None for r in got["redline_id"]] == [r or None for r in want["redline_id"]]
    for col in INDEX_VARIABLES:
        np.testing.assert_allclose(got[col], want[col], rtol=1e-9, equal_nan=True, err_msg=col)
    assert (got["n_pixels"] == 0).any() == with_redlines  # slivers get their patch's values
    assert got["patch_id"].is_unique


def pixel_samples(ds: xr.Dataset, seed: int = 0):
    """What the fused change pass hands over: change pixels (shuffled, as blocks arrive) and values."""
    flat = np.flatnonzero(ds["change"].values.ravel() == 1)
    flat = np.random.default_rng(seed).permutation(flat)
    return flat, {v: ds[v].values.ravel()[flat].astype(np.float32) for v in INDEX_VARIABLES}


@pytest.mark.parametrize("with_redlines", [False, True])
def test_index_samples_give_the_dense_means_without_reading_the_dataset(with_redlines):
    ds = random_scene()
    redlines = random_redlines() if with_redlines else None
    dense = patches_from_change(ds, redlines=redlines)
    flat, values = pixel_samples(ds)
    no_index = ds.drop_vars(list(INDEX_VARIABLES))  # the fused pass never builds these rasters
    fused = patches_from_change(no_index, redlines=redlines, index_samples=(flat, values))
    assert fused.drop(columns=list(INDEX_VARIABLES)).equals(dense.drop(columns=list(INDEX_VARIABLES)))
    for col in INDEX_VARIABLES:
        np.testing.assert_allclose(fused[col], dense[col], rtol=1e-12, equal_nan=True, err_msg=col)
    # samples off the change pixels are ignored; raster order and int32 indices are fine too
    off = np.flatnonzero(ds["change"].values.ravel() != 1)[:50]
    order = np.argsort(np.r_[flat, off])
    more = (np.r_[flat, off][order].astype(np.int32), {v: np.r_[a, np.full(50, 99.0, np.float32)][order]
                                                         for v, a in values.items()})
    again = patches_from_change(no_index, redlines=redlines, index_samples=more)
    np.testing.assert_allclose(again[list(INDEX_VARIABLES)], fused[list(INDEX_VARIABLES)], rtol=1e-12)


@pytest.mark.parametrize("with_redlines", [False, True])
def test_sample_pieces_give_the_joined_samples_table(with_redlines):
    """Samples handed over in pieces (a callable returning a list, as the redline job passes the
    blocks' samples) give the table of the joined samples; an empty piece is fine, a bad one is
    named."""
    ds = random_scene()
    redlines = random_redlines() if with_redlines else None
    flat, values = pixel_samples(ds, seed=3)
    no_index = ds.drop_vars(list(INDEX_VARIABLES))
    joined = patches_from_change(no_index, redlines=redlines, index_samples=(flat, values))
    cuts = [0, 7, len(flat) // 3, len(flat) // 3, len(flat)]  # one empty piece
    pieces = [(flat[a:b], {v: x[a:b] for v, x in values.items()}) for a, b in zip(cuts[:-1], cuts[1:])]
    got = patches_from_change(no_index, redlines=redlines, index_samples=lambda: pieces)
    assert got.drop(columns=list(INDEX_VARIABLES)).equals(joined.drop(columns=list(INDEX_VARIABLES)))
    for col in INDEX_VARIABLES:  # sums in another order: equal to rounding
        np.testing.assert_allclose(got[col], joined[col], rtol=1e-12, equal_nan=True, err_msg=col)
    bad = pieces[:1] + [(flat[:5], {"ndvi_before": values["ndvi_before"][:5]})]
    with pytest.raises(InputError, match="lack"):
        patches_from_change(no_index, index_samples=lambda: bad)


def windows_scene() -> xr.Dataset:
    """:func:`random_scene` plus shapes that test the windows: a column of change from the top row
    to the bottom row (open in every window), a U opening downwards and one opening upwards (two
    legs joined below a window's end), a staircase of diagonal joins across rows."""
    ds = random_scene(shape=(240, 320), seed=5)
    change = ds["change"].values
    change[:, 300:302] = 1                         # whole height
    change[30:120, 250:253] = change[30:33, 250:262] = change[30:120, 259:262] = 1   # U opening downwards
    change[130:220, 250:253] = change[217:220, 250:262] = change[130:220, 259:262] = 1  # U opening upwards
    for k in range(60):                           # a staircase of 8-connected single pixels
        change[150 + k, 10 + k] = 1
    ds["confidence"].values[change == 1] = np.maximum(ds["confidence"].values[change == 1], 1)
    return ds


def assert_same_table(got, want):
    assert list(got["patch_id"]) == list(want["patch_id"])
    assert got.drop(columns=list(INDEX_VARIABLES) + ["geometry"]).equals(
        want.drop(columns=list(INDEX_VARIABLES) + ["geometry"]))
    assert shapely.equals_exact(got.geometry.to_numpy(), want.geometry.to_numpy(), tolerance=0).all()
    for col in INDEX_VARIABLES:  # sums in another order: equal to rounding
        np.testing.assert_allclose(got[col], want[col], rtol=1e-12, equal_nan=True, err_msg=col)


@pytest.mark.parametrize("with_redlines", [False, True])
def test_windows_give_the_whole_raster_table(with_redlines):
    """Labelled window of rows by window (bounded memory), the table is the whole raster's: the
    same rows in the same order, ids, geometries vertex for vertex, statistics; with the index
    read from the dataset, or from samples handed over by rows; with previous patches too."""
    ds = windows_scene()
    redlines = random_redlines() if with_redlines else None
    whole = patches_from_change(ds, redlines=redlines)
    assert len(whole) > 100
    bounds = shapely.bounds(whole.geometry.to_numpy())
    spans = np.isclose(bounds[:, 3] - bounds[:, 1], 240 * abs(ds.rio.resolution()[1]))
    assert with_redlines or spans.sum() == 1  # the column spanning the raster is one patch
    flat, values = pixel_samples(ds, seed=1)
    no_index = ds.drop_vars(list(INDEX_VARIABLES))
    asked = []

    def by_rows(row0, row1):
        asked.append((row0, row1))
        keep = (flat >= row0 * 320) & (flat < row1 * 320)
        return [(flat[keep], {v: x[keep] for v, x in values.items()})]

    for window_rows in (1, 7, 64, 239, 240, 1000):
        assert_same_table(patches_from_change(ds, redlines=redlines, window_rows=window_rows), whole)
    asked.clear()
    assert_same_table(patches_from_change(no_index, redlines=redlines, window_rows=50, index_samples=by_rows), whole)
    assert len(asked) >= 5 and all(b > a for a, b in asked)
    # ids reconciled against an earlier run's patches: as for the whole raster
    previous = whole.iloc[::3].assign(patch_id=[f"old-{i}" for i in range(len(whole.iloc[::3]))])
    assert_same_table(patches_from_change(ds, redlines=redlines, previous=previous, window_rows=33),
                      patches_from_change(ds, redlines=redlines, previous=previous))
    with pytest.raises(InputError, match="window_rows"):
        patches_from_change(ds, window_rows=0)


def test_region_windows_read_each_row_once_and_carry_open_regions():
    from rsmon.products.patch_regions import region_windows

    change = np.zeros((100, 20), np.uint8)
    change[10:12, 2:4] = 1      # ends in the first window
    change[50:70, 5] = 1        # crosses the third window's end (rows 40-59): carried into the fourth
    change[:, 15] = 1           # spans every window: carried to the end
    classes = np.full_like(change, 3)
    classes[:30, 15] = 1        # its majority class over all its pixels (70 of 100 pixels are 3)
    reads = []

    def read(row0, row1):
        reads.append((row0, row1))
        return change[row0:row1], classes[row0:row1], change[row0:row1] * 2

    got = [(w.n, int(w.rows.min()) if w.n else None, w.label_class[1:].tolist(), len(conf))
           for w, conf in region_windows(read, change.shape, 20, 8)]
    assert reads == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]
    assert got == [(1, 10, [3], 4), (0, None, [], 0), (0, None, [], 0), (1, 50, [3], 20), (1, 0, [3], 100)]


def test_index_samples_partial_and_bad_input(caplog):
    ds = random_scene(shape=(60, 80))
    flat, values = pixel_samples(ds)
    partial = {k: v for k, v in values.items() if k != "bsi_after"}
    got = patches_from_change(ds, index_samples=(flat, partial))
    assert got["bsi_after"].isna().all() and got["ndvi_before"].notna().all()
    assert "bsi_after" in caplog.text
    bad = [
        ("not a pair", "expected a pair"),
        ((flat.astype(float), values), "integer"),
        ((np.r_[flat, ds["change"].size], {k: np.r_[v, 0] for k, v in values.items()}), "must lie in"),
        ((flat, {"ndvi": values["ndvi_before"]}), "unknown variable"),
        ((flat, {**values, "ndvi_after": values["ndvi_after"][:-1]}), "'ndvi_after' has shape"),
        ((flat, list(values.values())), "mapping"),
    ]
    for samples, message in bad:
        with pytest.raises(InputError, match=message):
            patches_from_change(ds, index_samples=samples)


def test_geometries_of_diagonal_joins_holes_and_islands_are_valid_pixel_edges():
    from scipy import ndimage

    pattern = np.array([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 0, 0, 0, 1, 0, 0],  # ring with a hole ...
        [0, 1, 0, 1, 0, 1, 0, 1],  # ... holding an island (own patch) ...
        [0, 1, 0, 0, 1, 1, 0, 1],  # ... whose hole meets the ring at a corner
        [0, 1, 1, 1, 1, 0, 1, 0],  # diagonal joins
        [0, 0, 0, 0, 0, 1, 0, 0],
    ], np.uint8)
    change = np.zeros((20, 20), np.uint8)
    change[5:12, 5:13] = pattern
    ds = make_scene(change=change, classes=change * 4, confidence=change, shape=change.shape)
    for connectivity in (8, 4):
        got = patches_from_change(ds, connectivity=connectivity)
        assert got.geometry.is_valid.all()
        assert got["n_pixels"].sum() == pattern.sum()
        np.testing.assert_allclose(got.geometry.area, got["n_pixels"] * RES * RES)
        structure = np.ones((3, 3), bool) if connectivity == 8 else None
        assert len(got) == ndimage.label(pattern, structure=structure)[1]
    assert (got.geom_type == "Polygon").all()  # 4-connected regions: one polygon each
    assert list(patches_from_change(ds).geom_type) == ["MultiPolygon"]  # parts meeting at corners


def test_more_regions_than_uint16_labels():
    from affine import Affine

    from rsmon.products.patch_regions import label_regions, region_polygons

    change = np.zeros((514, 512), np.uint8)
    change[::2, ::2] = 1  # 257 x 256 = 65792 one-pixel regions
    regions = label_regions(change, change, 8)
    assert regions.n == 65792
    geoms = region_polygons(regions, Affine(RES, 0, X0, 0, -RES, Y0))
    assert shapely.area(geoms[1:]).sum() == pytest.approx(65792 * RES * RES)


# --------------------------------------------------------------------------------------------
# kernels (rsmon.kernels.patches): known answers, and GDAL's polygons vertex for vertex
# --------------------------------------------------------------------------------------------
def runs_and_labels(change, eight=True):
    from rsmon.kernels.patches import find_runs, label_runs

    rows, starts, ends = find_runs(change, 0, change.shape[0])
    labels, n = label_runs(rows, starts, ends, eight)
    return rows, starts, ends, labels, n


def test_runs_are_labelled_as_ndimage_labels():
    change = np.array([[0, 1, 1, 0, 1],
                       [1, 0, 0, 0, 1],
                       [0, 0, 1, 1, 0],
                       [255, 0, 1, 0, 0]], np.uint8)
    rows, starts, ends, labels, n = runs_and_labels(change)
    assert rows.tolist() == [0, 0, 1, 1, 2, 3]
    assert starts.tolist() == [1, 4, 0, 4, 2, 2]
    assert ends.tolist() == [3, 5, 1, 5, 4, 3]
    # 8-connected: (1, 0) touches (0, 1) at a corner, (2, 3) touches (1, 4)
    assert (labels.tolist(), n) == ([1, 2, 1, 2, 2, 2], 2)
    *_, labels4, n4 = runs_and_labels(change, eight=False)
    assert (labels4.tolist(), n4) == ([1, 2, 3, 2, 4, 4], 4)  # numbered by first pixel, as ndimage.label


def trace(change):
    from rsmon.kernels.patches import trace_polygons

    rows, starts, ends, labels, n = runs_and_labels(change)
    order = np.argsort(labels, kind="stable")
    first = np.searchsorted(labels[order], np.arange(n + 2))
    return trace_polygons(rows, starts, ends, order, first, 1, n + 1)


def test_trace_polygons_known_rings():
    ring = np.zeros((5, 5), np.uint8)
    ring[1:4, 1:4] = 1
    ring[2, 2] = 0
    part_label, ring_part, ring_size, xs, ys = trace(ring)
    assert part_label.tolist() == [1] and ring_part.tolist() == [0, 0] and ring_size.tolist() == [5, 5]
    # shell from the top left corner down the left edge (GDAL's order), then the hole
    assert list(zip(xs, ys)) == [(1, 1), (1, 4), (4, 4), (4, 1), (1, 1), (2, 2), (3, 2), (3, 3), (2, 3), (2, 2)]
    diagonal = np.zeros((3, 4), np.uint8)
    diagonal[0, 0] = diagonal[1, 1] = diagonal[1, 2] = 1
    part_label, ring_part, ring_size, xs, ys = trace(diagonal)
    assert part_label.tolist() == [1, 1] and ring_part.tolist() == [0, 1]  # one region, two 4-connected parts
    assert list(zip(xs, ys)) == [(0, 0), (0, 1), (1, 1), (1, 0), (0, 0), (1, 1), (1, 2), (3, 2), (3, 1), (1, 1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_region_polygons_are_gdal_polygonize_vertex_for_vertex(seed):
    """Each region's (Multi)Polygon is what rasterio.features.shapes (GDALPolygonize, 4-connected)
    gives for the region alone: same rings, ring order, start vertices and part order."""
    from scipy import ndimage

    from rsmon.products.patch_regions import region_polygons

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((60, 80)), 1.5)
    change = (field > np.quantile(field, 0.6)).astype(np.uint8) ^ (rng.random((60, 80)) < 0.05)
    transform = Affine(RES, 0.5, X0, 0.25, -RES, Y0)  # sheared: both terms of the geotransform count
    regions = label_regions(change, change, 8)
    labels = ndimage.label(change == 1, structure=np.ones((3, 3), bool))[0]
    got = region_polygons(regions, transform)
    assert regions.n > 50
    for k in range(1, regions.n + 1):
        mask = (labels == k).astype(np.uint8)
        parts = [shapely.geometry.shape(g) for g, _ in
                 rasterio.features.shapes(mask, mask=mask > 0, connectivity=4, transform=transform)]
        want = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        assert shapely.to_wkb(got[k]) == shapely.to_wkb(want), k


def test_pixel_kernels_known_answers():
    from rsmon.kernels.patches import bin_max, bin_sums, class_votes, gather_runs, pixel_positions

    change = np.array([[1, 1, 0, 0],
                       [0, 1, 1, 1]], np.uint8)
    classes = np.array([[2, 0, 5, 5],
                        [9, 2, 3, 2]], np.uint8)
    rows, starts, ends, labels, n = runs_and_labels(change)
    votes = class_votes(classes, rows, starts, ends, labels, n)
    assert votes.tolist() == [[0] * 7, [0, 0, 3, 1, 0, 0, 1]]  # 0 counts as other (6)
    out = np.zeros(5, np.uint8)
    gather_runs(classes, 0, 0, rows, starts, ends, out)
    assert out.tolist() == [2, 0, 2, 3, 2]
    gather_runs(classes[1:, 1:], 1, 1, rows[1:], starts[1:], ends[1:], out[:3])  # a window of the raster
    assert out[:3].tolist() == [2, 3, 2]
    offsets = np.r_[0, np.cumsum(ends - starts)]
    row_first = np.searchsorted(rows, np.arange(3))
    at, label = pixel_positions(np.array([6, 0, 2, 7, 5, 1]), 4, row_first, starts, ends, offsets, labels)
    assert at.tolist() == [3, 0, -1, 4, 2, 1] and label.tolist() == [1, 1, 0, 1, 1, 1]
    assert bin_max(np.array([1, 2, 1, 0]), np.array([3, 1, 2, 9], np.uint8), 4).tolist() == [9, 3, 1, 0]
    sums, counts = bin_sums(np.array([1, 1, 2, 1]), (np.array([1.0, np.nan, 2.0, 4.0]), np.array([1.0, 1, 1, 1])), 3)
    assert sums.tolist() == [[0, 5, 2], [0, 3, 1]] and counts.tolist() == [[0, 2, 1], [0, 3, 1]]


def test_lazy_index_samples_equal_the_joined_ones():
    """A callable ``index_samples`` (joined in the background) gives the same table as the pair."""
    ds = make_scene()
    flat = np.flatnonzero(ds["change"].values.ravel() == 1)
    values = {name: index_field(name, SHAPE).ravel()[flat] for name in INDEX_VARIABLES}
    no_index = ds.drop_vars(list(INDEX_VARIABLES))
    eager = patches_from_change(no_index, index_samples=(flat, values))
    lazy = patches_from_change(no_index, index_samples=lambda: (flat, values))
    assert len(eager) == 2
    pd.testing.assert_frame_equal(pd.DataFrame(eager.drop(columns="geometry")),
                                  pd.DataFrame(lazy.drop(columns="geometry")))
    assert eager.geometry.geom_equals_exact(lazy.geometry, 0).all()
    with pytest.raises(InputError, match="lack"):
        patches_from_change(no_index, index_samples=lambda: (flat, {"ndvi_after": values["ndvi_after"]}))


def test_overlapping_features_each_count_the_pixels_they_hold():
    """A redline and a reserve overlapping over a patch: both pieces get the patch's pixels and means."""
    ds = make_scene()
    rows, cols = RECT_A[0], RECT_A[1]
    around = rect_box(slice(rows.start - 5, rows.stop + 5), slice(cols.start - 5, cols.stop + 5))
    west_half = rect_box(slice(rows.start - 5, rows.stop + 5), slice(cols.start - 5, cols.start + 25))
    redlines = gpd.GeoDataFrame({"id": ["redline", "reserve"]}, geometry=[around, west_half], crs=UTM)
    got = patches_from_change(ds, redlines=redlines)
    a = got[got["class_code"] == int(RECT_A[2])].set_index("redline_id")
    assert a.loc["redline", "n_pixels"] == 2000  # the whole patch (40 x 50)
    assert a.loc["reserve", "n_pixels"] == 40 * 25  # its western half, also counted for the redline
    west = index_field("ndvi_after", SHAPE)[rows, cols.start:cols.start + 25]
    assert a.loc["reserve", "ndvi_after"] == pytest.approx(float(west.mean()), rel=1e-6)
    assert a.loc["redline", "ndvi_after"] == pytest.approx(float(index_field("ndvi_after", SHAPE)[rows, cols].mean()),
                                                          rel=1e-6)
    # the fused samples give the same table
    flat = np.flatnonzero(ds["change"].values.ravel() == 1)
    values = {name: index_field(name, SHAPE).ravel()[flat] for name in INDEX_VARIABLES}
    fused = patches_from_change(ds.drop_vars(list(INDEX_VARIABLES)), redlines=redlines, index_samples=(flat, values))
    pd.testing.assert_frame_equal(pd.DataFrame(got.drop(columns="geometry")),
                                  pd.DataFrame(fused.drop(columns="geometry")), rtol=1e-6)


def test_kernel_threads_limits_the_region_kernels_threads():
    """``kernel_threads(1)`` runs :func:`threaded` work in the calling thread (also in a background
    task started in that context); outside it, up to ``THREADS`` threads."""
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rsmon.products.patch_regions import THREADS, kernel_threads, threaded

    def who(_):
        return threading.get_ident()

    args = [(k,) for k in range(8)]
    with kernel_threads(1):
        assert set(threaded(who, args)) == {threading.get_ident()}
        with ThreadPoolExecutor(1) as pool:
            inner = pool.submit(contextvars.copy_context().run, threaded, who, args).result()
        assert len(set(inner)) == 1 and threading.get_ident() not in inner
    seen = set(threaded(lambda _: (threading.get_ident(), __import__("time").sleep(0.01))[0], args))
    assert threading.get_ident() not in seen and 1 <= len(seen) <= THREADS


def test_composite_reference_dates_each_patch_by_its_earliest_reference_scene():
    """With a composite reference the samples say which of its scenes gave each change pixel's
    reference (``reference_observation``, positions in ``reference_datetimes``): a patch's
    before_date is the earliest of its pixels' (the activity began after it); bad positions are
    named."""
    import json

    ds = make_scene()
    ds.attrs["reference_datetimes"] = json.dumps(["2023-04-20T03:00:00Z", "2023-05-10T03:00:00Z",
                                                  "2023-05-30T03:00:00Z"])
    flat = np.flatnonzero(ds["change"].values.ravel() == 1)
    rows, cols = np.divmod(flat, SHAPE[1])
    observation = np.full(flat.size, 2.0, np.float32)  # mostly the latest scene
    in_b = (rows >= RECT_B[0].start) & (rows < RECT_B[0].stop) & (cols >= RECT_B[1].start) & (cols < RECT_B[1].stop)
    observation[np.flatnonzero(in_b)[:3]] = 1  # three pixels of patch B from the middle scene
    values = {name: ds[name].values.ravel()[flat] for name in INDEX_VARIABLES}
    got = patches_from_change(ds, index_samples=(flat, {**values, "reference_observation": observation}))
    dated = dict(zip(got["change_class"], got["before_date"]))
    assert dated == {ChangeClass(RECT_A[2]).name: "2023-05-30", ChangeClass(RECT_B[2]).name: "2023-05-10"}
    assert set(got["after_date"]) == {"2024-06-01"}
    plain = patches_from_change(make_scene(), index_samples=(flat, values))
    assert set(plain["before_date"]) == {"2023-06-03"}  # a single reference scene: its date
    with pytest.raises(InputError, match="reference_observation.*positions 0..2"):
        patches_from_change(ds, index_samples=(flat, {**values, "reference_observation": observation + 5}))
