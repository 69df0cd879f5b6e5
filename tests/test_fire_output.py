"""rsmon.io.fire_output: FIRMS VIIRS CSV (byte-exact against a real FIRMS file), GeoJSON, GeoPackage, PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from paths import SEEDS, SHARED_DATA

from rsmon.errors import InputError
from rsmon.io.fire_output import (
    FIRMS_VIIRS_COLUMNS,
    write_fire_geojson,
    write_fire_gpkg,
    write_fire_map_png,
    write_firms_csv,
)
from rsmon.io.stations import read_firms

VIIRS_CSV = SHARED_DATA / "firms-germany-2023" / "viirs-snpp_2023_Germany.csv"
PROVINCES = SEEDS / "china-admin" / "100000_full.json"


def _detector_table() -> pd.DataFrame:
    """Fires as the detector writes them (input contract), with rsmon diagnostics."""
    return pd.DataFrame({
        "latitude": [34.123456, 34.5, 35.0], "longitude": [117.0000049, 117.25, 118.125],
        "bright_ti4": [330.164, 367.0, 301.5], "bright_ti5": [290.0, 301.88, 280.255],
        "frp": [4.914, 186.05, np.nan], "confidence": ["nominal", "high", "low"],
        "daynight": ["D", "D", "N"], "scan": [0.39, 0.4, 0.66], "track": [0.36, 0.37, 0.73],
        "acq_date": ["2023-06-12", "2023-06-12", "2023-06-12"], "acq_time": ["0531", "0531", "1802"],
        "satellite": ["N", "N", "N"], "instrument": ["VIIRS"] * 3, "version": ["rsmon-0.1.0"] * 3,
        "bg_n": [40, 55, 12], "category": ["straw_burning_suspected", "other_fire", "low_confidence_day"],
    })


@pytest.fixture(scope="module")
def firms_viirs():
    if not VIIRS_CSV.exists():
        pytest.skip(f"{VIIRS_CSV} not present")
    return read_firms(VIIRS_CSV)


def test_firms_csv_reproduces_real_file_bytes(firms_viirs, tmp_path):
    """read_firms -> write_firms_csv gives back the FIRMS archive file line for line."""
    rows = list(range(0, 400)) + list(range(len(firms_viirs) - 100, len(firms_viirs)))
    subset = firms_viirs.iloc[rows]
    out = write_firms_csv(tmp_path / "fires.csv", subset)
    original = VIIRS_CSV.read_text(encoding="utf-8").splitlines()
    expected = [original[0]] + [original[i + 1] for i in rows]
    written = out.read_text(encoding="utf-8").splitlines()
    assert written[0] == ",".join(FIRMS_VIIRS_COLUMNS) + ",type"  # archive layout keeps 'type' last
    assert written == expected
    back = read_firms(out)
    cols = [c for c in firms_viirs.columns if c != "source"]
    pd.testing.assert_frame_equal(back[cols].reset_index(drop=True), subset[cols].reset_index(drop=True))


def test_firms_csv_from_detector_table_round_trip(tmp_path):
    fires = _detector_table()
    out = write_firms_csv(tmp_path / "det.csv", fires)
    header, first, *_ = out.read_text().splitlines()
    assert header.split(",") == list(FIRMS_VIIRS_COLUMNS)  # no type column, no diagnostics
    assert first == "34.12346,117,330.16,0.39,0.36,2023-06-12,0531,N,VIIRS,n,rsmon-0.1.0,290,4.91,D"
    back = read_firms(out)
    assert back["confidence"].tolist() == ["n", "h", "l"]
    assert back["confidence_class"].astype(str).tolist() == ["nominal", "high", "low"]
    assert back["time"].dt.strftime("%Y-%m-%d %H:%M").tolist() == ["2023-06-12 05:31"] * 2 + ["2023-06-12 18:02"]
    for col, decimals in (("latitude", 5), ("longitude", 5), ("bright_ti4", 2), ("bright_ti5", 2), ("frp", 2),
                          ("scan", 2), ("track", 2)):
        np.testing.assert_allclose(back[col], fires[col].round(decimals), equal_nan=True, err_msg=col)
    assert back["type"].isna().all()
    # extra=True appends the rsmon columns after the FIRMS ones
    out2 = write_firms_csv(tmp_path / "det_extra.csv", fires, extra=True)
    header2 = out2.read_text().splitlines()[0].split(",")
    assert header2 == list(FIRMS_VIIRS_COLUMNS) + ["bg_n", "category"]
    assert read_firms(out2)["frp"].tolist()[:2] == [4.91, 186.05]


def test_firms_csv_rejects_non_viirs_tables(tmp_path):
    fires = _detector_table()
    with pytest.raises(InputError, match="bright_ti5"):
        write_firms_csv(tmp_path / "x.csv", fires.drop(columns="bright_ti5"))
    with pytest.raises(InputError, match="MODIS"):
        write_firms_csv(tmp_path / "x.csv", fires.assign(confidence=[80, 50, 10]))
    assert not list(tmp_path.iterdir())  # nothing written, no partial file


def test_geojson_and_gpkg(firms_viirs, tmp_path):
    import geopandas as gpd
    import pyogrio

    fires = firms_viirs.iloc[:50].assign(category="other_fire")
    gj = write_fire_geojson(tmp_path / "fires.geojson", fires)
    g = gpd.read_file(gj)
    assert len(g) == 50 and g.crs.to_epsg() == 4326
    np.testing.assert_allclose(g.geometry.x, fires["longitude"], atol=1e-7)
    np.testing.assert_allclose(g.geometry.y, fires["latitude"], atol=1e-7)
    assert g["confidence_class"].tolist() == fires["confidence_class"].astype(str).tolist()
    assert g["category"].eq("other_fire").all()

    gp = write_fire_gpkg(tmp_path / "fires.gpkg", fires)
    assert [name for name, _ in pyogrio.list_layers(gp)] == ["fires"]
    g2 = gpd.read_file(gp, layer="fires")
    assert len(g2) == 50 and g2.crs.to_epsg() == 4326
    np.testing.assert_allclose(g2["frp"], fires["frp"])
    assert g2["type"].tolist() == fires["type"].astype(int).tolist()
    # replacing an existing file works (atomic rename), and no temporary file is left
    write_fire_gpkg(gp, fires.iloc[:5])
    assert len(gpd.read_file(gp, layer="fires")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fires.geojson", "fires.gpkg"]


def test_fire_map_png(tmp_path):
    from rsmon.io.maps import read_outlines

    if not PROVINCES.exists():
        pytest.skip(f"{PROVINCES} not present")
    outlines = read_outlines(PROVINCES)
    out = write_fire_map_png(tmp_path / "map.png", _detector_table(), outlines, title="test fires")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # no category column and no fires: still a map (outlines extent)
    out2 = write_fire_map_png(tmp_path / "empty.png", _detector_table().iloc[:0].drop(columns="category"), outlines)
    assert out2.read_bytes()[:4] == b"\x89PNG"
