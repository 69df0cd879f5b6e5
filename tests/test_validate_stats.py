"""Validation statistics: known answers against SciPy, hand-computed RMA / envelope / bias examples,
the bootstrap, NaN handling, the no-data error, grouped statistics and the JSON contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from rsmon.errors import InputError, NoDataError, RsmonError
from rsmon.validate.stats import (
    EE_DEFAULTS,
    ExpectedError,
    ValidationStats,
    compute_stats,
    stats_by,
)

# Keys the CLI reads from stats.json (contract).
CLI_KEYS = ("n", "r", "rmse", "mb", "within_ee", "slope_ols", "slope_rma", "spearman", "nmb", "mae")


def _pairs(n: int, seed: int = 1, noise: float = 0.1):
    """AOD-like ground values and satellite = 0.9 ground + 0.05 + noise."""
    rng = np.random.default_rng(seed)
    ground = rng.gamma(2.0, 0.2, n)
    sat = 0.9 * ground + 0.05 + rng.normal(0.0, noise, n)
    return sat, ground


# --------------------------------------------------------------------------------------------------
# known answers against SciPy
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 4, 10, 57, 400])
def test_correlations_and_ols_match_scipy(n):
    sat, ground = _pairs(n, seed=n)
    st = compute_stats(sat, ground, n_boot=0)
    pearson = scipy.stats.pearsonr(ground, sat)
    spearman = scipy.stats.spearmanr(ground, sat)
    fit = scipy.stats.linregress(ground, sat)
    assert st.n == n
    assert st.r == pytest.approx(pearson[0], abs=1e-12)
    assert st.r_p == pytest.approx(pearson[1], rel=1e-9, abs=1e-300)
    assert st.spearman == pytest.approx(spearman[0], abs=1e-12)
    assert st.spearman_p == pytest.approx(spearman[1], rel=1e-9, abs=1e-300)
    assert st.slope_ols == pytest.approx(fit.slope, rel=1e-12)
    assert st.intercept_ols == pytest.approx(fit.intercept, rel=1e-9, abs=1e-12)


def test_spearman_with_ties_matches_scipy():
    sat, ground = _pairs(300, seed=7)
    sat, ground = np.round(sat, 1), np.round(ground, 1)  # many ties
    st = compute_stats(sat, ground, n_boot=0)
    ref = scipy.stats.spearmanr(ground, sat)
    assert st.spearman == pytest.approx(ref[0], abs=1e-12)
    assert st.spearman_p == pytest.approx(ref[1], rel=1e-8, abs=1e-300)


def test_p_value_is_nan_below_three_pairs_and_zero_for_perfect_correlation():
    st = compute_stats([1.0, 2.0], [1.0, 2.0], n_boot=0)
    assert math.isnan(st.r) and math.isnan(st.r_p)
    st = compute_stats([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0], n_boot=0)
    assert st.r == pytest.approx(1.0) and st.r_p == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# hand-computed examples
# --------------------------------------------------------------------------------------------------

def test_rma_hand_computed():
    # x = ground, y = satellite. mean x 2.5, mean y 4; sum dx^2 = 5, sum dy^2 = 10, sum dxdy = 7
    ground = np.array([1.0, 2.0, 3.0, 4.0])
    sat = np.array([2.0, 3.0, 5.0, 6.0])
    st = compute_stats(sat, ground, n_boot=0)
    assert st.slope_rma == pytest.approx(math.sqrt(10 / 5))  # s_y / s_x = sqrt(2)
    assert st.intercept_rma == pytest.approx(4 - math.sqrt(2) * 2.5)
    assert st.slope_ols == pytest.approx(7 / 5)
    assert st.intercept_ols == pytest.approx(4 - 1.4 * 2.5)
    assert st.r == pytest.approx(7 / math.sqrt(50))
    # RMA slope = OLS slope / r
    assert st.slope_rma == pytest.approx(st.slope_ols / st.r)
    # negative correlation: the sign of r carries over
    st_neg = compute_stats(sat[::-1].copy(), ground, n_boot=0)
    assert st_neg.slope_rma == pytest.approx(-math.sqrt(2))
    assert st_neg.intercept_rma == pytest.approx(4 + math.sqrt(2) * 2.5)


def test_expected_error_hand_computed():
    ground = np.array([0.1, 0.5, 1.0, 0.4, 0.5])
    sat = np.array([0.2, 0.5, 1.5, 0.2, 0.625])
    # EE = 0.05 + 0.15 O = [0.065, 0.125, 0.2, 0.11, 0.125]; S - O = [0.1, 0, 0.5, -0.2, 0.125]
    # -> above, within, above, below, within (on the edge: |S - O| <= EE counts as within)
    ee = ExpectedError(0.05, 0.15)
    np.testing.assert_allclose(ee.envelope(ground), [0.065, 0.125, 0.2, 0.11, 0.125])
    st = compute_stats(sat, ground, kind="aod", n_boot=0)
    assert st.ee == ee
    assert st.within_ee == pytest.approx(2 / 5)
    assert st.above_ee == pytest.approx(2 / 5)
    assert st.below_ee == pytest.approx(1 / 5)
    # Dark Target ocean: EE = 0.03 + 0.05 O = [0.035, 0.055, 0.08, 0.05, 0.055] -> only S = O is within
    st_ocean = compute_stats(sat, ground, kind="aod_dt_ocean", n_boot=0)
    assert (st_ocean.within_ee, st_ocean.above_ee, st_ocean.below_ee) == pytest.approx((1 / 5, 3 / 5, 1 / 5))


def test_ee_defaults():
    assert EE_DEFAULTS["aod"] == EE_DEFAULTS["aod_dt_land"] == ExpectedError(0.05, 0.15)
    assert EE_DEFAULTS["aod_dt_ocean"] == ExpectedError(0.03, 0.05)
    assert EE_DEFAULTS["aod_db_land"] == ExpectedError(0.05, 0.20)
    assert EE_DEFAULTS["no2"] is None and EE_DEFAULTS["xch4"] is None
    sat, ground = _pairs(50)
    st = compute_stats(sat, ground, kind="xch4", n_boot=0)
    assert st.ee is None and math.isnan(st.within_ee) and math.isnan(st.above_ee)
    assert math.isfinite(st.mb)
    # explicit envelopes: a pair or an ExpectedError; None switches it off
    assert compute_stats(sat, ground, kind="pm25", ee=(0.1, 0.2), n_boot=0).ee == ExpectedError(0.1, 0.2)
    assert compute_stats(sat, ground, kind="aod", ee=None, n_boot=0).ee is None
    with pytest.raises(InputError, match="pm25"):
        compute_stats(sat, ground, kind="pm25")
    with pytest.raises(InputError, match="expected error"):
        ExpectedError(-0.05, 0.15)


def test_bias_metrics_hand_computed():
    sat = np.array([1.0, 2.0, 3.0])
    ground = np.array([1.0, 1.0, 2.0])
    # S - O = [0, 1, 1]; S + O = [2, 3, 5]; sum O = 4
    st = compute_stats(sat, ground, kind="aod", ee=None, n_boot=0)
    assert st.mb == pytest.approx(2 / 3)
    assert st.nmb == pytest.approx(2 / 4)
    assert st.nme == pytest.approx(2 / 4)
    assert st.rmse == pytest.approx(math.sqrt(2 / 3))
    assert st.mae == pytest.approx(2 / 3)
    assert st.mnmb == pytest.approx(2 / 3 * (0 / 2 + 1 / 3 + 1 / 5))
    assert st.fge == pytest.approx(2 / 3 * (0 / 2 + 1 / 3 + 1 / 5))
    assert st.median_rel_bias == pytest.approx(1.0 / 1.0)
    assert st.dispersion_mad == pytest.approx(1.4826 * 0.0)  # |diff - median| = [1, 0, 0]
    # negative differences: MNMB signed, FGE not
    st2 = compute_stats(ground, sat, kind="aod", ee=None, n_boot=0)
    assert st2.mnmb == pytest.approx(-st.mnmb)
    assert st2.fge == pytest.approx(st.fge)


def test_bias_stats_off_for_column_against_concentration():
    rng = np.random.default_rng(3)
    surface = rng.gamma(3.0, 12.0, 200)  # ug m-3
    column = surface * 2e-6 + rng.normal(0, 2e-5, 200)  # mol m-2
    st = compute_stats(column, surface, kind="no2", bias_stats=False, n_boot=100)
    assert st.bias_stats is False
    for name in ("mb", "nmb", "rmse", "mae", "nme", "mnmb", "fge", "within_ee", "median_rel_bias"):
        assert math.isnan(getattr(st, name)), name
    assert st.r > 0.8 and math.isfinite(st.slope_rma) and math.isfinite(st.spearman)
    d = st.to_dict()
    assert d["bias_stats"] is False and d["mb"] is None and d["rmse"] is None
    # the envelope is not applied even when one is given
    st_ee = compute_stats(column, surface, kind="no2", ee=(0.1, 0.1), bias_stats=False, n_boot=0)
    assert math.isnan(st_ee.within_ee)


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------

def test_bootstrap_contains_estimate_narrows_and_is_reproducible():
    small = compute_stats(*_pairs(30, seed=2), n_boot=500, seed=11)
    large = compute_stats(*_pairs(3000, seed=2), n_boot=500, seed=11)
    for st in (small, large):
        for name in ("r", "slope_ols", "slope_rma"):
            lo, hi = getattr(st, f"{name}_ci")
            assert lo <= getattr(st, name) <= hi, name
    for name in ("r_ci", "slope_ols_ci", "slope_rma_ci"):
        width_small = np.diff(getattr(small, name))[0]
        width_large = np.diff(getattr(large, name))[0]
        assert width_large < width_small / 3, name  # ~ 1/sqrt(n): 10x narrower for 100x the pairs
    again = compute_stats(*_pairs(30, seed=2), n_boot=500, seed=11)
    assert again.to_dict() == small.to_dict()
    other_seed = compute_stats(*_pairs(30, seed=2), n_boot=500, seed=12)
    assert other_seed.r_ci != small.r_ci
    assert other_seed.r == small.r
    # a 99 % interval is wider than the 95 % one
    wide = compute_stats(*_pairs(30, seed=2), n_boot=500, seed=11, confidence=0.99)
    assert np.diff(wide.r_ci)[0] > np.diff(small.r_ci)[0]


def test_bootstrap_off_and_bad_arguments():
    st = compute_stats(*_pairs(30), n_boot=0)
    assert all(math.isnan(v) for v in st.r_ci + st.slope_ols_ci + st.slope_rma_ci)
    with pytest.raises(InputError, match="confidence"):
        compute_stats(*_pairs(30), confidence=95)
    with pytest.raises(InputError, match="n_boot"):
        compute_stats(*_pairs(30), n_boot=-1)


# --------------------------------------------------------------------------------------------------
# missing data
# --------------------------------------------------------------------------------------------------

def test_nan_pairs_dropped():
    sat, ground = _pairs(40, seed=5)
    clean = compute_stats(sat, ground, n_boot=200)
    sat_nan = np.r_[sat, np.nan, 0.3, np.inf]
    ground_nan = np.r_[ground, 0.2, np.nan, 0.4]
    dirty = compute_stats(sat_nan, ground_nan, n_boot=200)
    assert dirty.n == 40 and dirty.n_dropped == 3
    expected = clean.to_dict()
    expected["n_dropped"] = 3
    assert dirty.to_dict() == expected


@pytest.mark.parametrize("sat, ground", [([], []), ([np.nan, 1.0], [2.0, np.nan]), ([np.nan], [np.nan])])
def test_no_matchups_raise(sat, ground):
    with pytest.raises(NoDataError, match="no matchups") as info:
        compute_stats(sat, ground)
    assert isinstance(info.value, (ValueError, RsmonError))


def test_fewer_than_three_pairs_bias_only():
    st = compute_stats([0.3, 0.5], [0.2, 0.6])
    assert st.n == 2
    for name in ("r", "r_p", "spearman", "slope_ols", "slope_rma", "intercept_rma"):
        assert math.isnan(getattr(st, name)), name
    assert all(math.isnan(v) for v in st.r_ci)
    assert st.mb == pytest.approx(0.0)
    assert st.mae == pytest.approx(0.1)
    # EE = 0.05 + 0.15 O = [0.08, 0.14]; S - O = [0.1, -0.1] -> above, within
    assert (st.within_ee, st.above_ee, st.below_ee) == pytest.approx((0.5, 0.5, 0.0))


def test_different_lengths_rejected():
    with pytest.raises(InputError, match="same number"):
        compute_stats([1.0, 2.0, 3.0], [1.0, 2.0])


def test_constant_ground_gives_nan_correlation():
    st = compute_stats([0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5], n_boot=50)
    assert math.isnan(st.r) and math.isnan(st.slope_ols) and math.isnan(st.slope_rma)
    assert st.mb == pytest.approx(-0.25)


# --------------------------------------------------------------------------------------------------
# JSON contract
# --------------------------------------------------------------------------------------------------

def test_to_dict_is_strict_json_with_contract_keys():
    st = compute_stats([0.3, 0.5], [0.2, 0.6])  # NaN correlations
    d = st.to_dict()
    for key in CLI_KEYS:
        assert key in d, key
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["r"] is None and back["n"] == 2 and isinstance(back["n"], int)
    assert back["r_ci"] == [None, None]
    assert back["ee"] == {"a": 0.05, "b": 0.15}
    assert set(d) >= {f for f in ValidationStats.__dataclass_fields__}
    for value in d.values():
        assert not isinstance(value, (np.generic, np.ndarray))


# --------------------------------------------------------------------------------------------------
# grouped statistics
# --------------------------------------------------------------------------------------------------

def _matchups() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    rows = []
    for sid, name, lon, lat, n in (("A", "Alpha", 116.0, 40.0, 20), ("B", "Beta", 117.0, 39.0, 10),
                                   ("C", "Gamma", 118.0, 38.0, 2)):
        for day in range(n):
            ground = float(rng.gamma(2.0, 0.2))
            rows.append({"station_id": sid, "station_name": name, "lon": lon, "lat": lat,
                         "time": pd.Timestamp("2020-01-01T05:30", tz="UTC") + pd.Timedelta(days=day),
                         "sat_mean": ground * 1.1 + 0.01, "ground_mean": ground,
                         "province": "P1" if sid != "B" else "P2"})
    return pd.DataFrame(rows)


def test_stats_by_station():
    m = _matchups()
    table = stats_by(m, "station_id", n_boot=0)
    assert list(table["station_id"]) == ["A", "B"]  # C has 2 pairs < min_n = 3
    assert list(table.columns[:4]) == ["station_id", "station_name", "lon", "lat"]
    assert list(table["n"]) == [20, 10]
    sub = m[m.station_id == "A"]
    expected = compute_stats(sub.sat_mean, sub.ground_mean, n_boot=0)
    row = table.iloc[0]
    assert row["r"] == pytest.approx(expected.r)
    assert row["mb"] == pytest.approx(expected.mb)
    assert {"r_ci_lo", "r_ci_hi", "slope_rma_ci_lo"} <= set(table.columns)
    assert "kind" not in table.columns
    everything = stats_by(m, "station_id", min_n=1, n_boot=0)
    assert list(everything["station_id"]) == ["A", "B", "C"]
    assert math.isnan(everything.iloc[2]["r"]) and math.isfinite(everything.iloc[2]["mb"])


def test_stats_by_day_province_and_lists():
    m = _matchups()
    by_day = stats_by(m, "day", min_n=2, n_boot=0)
    # days 0-1 have three stations, days 2-9 two, days 10-19 one (dropped with min_n = 2)
    assert len(by_day) == 10
    assert by_day["day"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")
    assert list(by_day["n"][:3]) == [3, 3, 2]
    by_province = stats_by(m, ["province", "station_id"], n_boot=0)
    assert list(zip(by_province["province"], by_province["station_id"])) == [("P1", "A"), ("P2", "B")]
    assert "lon" not in by_province.columns
    by_month = stats_by(m, "month", n_boot=0)
    assert list(by_month["month"]) == ["2020-01"] and by_month["n"].iloc[0] == 32
    with pytest.raises(InputError, match="county"):
        stats_by(m, "county")
    empty = stats_by(m, "station_id", min_n=100)
    assert empty.empty and "r" in empty.columns


def test_constant_satellite_series_has_no_correlation():
    """One satellite value against several stations: R is undefined, not a rounding residue."""
    st = compute_stats(np.full(15, 0.42000002, dtype=np.float32).astype(float), np.linspace(20, 90, 15), n_boot=0,
                       bias_stats=False)
    assert math.isnan(st.r) and math.isnan(st.spearman)
