"""VIIRS 375 m active-fire detection on small hand-made granules (rsmon.products.fire)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rsmon.errors import InputError
from rsmon.kernels import fire as kernels
from rsmon.products.fire import FIRE_COLUMNS, FireParams, detect_fires, detect_numpy
from rsmon.products.fire_frp import STEFAN_BOLTZMANN, VIIRS_I4_MIR_A, planck_radiance, viirs_pixel_size_km
from rsmon.products.fire_screen import glint_angle_deg

I4_UM = 3.74
N = 120  # scene size: enough for a 31 x 31 window around the test pixels


def make_scene(day: bool = True, n: int = N, noise: float = 0.5, seed: int = 0) -> xr.Dataset:
    """A uniform granule that fits the reader contract: day 300/295 K vegetation, night 285/283 K."""
    rng = np.random.default_rng(seed)
    shape = (n, n)

    def field(v, sd=0.0):
        a = np.full(shape, v, np.float64)
        if sd:
            a += rng.normal(0.0, sd, shape)
        return a.astype(np.float32)

    bt4 = field(300.0 if day else 285.0, noise)
    bt5 = field(295.0 if day else 283.0, noise)
    nan = np.float32(np.nan)
    ds = xr.Dataset(
        {
            "bt_i4": (("y", "x"), bt4),
            "bt_i5": (("y", "x"), bt5),
            "rad_i4": (("y", "x"), planck_radiance(I4_UM, bt4).astype(np.float32)),
            "refl_i1": (("y", "x"), field(0.08) if day else np.full(shape, nan)),
            "refl_i2": (("y", "x"), field(0.25) if day else np.full(shape, nan)),
            "refl_i3": (("y", "x"), field(0.20) if day else np.full(shape, nan)),
            "latitude": (("y", "x"), field(34.0) + np.arange(n, dtype=np.float32)[:, None] * 0.003),
            "longitude": (("y", "x"), field(115.0) + np.arange(n, dtype=np.float32)[None, :] * 0.004),
            "solar_zenith": (("y", "x"), field(30.0 if day else 120.0)),
            "solar_azimuth": (("y", "x"), field(150.0)),
            "sensor_zenith": (("y", "x"), field(20.0)),
            "sensor_azimuth": (("y", "x"), field(150.0)),  # same side as the sun: glint angle 50 deg
            "land_water_mask": (("y", "x"), np.ones(shape, np.uint8)),
            "i4_status": (("y", "x"), np.zeros(shape, np.uint8)),
            "i5_status": (("y", "x"), np.zeros(shape, np.uint8)),
            "i4_saturated": (("y", "x"), np.zeros(shape, bool)),
        },
        attrs={"platform": "Suomi-NPP", "satellite": "N", "instrument": "VIIRS",
               "time_coverage_start": "2023-10-05T05:30:00Z", "time_coverage_end": "2023-10-05T05:36:00Z",
               "day_night_flag": "Day" if day else "Night", "granule_id": "TEST.A2023278.0530"},
    )
    return ds


def put(ds, y, x, bt4=None, bt5=None, **values):
    """Set a pixel (or slice) in place; keeps rad_i4 consistent with BT4."""
    if bt4 is not None:
        ds["bt_i4"].values[y, x] = bt4
        ds["rad_i4"].values[y, x] = planck_radiance(I4_UM, bt4)
    if bt5 is not None:
        ds["bt_i5"].values[y, x] = bt5
    for k, v in values.items():
        ds[k].values[y, x] = v


def row(df, y, x):
    sel = df[(df.line == y) & (df["sample"] == x)]
    return None if sel.empty else sel.iloc[0]


def glint_angle(ds, y, x):
    return float(glint_angle_deg(*(ds[v].values[y, x] for v in
                                   ("solar_zenith", "solar_azimuth", "sensor_zenith", "sensor_azimuth"))))


# ---------------------------------------------------------------------------------------------


def test_uniform_scene_has_no_fire_and_table_has_firms_columns():
    for day in (True, False):
        df = detect_fires(make_scene(day=day))
        assert df.empty
        assert tuple(df.columns) == FIRE_COLUMNS


def test_night_fixed_threshold_and_contextual_fires():
    ds = make_scene(day=False)
    put(ds, 40, 40, bt4=330.0, bt5=290.0)   # > 320 K: fixed threshold
    put(ds, 80, 80, bt4=305.0, bt5=284.0)   # candidate (> 295 K), passes night contextual tests
    put(ds, 40, 80, bt4=293.0, bt5=284.0)   # dT 9 K, < 295 K: not even a candidate
    df = detect_fires(ds)
    assert len(df) == 2
    fixed, ctx = row(df, 40, 40), row(df, 80, 80)
    assert fixed.daynight == "N" and fixed.confidence == "nominal"
    assert ctx.daynight == "N" and ctx.confidence == "nominal"
    assert not fixed.saturated and not fixed.folded
    assert ctx.bg_window == 11 and ctx.bg_n == 120
    assert ctx.bg_mean_i4 == pytest.approx(285.0, abs=0.2)
    assert ctx.bg_mad_i4 == pytest.approx(0.5 * np.sqrt(2 / np.pi), rel=0.25)  # MAD of N(0, 0.5)
    assert ctx.bright_ti4 == pytest.approx(305.0) and ctx.bright_ti5 == pytest.approx(284.0)
    assert fixed.frp > ctx.frp > 0


def test_day_contextual_fire_and_non_candidates():
    ds = make_scene(day=True)
    put(ds, 60, 60, bt4=328.0, bt5=296.0)   # BT4 > BT4s (325 K here) and dT 32 K: nominal fire
    put(ds, 30, 30, bt4=318.0, bt5=296.0)   # dT 22 K, BT4 < 325 K: not a candidate
    df = detect_fires(ds)
    assert list(zip(df.line, df["sample"])) == [(60, 60)]
    r = df.iloc[0]
    assert r.daynight == "D" and r.confidence == "nominal"
    assert r.bg_window == 11 and r.bg_n == 120
    assert r.bg_mean_dt == pytest.approx(5.0, abs=0.2)


def test_cloud_pixel_is_skipped():
    ds = make_scene(day=True)
    put(ds, 60, 60, bt4=340.0, bt5=260.0)   # BT5 < 265 K: cloud by day, never tested
    put(ds, 30, 90, bt4=340.0, bt5=284.0, refl_i1=0.45, refl_i2=0.5)  # rho1+rho2 > 0.9 and BT5 < 295 K
    assert detect_fires(ds).empty
    ds2 = make_scene(day=True)
    put(ds2, 60, 60, bt4=340.0, bt5=296.0)  # the same BT4 without cloud is a fire
    assert len(detect_fires(ds2)) == 1


def test_water_pixel_rejected_and_kept_out_of_the_background():
    ds = make_scene(day=True)
    put(ds, 60, 60, bt4=328.0, bt5=296.0, land_water_mask=7)   # hot pixel on deep ocean
    # Paper default: water pixels are tested (offshore gas flares) ...
    assert len(detect_fires(ds)) == 1
    # ... rsmon option: reject fires on water.
    assert detect_fires(ds, FireParams(process_water_pixels=False)).empty

    # A cold lake beside a land fire does not enter its background.
    ds = make_scene(day=True)
    put(ds, slice(None), slice(0, 58), bt4=280.0, bt5=278.0, land_water_mask=5)
    put(ds, 60, 60, bt4=328.0, bt5=296.0)
    r = row(detect_fires(ds), 60, 60)
    assert r is not None
    assert r.bg_mean_i4 == pytest.approx(300.0, abs=0.3)
    assert r.bg_n < 120  # the lake columns are missing from the 11 x 11 window


def test_sun_glint_scene_rejected():
    def scene(sensor_azimuth):
        ds = make_scene(day=True)
        put(ds, slice(None), slice(None), solar_zenith=30.0, solar_azimuth=0.0, sensor_zenith=30.0,
            sensor_azimuth=sensor_azimuth, refl_i1=0.2, refl_i2=0.3, refl_i3=0.25)
        put(ds, 60, 60, bt4=328.0, bt5=296.0)
        return ds

    glinty = scene(180.0)  # sensor opposite the sun at the same zenith: specular
    assert glint_angle(glinty, 60, 60) == pytest.approx(0.0, abs=1e-3)
    assert detect_fires(glinty).empty
    clear = scene(0.0)     # sensor on the sun's side: glint angle 60 deg
    assert glint_angle(clear, 60, 60) == pytest.approx(60.0, abs=1e-3)
    assert len(detect_fires(clear)) == 1


def test_desert_boundary_rejection():
    def scene(refl2):
        ds = make_scene(day=True, noise=0.3)
        put(ds, slice(None), slice(None), refl_i1=0.05, refl_i2=refl2)
        rng = np.random.default_rng(5)
        # 20 potential background fires (BT4 > 335 K, dT > 30 K) of nearly equal BT4 around (60, 60)
        offsets = [(dy, dx) for dy in (-4, -2, 2, 4) for dx in (-4, -2, 0, 2, 4)]
        for dy, dx in offsets:
            put(ds, 60 + dy, 60 + dx, bt4=336.0 + rng.uniform(-0.5, 0.5), bt5=300.0)
        put(ds, 60, 60, bt4=337.0, bt5=300.0)
        return ds

    # rho2 > 0.15, BT'4 < 345 K, d'4 < 3 K, BT4 < BT'4 + 6 d'4: a desert boundary, not a fire
    assert row(detect_fires(scene(0.25)), 60, 60) is None
    r = row(detect_fires(scene(0.10)), 60, 60)  # dark surface: the same pixel is a fire
    assert r is not None and r.bg_n == 100


def test_bright_fire_free_target_is_not_a_candidate():
    from rsmon.products.fire import _load_scene
    from rsmon.products.fire_screen import candidate_masks, screen_pixels

    ds = make_scene(day=True)
    put(ds, 60, 60, bt4=331.0, bt5=284.0, refl_i1=0.3, refl_i2=0.35, refl_i3=0.4)  # bright roof
    put(ds, 30, 30, bt4=331.0, bt5=284.0)                                          # same BT, vegetation
    p = FireParams()
    scene, _, _ = _load_scene(ds, p)
    masks = screen_pixels(scene, p)
    sure, _ = candidate_masks(scene, masks, p)
    assert masks.bright[60, 60] and not masks.cloud[60, 60]
    assert not sure[60, 60] and sure[30, 30]


def test_window_grows_when_the_11x11_neighbourhood_is_cloud():
    ds = make_scene(day=True)
    put(ds, slice(54, 67), slice(54, 67), bt4=260.0, bt5=250.0)  # 13 x 13 cloud deck
    put(ds, 60, 60, bt4=328.0, bt5=296.0)                         # fire in its middle
    r = row(detect_fires(ds), 60, 60)
    # 15 x 15: 225 - 169 = 56 valid < 25 % of 225; 17 x 17: 289 - 169 = 120 valid >= 72.25.
    assert r.bg_window == 17 and r.bg_n == 120
    assert r.bg_mean_i4 == pytest.approx(300.0, abs=0.2)
    r_or = row(detect_fires(ds, FireParams(window_rule="or")), 60, 60)
    assert r_or.bg_window == 15 and r_or.bg_n == 56

    # Cloud everywhere within 31 x 31: not enough background -> no contextual fire.
    ds = make_scene(day=True)
    put(ds, slice(40, 81), slice(40, 81), bt4=260.0, bt5=250.0)
    put(ds, 60, 60, bt4=328.0, bt5=296.0)
    assert detect_fires(ds).empty


def test_confidence_classes_day():
    ds = make_scene(day=True)
    put(ds, 20, 20, bt4=float("nan"), bt5=300.0, i4_saturated=True)   # saturated I4 (reader left NaN)
    put(ds, 20, 60, bt4=300.0, bt5=330.0)                               # folded: dT < 0, BT5 > 325 K
    put(ds, 60, 60, bt4=326.0, bt5=298.0)                               # dT 28 K < 30 K ...
    put(ds, 60, 61, bt4=315.0, bt5=310.0)                               # ... only 11 K above a neighbour
    put(ds, 100, 100, bt4=326.0, bt5=298.0)                             # same fire, cool neighbours
    put(ds, 100, 20, bt4=340.0, bt5=300.0)                              # strong fire (dT 40 K)
    df = detect_fires(ds)
    got = {(r.line, r.sample): r for r in df.itertuples()}
    assert set(got) == {(20, 20), (20, 60), (60, 60), (100, 100), (100, 20)}
    assert got[20, 20].confidence == "high" and got[20, 20].saturated and got[20, 20].bright_ti4 == 367.0
    assert got[20, 60].confidence == "high" and got[20, 60].folded and np.isnan(got[20, 60].frp)
    assert got[60, 60].confidence == "low"
    assert got[100, 100].confidence == "nominal"
    assert got[100, 20].confidence == "nominal"
    # A saturated day pixel over a bright surface is no fixed-threshold fire: contextual tests decide.
    ds = make_scene(day=True)
    put(ds, 60, 60, bt4=367.0, bt5=300.0, i4_saturated=True, refl_i1=0.35, refl_i2=0.4)  # rho1+rho2 > 0.7
    r = row(detect_fires(ds), 60, 60)
    assert r.confidence == "high" and r.bg_window == 11


def test_confidence_classes_night():
    ds = make_scene(day=False)
    put(ds, 20, 20, bt4=367.0, bt5=300.0, i4_saturated=True)   # saturated: high
    put(ds, 20, 60, bt4=208.0, bt5=340.0)                      # folded to 208 K: high
    put(ds, 60, 60, bt4=290.0, bt5=315.0)                      # folded: dT < 0 and BT5 > 310 K
    put(ds, 100, 100, bt4=330.0, bt5=290.0)                    # fixed threshold: nominal
    put(ds, 100, 20, bt4=300.0, bt5=300.0, i4_status=2)        # bow-tie deleted: ignored
    df = detect_fires(ds)
    conf = {(r.line, r.sample): r.confidence for r in df.itertuples()}
    assert conf == {(20, 20): "high", (20, 60): "high", (60, 60): "high", (100, 100): "nominal"}
    assert (df.daynight == "N").all()


def test_frp_single_pixel_known_answer_and_geometry_columns():
    ds = make_scene(day=False, noise=0.0)
    ds = ds.assign_coords(y=np.arange(3000, 3000 + N), x=np.arange(3140, 3140 + N))  # near nadir
    put(ds, 60, 60, bt4=340.0, bt5=290.0)
    df = detect_fires(ds)
    r = df.iloc[0]
    assert (r.line, r["sample"]) == (3060, 3200)
    scan, track = viirs_pixel_size_km(3200)
    assert (r.scan, r.track) == pytest.approx((0.3845, 0.3605), abs=5e-4)
    assert (r.scan, r.track) == pytest.approx((float(scan), float(track)))
    # FRP = A sigma / a (L4 - L4b), background exactly 285 K.
    l4 = float(np.float32(planck_radiance(I4_UM, 340.0)))
    l4b = float(np.float32(planck_radiance(I4_UM, 285.0)))
    expected = float(scan) * float(track) * 1e6 * STEFAN_BOLTZMANN / VIIRS_I4_MIR_A * (l4 - l4b) / 1e6
    assert r.frp == pytest.approx(expected, rel=1e-6)
    # by hand: A = 0.3845 km x 0.3605 km = 138,612 m2; sigma / a = 5.6704e-8 / 3.32e-9 = 17.079 sr um;
    # L(3.74 um, 340 K) - L(3.74 um, 285 K) = 1.98456 - 0.22354 = 1.76102 W m-2 sr-1 um-1
    # -> 138,612 x 17.079 x 1.76102 = 4.169e6 W
    assert r.frp == pytest.approx(4.169, rel=1e-3)
    # line 3060 = scan 95 -> 95 x 1.7864 s = 169.7 s after 05:30:00
    assert (r.acq_date, r.acq_time) == ("2023-10-05", "0532")
    assert (r.satellite, r.instrument) == ("N", "VIIRS")
    assert r.version.startswith("rsmon-") and r.version.endswith("_NRT")
    assert df.attrs["granule_id"] == "TEST.A2023278.0530"
    assert df.attrs["fire_params"]["window_rule"] == "and"


def test_numba_equals_numpy_on_a_busy_scene():
    ds = make_scene(day=True, seed=3)
    rng = np.random.default_rng(7)
    # a warm, bright-ish patch: many pixels between 325 and 330 K need the BT4s median
    put(ds, slice(10, 50), slice(60, 110), bt4=(327.0 + rng.normal(0, 1.2, (40, 50))).astype(np.float32),
        bt5=np.float32(318.0))
    for y, x, b4, b5 in [(60, 60, 328.0, 296.0), (60, 61, 335.0, 297.0), (90, 30, 326.0, 298.0),
                         (100, 100, 345.0, 300.0), (25, 80, 333.0, 303.0), (70, 90, 329.0, 301.0)]:
        put(ds, y, x, bt4=b4, bt5=b5)
    put(ds, slice(80, 95), slice(80, 92), bt4=262.0, bt5=250.0)  # cloud
    put(ds, 88, 95, bt4=331.0, bt5=297.0)
    put(ds, slice(0, 120), slice(0, 8), land_water_mask=6)
    put(ds, 40, 4, bt4=329.0, bt5=296.0)
    a = detect_fires(ds)
    b = detect_numpy(ds)
    assert len(a) >= 5
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_kernels_numba_equal_numpy():
    rng = np.random.default_rng(11)
    ny, nx = 70, 90
    bt4 = (320 + rng.normal(0, 6, (ny, nx))).astype(np.float32)
    bt5 = (300 + rng.normal(0, 3, (ny, nx))).astype(np.float32)
    dt = (bt4 - bt5).astype(np.float32)
    rad = planck_radiance(I4_UM, bt4).astype(np.float32)
    rad[rng.random((ny, nx)) < 0.05] = np.nan
    # valid density from 5 % (left: no window is enough) to 60 % (right: 11 x 11 is enough)
    valid = rng.random((ny, nx)) < np.linspace(0.05, 0.6, nx)[None, :]
    bgfire = ~valid & (rng.random((ny, nx)) < 0.1)
    ys = rng.integers(0, ny, 300).astype(np.int64)
    xs = rng.integers(0, nx, 300).astype(np.int64)
    for need_both in (True, False):
        args = (bt4, bt5, dt, rad, valid, bgfire, ys, xs, 11, 31, 10, 0.25, need_both)
        n1, w1, f1, s1 = kernels.background_stats(*args)
        n2, w2, f2, s2 = kernels.background_stats_numpy(*args, chunk=77)
        np.testing.assert_array_equal(n1, n2)
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_allclose(s1, s2, rtol=1e-12, equal_nan=True)
        if need_both:  # both outcomes exercised
            assert (w1 == 0).any() and (w1 > 11).any()
    # clipped median: windows with odd and even counts, medians below, inside and above [325, 330]
    bt_m = (321.0 + np.linspace(0.0, 13.0, nx)[None, :] + rng.normal(0, 3, (ny, nx))).astype(np.float32)
    cy = rng.integers(0, ny, 60).astype(np.int64)
    cx = rng.integers(0, nx, 60).astype(np.int64)
    seen = []
    for half in (1, 2, 5, 20):
        m1 = kernels.clipped_median_blocks(bt_m, valid, cy, cx, half, 325.0, 330.0, 4, 330.0)
        m2 = kernels.clipped_median_blocks_numpy(bt_m, valid, cy, cx, half, 325.0, 330.0, 4, 330.0)
        np.testing.assert_array_equal(m1, m2)
        seen.append(m1)
    seen = np.concatenate(seen)
    assert (seen == 325).any() and (seen == 330).any() and ((seen > 325) & (seen < 330)).any()
    r1 = kernels.ring_stats(bt4, valid, bgfire, ys, xs)
    r2 = kernels.ring_stats_numpy(bt4, valid, bgfire, ys, xs)
    for u, v in zip(r1, r2):
        np.testing.assert_array_equal(u, v)


def test_dynamic_day_threshold_bt4s():
    # Hot desert (BT4 328 K) over most of the 501 x 501 median window -> BT4s = 328 K. Two pixels in
    # a cooler oasis, both clear contextual fires: 329.5 K is a candidate, 327.5 K is not.
    ds = make_scene(day=True, noise=0.3)
    hot = np.ones((N, N), bool)
    hot[40:81, 40:81] = False
    ds["bt_i4"].values[hot] += np.float32(28.0)
    ds["bt_i5"].values[hot] += np.float32(27.0)
    ds["rad_i4"].values[:] = planck_radiance(I4_UM, ds["bt_i4"].values)
    put(ds, 60, 60, bt4=329.5, bt5=305.0)  # dT <= 25 K: candidacy by BT4s alone
    put(ds, 50, 50, bt4=327.5, bt5=305.0)
    df = detect_fires(ds)
    assert list(zip(df.line, df["sample"])) == [(60, 60)]
    # With the clip ceiling at 327 K both are candidates, and fires.
    df = detect_fires(ds, FireParams(candidate_day_bt4_hi_k=327.0))
    assert list(zip(df.line, df["sample"])) == [(50, 50), (60, 60)]
    # Per-pixel medians (block of 1) give the same answer here.
    df = detect_fires(ds, FireParams(candidate_day_median_block_px=1))
    assert list(zip(df.line, df["sample"])) == [(60, 60)]


def test_dask_input_computed_once():
    dask = pytest.importorskip("dask")
    from dask.callbacks import Callback

    ds = make_scene(day=False)
    put(ds, 40, 40, bt4=330.0, bt5=290.0)
    expected = detect_fires(ds)

    class Count(Callback):
        calls = 0

        def _start(self, dsk):
            Count.calls += 1

    with Count():
        got = detect_fires(ds.chunk({"y": 40, "x": 60}))
    assert Count.calls == 1
    pd.testing.assert_frame_equal(got, expected)
    assert dask is not None


def test_contract_errors():
    ds = make_scene(day=True)
    with pytest.raises(InputError, match="bt_i5"):
        detect_fires(ds.drop_vars("bt_i5"))
    bad = make_scene(day=True)
    del bad.attrs["time_coverage_start"]
    with pytest.raises(InputError, match="time_coverage_start"):
        detect_fires(bad)
    with pytest.raises(InputError, match="window_rule"):
        FireParams(window_rule="maybe")
    with pytest.raises(InputError, match="window_min_px"):
        FireParams(window_min_px=10)
