"""Fire radiative power and along-scan pixel geometry (rsmon.products.fire_frp)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA

from rsmon.products.fire_frp import (MODIS_MIR_A, VIIRS_I4_BAND_UM, VIIRS_I4_MIR_A, frp_mir, frp_mod14_c5,
                                     mir_a_coefficient, modis_pixel_size_km, viirs_aggregation,
                                     viirs_pixel_area_m2, viirs_pixel_size_km, viirs_scan_angle_rad)

MOD14_CSV = SHARED_DATA / "mod14-fire-pixels-alaska" / "A2004178.2120.005.official.data.boreal.csv"
FIRMS_VIIRS_CSV = SHARED_DATA / "firms-germany-2023" / "viirs-snpp_2023_Germany.csv"


def test_frp_mir_hand_computed_pixel():
    # 375 m x 375 m = 140,625 m2; sigma / a = 5.670374419e-8 / 3.0e-9 = 18.901248 sr um;
    # dL = 0.5 W m-2 sr-1 um-1 -> 140,625 x 18.901248 x 0.5 = 1,328,994.0 W = 1.328994 MW
    assert frp_mir(1.0, 0.5, 140625.0, a=3.0e-9) == pytest.approx(1.328994, rel=1e-6)
    out = frp_mir(np.array([1.0, 0.5]), np.array([0.5, 1.0]), 140625.0, a=3.0e-9)
    assert out == pytest.approx([1.328994, -1.328994], rel=1e-6)  # sign kept: callers decide


def test_mir_a_coefficient_reproduces_modis_and_gives_i4():
    # Wooster-style fit over 650-1300 K: MODIS bands 21/22 (3.929-3.989 um) -> 3.0e-9 (MOD14 C6)
    assert mir_a_coefficient(3.929, 3.989) == pytest.approx(MODIS_MIR_A, rel=0.01)
    assert mir_a_coefficient(*VIIRS_I4_BAND_UM) == pytest.approx(VIIRS_I4_MIR_A, rel=0.005)


@pytest.mark.skipif(not MOD14_CSV.is_file(), reason=f"shared data set absent: {MOD14_CSV}")
def test_reproduces_official_mod14_c5_frp():
    """MOD14 C5 granule A2004178.2120: FP_power from FP_T21, FP_MeanT21 and FP_sample, all 187 pixels."""
    d = pd.read_csv(MOD14_CSV)
    assert len(d) == 187
    frp = frp_mod14_c5(d["FP_T21"], d["FP_MeanT21"], d["FP_sample"])
    rel = np.abs(frp / d["FP_power"].to_numpy() - 1.0)
    assert rel.max() < 1e-3
    assert rel.max() < 1e-4  # in fact: 0.008 % at worst, the CSV's 6 significant digits


def test_modis_pixel_size_grows_along_scan():
    s, t = modis_pixel_size_km(np.array([676.5, 0.0, 1353.0]))
    assert s[0] == pytest.approx(1.0) and t[0] == pytest.approx(1.0)
    # MODIS swath edge: the often-quoted ~4.8 km x ~2 km
    assert s[1] == pytest.approx(s[2]) and 4.6 < s[1] < 5.0 and 1.9 < t[1] < 2.1


def test_viirs_aggregation_zones_and_scan_angles():
    samples = np.array([0, 1279, 1280, 2015, 2016, 3199, 3200, 4383, 4384, 5119, 5120, 6399])
    assert viirs_aggregation(samples).tolist() == [1, 1, 2, 2, 3, 3, 3, 3, 2, 2, 1, 1]
    ang = np.degrees(viirs_scan_angle_rad(samples))
    assert ang == pytest.approx(-ang[::-1])                       # symmetric about nadir
    assert ang[0] == pytest.approx(-56.06, abs=0.01)              # swath edge
    assert (ang[1] + ang[2]) / 2 == pytest.approx(-44.68, abs=0.01)  # 1:1 | 2:1 zone edge
    assert (ang[3] + ang[4]) / 2 == pytest.approx(-31.59, abs=0.01)  # 2:1 | 3:1 zone edge
    assert abs(ang[5]) < 0.02


def test_viirs_pixel_size_nadir_edge_and_zone_jumps():
    s, t = viirs_pixel_size_km(np.array([3200, 2016, 2015, 1280, 1279, 0]))
    assert (s[0], t[0]) == pytest.approx((0.3845, 0.3605), abs=1e-4)
    assert s[2] / s[1] == pytest.approx(2 / 3, rel=0.01)   # 3:1 -> 2:1 aggregation
    assert s[4] / s[3] == pytest.approx(1 / 2, rel=0.01)   # 2:1 -> 1:1
    assert (s[5], t[5]) == pytest.approx((0.80, 0.78), abs=0.01)  # FIRMS' largest pixels
    assert viirs_pixel_area_m2(3200) == pytest.approx(0.3845 * 0.3605 * 1e6, rel=1e-4)


@pytest.mark.skipif(not FIRMS_VIIRS_CSV.is_file(), reason=f"shared data set absent: {FIRMS_VIIRS_CSV}")
def test_viirs_pixel_size_matches_firms_scan_track():
    """Every (scan, track) pair of 16,480 FIRMS S-NPP 2023 detections lies on the model's curve."""
    d = pd.read_csv(FIRMS_VIIRS_CSV, usecols=["scan", "track"])
    pairs = d.groupby(["scan", "track"]).size()
    s, t = viirs_pixel_size_km(np.arange(6400))
    matched = 0
    for (scan, track), count in pairs.items():
        if ((np.abs(s - scan) <= 0.005 + 1e-9) & (np.abs(t - track) <= 0.005 + 1e-9)).any():
            matched += count
    assert matched == len(d) == 16480
