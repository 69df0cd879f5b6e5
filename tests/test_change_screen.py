"""The crop-cycle screen: land-cover shares under polygons, the rule, and redline runs with --landcover."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor of the hand-made scenes)
from affine import Affine
from paths import SEEDS
import shapely
from shapely.geometry import box

from rsmon.errors import FormatError, InputError
from rsmon.io.landcover import check_landcover_raster, class_share_of_polygons, class_shares_in_polygons
from rsmon.products.change_screen import (CROP_CYCLE, ScreenParams, crop_cycle, persisted_days, screen_patches,
                                          season_days)

WORLDCOVER = SEEDS / "esa-worldcover-tile" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
UTM = "EPSG:32650"


def _raster(path: Path, codes: np.ndarray, transform: Affine, crs: str = UTM, nodata=0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1,
                       dtype=codes.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(codes, 1)
    return path


@pytest.fixture
def small_map(tmp_path):
    """A 4 x 6 map of 10 m cells at (500000, 4000000): cropland 40, trees 10, water 80, nodata 0."""
    codes = np.array([[40, 40, 10, 10, 80, 80],
                      [40, 40, 10, 10, 80, 80],
                      [40, 0, 40, 10, 40, 40],
                      [40, 0, 40, 40, 40, 40]], dtype=np.uint8)
    return _raster(tmp_path / "lc.tif", codes, Affine(10, 0, 500000, 0, -10, 4000000))


def _cells(c0, r0, c1, r1):
    """The box of cells [c0, c1) x [r0, r1) of the small map."""
    return box(500000 + 10 * c0, 4000000 - 10 * r1, 500000 + 10 * c1, 4000000 - 10 * r0)


# ---- shares under polygons: known answers ---------------------------------------------------------

def test_class_share_of_polygons_known_answers(small_map):
    polys = gpd.GeoDataFrame(geometry=[
        _cells(0, 0, 2, 2),   # 4 cropland cells -> 1.0
        _cells(2, 2, 5, 3),   # 40, 10, 40 -> 2 of 3
        _cells(2, 0, 4, 2),   # trees only -> 0.0
        _cells(1, 2, 2, 4),   # nodata only -> NaN
        box(600000, 3000000, 600010, 3000010),  # off the map -> NaN
        _cells(4, 3, 6, 4),   # 2 cropland cells
    ], crs=UTM)  # (not overlapping, as change patches)
    want = [1.0, 2 / 3, 0.0, np.nan, np.nan, 1.0]
    for method in ("strips", "exactextract"):
        got = class_share_of_polygons(polys, small_map, (40,), method=method)
        np.testing.assert_allclose(got, want, atol=1e-9, err_msg=method)
    # strips of one row give the same counts (polygons crossing strip edges counted once per cell)
    np.testing.assert_allclose(class_share_of_polygons(polys, small_map, (40,), strip_rows=1), want, atol=1e-9)
    # several codes: cropland or water
    np.testing.assert_allclose(class_share_of_polygons(polys.iloc[[2]], small_map, (40, 10)), [1.0])


def test_class_share_any_crs_and_thin_polygons(small_map):
    polys = gpd.GeoDataFrame(geometry=[_cells(2, 2, 5, 3), _cells(4, 0, 6, 2)], crs=UTM)
    in_utm = class_share_of_polygons(polys, small_map, (40,))
    in_wgs84 = class_share_of_polygons(polys.to_crs("EPSG:4326"), small_map, (40,))
    np.testing.assert_allclose(in_wgs84, in_utm, atol=1e-9)
    np.testing.assert_allclose(in_utm, [2 / 3, 0.0])
    # a polygon holding no cell centre takes the cell under a point inside it
    thin = gpd.GeoDataFrame(geometry=[box(500001, 3999961, 500004, 3999969),   # inside cell (0, 3): 40
                                      box(500021, 3999991, 500024, 3999999)], crs=UTM)  # cell (2, 0): 10
    np.testing.assert_allclose(class_share_of_polygons(thin, small_map, (40,)), [1.0, 0.0])


def test_exactextract_shares_are_coverage_weighted(small_map):
    # half of cell (2, 0) [trees] and all of cell (1, 0) [cropland]: exact cover 1 / 1.5
    poly = gpd.GeoDataFrame(geometry=[box(500010, 3999990, 500025, 4000000)], crs=UTM)
    covered, share = class_shares_in_polygons(poly, small_map, (40,))
    np.testing.assert_allclose(covered, [1.5])
    np.testing.assert_allclose(share, [1 / 1.5])


@pytest.mark.skipif(not WORLDCOVER.exists(), reason="seeds/esa-worldcover-tile not present")
def test_class_share_on_the_real_worldcover_tile():
    """Real WorldCover tile N00E006: cell-aligned boxes in degrees, counted by hand from the window."""
    d = 1 / 12000
    with rasterio.open(WORLDCOVER) as ds:
        # 300 x 300 cell windows on Principe island: tree cover with water, grass, built-up
        windows = [(15700, 16400), (16000, 16800)]
        boxes, want = [], []
        for row0, col0 in windows:
            data = ds.read(1, window=((row0, row0 + 300), (col0, col0 + 300)))
            valid = data != 0
            want.append((data[valid] == 10).sum() / valid.sum() if valid.any() else np.nan)
            west, north = 6 + col0 * d, 3 - row0 * d
            boxes.append(box(west, north - 300 * d, west + 300 * d, north))
    assert any(np.isfinite(want)), "the windows hold no land"
    polys = gpd.GeoDataFrame(geometry=boxes, crs="EPSG:4326")
    np.testing.assert_allclose(class_share_of_polygons(polys, WORLDCOVER, (10,)), want, atol=1e-12)
    np.testing.assert_allclose(class_share_of_polygons(polys, WORLDCOVER, (10,), method="exactextract"), want,
                               atol=1e-6)
    # the same boxes given in UTM (32N) answer within the reprojection of their edges
    utm = class_share_of_polygons(polys.to_crs("EPSG:32632"), WORLDCOVER, (10,))
    np.testing.assert_allclose(utm, want, atol=0.02)


def test_check_landcover_raster(tmp_path, small_map):
    bounds = (500000, 3999960, 500060, 4000000)
    check_landcover_raster(small_map, bounds, UTM)  # fine
    with pytest.raises(InputError, match="does not overlap"):
        check_landcover_raster(small_map, (700000, 3000000, 700100, 3000100), UTM)
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(rgb, "w", driver="GTiff", width=2, height=2, count=3, dtype="uint8", crs=UTM,
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as ds:
        ds.write(np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(FormatError, match="one band of integer"):
        check_landcover_raster(rgb, bounds, UTM)
    bad = tmp_path / "lc.tif.txt"
    bad.write_text("not a raster")
    with pytest.raises(FormatError, match="lc.tif.txt"):
        check_landcover_raster(bad, bounds, UTM)


# ---- the rule ------------------------------------------------------------------------------------

def _table(rows):
    cols = ["class_code", "ndvi_after", "first_detected", "last_detected"]
    return pd.DataFrame(rows, columns=cols)


def test_crop_cycle_rule_known_answers():
    p = ScreenParams()
    rows = [
        (1, 0.23, "2023-06-01", "2023-06-01"),  # 0 harvest-like construction on cropland -> screened
        (1, 0.23, "2023-06-01", "2023-06-01"),  # 1 same, cropland 0.4 -> kept
        (5, 0.23, "2023-06-01", "2023-06-01"),  # 2 water-body change -> kept
        (1, 0.08, "2023-06-01", "2023-06-01"),  # 3 barren after (concrete/rock) -> kept
        (1, 0.10, "2023-06-01", "2023-06-01"),  # 4 exactly at the barren limit -> kept
        (1, np.nan, "2023-06-01", "2023-06-01"),  # 5 no after NDVI -> kept
        (4, 0.30, "2023-06-01", "2023-07-31"),  # 6 persisted 60 days -> kept
        (4, 0.30, "2023-06-01", "2023-07-30"),  # 7 persisted 59 days -> screened
        (3, 0.60, "2023-06-01", None),          # 8 farmland class, no last date -> screened
        (6, 0.20, "2023-06-01", "2023-06-01"),  # 9 cropland share unknown (NaN) -> kept
        (3, 0.55, "2023-06-01", "2023-08-15"),  # 10 green after 75 days: sown again -> screened
    ]
    frac = np.array([1.0, 0.4, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.9, np.nan, 1.0])
    got = crop_cycle(_table(rows), frac, p)
    assert got.tolist() == [True, False, False, False, False, False, False, True, True, False, True]
    assert persisted_days(_table(rows)).tolist() == [0, 0, 0, 0, 0, 0, 60, 59, 0, 0, 75]
    # the thresholds move the decisions
    assert crop_cycle(_table(rows), frac, ScreenParams(min_cropland_fraction=0.4))[1]
    assert not crop_cycle(_table(rows), frac, ScreenParams(crop_cycle_days=59))[7]
    assert crop_cycle(_table(rows), frac, ScreenParams(barren_ndvi_max=0.05))[3]
    assert not crop_cycle(_table(rows), frac, ScreenParams(regreen_ndvi_min=0.6))[10]
    assert crop_cycle(_table(rows), frac, ScreenParams(regreen_ndvi_min=0.29))[6]
    with pytest.raises(InputError, match="one per patch"):
        crop_cycle(_table(rows), frac[:3], p)


def test_screen_patches_splits_and_keeps_order():
    table = _table([(1, 0.3, "2023-06-01", "2023-06-01"), (2, 0.05, "2023-06-01", "2023-06-01"),
                    (1, 0.3, "2023-06-01", "2023-06-01")])
    table["patch_id"] = ["a", "b", "c"]
    kept, screened = screen_patches(table, np.array([0.9, 0.9, 0.1]), ScreenParams())
    assert kept["patch_id"].tolist() == ["b", "c"] and screened["patch_id"].tolist() == ["a"]
    assert screened["screen_reason"].tolist() == [CROP_CYCLE]
    assert kept["cropland_fraction"].tolist() == [0.9, 0.1]


@pytest.mark.parametrize("kwargs, match", [
    ({"cropland_codes": ()}, "cropland-codes"), ({"cropland_codes": (40.5,)}, "cropland-codes"),
    ({"min_cropland_fraction": 0.0}, "min_cropland_fraction"), ({"min_cropland_fraction": 1.5}, "min_cropland"),
    ({"barren_ndvi_max": 2.0}, "barren_ndvi_max"), ({"crop_cycle_days": 0}, "crop_cycle_days"),
    ({"regrowth_ndvi_gain": -0.1}, "regrowth_ndvi_gain"), ({"cropland_codes": "40"}, "cropland-codes"),
    ({"crop_cycle_days": 1.5}, "crop_cycle_days"),
])
def test_screen_params_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        ScreenParams(**kwargs)


# ---- the growing season ---------------------------------------------------------------------------

NORTHEAST = "05-01:09-30"  # single cropping, Northeast China (ScreenParams.growing_season)


def test_season_days_known_answers():
    d = date
    # harvest 25 September, seen bare on 5 December: 25-30 September in the season
    assert season_days(d(2024, 9, 25), d(2024, 12, 5), NORTHEAST) == 6
    assert season_days(d(2024, 9, 25), d(2024, 12, 5), None) == 71
    # ... and on 24 June next year: 6 + 31 (May) + 23 (1-23 June)
    assert season_days(d(2024, 9, 25), d(2025, 6, 24), NORTHEAST) == 60
    assert season_days(d(2024, 9, 25), d(2025, 6, 23), NORTHEAST) == 59
    # wholly inside, wholly outside, reversed, equal
    assert season_days(d(2023, 6, 1), d(2023, 8, 15), NORTHEAST) == 75
    assert season_days(d(2023, 11, 1), d(2024, 3, 1), NORTHEAST) == 0
    assert season_days(d(2023, 8, 15), d(2023, 6, 1), NORTHEAST) == 0
    assert season_days(d(2023, 6, 1), d(2023, 6, 1), NORTHEAST) == 0
    # a season over the new year (winter wheat, 1 October to 15 June): 1 November -> 1 February
    assert season_days(d(2024, 11, 1), d(2025, 2, 1), "10-01:06-15") == 92
    # 16 June - 30 September lies outside it: 1 June -> 1 October counts 1-15 June only
    assert season_days(d(2023, 6, 1), d(2023, 10, 1), "10-01:06-15") == 15
    # 29 February counts inside a season that holds it, and years are added up (three seasons of 153 days)
    assert season_days(d(2024, 2, 1), d(2024, 3, 2), "02-01:03-31") == 30
    assert season_days(d(2021, 1, 1), d(2024, 1, 1), NORTHEAST) == 3 * 153


def test_season_days_equal_a_day_by_day_count():
    """The closed form against counting the days one by one, on random spans and seasons."""
    from datetime import timedelta

    rng = np.random.default_rng(7)
    for _ in range(300):
        m0, m1 = rng.integers(1, 13, 2)
        start, end = (int(m0), int(rng.integers(1, 29))), (int(m1), int(rng.integers(1, 29)))
        if start == end or (date(2023, *end) + timedelta(days=1)).replace(year=2023) == date(2023, *start):
            continue  # one day or the whole year: refused (test_growing_season_refused)
        season = f"{start[0]:02d}-{start[1]:02d}:{end[0]:02d}-{end[1]:02d}"
        a = date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 2000)))
        b = a + timedelta(days=int(rng.integers(0, 900)))
        wraps = end < start
        inside = (lambda md: (start <= md or md <= end) if wraps else start <= md <= end)
        count = sum(inside(((a + timedelta(k)).month, (a + timedelta(k)).day)) for k in range((b - a).days))
        assert season_days(a, b, season) == count, (season, a, b)


def test_growing_season_pauses_the_crop_cycle_clock():
    """Screen: a series change flagged on 25 September and again on 5 December (71 days) is the
    crop cycle with a Northeast season (6 season days); the watch: a field harvested in September,
    bare in December, is watched, not re-admitted, until 60 days of the next season have passed."""
    from rsmon.products.change_screen import PERSISTED, WATCHED, review_watch

    rows = [(4, 0.2, "2024-09-25", "2024-12-05"), (4, 0.2, "2024-09-25", "2025-06-24")]
    frac = np.ones(2)
    assert crop_cycle(_table(rows), frac, ScreenParams()).tolist() == [False, False]
    assert crop_cycle(_table(rows), frac, ScreenParams(growing_season=NORTHEAST)).tolist() == [True, False]
    assert persisted_days(_table(rows), NORTHEAST).tolist() == [6, 60]
    watched = pd.DataFrame({"first_detected": ["2024-09-25"] * 3, "ndvi_after": [0.18] * 3})
    seen = ["2024-12-05", "2025-06-23", "2025-06-24"]
    ndvi, clear = np.array([0.15, 0.2, 0.2]), np.ones(3)
    assert review_watch(watched, ndvi, clear, seen, ScreenParams()).tolist() == [PERSISTED] * 3
    got = review_watch(watched, ndvi, clear, seen, ScreenParams(growing_season=NORTHEAST))
    assert got.tolist() == [WATCHED, WATCHED, PERSISTED]


@pytest.mark.parametrize("value", ["13-01:09-30", "02-29:09-30", "05-01", "05-01:05-01", "01-01:12-31",
                                   "05-01:09-31", "May-Sep", 5, ["05-01"], "05-01:09-30:10-01"])
def test_growing_season_refused(value):
    with pytest.raises(InputError, match="growing_season"):
        ScreenParams(growing_season=value)


def test_growing_season_normalised():
    assert ScreenParams(growing_season="5-1:9-30").growing_season == NORTHEAST
    assert ScreenParams(growing_season=["05-01", "09-30"]).growing_season == NORTHEAST
    assert ScreenParams(growing_season=NORTHEAST).as_dict()["growing_season"] == NORTHEAST


def test_screen_params_single_code():
    assert ScreenParams(cropland_codes=40).cropland_codes == (40,)
    assert ScreenParams(cropland_codes=[10, 40]).cropland_codes == (10, 40)


# ---- redline runs with a land-cover map ----------------------------------------------------------

@pytest.fixture(scope="module")
def sim_pair(tmp_path_factory):
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    return simulate_s2_l2a_pair(tmp_path_factory.mktemp("screen") / "pair", size=512, seed=3, n_changes=12,
                                landcover=True)


def test_sim_landcover_is_worldcover_layout(sim_pair):
    from rsmon.sim.s2 import WORLDCOVER_DEG

    with rasterio.open(sim_pair.landcover) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.nodata == 0 and ds.dtypes[0] == "uint8"
        assert ds.res == pytest.approx((WORLDCOVER_DEG, WORLDCOVER_DEG))
        # on WorldCover's grid: the origin a whole number of cells from a whole degree
        assert (ds.transform.c / WORLDCOVER_DEG) == pytest.approx(round(ds.transform.c / WORLDCOVER_DEG), abs=1e-6)
        values = set(np.unique(ds.read(1)).tolist())
    assert values <= {0, 10, 40, 50, 60, 80} and 40 in values


def _ids(path: Path, layer: str) -> set[str]:
    return set(gpd.read_file(path, layer=layer)["patch_id"]) if path.exists() else set()


def test_redline_run_with_landcover_screens_harvest(sim_pair, tmp_path):
    from rsmon.workflow.redline import run_redline_detect

    plain = run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "plain", quicklooks=False,
                               checksums=False)
    res = run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "screened", quicklooks=False,
                             checksums=False, landcover=sim_pair.landcover)
    out = tmp_path / "screened"
    kept, screened = _ids(out / "patches.gpkg", "patches"), _ids(out / "screened.gpkg", "screened")
    plain_ids = _ids(tmp_path / "plain" / "patches.gpkg", "patches")
    # nothing lost or duplicated: the screen moves patches, with their ids, and cuts barren parts out
    # of screened ones as patches of their own (new ids); the area is the unscreened run's
    parts = kept - plain_ids
    assert (kept - parts) | screened == plain_ids and not kept & screened and res.barren_parts == len(parts) >= 1
    assert res.screened == {CROP_CYCLE: len(screened)} and res.n_patches == len(kept) and len(screened) > 20
    geoms = {(run, name): gpd.read_file(tmp_path / run / f"{name}.gpkg", layer=name).geometry
             for run, name in (("plain", "patches"), ("screened", "patches"), ("screened", "screened"))}
    split = pd.concat([geoms["screened", "patches"], geoms["screened", "screened"]])
    assert split.area.sum() == pytest.approx(geoms["plain", "patches"].area.sum(), rel=1e-9)
    assert split.union_all().symmetric_difference(geoms["plain", "patches"].union_all()).area < 1e-3
    kept_table = gpd.read_file(out / "patches.gpkg", layer="patches")
    cut = kept_table[kept_table["patch_id"].isin(parts)]
    assert (cut["ndvi_after"] <= 0.1).all() and (cut["n_pixels"] >= 4).all()

    table = gpd.read_file(out / "screened.gpkg", layer="screened")
    assert (table["cropland_fraction"] >= 0.5).all() and (table["ndvi_after"] > 0.1).all()
    assert set(table["screen_reason"]) == {CROP_CYCLE} and (table["class_code"] != 5).all()
    assert json.loads((out / "summary.json").read_text())["screened"] == {CROP_CYCLE: len(screened)}
    assert json.loads((out / "screened.geojson").read_text())["name"] == "screened"
    # what the screen buys: the kept patches' pixel precision against the truth
    truth = rasterio.open(sim_pair.truth_raster).read(1) > 0

    def precision(path: Path, layer: str) -> float:
        from rasterio.features import rasterize

        g = gpd.read_file(path, layer=layer)
        mask = rasterize(((geom, 1) for geom in g.geometry), out_shape=truth.shape,
                         transform=sim_pair.transform).astype(bool)
        return (mask & truth).sum() / mask.sum()

    before, after = precision(tmp_path / "plain" / "patches.gpkg", "patches"), precision(out / "patches.gpkg", "patches")
    assert before < 0.1 and after > 0.8, (before, after)
    # the planted concrete on cropland (construction) is kept: barren after, not a field
    assert ((kept_table["change_class"] == "construction") & (kept_table["cropland_fraction"] >= 0.5)).any()
    # a rerun without the map removes the first run's screened files (they would describe other patches)
    run_redline_detect(sim_pair.before, sim_pair.after, out, quicklooks=False, checksums=False)
    assert not (out / "screened.gpkg").exists() and not (out / "screened.geojson").exists()
    # (a patch holding a barren part takes the part's id, kept as an alert: the same site)
    again = _ids(out / "patches.gpkg", "patches")
    assert again <= kept | screened and len(again) == len(plain_ids) and (kept - parts) <= again


def test_persisting_change_is_not_screened(sim_pair, tmp_path):
    """A second after scene 75 days on (the same surface): the bare changes persisted and are kept."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    later = simulate_s2_l2a_pair(tmp_path / "later", size=512, seed=3, n_changes=12,
                                 dates=("2023-05-01", "2023-08-15"))
    res = run_redline_detect(sim_pair.before, [sim_pair.after, later.after], tmp_path / "series", quicklooks=False,
                             checksums=False, landcover=sim_pair.landcover)
    table = gpd.read_file(tmp_path / "series" / "patches.gpkg", layer="patches")
    confirmed = table["last_detected"].astype(str).str.startswith("2023-08-15")
    assert confirmed.any()
    screened = gpd.read_file(tmp_path / "series" / "screened.gpkg", layer="screened")
    # a change flagged again on 15 August is screened only when it ends green (a field grown again)
    again = screened["last_detected"].astype(str).str.startswith("2023-08-15")
    assert (screened.loc[again, "ndvi_after"] > 0.3).all()
    # the bare ones on cropland that persisted (stubble unchanged for 75 days here) are kept
    bare_kept = table[(table["cropland_fraction"] >= 0.5) & table["ndvi_after"].between(0.1, 0.3, inclusive="right")
                      & confirmed]
    assert len(bare_kept) > 10
    assert res.screened[CROP_CYCLE] == len(screened)
    # with a 90-day cycle the persisted ones are screened too
    res90 = run_redline_detect(sim_pair.before, [sim_pair.after, later.after], tmp_path / "series90",
                               quicklooks=False, checksums=False, landcover=sim_pair.landcover,
                               screen=ScreenParams(crop_cycle_days=90))
    assert res90.screened[CROP_CYCLE] > res.screened[CROP_CYCLE]


def test_cli_landcover_errors(sim_pair, tmp_path, capsys):
    from rsmon.cli import main

    out = tmp_path / "out"
    base = ["redline", "detect", "--before", str(sim_pair.before), "--after", str(sim_pair.after), "-o", str(out),
            "--no-quicklooks", "--no-checksums"]
    assert main([*base, "--cropland-codes", "40"]) == 2
    assert "only with --landcover" in capsys.readouterr().err
    assert main([*base, "--landcover", str(sim_pair.landcover), "--cropland-codes", "40,x"]) == 2
    assert "--cropland-codes" in capsys.readouterr().err
    assert main([*base, "--growing-season", "05-01:09-30"]) == 2
    assert "--growing-season: only with --landcover" in capsys.readouterr().err
    assert main([*base, "--no-barren-parts"]) == 2
    assert "--no-barren-parts: only with --landcover" in capsys.readouterr().err
    zones = _zones_file(tmp_path / "zones.geojson", [("05-01:09-31", box(0, 0, 1, 1))])
    assert main([*base, "--season-zones", str(zones)]) == 2
    assert "--season-zones: only with --landcover" in capsys.readouterr().err
    assert main([*base, "--landcover", str(sim_pair.landcover), "--season-zones", str(zones)]) == 2
    err = capsys.readouterr().err
    assert str(zones) in err and "feature 0" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--landcover", str(sim_pair.landcover), "--season-zones", str(tmp_path / "none.gpkg")]) == 2
    assert "none.gpkg" in capsys.readouterr().err
    assert main([*base, "--landcover", str(sim_pair.landcover), "--growing-season", "05-01:09-31"]) == 2
    err = capsys.readouterr().err
    assert "--growing-season" in err and "'05-01:09-31'" in err and len(err.strip().splitlines()) == 1
    if WORLDCOVER.exists():  # a real map of another continent: refused before the pass, named
        assert main([*base, "--landcover", str(WORLDCOVER)]) == 2
        err = capsys.readouterr().err
        assert "does not overlap" in err and WORLDCOVER.name in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    # and a run that works: codes given on the command line
    assert main([*base, "--landcover", str(sim_pair.landcover), "--cropland-codes", "40", "--crop-cycle-days",
                 "30"]) == 0
    assert "screened as crop cycle" in capsys.readouterr().out
    params = json.loads((out / "summary.json").read_text())
    assert params["screened"][CROP_CYCLE] > 0 and params["barren_parts"] >= 1
    assert main([*base, "--landcover", str(sim_pair.landcover), "--no-barren-parts"]) == 0
    assert json.loads((out / "summary.json").read_text())["barren_parts"] == 0


def test_multi_tile_merge_carries_screened(sim_pair, tmp_path):
    """rsmon redline merge merges the tiles' screened patches like their patches."""
    from rsmon.workflow.redline import run_redline_detect
    from rsmon.workflow.redline_tiles import merge_run_folders

    run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "a", quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same tile twice: each change once after the merge
    summary = merge_run_folders([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    n = len(gpd.read_file(tmp_path / "a" / "screened.gpkg", layer="screened"))
    merged = gpd.read_file(tmp_path / "m" / "screened.gpkg", layer="screened")
    assert len(merged) == n and summary["screened"] == {CROP_CYCLE: n}


def test_monthly_job_with_landcover_publishes_only_kept_patches(tmp_path):
    """workflows/redline-monthly.yaml with a land-cover map: the alert store receives the kept
    patches only; the screened ones stay in the run folder's screened.gpkg."""
    import yaml

    from rsmon.alerts.store import AlertQuery, open_store
    from rsmon.cli import main as rsmon_main
    from rsmon.workflow.runner import run_workflow

    sims = tmp_path / "incoming"
    assert rsmon_main(["sim", "s2", "--small", "--seed", "3", "--changes", "12", "--dates", "2023-05-20,2023-06-05",
                       "--landcover", "-o", str(sims / "a")]) == 0
    landcover = tmp_path / "reference" / "worldcover.tif"
    landcover.parent.mkdir()
    shutil.move(sims / "a" / "landcover.tif", landcover)
    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "workflows" / "redline-monthly.yaml").read_text())
    spec["sources"] = [str(sims)]
    for role in ("before", "after"):
        del spec["jobs"][0]["inputs"][role]["bbox"]  # the simulated tile lies elsewhere
    zones = _zones_file(tmp_path / "reference" / "zones.gpkg", [("04-01:10-31", box(100, 20, 130, 45))])
    spec["jobs"][0]["parameters"] = {"quicklooks": False, "landcover": str(landcover),
                                     "screen": {"cropland_codes": [40], "crop_cycle_days": 60,
                                                "growing_season": ["04-15", "10-15"]},
                                     "season_zones": str(zones)}
    store = tmp_path / "alerts.sqlite"
    spec["jobs"][0]["alerts"] = {"store": f"sqlite:///{store}"}
    wf = tmp_path / "monthly.yaml"
    wf.write_text(yaml.safe_dump(spec))
    [report] = run_workflow(wf, date(2023, 6, 1), home=tmp_path / "home")
    assert report.status == "success", report.summary()
    folder = tmp_path / "home" / "products" / "redline" / "v1" / "2023-06"
    kept, screened = _ids(folder / "patches.gpkg", "patches"), _ids(folder / "screened.gpkg", "screened")
    assert kept and len(screened) > 20 and report.jobs[0].summary["screened"] == {CROP_CYCLE: len(screened)}
    with rasterio.open(folder / "change.tif") as src:  # the workflow's screen block reached the run
        prov = json.loads(src.tags()["rsmon_provenance"])["parameters"]
    assert prov["screen"]["growing_season"] == "04-15:10-15" and prov["season_zones"] == str(zones)
    s = open_store(f"sqlite:///{store}")
    try:
        page = s.query(AlertQuery(limit=10_000))
    finally:
        s.close()
    assert {json.loads(row.feature)["id"] for row in page.rows} == kept and page.number_matched == len(kept)


# ---- the watch across runs -----------------------------------------------------------------------

def test_review_watch_known_answers():
    from rsmon.products.change_screen import PERSISTED, REGREENED, WATCHED, review_watch

    watched = pd.DataFrame({"first_detected": ["2023-06-01"] * 6 + [None] + ["2023-10-05"] * 2,
                            "ndvi_after": [0.2] * 7 + [0.15, 0.15]})
    ndvi = np.array([0.55, 0.2, 0.2, 0.2, np.nan, 0.05, 0.1, 0.26, 0.22])
    clear = np.array([0.9, 0.9, 0.9, 0.3, 0.0, 0.5, 1.0, 1.0, 1.0])
    seen = ["2023-08-15", "2023-08-15", "2023-07-15", "2023-08-15", None, "2023-07-31", "2023-08-15",
            "2023-12-10", "2023-12-10"]
    got = review_watch(watched, ndvi, clear, seen, ScreenParams())
    # green again; bare 75 days on; bare 44 days on (too early); seen but mostly cloudy; never seen;
    # bare exactly 60 days on; no first date; autumn-sown field greening (+0.11, below 0.3) in
    # December; +0.07 only, 66 days on
    assert got.tolist() == [REGREENED, PERSISTED, WATCHED, WATCHED, WATCHED, PERSISTED, WATCHED, REGREENED,
                            PERSISTED]
    assert review_watch(watched, ndvi, clear, seen, ScreenParams(regrowth_ndvi_gain=0.2))[7] == PERSISTED
    assert review_watch(watched.drop(columns="ndvi_after"), ndvi, clear, seen, ScreenParams())[7] == PERSISTED
    assert review_watch(watched, ndvi, clear, seen, ScreenParams(watch_clear_min=0.2))[3] == PERSISTED
    with pytest.raises(InputError, match="one NDVI"):
        review_watch(watched, ndvi[:2], clear, seen, ScreenParams())


def test_watch_observation_known_answer(tmp_path):
    """Mean NDVI over the clear pixels of each polygon, latest clear scene first."""
    import xarray as xr

    from rsmon.products.change_screen import watch_observation

    def scene(date, nir, red, cloudy_rows=0):
        y, x = 4000000 - 10 * np.arange(6) - 5, 500000 + 10 * np.arange(6) + 5
        bands = {"blue": 0.05, "green": 0.08, "red": red, "nir": nir, "swir1": 0.2, "swir2": 0.15}
        data = {k: (("y", "x"), np.full((6, 6), v, np.float32)) for k, v in bands.items()}
        ds = xr.Dataset(data, coords={"y": y, "x": x}, attrs={"datetime": date, "radiometry": "reflectance"})
        if cloudy_rows:
            ds["clear"] = (("y", "x"), np.arange(6)[:, None].repeat(6, 1) >= cloudy_rows)
        return ds.rio.write_crs(UTM).rio.write_transform(Affine(10, 0, 500000, 0, -10, 4000000))

    later = scene("2023-08-15T03:05:51Z", nir=0.4, red=0.1, cloudy_rows=3)   # NDVI 0.6, rows 0-2 clouded
    earlier = scene("2023-07-20T03:05:51Z", nir=0.3, red=0.2)                # NDVI 0.2
    polys = [_cells(0, 0, 2, 2), _cells(0, 4, 3, 6), _cells(0, 2, 2, 4), box(0, 0, 10, 10)]
    ndvi, clear, seen = watch_observation([later, earlier], polys, clear_min=0.5)
    # polygon 0: clouded in August, seen in July; 1: clear in August; 2: rows 2-3, half clear in August
    np.testing.assert_allclose(ndvi[:3], [0.2, 0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(clear[:3], [1.0, 1.0, 0.5])
    assert seen[:3] == ["2023-07-20", "2023-08-15", "2023-08-15"]
    assert np.isnan(ndvi[3]) and clear[3] == 0 and seen[3] is None  # off the grid


def test_monthly_watch_readmits_bare_changes_and_drops_regrown_fields(sim_pair, tmp_path):
    """Month 1 (May -> June): harvest and cropland changes screened. Month 2 (June -> 15 August, the
    fields green again): the run compares August with June, so the bare changes are not detected
    again; the watch re-admits those still bare 75 days on, and the harvested parcels, green again,
    end their watch."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    first = tmp_path / "june"
    run_redline_detect(sim_pair.before, sim_pair.after, first, quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    screened1 = gpd.read_file(first / "screened.gpkg", layer="screened")
    august = simulate_s2_l2a_pair(tmp_path / "aug", size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                  dates=("2023-05-01", "2023-08-15"))
    second = tmp_path / "august"
    res = run_redline_detect(sim_pair.after, august.after, second, quicklooks=False, checksums=False,
                             landcover=sim_pair.landcover, previous=first / "patches.gpkg")
    w = res.watch
    assert w is not None and sum(w.values()) == len(screened1), w
    assert w["persisted"] >= 2 and w["regreened"] >= 10, w
    kept = gpd.read_file(second / "patches.gpkg", layer="patches")
    back = kept[kept["patch_id"].isin(set(screened1["patch_id"]))]
    assert len(back) == w["persisted"]
    assert (back["last_detected"] == "2023-08-15").all() and (back["first_detected"] == "2023-06-01").all()
    assert set(back["confidence"]) <= {"high", "highest"}
    # what comes back is planted change (the truth raster), not harvest
    truth = rasterio.open(sim_pair.truth_raster).read(1)
    from rasterio.features import rasterize

    on_truth = [bool((truth[rasterize([(g, 1)], out_shape=truth.shape, transform=sim_pair.transform).astype(bool)]
                      > 0).any()) for g in back.geometry]
    assert all(on_truth), on_truth
    summary = json.loads((second / "summary.json").read_text())
    assert summary["watch"] == w
    # the parcels grown again were detected again (June -> August regrowth, with the June id and
    # first detection carried over) and screened as green, or end their watch as regreened; those
    # not yet decided are carried in this run's screened table
    screened2 = gpd.read_file(second / "screened.gpkg", layer="screened")
    ids1, ids2 = set(screened1["patch_id"]), set(screened2["patch_id"])
    again = screened2[screened2["patch_id"].isin(ids1)]
    assert len(again) and (again["first_detected"] == "2023-06-01").all() and (again["ndvi_after"] > 0.3).all()
    assert len(ids1 - ids2 - set(kept["patch_id"])) >= w["regreened"] and len(ids1 & ids2) >= w["watched"]


def test_growing_season_keeps_the_watch_through_the_fallow_season(sim_pair, tmp_path):
    """The June -> 15 August chain again, with a season that leaves out June and July (as a
    single-cropping region's winter): the bare changes have 14 season days (1-14 August), so none is
    re-admitted; they are carried in August's screened table instead, with their June first
    detection, and the season is recorded in the provenance."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    first = tmp_path / "june"
    run_redline_detect(sim_pair.before, sim_pair.after, first, quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    august = simulate_s2_l2a_pair(tmp_path / "aug", size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                  dates=("2023-05-01", "2023-08-15"))
    runs = {}
    for name, screen in (("every-day", None), ("season", ScreenParams(growing_season="08-01:05-31"))):
        runs[name] = run_redline_detect(sim_pair.after, august.after, tmp_path / name, quicklooks=False,
                                        checksums=False, landcover=sim_pair.landcover, previous=first / "patches.gpkg",
                                        screen=screen)
    every, season = runs["every-day"].watch, runs["season"].watch
    assert every["persisted"] >= 2 and season["persisted"] == 0, (every, season)
    assert season["watched"] == every["watched"] + every["persisted"]
    assert season["regreened"] == every["regreened"]  # green again is green in any season
    readmitted = set(gpd.read_file(tmp_path / "every-day" / "patches.gpkg", layer="patches")["patch_id"]) - set(
        gpd.read_file(tmp_path / "season" / "patches.gpkg", layer="patches")["patch_id"])
    carried = gpd.read_file(tmp_path / "season" / "screened.gpkg", layer="screened").set_index("patch_id")
    assert len(readmitted) == every["persisted"] and readmitted <= set(carried.index)
    assert (carried.loc[sorted(readmitted), "first_detected"] == "2023-06-01").all()
    with rasterio.open(tmp_path / "season" / "change.tif") as src:
        prov = json.loads(src.tags()["rsmon_provenance"])
    assert prov["parameters"]["screen"]["growing_season"] == "08-01:05-31"


def test_watch_carries_undecided_patches_to_the_next_month(sim_pair, tmp_path):
    """June -> 10 July (39 days: too early to tell) -> 15 August: the bare changes are carried in
    July's screened table with their June first detection, and re-admitted in August."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    months = {}
    for name, day in (("jul", "2023-07-10"), ("aug", "2023-08-15")):
        months[name] = simulate_s2_l2a_pair(tmp_path / name, size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                            dates=("2023-05-01", day)).after
    run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "r-jun", quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    july = run_redline_detect(sim_pair.after, months["jul"], tmp_path / "r-jul", quicklooks=False, checksums=False,
                              landcover=sim_pair.landcover, previous=tmp_path / "r-jun" / "patches.gpkg")
    assert july.watch["persisted"] == 0 and july.watch["watched"] >= 2, july.watch
    carried = gpd.read_file(tmp_path / "r-jul" / "screened.gpkg", layer="screened")
    carried = carried[carried["ndvi_after"] <= 0.3]
    assert len(carried) >= july.watch["watched"] and (carried["first_detected"] == "2023-06-01").all()
    august = run_redline_detect(months["jul"], months["aug"], tmp_path / "r-aug", quicklooks=False, checksums=False,
                                landcover=sim_pair.landcover, previous=tmp_path / "r-jul" / "patches.gpkg")
    assert august.watch["persisted"] >= 2, august.watch
    kept = gpd.read_file(tmp_path / "r-aug" / "patches.gpkg", layer="patches")
    assert set(carried["patch_id"]) & set(kept["patch_id"])


def _patch_rows(geoms, ids, first="2023-06-01", crs=UTM):
    from rsmon.products.patches import PATCH_COLUMNS

    n = len(geoms)
    data = {}
    for name, dtype in PATCH_COLUMNS.items():
        data[name] = pd.Series([0.2 if dtype == "float64" else (1 if dtype.startswith("int") else None)] * n,
                               dtype=dtype)
    data.update(patch_id=ids, first_detected=[first] * n, last_detected=[first] * n, confidence=["low"] * n,
                change_class=["construction"] * n, cropland_fraction=[1.0] * n)
    return gpd.GeoDataFrame(data, geometry=list(geoms), crs=crs)


def test_watch_reviews_the_part_not_detected_again():
    """A watched patch of 10 x 10 pixels whose left half this run detects again (a regrown field):
    its right half, still bare 75 days on, is re-admitted with its own area and a new id; a watched
    patch covered but for a sliver narrower than half a pixel counts as detected again."""
    import xarray as xr

    from rsmon.products.change_screen import apply_watch

    y, x = 4000000 - 10 * np.arange(30) - 5, 500000 + 10 * np.arange(30) + 5
    bands = {"blue": 0.1, "green": 0.12, "red": 0.2, "nir": 0.25, "swir1": 0.3, "swir2": 0.25}  # NDVI 0.11
    scene = xr.Dataset({k: (("y", "x"), np.full((30, 30), v, np.float32)) for k, v in bands.items()},
                       coords={"y": y, "x": x}, attrs={"datetime": "2023-08-15T03:05:51Z",
                                                       "radiometry": "reflectance"})
    scene["clear"] = (("y", "x"), np.ones((30, 30), bool))
    scene = scene.rio.write_crs(UTM).rio.write_transform(Affine(10, 0, 500000, 0, -10, 4000000))
    watched = _patch_rows([_cells(0, 0, 10, 10), _cells(15, 15, 25, 25)], ["w-1", "w-2"])
    watched["screen_reason"] = CROP_CYCLE
    # this run: the left half of w-1 screened again under w-1's id (the reconciliation gave it);
    # w-2 covered but for a 3 m strip
    screened = _patch_rows([_cells(0, 0, 5, 10)], ["w-1"], first="2023-06-01")
    screened["screen_reason"] = CROP_CYCLE
    kept = _patch_rows([box(500150, 3999750, 500247, 3999850)], ["k-1"], first="2023-08-15")
    from rsmon.products.change_params import ChangeParams

    patches, screened2, counts, back_ids = apply_watch(kept, screened, watched, [scene], ChangeParams(),
                                                       ScreenParams())
    assert back_ids == ["w-1-2"]
    assert counts == {"detected_again": 1, "in_part": 1, "elsewhere": 0, "regreened": 0, "persisted": 1,
                      "watched": 0}, counts
    back = patches[patches["patch_id"] == "w-1-2"]
    assert len(back) == 1 and back["n_pixels"].iloc[0] == 50 and back["confidence"].iloc[0] == "high"
    assert back["area_m2"].iloc[0] == pytest.approx(5000, rel=2e-3)  # EASE-Grid 2.0 area of 50 10 m cells
    assert back.geometry.iloc[0].equals(_cells(5, 0, 10, 10)) and back["last_detected"].iloc[0] == "2023-08-15"
    assert list(screened2["patch_id"]) == ["w-1"]  # nothing carried
    # an earlier run's patch already holds w-1-2 (a barren part cut out of w-1, say): not given again;
    # the watched ids themselves (all in the previous table) do not block a remainder keeping its own
    again = apply_watch(kept, screened, watched, [scene], ChangeParams(), ScreenParams(),
                        taken={"w-1", "w-2", "w-1-2", "k-0"})
    assert again[3] == ["w-1-3"] and again[2] == counts
    alone = apply_watch(kept, screened.iloc[:0], watched, [scene], ChangeParams(), ScreenParams(),
                        taken={"w-1", "w-2"})  # w-1 not detected again: reviewed whole, keeps its id
    assert alone[3] == ["w-1"]


def test_a_bad_screened_table_beside_previous_is_refused(sim_pair, tmp_path):
    from rsmon.workflow.redline import run_redline_detect

    prev = tmp_path / "prev"
    run_redline_detect(sim_pair.before, sim_pair.after, prev, quicklooks=False, checksums=False)
    gpd.GeoDataFrame({"name": ["x"]}, geometry=[box(0, 0, 1, 1)], crs=UTM).to_file(prev / "screened.gpkg")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"screened.gpkg: not a table of screened patches .*patch_id"):
        run_redline_detect(sim_pair.before, sim_pair.after, out, quicklooks=False, checksums=False,
                           landcover=sim_pair.landcover, previous=prev / "patches.gpkg")
    assert not out.exists() or not any(out.iterdir())


def test_readmitted_patches_quicklooks_show_the_scene_before_their_change(sim_pair, tmp_path):
    """The August run's before scene (June) was taken after the change; a re-admitted patch's
    quicklook is drawn against its own before scene (May, its before_source) instead."""
    from rsmon.io.change_output import write_quicklooks
    from rsmon.io.optical import open_optical
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "june", quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    august = simulate_s2_l2a_pair(tmp_path / "aug", size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                  dates=("2023-05-01", "2023-08-15"))
    res = run_redline_detect(sim_pair.after, august.after, tmp_path / "august", checksums=False,
                             landcover=sim_pair.landcover, previous=tmp_path / "june" / "patches.gpkg")
    assert res.watch["persisted"] >= 1
    kept = gpd.read_file(tmp_path / "august" / "patches.gpkg", layer="patches")
    back = kept[kept["first_detected"] == "2023-06-01"]
    assert len(back) == res.watch["persisted"] and set(back["before_source"]) == {str(sim_pair.before)}
    for before, name in ((sim_pair.before, "may"), (sim_pair.after, "june")):
        write_quicklooks(back, open_optical(before), open_optical(august.after), tmp_path / name)
    for pid in back["patch_id"]:
        got = (tmp_path / "august" / "quicklooks" / f"{pid}.png").read_bytes()
        assert got == (tmp_path / "may" / "quicklooks" / f"{pid}.png").read_bytes()
        assert got != (tmp_path / "june" / "quicklooks" / f"{pid}.png").read_bytes()


def test_readmitted_quicklooks_when_the_earlier_scene_is_gone(sim_pair, tmp_path, caplog):
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    may = tmp_path / "may"
    shutil.copytree(sim_pair.before, may)
    run_redline_detect(may, sim_pair.after, tmp_path / "june", quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    shutil.rmtree(may)  # the archive no longer holds the May scene
    august = simulate_s2_l2a_pair(tmp_path / "aug", size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                  dates=("2023-05-01", "2023-08-15"))
    with caplog.at_level("WARNING", logger="rsmon.workflow.redline"):
        res = run_redline_detect(sim_pair.after, august.after, tmp_path / "august", checksums=False,
                                 landcover=sim_pair.landcover, previous=tmp_path / "june" / "patches.gpkg")
    assert res.watch["persisted"] >= 1
    assert any("earlier before scene" in r.getMessage() and "may" in r.getMessage() for r in caplog.records)
    kept = gpd.read_file(tmp_path / "august" / "patches.gpkg", layer="patches")
    for pid in kept.loc[kept["first_detected"] == "2023-06-01", "patch_id"]:
        assert (tmp_path / "august" / "quicklooks" / f"{pid}.png").is_file()  # this run's picture stays


def test_validate_scores_the_patches_within_the_products_data(tmp_path, capsys):
    """Known answer: a 4 x 6 change raster, one patch, a reference; then the screened simulated run."""
    from rsmon.cli import main
    from rsmon.workflow.redline import run_change_validation

    transform = Affine(10, 0, 500000, 0, -10, 4000000)
    product = np.array([[1, 1, 0, 0, 255, 255],
                        [1, 1, 0, 0, 255, 255],
                        [0, 0, 0, 1, 1, 0],
                        [0, 0, 0, 1, 1, 0]], dtype=np.uint8)
    reference = np.array([[1, 1, 0, 0, 0, 0],
                          [0, 0, 0, 0, 0, 0],
                          [0, 0, 0, 1, 1, 0],
                          [0, 0, 0, 1, 1, 0]], dtype=np.uint8)
    prod, ref = _raster(tmp_path / "change.tif", product, transform, nodata=255), \
        _raster(tmp_path / "ref.tif", reference, transform, nodata=255)
    # the patches: the lower-right block only (the upper-left one was screened); the patch reaching
    # into the no-data columns counts only where the product has data
    patches = gpd.GeoDataFrame({"patch_id": ["p"]}, geometry=[_cells(3, 2, 6, 4).union(_cells(4, 0, 6, 1))],
                               crs=UTM).to_crs("EPSG:4326")
    patches.to_file(tmp_path / "patches.gpkg", layer="patches")
    raster_scores = run_change_validation(prod, ref).scores
    assert (raster_scores.tp, raster_scores.fp, raster_scores.fn) == (6, 2, 0)
    s = run_change_validation(prod, ref, tmp_path / "val", patches=tmp_path / "patches.gpkg").scores
    # patch cells with data: (3..5, rows 2-3) = 6, of which 4 are reference change; (4..5, row 0) no data
    assert (s.tp, s.fp, s.fn, s.n_scored) == (4, 2, 2, 20)
    body = json.loads((tmp_path / "val" / "change_scores.json").read_text())
    assert body["patches"].endswith("patches.gpkg") and "the patches of" in body["scored_on"]
    assert main(["validate", "--kind", "change", "--product", str(prod), "--reference", str(ref), "--patches",
                 str(tmp_path / "nosuch.gpkg")]) == 2
    assert "--patches" in capsys.readouterr().err
    assert main(["validate", "--kind", "fire", "--product", str(prod), "--stations", str(prod), "--patches",
                 str(tmp_path / "patches.gpkg"), "--out", str(tmp_path / "x")]) == 2
    assert "--patches applies to --kind change" in capsys.readouterr().err


def test_validate_patches_of_a_screened_run(sim_pair, tmp_path):
    """On the simulated pair, against its truth: the screened patches' precision far above the raster's."""
    from rsmon.workflow.redline import run_change_validation, run_redline_detect

    run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "run", quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    with rasterio.open(sim_pair.truth_raster) as ds:  # truth codes 1-4 -> 1 change
        ref = _raster(tmp_path / "truth01.tif", (ds.read(1) > 0).astype(np.uint8), ds.transform, crs=ds.crs.to_wkt(),
                      nodata=255)
    raster = run_change_validation(tmp_path / "run" / "change.tif", ref).scores
    kept = run_change_validation(tmp_path / "run" / "change.tif", ref, patches=tmp_path / "run" / "patches.gpkg").scores
    assert raster.precision < 0.1 and kept.precision > 0.8, (raster.precision, kept.precision)
    assert kept.n_scored == raster.n_scored  # the same pixels are scored, only the prediction differs


# ---- barren parts of screened patches -------------------------------------------------------------

def _barren_case():
    """A 8 x 10 grid: screened pieces A (rows 0-3, cols 0-5), B (rows 5-7, cols 0-3) and C (rows 0-3,
    cols 6-9, touching A). Became barren (NDVI 0.6 before, <= 0.1 after): in A a 2 x 2 block at rows
    1-2, cols 1-2 and (3, 3), 8-connected to it (5 pixels), and (0, 5); in B three pixels in a row
    (and (7, 0) below them, barren on both dates); in C (0, 6), (1, 6), (1, 7), which touch A's
    (0, 5) across the pieces' edge."""
    import xarray as xr

    transform = Affine(10, 0, 500000, 0, -10, 4000000)
    h, w = 8, 10
    ndvi = np.full((h, w), 0.25, np.float32)
    barren_a = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)]
    for r, c in barren_a:
        ndvi[r, c] = 0.05 + 0.01 * barren_a.index((r, c))  # 0.05 .. 0.09
    for r, c in [(0, 5), (6, 0), (6, 1), (6, 2), (0, 6), (1, 6), (1, 7), (7, 0)]:
        ndvi[r, c] = 0.08
    before = np.full((h, w), 0.6, np.float32)
    before[7, 0] = 0.05  # barren before too (a road): B's fourth barren pixel is no change of its own
    ndbi = np.full((h, w), -0.1, np.float32)
    ndbi[1, 1] = np.nan
    ndbi[1, 2], ndbi[2, 1], ndbi[2, 2], ndbi[3, 3] = 0.1, 0.2, 0.3, 0.4
    cls = np.full((h, w), 1, np.uint8)
    for r, c in [(1, 1), (1, 2), (2, 1)]:
        cls[r, c] = 2  # mining 3, construction 2: mining
    conf = np.ones((h, w), np.uint8)
    conf[3, 3] = 2
    ds = xr.Dataset({"change_class": (("y", "x"), cls), "confidence": (("y", "x"), conf)},
                    coords={"y": 4000000 - 10 * np.arange(h) - 5, "x": 500000 + 10 * np.arange(w) + 5},
                    attrs={"before_datetime": "2023-05-01T00:00:00Z", "after_datetime": "2023-06-01T00:00:00Z"})
    ds = ds.rio.write_crs(UTM).rio.write_transform(transform)
    pieces = {"A": _cells(0, 0, 6, 4), "B": _cells(0, 5, 4, 8), "C": _cells(6, 0, 10, 4)}
    screened = _patch_rows(list(pieces.values()), list(pieces), first="2023-05-01")
    screened["last_detected"] = "2023-06-01"
    screened["n_pixels"] = [24, 12, 16]
    screened["confidence_code"], screened["class_code"] = 1, 1
    screened["screen_reason"] = CROP_CYCLE
    # A's means as the patch table gives them: 5 part pixels (sum 0.35), (0, 5) 0.08, 18 at 0.25
    screened.loc[0, "ndvi_after"] = (0.35 + 0.08 + 18 * 0.25) / 24
    inside = np.zeros((h, w), bool)
    inside[0:4, :], inside[5:8, 0:4] = True, True
    flat = np.flatnonzero(inside)

    def samples_in_rows(r0, r1):  # two block rows of four rows, as the pass hands them over
        sel = flat[(flat // w >= r0) & (flat // w < r1)]
        return [(sel, {"ndvi_after": ndvi.ravel()[sel], "ndbi_after": ndbi.ravel()[sel],
                       "ndvi_before": before.ravel()[sel]})]

    return ds, screened, samples_in_rows


def test_barren_parts_known_answer():
    from rsmon.products.change_barren import barren_parts

    ds, screened, samples = _barren_case()
    parts, rest = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4)
    # one part: A's five pixels (the 2 x 2 block and its diagonal neighbour); A's single pixel, B's
    # three (four with the pixel barren before too) and C's three (joined to A's only across two
    # pieces) are below the unit
    assert len(parts) == 1
    part = parts.iloc[0]
    assert part["n_pixels"] == 5 and part.geometry.area == pytest.approx(500.0)
    assert part.geometry.equals(shapely.union_all([_cells(c, r, c + 1, r + 1) for r, c in
                                                   [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)]]))
    assert part["change_class"] == "mining_quarrying" and part["class_code"] == 2
    assert part["confidence"] == "high" and part["confidence_code"] == 2
    assert part["ndvi_after"] == pytest.approx(0.07) and part["ndbi_after"] == pytest.approx(0.25)  # NaN skipped
    assert part["ndvi_before"] == pytest.approx(0.6) and np.isnan(part["mndwi_after"])  # not sampled: NaN
    # detected in this run (not the screened field's first detection); the rest is the parent's
    assert part["first_detected"] == "2023-06-01" and part["before_date"] == screened["before_date"][0]
    assert part["cropland_fraction"] == 1.0 and "screen_reason" not in parts.columns
    assert part["patch_id"].startswith("chg-") and part["patch_id"] not in set(screened["patch_id"])
    assert part["area_m2"] == pytest.approx(500.0, rel=2e-3)  # equal-area: UTM scale factor
    # the rest of A stays screened without the part; B and C unchanged
    a = rest.set_index("patch_id").loc["A"]
    assert a["n_pixels"] == 19 and a.geometry.area == pytest.approx(1900.0)
    assert a["area_m2"] == pytest.approx(1900.0, rel=2e-3) and a["screen_reason"] == CROP_CYCLE
    assert a["ndvi_after"] == pytest.approx((0.08 + 18 * 0.25) / 19, abs=1e-6)  # without the part
    assert a["ndbi_after"] == pytest.approx((0.2 * 24 - 1.0) / 20)  # four finite samples taken out (one NaN)
    assert rest.set_index("patch_id").loc[["B", "C"], "n_pixels"].tolist() == [12, 16]
    assert list(rest.columns) == list(screened.columns)
    # a smaller unit takes C's three pixels and B's three (not A's single one); a stricter limit none
    small, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 3)
    assert sorted(small["n_pixels"]) == [3, 3, 5]
    assert not len(barren_parts(screened, ds, samples, [0, 4, 8], 0.04, 1)[0])


def test_barren_parts_reconciled_with_previous():
    """A part detected before keeps its id and first detection; ids in use are not given again."""
    from rsmon.products.change_barren import barren_parts

    ds, screened, samples = _barren_case()
    first, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4)
    previous = first.copy()
    previous["first_detected"] = "2023-04-01"
    again, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4, previous=previous,
                            taken=set(previous["patch_id"]))
    assert again["patch_id"].tolist() == first["patch_id"].tolist()
    assert again["first_detected"].tolist() == ["2023-04-01"]
    other, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4, taken=set(first["patch_id"]))
    assert other["patch_id"][0] == f"{first['patch_id'][0]}-2"
    # a previous patch that this run's parent (screened A) or a kept patch already carries is not
    # matched again (e.g. a rerun with the map of a run without it, whose patch A held the part)
    whole = screened[screened["patch_id"] == "A"].drop(columns="screen_reason")
    for prev, in_use in ((whole, ()), (whole.assign(patch_id="K"), {"K"})):
        got, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4, previous=prev, in_use=in_use,
                              taken={"A", "B", "C", "K"})
        assert got["patch_id"].tolist() == first["patch_id"].tolist() and got["first_detected"][0] == "2023-06-01"
    got, _ = barren_parts(screened, ds, samples, [0, 4, 8], 0.1, 4, previous=whole.assign(patch_id="K"))
    assert got["patch_id"].tolist() == ["K"]  # K is not this run's: the part inside it takes it


def test_barren_parts_off_switch(sim_pair, tmp_path):
    """keep_barren_parts=False: the screen moves whole patches only (the unscreened run's ids)."""
    from rsmon.workflow.redline import run_redline_detect

    plain = tmp_path / "plain"
    run_redline_detect(sim_pair.before, sim_pair.after, plain, quicklooks=False, checksums=False)
    res = run_redline_detect(sim_pair.before, sim_pair.after, tmp_path / "whole", quicklooks=False, checksums=False,
                             landcover=sim_pair.landcover, screen=ScreenParams(keep_barren_parts=False))
    kept, screened = _ids(tmp_path / "whole" / "patches.gpkg", "patches"), _ids(tmp_path / "whole" / "screened.gpkg",
                                                                                "screened")
    assert kept | screened == _ids(plain / "patches.gpkg", "patches") and res.barren_parts == 0
    with pytest.raises(InputError, match="keep_barren_parts"):
        ScreenParams(keep_barren_parts="yes")


def test_barren_parts_dates_from_a_series_samples():
    """In a series the first later scene flagging the part's pixels gives ``first_detected``; with a
    composite reference the earliest reference scene under it gives ``before_date``."""
    from rsmon.products.change_barren import barren_parts
    from rsmon.products.change_composite import REFERENCE_OBSERVATION
    from rsmon.products.change_series import FIRST_OBSERVATION

    ds, screened, samples = _barren_case()
    ds.attrs["datetimes"] = json.dumps(["2023-06-01T03:00:00Z", "2023-06-20T03:00:00Z"])
    ds.attrs["reference_datetimes"] = json.dumps(["2023-04-10T03:00:00Z", "2023-04-25T03:00:00Z"])
    w = ds.sizes["x"]

    def series(r0, r1):
        out = []
        for flat, values in samples(r0, r1):
            rows, cols = np.divmod(flat, w)
            values = {**values, FIRST_OBSERVATION: np.where((rows == 3) & (cols == 3), 0, 1).astype(np.float32),
                      REFERENCE_OBSERVATION: np.ones(len(flat), np.float32)}
            out.append((flat, values))
        return out

    parts, _ = barren_parts(screened, ds, series, [0, 4, 8], 0.1, 4)
    assert parts["first_detected"].tolist() == ["2023-06-01"] and parts["before_date"].tolist() == ["2023-04-25"]


def test_barren_parts_same_when_streamed(sim_pair, tmp_path):
    """The streamed pass hands its samples back from scratch files: the same parts, ids and values."""
    from rsmon.workflow.redline import run_redline_detect

    tables = {}
    for stream in (False, True):
        out = tmp_path / f"stream-{stream}"
        res = run_redline_detect(sim_pair.before, sim_pair.after, out, quicklooks=False, checksums=False,
                                 landcover=sim_pair.landcover, stream=stream)
        assert res.barren_parts >= 1
        tables[stream] = [gpd.read_file(out / f"{n}.gpkg", layer=n).sort_values("patch_id").reset_index(drop=True)
                          for n in ("patches", "screened")]
    for a, b in zip(tables[False], tables[True]):
        pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
        assert a.geometry.geom_equals(b.geometry).all()


OSCD_RENNES = SEEDS / "oscd" / "rennes"


@pytest.mark.skipif(not OSCD_RENNES.exists(), reason="seeds/oscd/rennes not present")
def test_barren_parts_on_a_real_pair_are_mostly_urban_change(tmp_path):
    """Real Sentinel-2 (OSCD Rennes, lon/lat grid) with a map that says cropland everywhere: every
    patch not barren or water on average is screened, and the parts that became barren come back.
    They are valid polygons, the area is kept, and they are urban change (OSCD's label) more often
    than the unscreened run's patches (0.65 against 0.41, benchmarks/barren_parts_oscd.py)."""
    import warnings

    from rasterio.features import rasterize

    from rsmon.workflow.redline import run_redline_detect

    after = OSCD_RENNES / "imgs_2"
    with rasterio.open(sorted(after.glob("*B04*.tif"))[0]) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8", crs=src.crs,
                       transform=src.transform, nodata=0)
    cover = tmp_path / "all-cropland.tif"
    with rasterio.open(cover, "w", **profile) as dst:
        dst.write(np.full((1, src.height, src.width), 40, np.uint8))
    runs = {}
    for name, kwargs in (("plain", {}), ("whole", {"landcover": cover, "screen": ScreenParams(keep_barren_parts=False)}),
                         ("parts", {"landcover": cover})):
        runs[name] = run_redline_detect(OSCD_RENNES / "imgs_1", after, tmp_path / name, quicklooks=False,
                                        checksums=False, **kwargs)
    table = {name: gpd.read_file(tmp_path / name / "patches.gpkg", layer="patches") for name in runs}
    screened = gpd.read_file(tmp_path / "parts" / "screened.gpkg", layer="screened")
    parts = table["parts"][~table["parts"]["patch_id"].isin(set(table["whole"]["patch_id"]))]
    assert len(parts) == runs["parts"].barren_parts >= 10
    for t in (table["parts"], screened):
        assert set(t.geom_type) <= {"Polygon", "MultiPolygon"} and t.is_valid.all()
    assert table["parts"]["area_m2"].sum() + screened["area_m2"].sum() == pytest.approx(
        table["plain"]["area_m2"].sum(), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the label has no georeference: it is on the imgs_1 grid
        label = rasterio.open(OSCD_RENNES / "cm" / "rennes-cm.tif").read(1)
    with rasterio.open(tmp_path / "parts" / "change.tif") as src:
        transform = src.transform

    def precision(t):
        mask = rasterize(((g, 1) for g in t.geometry), out_shape=label.shape, transform=transform).astype(bool)
        return (label[mask] == 2).mean()

    assert precision(parts) > precision(table["plain"]) + 0.15, (precision(parts), precision(table["plain"]))


# ---- growing-season zones ------------------------------------------------------------------------

def _zones_file(path: Path, rows, crs="EPSG:4326", column="growing_season") -> Path:
    gpd.GeoDataFrame({column: [r[0] for r in rows]}, geometry=[r[1] for r in rows], crs=crs).to_file(path)
    return path


def test_seasons_at_known_answers(tmp_path):
    from rsmon.io.season_zones import read_season_zones, seasons_at

    # zones in WGS 84 over a UTM 50N scene near 114E 36N: west single cropping, east double (empty),
    # and an overlapping later zone that loses to the first in file order
    zones = read_season_zones(_zones_file(tmp_path / "z.gpkg", [
        ("5-1:9-30", box(113.0, 35.0, 114.0, 37.0)),
        ("", box(114.0, 35.0, 115.0, 37.0)),
        ("04-01:10-31", box(113.5, 35.0, 114.5, 37.0)),
    ]))
    assert zones["growing_season"].tolist() == ["05-01:09-30", None, "04-01:10-31"]
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    x, y = to_utm.transform([113.8, 114.2, 116.0], [36.0, 36.0, 36.0])
    geoms = [box(xi - 50, yi - 50, xi + 50, yi + 50) for xi, yi in zip(x, y)] + [shapely.Polygon()]
    assert seasons_at(zones, geoms, UTM, default="06-01:08-31") == ["05-01:09-30", None, "06-01:08-31",
                                                                       "06-01:08-31"]
    assert seasons_at(None, geoms, UTM) == [None] * 4 and seasons_at(zones, [], UTM) == []


@pytest.mark.parametrize("rows, column, match", [
    ([("05-01:09-31", box(0, 0, 1, 1))], "growing_season", "feature 0"),
    ([("05-01:09-30", box(0, 0, 1, 1)), ("May", box(1, 0, 2, 1))], "growing_season", "feature 1"),
    ([("05-01:09-30", box(0, 0, 1, 1))], "season", "no column 'growing_season'"),
    ([("05-01:09-30", shapely.LineString([(0, 0), (1, 1)]))], "growing_season", "has no polygon"),
])
def test_season_zones_refused(tmp_path, rows, column, match):
    from rsmon.io.season_zones import read_season_zones

    path = _zones_file(tmp_path / "z.geojson", rows, column=column)
    with pytest.raises(InputError, match=match) as err:
        read_season_zones(path)
    assert str(path) in str(err.value)


def test_season_zones_split_the_watch(sim_pair, tmp_path):
    """June -> 15 August with zones: a zone around one of the bare changes that the every-day run
    re-admits has a season leaving out June and July; the rest of the scene lies in a zone whose
    season is empty (every day). Exactly the every-day run's other re-admissions come back; that
    one is carried, with its June first detection."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair
    from rsmon.workflow.redline import run_redline_detect

    first = tmp_path / "june"
    run_redline_detect(sim_pair.before, sim_pair.after, first, quicklooks=False, checksums=False,
                       landcover=sim_pair.landcover)
    august = simulate_s2_l2a_pair(tmp_path / "aug", size=512, seed=3, n_changes=12, harvest_fraction=0.0,
                                  dates=("2023-05-01", "2023-08-15"))
    june_ids = set(gpd.read_file(first / "screened.gpkg", layer="screened")["patch_id"])

    def run(name, **kwargs):
        run_redline_detect(sim_pair.after, august.after, tmp_path / name, quicklooks=False, checksums=False,
                           landcover=sim_pair.landcover, previous=first / "patches.gpkg", **kwargs)
        t = gpd.read_file(tmp_path / name / "patches.gpkg", layer="patches")
        return t[t["patch_id"].isin(june_ids)]

    every = run("every-day")
    assert len(every) >= 2
    held = every.iloc[0]
    x0, y0, x1, y1 = held.geometry.buffer(20).bounds
    left, bottom, right, top = rasterio.transform.array_bounds(512, 512, sim_pair.transform)
    zones = _zones_file(tmp_path / "zones.gpkg", [("08-01:05-31", box(x0, y0, x1, y1)),
                                                  (None, box(left, bottom, right, top))], crs=UTM)
    got = run("zones", season_zones=zones)
    assert set(got["patch_id"]) == set(every["patch_id"]) - {held["patch_id"]}
    carried = gpd.read_file(tmp_path / "zones" / "screened.gpkg", layer="screened").set_index("patch_id")
    assert carried.loc[held["patch_id"], "first_detected"] == "2023-06-01"
    with rasterio.open(tmp_path / "zones" / "change.tif") as src:
        assert json.loads(src.tags()["rsmon_provenance"])["parameters"]["season_zones"] == str(zones)
