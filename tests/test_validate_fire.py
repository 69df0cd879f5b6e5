"""rsmon.validate.fire: one-to-one fire matching, known answers and the FIRMS Germany 2023 cross-sensor check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA

from rsmon.errors import InputError
from rsmon.validate.fire import fraction_matched_by, haversine_m, match_fires

GERMANY = SHARED_DATA / "firms-germany-2023"
M_PER_DEG_LAT = math.pi * 6_371_008.8 / 180  # metres per degree of latitude on the matching sphere


def _fires(rows):
    return pd.DataFrame(rows, columns=["latitude", "longitude", "acq_date", "acq_time", "frp_mw"])


def test_haversine_known_distances():
    # one degree of latitude and one of longitude at the equator: pi R / 180
    assert haversine_m(0, 0, 0, 1) == pytest.approx(M_PER_DEG_LAT, rel=1e-12)
    assert haversine_m(0, 0, 1, 0) == pytest.approx(M_PER_DEG_LAT, rel=1e-12)
    # at 60 N a degree of longitude is half as long (small-angle, within 1e-4)
    assert haversine_m(10, 60, 10.01, 60) == pytest.approx(0.5 * 0.01 * M_PER_DEG_LAT, rel=1e-4)


def test_match_known_answer():
    d300 = 300 / M_PER_DEG_LAT  # 300 m north, in degrees of latitude
    d500 = 500 / M_PER_DEG_LAT
    reference = _fires([
        (40.0, 116.0, "2023-10-01", "0530", 3.0),   # r0: matched exactly by d0
        (40.1, 116.0, "2023-10-01", "0530", 7.0),   # r1: d1 at 300 m and d2 at 100 m -> d2 wins
        (40.2, 116.0, "2023-10-01", "0530", 15.0),  # r2: only d3 at 500 m -> no match
        (40.3, 116.0, "2023-10-01", "0530", 60.0),  # r3: d4 at the same place but 30 min later -> no match
        (40.4, 116.0, "2023-10-01", "0530", 60.0),  # r4: d5 at 19 min -> match
    ])
    detections = _fires([
        (40.0, 116.0, "2023-10-01", "0530", np.nan),
        (40.1 + d300, 116.0, "2023-10-01", "0530", np.nan),
        (40.1 - d300 / 3, 116.0, "2023-10-01", "0530", np.nan),
        (40.2 + d500, 116.0, "2023-10-01", "0530", np.nan),
        (40.3, 116.0, "2023-10-01", "0600", np.nan),
        (40.4, 116.0, "2023-10-01", "0549", np.nan),
    ])
    detections.index = [10, 11, 12, 13, 14, 15]  # labels, not positions, come back
    pairs, s = match_fires(detections, reference, max_distance_m=375, max_dt_min=20)
    assert pairs["detection_index"].tolist() == [10, 12, 15]
    assert pairs["reference_index"].tolist() == [0, 1, 4]
    assert pairs["distance_m"].tolist() == pytest.approx([0.0, 100.0, 0.0], abs=0.01)
    assert pairs["dt_min"].tolist() == [0.0, 0.0, 19.0]
    assert (s["n_detections"], s["n_reference"], s["n_matched"]) == (6, 5, 3)
    assert s["precision"] == pytest.approx(3 / 6)
    assert s["recall"] == pytest.approx(3 / 5)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert s["reference_frp_column"] == "frp_mw"
    curve = s["recall_by_frp"]
    assert curve["n_reference"].tolist() == [1, 1, 1, 0, 2]
    assert curve["n_matched"].tolist() == [1, 1, 0, 0, 1]
    assert curve["recall"].iloc[:3].tolist() == [1.0, 1.0, 0.0]
    assert math.isnan(curve["recall"].iloc[3]) and curve["recall"].iloc[4] == 0.5
    assert curve["frp_max_mw"].iloc[-1] == math.inf
    # a looser distance lets d3 reach r2 at 500 m, and d1 stays unmatched (one-to-one)
    pairs, s = match_fires(detections, reference, max_distance_m=600, max_dt_min=20)
    assert pairs["reference_index"].tolist() == [0, 1, 2, 4]
    assert s["n_matched"] == 4


def test_match_is_greedy_nearest_one_to_one():
    # two detections, two references on a line: d0 is nearest to r0 and r1; greedy takes the
    # globally closest pair first, and the leftover pair is still within range.
    step = 100 / M_PER_DEG_LAT
    reference = _fires([(50.0, 10.0, "2023-01-01", "1200", 1.0), (50.0 + 3 * step, 10.0, "2023-01-01", "1200", 1.0)])
    detections = _fires([(50.0 + step, 10.0, "2023-01-01", "1200", 1.0), (50.0 + 3.5 * step, 10.0, "2023-01-01", "1200", 1.0)])
    pairs, s = match_fires(detections, reference, max_distance_m=375)
    assert sorted(zip(pairs["detection_index"], pairs["reference_index"])) == [(0, 0), (1, 1)]
    assert s["f1"] == 1.0


def test_match_accepts_time_column_and_empty_inputs():
    ref = pd.DataFrame({"latitude": [1.0], "longitude": [2.0], "time": pd.to_datetime(["2023-01-01T12:00Z"]),
                        "frp": [4.0]})
    det = ref.assign(time=ref["time"] + pd.Timedelta(minutes=5))
    pairs, s = match_fires(det, ref)
    assert s["n_matched"] == 1 and pairs["dt_min"].iloc[0] == 5.0
    assert s["reference_frp_column"] == "frp"
    pairs, s = match_fires(det.iloc[:0], ref)
    assert pairs.empty and s["precision"] != s["precision"] and s["recall"] == 0.0
    with pytest.raises(InputError, match="max_distance_m"):
        match_fires(det, ref, max_distance_m=0)
    with pytest.raises(InputError, match="frp_bins"):
        match_fires(det, ref, frp_bins=[5, 1])
    with pytest.raises(InputError, match="time"):
        match_fires(det.drop(columns="time"), ref)


def test_fraction_matched_by():
    t = pd.DataFrame({"c": pd.Categorical(["low", "high", "high", "low"], categories=["low", "nominal", "high"])},
                     index=[5, 6, 7, 8])
    out = fraction_matched_by(t, [6, 8], "c").set_index("c")
    assert out.loc["low", "n"] == 2 and out.loc["low", "n_matched"] == 1
    assert out.loc["nominal", "n"] == 0 and math.isnan(out.loc["nominal", "fraction_matched"])
    assert out.loc["all", "fraction_matched"] == 0.5


@pytest.fixture(scope="module")
def germany():
    from rsmon.io.stations import read_firms

    viirs_path = GERMANY / "viirs-snpp_2023_Germany.csv"
    modis_path = GERMANY / "modis_2023_Germany.csv"
    if not (viirs_path.exists() and modis_path.exists()):
        pytest.skip(f"{GERMANY} not present")
    return read_firms(viirs_path), read_firms(modis_path)


def test_germany_2023_aqua_modis_vs_snpp_viirs(germany):
    """Cross-sensor agreement on real FIRMS archives: Aqua MODIS (1 km) vs S-NPP VIIRS (375 m).

    Both cross near 13:30/01:30 local time; pairs are within 1 km and +-30 min (Terra, 10:30,
    is left out). The fraction of MODIS pixels with a VIIRS match is the meaningful number (one
    MODIS pixel covers ~7 VIIRS pixels, so VIIRS "recall" is tiny by construction).
    """
    viirs, modis = germany
    aqua = modis[modis["satellite"] == "Aqua"]
    assert len(viirs) == 16480 and len(aqua) == 1205  # SOURCE.txt counts / the file

    pairs, s = match_fires(aqua, viirs, max_distance_m=1000, max_dt_min=30)
    by_conf = fraction_matched_by(aqua, pairs["detection_index"], "confidence_class")
    print("\nAqua MODIS vs S-NPP VIIRS, Germany 2023, <= 1 km and |dt| <= 30 min")
    print(f"MODIS Aqua {s['n_detections']}, VIIRS {s['n_reference']}, matched pairs {s['n_matched']}; "
          f"MODIS matched fraction {s['precision']:.3f}, VIIRS matched fraction {s['recall']:.4f}")
    print(by_conf.to_string(index=False))
    print("dt (MODIS - VIIRS) of matched pairs, min: median |dt| "
          f"{pairs['dt_min'].abs().median():.0f}, 90th pct {pairs['dt_min'].abs().quantile(0.9):.0f}")

    # industrial (FIRMS type 2) filter effect
    rows = []
    for label, v, a in (("all", viirs, aqua),
                        ("type != 2", viirs[viirs["type"] != 2], aqua[aqua["type"] != 2])):
        p, ss = match_fires(a, v, max_distance_m=1000, max_dt_min=30)
        rows.append({"subset": label, "viirs": len(v), "modis_aqua": len(a), "pairs": ss["n_matched"],
                     "modis_matched_fraction": round(ss["precision"], 3)})
        if label != "all":
            print(f"by MODIS confidence class, {label}:")
            print(fraction_matched_by(a, p["detection_index"], "confidence_class").to_string(index=False))
    effect = pd.DataFrame(rows)
    print("type counts VIIRS:", viirs["type"].value_counts().sort_index().to_dict(),
          "MODIS Aqua:", aqua["type"].value_counts().sort_index().to_dict())
    print(effect.to_string(index=False))
    for dt in (60, 120):
        _, ss = match_fires(aqua, viirs, max_distance_m=1000, max_dt_min=dt)
        print(f"|dt| <= {dt} min: MODIS matched fraction {ss['precision']:.3f}")

    # pinned numbers (real data, fixed rule): a change means the matcher changed
    assert s["n_matched"] == 340
    assert by_conf.set_index("confidence_class").loc["all", "n"] == 1205
    assert int((viirs["type"] == 2).sum()) == 10912 and int((aqua["type"] == 2).sum()) == 741
    # every pair respects the limits and is one-to-one
    assert pairs["distance_m"].max() <= 1000 and pairs["dt_min"].abs().max() <= 30
    assert pairs["detection_index"].is_unique and pairs["reference_index"].is_unique
    # the industrial filter removes about two thirds of the VIIRS points
    assert effect.loc[1, "viirs"] == 16480 - 10912
