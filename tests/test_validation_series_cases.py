"""Real area-average series against CNEMC stations (numbers as in docs/validation_cases.md).

* TROPOMI 14-day Beijing-box NO2 (eodash) vs the Beijing national stations inside the box, with the
  window stamp read as START and as END of the 14 days (SOURCE.txt: END fits far better);
* MODIS Terra/Aqua AOD over Wuhan (2002-2018) vs PM2.5: the only Wuhan PM2.5 in shared/data that
  overlaps 2002-2018 is the national daily file of 2017-01-01, one satellite value per sensor and
  day, so no correlation can be computed; what can be run is run and checked;
* OMI daily NO2 over Wuhan vs the Wuhan national stations, 2019 (the counterpart of the Beijing
  case of tests/test_validation_real.py).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from paths import SHARED_DATA
from rsmon.io.series import read_giovanni_series
from rsmon.io.stations import read_cnemc_national_daily, read_cnemc_sitelist
from rsmon.validate.collocate import box_distance_km, collocate_series
from rsmon.validate.stats import compute_stats
from rsmon.workflow.validate import run_validation

SITES = SHARED_DATA / "cnemc-stations" / "NewSiteList.csv"
CNEMC = SHARED_DATA / "cnemc-no2-2019-beijing-wuhan"
TROPOMI = SHARED_DATA / "tropomi-no2-beijing-biweekly" / "N1_Beijing_TROPOMI_biweekly_2018-07_2020-06.csv"
BEIJING = CNEMC / "cnemc_beijing_1001A-1012A_NO2_hourly_2019.csv"
WUHAN_NO2 = CNEMC / "cnemc_wuhan_NO2_hourly_2019.csv"
OMI_WUHAN = SHARED_DATA / "omi-no2-giovanni-china-cities" / "wuhanNO2.csv"
MODIS = SHARED_DATA / "giovanni-modis-aod-wuhan"
DAILY = SHARED_DATA / "cnemc-sites-daily"
BACKGROUND = {"1002A", "1334A"}  # 对照点 (background) sites of the Beijing and Wuhan extracts


def need(*paths):
    for p in paths:
        if not p.exists():
            pytest.skip(f"{p} absent (shared data under {SHARED_DATA})")


def window_means(matchups: pd.DataFrame, drop=()) -> pd.DataFrame:
    """One row per satellite step: the series value and the mean over stations of their ground means."""
    m = matchups[~matchups["station_id"].isin(drop)]
    return m.groupby("time").agg(sat=("sat_mean", "first"), ground=("ground_mean", "mean"),
                                 n_stations=("station_id", "nunique")).reset_index()


def nostat(sat, ground):
    return compute_stats(np.asarray(sat), np.asarray(ground), kind="no2", bias_stats=False, n_boot=0)


# --------------------------------------------------------------------------------------------------
# TROPOMI 14-day Beijing box
# --------------------------------------------------------------------------------------------------

# (stamp, overpass) -> per station-window (N, R, Spearman, OLS, RMA), window means (N, R), full-2019 windows (N, R)
TROPOMI_CASES = {
    ("start", "13:30"): ((216, 0.612, 0.549, 4.392, 7.173), (27, 0.629), (25, 0.545)),
    ("end", "13:30"): ((216, 0.869, 0.828, 6.001, 6.904), (27, 0.893), (25, 0.892)),
    ("start", None): ((216, 0.517, 0.548, 3.846, 7.435), (27, 0.538), (25, 0.444)),
    ("end", None): ((216, 0.842, 0.854, 6.028, 7.156), (27, 0.876), (25, 0.878)),
}


@pytest.fixture(scope="module")
def tropomi_runs(tmp_path_factory):
    need(TROPOMI, BEIJING, SITES)
    out = {}
    for stamp, overpass in TROPOMI_CASES:
        res = run_validation("no2", [TROPOMI], [BEIJING], tmp_path_factory.mktemp(f"trop_{stamp}"), sites=SITES,
                             stamp=stamp, overpass=overpass, max_distance_km=0.0, n_boot=0)
        out[stamp, overpass] = res
    return out


@pytest.mark.parametrize("stamp,overpass", sorted(TROPOMI_CASES, key=str))
def test_tropomi_biweekly_beijing_stamp(tropomi_runs, stamp, overpass):
    res = tropomi_runs[stamp, overpass]
    (n, r, rho, ols, rma), (n_w, r_w), (n_full, r_full) = TROPOMI_CASES[stamp, overpass]
    m, s = res.matchups, res.stats
    # max_distance_km=0: only the 8 stations inside the box (1008A, 1010A, 1009A, 1002A lie outside)
    assert sorted(m["station_id"].unique()) == ["1001A", "1003A", "1004A", "1005A", "1006A", "1007A", "1011A", "1012A"]
    # a 14-day window gives ONE matchup per station and window, its ground values pooled over the 14 days
    assert not m.duplicated(["station_id", "time"]).any()
    assert m["ground_n"].max() <= (28 if overpass else 14 * 24)
    assert (s.n, round(s.r, 3), round(s.spearman, 3), round(s.slope_ols, 3), round(s.slope_rma, 3)) == (n, r, rho, ols, rma)
    w = window_means(m)
    sw = nostat(w["sat"], w["ground"])
    assert sw.n == n_w and sw.r == pytest.approx(r_w, abs=1e-3)
    full = w[(w["time"] >= pd.Timestamp("2019-01-01", tz="UTC"))
             & (w["time"] + pd.Timedelta("14D") <= pd.Timestamp("2020-01-01", tz="UTC"))]
    sf = nostat(full["sat"], full["ground"])
    assert sf.n == n_full and sf.r == pytest.approx(r_full, abs=1e-3)
    assert res.paths["report"].exists() and res.paths["stats"].exists()


def test_tropomi_stamp_end_fits_far_better(tropomi_runs):
    for overpass in ("13:30", None):
        r_start = tropomi_runs["start", overpass].stats.r
        r_end = tropomi_runs["end", overpass].stats.r
        assert r_end - r_start > 0.25


# --------------------------------------------------------------------------------------------------
# MODIS AOD over Wuhan vs PM2.5
# --------------------------------------------------------------------------------------------------

def _modis():
    terra = sorted(MODIS.glob("g4*MOD08_D3*.csv"))
    aqua = sorted(MODIS.glob("g4*MYD08_D3*.csv"))
    if not terra or not aqua:
        pytest.skip(f"giovanni-modis-aod-wuhan absent under {SHARED_DATA}")
    return read_giovanni_series(terra[0]), read_giovanni_series(aqua[0])


def test_wuhan_pm25_overlap_with_modis_is_one_day():
    need(SITES, DAILY)
    terra, aqua = _modis()
    first, last = terra["time"].min(), terra["time"].max()
    assert (first, last) == (pd.Timestamp("2002-01-01", tz="UTC"), pd.Timestamp("2018-12-31", tz="UTC"))
    sites = read_cnemc_sitelist(SITES)
    # the long single-station series is Haikou (Hainan), not Wuhan
    assert sites.set_index("station_id").loc["1410A", "city"] == "海口"
    wuhan_codes = set(sites.loc[sites["city"] == "武汉", "station_id"])
    assert {"1325A", "1333A", "1334A"} <= wuhan_codes
    days = sorted(re.search(r"(\d{8})", p.name).group(1) for p in DAILY.glob("china_sites_*.csv"))
    inside = [d for d in days if f"{first:%Y%m%d}" <= d <= f"{last:%Y%m%d}"]
    assert inside == ["20170101"]  # 2019-01-12, 2019-06-12, 2019-10-20 lie after the MODIS series


@pytest.mark.filterwarnings("ignore:An input array is constant")
@pytest.mark.parametrize("sensor,overpass,value", [("terra", "10:30", 0.420), ("aqua", "13:30", 0.502)])
def test_modis_aod_wuhan_vs_pm25_single_day(sensor, overpass, value):
    """One satellite value against 15 stations of the cell: N = 15, but R is undefined (no variance)."""
    need(SITES, DAILY / "china_sites_20170101.csv")
    series = dict(zip(("terra", "aqua"), _modis()))[sensor]
    pm = read_cnemc_national_daily(DAILY / "china_sites_20170101.csv", sites=SITES, variables=["PM2.5"])
    m = collocate_series(series, pm, variable="pm25", max_distance_km=0.0, ground_rule="overpass_window",
                         overpass_local_solar=overpass, window_min=30.0)
    assert len(m) == 15 and m["station_id"].str[:2].isin(["13", "24"]).all()  # 9 Wuhan + 6 Huangshi/Ezhou/Huanggang
    assert m["time"].unique().tolist() == [pd.Timestamp("2017-01-01", tz="UTC")]
    assert m["sat_mean"].nunique() == 1 and m["sat_mean"].iloc[0] == pytest.approx(value, abs=1e-6)
    s = compute_stats(m["sat_mean"], m["ground_mean"], kind="aod", bias_stats=False, n_boot=0)
    assert s.n == 15
    # no variance on the satellite side: R is undefined
    assert np.isnan(s.r)
    assert 80 < m["ground_mean"].mean() < 110
    assert np.isnan(s.rmse) and np.isnan(s.within_ee)  # AOD vs PM2.5: no bias statistics


def test_modis_terra_vs_aqua_consistency():
    """Not a validation: Terra against Aqua (as reference) on the days both have a value, 2002-2018."""
    terra, aqua = _modis()
    both = terra[["time", "value"]].merge(aqua[["time", "value"]], on="time", suffixes=("_terra", "_aqua")).dropna()
    s = compute_stats(both["value_terra"], both["value_aqua"], kind="aod", n_boot=0)
    assert s.n == 2213
    assert (round(s.r, 3), round(s.rmse, 3), round(s.mb, 3), round(s.within_ee, 3)) == (0.876, 0.235, 0.034, 0.691)


# --------------------------------------------------------------------------------------------------
# OMI NO2 over Wuhan vs the Wuhan national stations (2019)
# --------------------------------------------------------------------------------------------------

def test_omi_wuhan_vs_cnemc(tmp_path):
    need(OMI_WUHAN, WUHAN_NO2, SITES)
    res = run_validation("no2", [OMI_WUHAN], [WUHAN_NO2], tmp_path, sites=SITES, overpass="13:45", n_boot=0)
    m, s = res.matchups, res.stats
    assert (s.n, round(s.r, 3), round(s.spearman, 3)) == (1664, 0.484, 0.451)
    assert s.slope_ols == pytest.approx(1.6205e14, rel=1e-3) and s.slope_rma == pytest.approx(3.3515e14, rel=1e-3)
    # 1332A is empty all year; the other 10 stations lie in the box
    assert m["station_id"].nunique() == 10 and "1332A" not in set(m["station_id"])
    assert not m.duplicated(["station_id", "time"]).any() and set(m["ground_n"]) <= {1, 2}
    # daily mean of the 9 non-background stations (SOURCE.txt's check: 170 days, r = 0.60)
    d = window_means(m, drop=BACKGROUND)
    sd = nostat(d["sat"], d["ground"])
    assert sd.n == 170 and sd.r == pytest.approx(0.577, abs=1e-3)
