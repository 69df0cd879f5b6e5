"""Validation report: every file written (atomically), stats.json equal to compute_stats, the HTML
embedding the figures, the no-data and unwritable-folder errors, and the figure paths for many
stations, hexbin density, differing units and administrative outlines."""

from __future__ import annotations

import base64
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import rsmon
from rsmon.errors import InputError, NoDataError, OutputError
from rsmon.validate.report import REPORT_FILES, _text, write_report
from rsmon.validate.stats import compute_stats

CLI_KEYS = ("n", "r", "rmse", "mb", "within_ee", "slope_ols", "slope_rma", "spearman", "nmb", "mae")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
META = {"command": "rsmon validate --product aod -o out sat.nc AERONET.lev20",
        "inputs": ["sat.nc", "AERONET.lev20"], "parameters": {"radius_km": 25.0, "window_min": 30}}

STATIONS = (("1001A", "万寿西宫", 116.366, 39.878), ("XH", "XiangHe", 116.962, 39.754),
            ("XL", "Xinglong", 117.578, 40.396))


def synthetic_matchups(n_stations: int = 3, n_days: int = 60, *, column: bool = False, seed: int = 0) -> pd.DataFrame:
    """Matchup table (rsmon.validate contract): satellite = 1.1 ground + 0.02 + N(0, 0.05) for AOD, or
    a column (mol m-2) = 2e-6 x surface concentration (ug m-3) + noise when ``column``."""
    rng = np.random.default_rng(seed)
    stations = list(STATIONS[:n_stations])
    stations += [(f"S{i:02d}", f"Site {i}", 115.8 + 0.1 * i, 39.5 + 0.07 * i) for i in range(len(stations), n_stations)]
    rows = []
    for sid, name, lon, lat in stations:
        for day in range(n_days):
            if column:
                ground = float(rng.gamma(3.0, 12.0))
                sat = ground * 2e-6 + float(rng.normal(0.0, 2e-5))
            else:
                ground = float(rng.gamma(2.0, 0.25))
                sat = 1.1 * ground + 0.02 + float(rng.normal(0.0, 0.05))
            rows.append({"station_id": sid, "station_name": name, "lon": lon, "lat": lat,
                         "time": pd.Timestamp("2019-06-01T05:30:00", tz="UTC") + pd.Timedelta(days=day),
                         "sat_mean": sat, "sat_std": 0.01, "sat_n": 5, "ground_mean": ground, "ground_std": 0.02,
                         "ground_n": 3, "distance_km": 4.2, "product": "sim"})
    return pd.DataFrame(rows)


def _no_partials(folder):
    return not any(p.name.startswith(".") or ".partial" in p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def aod_report(tmp_path_factory):
    m = synthetic_matchups()
    m.loc[[5, 70], "sat_mean"] = np.nan  # two missing satellite values: 178 pairs
    stats = compute_stats(m["sat_mean"], m["ground_mean"], kind="aod", n_boot=300, seed=4)
    out = tmp_path_factory.mktemp("report") / "aod"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph")  # a CJK glyph missing from the font
        paths = write_report(out, m, stats, kind="aod", title="VIIRS DB AOD vs AERONET", meta=META,
                             units_sat="1", units_ground="1")
    return out, m, stats, paths


def test_all_files_written(aod_report):
    out, _, _, paths = aod_report
    assert set(paths) == set(REPORT_FILES)
    for key, name in REPORT_FILES.items():
        assert paths[key] == out / name and paths[key].is_file() and paths[key].stat().st_size > 0
    for key in ("scatter", "timeseries", "map"):
        assert paths[key].read_bytes()[:8] == PNG_SIGNATURE
    assert _no_partials(out)


def test_stats_json_equals_compute_stats(aod_report):
    _, m, stats, paths = aod_report
    saved = json.loads(paths["stats"].read_text(encoding="utf-8"))
    for key in CLI_KEYS:
        assert key in saved, key
    expected = json.loads(json.dumps(compute_stats(m["sat_mean"], m["ground_mean"], kind="aod", n_boot=300,
                                                   seed=4).to_dict()))
    assert {k: saved[k] for k in expected} == expected
    assert saved["n"] == 178 and saved["n_dropped"] == 2
    assert saved["meta"]["command"] == META["command"]
    assert saved["meta"]["inputs"] == META["inputs"]
    assert saved["meta"]["parameters"] == META["parameters"]
    assert saved["meta"]["rsmon_version"] == rsmon.__version__
    assert saved["units"] == {"sat": "1", "ground": "1"}
    assert 0.5 < saved["within_ee"] <= 1.0 and saved["slope_ols"] == pytest.approx(1.1, abs=0.05)


def test_matchups_csv_iso_utc(aod_report):
    _, m, _, paths = aod_report
    back = pd.read_csv(paths["matchups"])
    assert len(back) == len(m) and list(back.columns) == list(m.columns)
    assert back["time"].iloc[0] == "2019-06-01T05:30:00Z"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in back["time"])
    np.testing.assert_allclose(back["ground_mean"], m["ground_mean"], rtol=1e-15)
    assert back["station_name"].iloc[0] == "万寿西宫"
    stations = pd.read_csv(paths["stations"])
    assert list(stations["station_id"]) == ["1001A", "XH", "XL"] and stations["n"].sum() == 178


def test_html_embeds_figures_and_shows_n(aod_report):
    _, _, stats, paths = aod_report
    page = paths["report"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "VIIRS DB AOD vs AERONET" in page
    assert f"N = {stats.n}" in page
    assert META["command"] in page and "radius_km" in page and "AERONET.lev20" in page
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 3
    for key, data in zip(("scatter", "timeseries", "map"), embedded):
        assert base64.b64decode(data) == paths[key].read_bytes()
        assert f'href="{REPORT_FILES[key]}"' in page
    # the per-station table, with the station names
    assert "Per station" in page and "万寿西宫" in page and "Xinglong" in page
    assert "within EE" in page


def test_zero_matchups_write_nothing(tmp_path):
    m = synthetic_matchups(n_days=5)
    stats = compute_stats(m["sat_mean"], m["ground_mean"], n_boot=0)
    m["sat_mean"] = np.nan
    out = tmp_path / "empty"
    with pytest.raises(NoDataError, match="no matchups"):
        write_report(out, m, stats, kind="aod", title="t", meta={})
    assert not (out / "stats.json").exists()
    assert not out.exists() or not any(out.iterdir())
    # an existing folder with an older report keeps it untouched
    out.mkdir(exist_ok=True)
    (out / "stats.json").write_text("{}")
    with pytest.raises(NoDataError):
        write_report(out, m.iloc[:0], stats, kind="aod", title="t", meta={})
    assert (out / "stats.json").read_text() == "{}"


def test_folder_under_a_regular_file(tmp_path):
    m = synthetic_matchups(n_days=5)
    stats = compute_stats(m["sat_mean"], m["ground_mean"], n_boot=0)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not_a_folder") as info:
        write_report(blocker / "report", m, stats, kind="aod", title="t", meta={})
    assert isinstance(info.value, OSError)


def test_inconsistent_inputs_rejected(tmp_path):
    m = synthetic_matchups(n_days=5)
    stats = compute_stats(m["sat_mean"], m["ground_mean"], n_boot=0)
    with pytest.raises(InputError, match="ground_mean"):
        write_report(tmp_path / "a", m.drop(columns="ground_mean"), stats, kind="aod", title="t", meta={})
    with pytest.raises(InputError, match="pairs"):
        write_report(tmp_path / "b", m.iloc[:10], stats, kind="aod", title="t", meta={})
    from rsmon.validate.stats import ExpectedError

    with pytest.raises(InputError, match="ee"):
        write_report(tmp_path / "c", m, stats, kind="aod", title="t", meta={}, ee=ExpectedError(0.03, 0.05))
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


def test_column_against_concentration_many_stations_hexbin_outlines(tmp_path):
    """NO2 column vs surface concentration: no bias statistics, twin axes, 15 stations (12 panels,
    the last summarising 4), 600 pairs (hexbin), provincial outlines on the map."""
    geopandas = pytest.importorskip("geopandas")
    from shapely.geometry import box

    m = synthetic_matchups(n_stations=15, n_days=40, column=True, seed=1)
    stats = compute_stats(m["sat_mean"], m["ground_mean"], kind="no2", bias_stats=False, n_boot=50)
    outlines = geopandas.GeoDataFrame({"name": ["P1", "P2"]},
                                      geometry=[box(115.5, 39.0, 116.8, 41.0), box(116.8, 39.0, 118.5, 41.0)],
                                      crs="EPSG:4326")
    paths = write_report(tmp_path / "no2", m, stats, kind="no2", title="TROPOMI NO2 vs CNEMC", meta=META,
                         outlines=outlines, units_sat="mol m-2", units_ground="ug m-3", by_station=False)
    assert "stations" not in paths and not (tmp_path / "no2" / "stations.csv").exists()
    saved = json.loads(paths["stats"].read_text())
    assert saved["n"] == 600 and saved["bias_stats"] is False
    assert saved["mb"] is None and saved["rmse"] is None and saved["within_ee"] is None
    assert saved["r"] == pytest.approx(stats.r)
    page = paths["report"].read_text(encoding="utf-8")
    assert "N = 600" in page and "Per station" not in page
    assert "not computed" in page  # the note on bias statistics
    for key in ("scatter", "timeseries", "map"):
        assert paths[key].read_bytes()[:8] == PNG_SIGNATURE
    assert _no_partials(tmp_path / "no2")


def test_text_without_glyphs_falls_back():
    # Latin text is drawn as is
    assert _text("XiangHe") == ("XiangHe", {})
    text, font = _text("万寿西宫", fallback="1001A")
    if font:  # a CJK font is installed: drawn with it as a fallback family
        assert text == "万寿西宫" and len(font["fontfamily"]) == 2
    else:  # otherwise the id replaces the name instead of empty boxes
        assert text == "1001A"
        assert _text("Beijing 北京") == ("Beijing", {})
