"""NO2 product rules on small hand-made swaths (xarray in, accumulators out)."""

import numpy as np
import pytest
import xarray as xr

from rsmon.errors import InputError, NoDataError
from rsmon.grid import LonLatGrid
from rsmon.products import no2


def swath(values, qa_raw, lon0=110.0, lat0=20.0, times=None, size=0.1, precision=None, orbit=8642):
    """A swath of square pixels laid on a regular 0.1-degree lattice (scanline = row, ground_pixel = col)."""
    values = np.asarray(values, dtype=np.float32)
    ns, ng = values.shape
    lat_c = lat0 + size * (np.arange(ns)[:, None] + 0.5) * np.ones((1, ng))
    lon_c = lon0 + size * (np.arange(ng)[None, :] + 0.5) * np.ones((ns, 1))
    h = size / 2
    lon_b = np.stack([lon_c - h, lon_c + h, lon_c + h, lon_c - h], axis=-1)
    lat_b = np.stack([lat_c - h, lat_c - h, lat_c + h, lat_c + h], axis=-1)
    if times is None:
        times = np.datetime64("2019-06-12T05:00:00") + np.arange(ns) * np.timedelta64(840, "ms")
    qa_raw = np.asarray(qa_raw, dtype=np.uint8)
    data = {
        "latitude": (("scanline", "ground_pixel"), lat_c),
        "longitude": (("scanline", "ground_pixel"), lon_c),
        "latitude_bounds": (("scanline", "ground_pixel", "corner"), lat_b),
        "longitude_bounds": (("scanline", "ground_pixel", "corner"), lon_b),
        "tropospheric_no2_column": (("scanline", "ground_pixel"), values, {
            "units": "mol m-2", "multiplication_factor_to_convert_to_molecules_percm2": 6.02214e19}),
        "qa_value_raw": (("scanline", "ground_pixel"), qa_raw),
        "qa_value": (("scanline", "ground_pixel"), np.where(qa_raw == 255, np.nan, qa_raw * 0.01).astype(np.float32)),
        "time_utc": (("scanline",), np.asarray(times, dtype="datetime64[ns]")),
    }
    if precision is not None:
        data["tropospheric_no2_column_precision"] = (("scanline", "ground_pixel"), np.asarray(precision, np.float32))
    return xr.Dataset(data, attrs={"orbit": orbit, "product": "NO2", "source_path": f"/data/orbit{orbit}.nc"})


GRID = LonLatGrid.from_bbox("110,20,110.2,20.2", 0.1)  # 2x2 cells matching a 2x2 swath exactly


def test_qa_threshold_is_strict_and_on_the_stored_integer():
    ds = swath([[1.0, 2.0], [3.0, 4.0]], [[75, 76], [100, 255]])
    acc = no2.grid_swath(ds, GRID, no2.NO2Params(qa_min=0.75))["2019-06-12"]
    mean = acc.mean()
    # north-up: scanline 0 (south) is row 1
    assert np.isnan(mean[1, 0])                     # qa 0.75 is not > 0.75
    assert mean[1, 1] == pytest.approx(2.0)         # qa 0.76 kept
    assert mean[0, 0] == pytest.approx(3.0)         # qa 1.00 kept
    assert np.isnan(mean[0, 1])                     # fill 255 dropped
    # qa 0.58 must exclude raw 58 although 0.58 * 100 = 57.99999999999999 in binary floating point
    ds2 = swath([[1.0, 2.0], [3.0, 4.0]], [[58, 59], [58, 59]])
    acc2 = no2.grid_swath(ds2, GRID, no2.NO2Params(qa_min=0.58))["2019-06-12"]
    assert np.isnan(acc2.mean()[:, 0]).all() and np.isfinite(acc2.mean()[:, 1]).all()


def test_units_in_1e15_molecules_per_cm2():
    ds = swath([[1e-4, 1e-4], [1e-4, 1e-4]], np.full((2, 2), 100))
    acc = no2.grid_swath(ds, GRID, no2.NO2Params(units="1e15 molec cm-2"))["2019-06-12"]
    np.testing.assert_allclose(acc.mean(), 1e-4 * 6.02214e19 / 1e15, rtol=1e-6)


def test_negative_columns_are_kept_unless_a_limit_is_set():
    ds = swath([[-5e-5, -2e-3], [1e-5, 1e-5]], np.full((2, 2), 100))
    keep_all = no2.grid_swath(ds, GRID)["2019-06-12"].mean()
    assert keep_all[1, 0] == pytest.approx(-5e-5) and keep_all[1, 1] == pytest.approx(-2e-3)
    limited = no2.grid_swath(ds, GRID, no2.NO2Params(min_column_mol_m2=-1e-3))["2019-06-12"].mean()
    assert limited[1, 0] == pytest.approx(-5e-5) and np.isnan(limited[1, 1])


def test_an_orbit_crossing_midnight_feeds_two_utc_days():
    times = np.array(["2019-06-12T23:59:59", "2019-06-13T00:00:01"], dtype="datetime64[ns]")
    ds = swath([[1.0, 1.0], [2.0, 2.0]], np.full((2, 2), 100), times=times)
    parts = no2.grid_swath(ds, GRID, no2.NO2Params(period="day"))
    assert sorted(parts) == ["2019-06-12", "2019-06-13"]
    assert parts["2019-06-12"].count.sum() == 2 and parts["2019-06-13"].count.sum() == 2
    assert str(parts["2019-06-13"].time_start).startswith("2019-06-13T00:00:01")


def test_local_solar_day_shifts_by_longitude():
    # 110E is UTC+7h20m in local solar time: 18:00 UTC on the 12th is 01:20 on the 13th
    times = np.array(["2019-06-12T18:00:00", "2019-06-12T18:00:01"], dtype="datetime64[ns]")
    ds = swath([[1.0, 1.0], [2.0, 2.0]], np.full((2, 2), 100), times=times)
    assert list(no2.grid_swath(ds, GRID, no2.NO2Params(day_boundary="utc"))) == ["2019-06-12"]
    assert list(no2.grid_swath(ds, GRID, no2.NO2Params(day_boundary="solar"))) == ["2019-06-13"]


def test_month_and_orbit_periods():
    ds = swath([[1.0, 1.0], [2.0, 2.0]], np.full((2, 2), 100), orbit=8642)
    assert list(no2.grid_swath(ds, GRID, no2.NO2Params(period="month"))) == ["2019-06"]
    assert list(no2.grid_swath(ds, GRID, no2.NO2Params(period="orbit"))) == ["08642"]


def test_inverse_variance_weighting_uses_the_precision():
    # two swaths over the same cells: precision 1 and 2 -> weights 1 and 1/4
    a = swath([[1.0, 1.0], [1.0, 1.0]], np.full((2, 2), 100), precision=np.full((2, 2), 1.0))
    b = swath([[6.0, 6.0], [6.0, 6.0]], np.full((2, 2), 100), precision=np.full((2, 2), 2.0))
    p = no2.NO2Params(weighting="inverse_variance")
    total = no2.merge([no2.grid_swath(a, GRID, p), no2.grid_swath(b, GRID, p)])["2019-06-12"]
    np.testing.assert_allclose(total.mean(), (1 * 1 + 0.25 * 6) / 1.25, rtol=1e-6)


def test_swath_outside_the_grid_gives_nothing_and_require_data_raises():
    ds = swath([[1.0, 1.0], [1.0, 1.0]], np.full((2, 2), 100), lon0=10.0)
    parts = no2.grid_swath(ds, GRID)
    assert parts == {}
    with pytest.raises(NoDataError, match="bbox"):
        no2.require_data(no2.merge([parts]), ["/data/orbit8642.nc"], GRID)


def test_all_fill_swath_gives_nothing():
    ds = swath(np.full((2, 2), np.nan), np.full((2, 2), 255))
    assert no2.grid_swath(ds, GRID) == {}


@pytest.mark.parametrize("kwargs,param", [
    ({"qa_min": 1.5}, "qa"), ({"qa_min": -0.1}, "qa"), ({"period": "week"}, "period"),
    ({"units": "ppb"}, "units"), ({"day_boundary": "local"}, "day_boundary"), ({"weighting": "x"}, "weighting"),
])
def test_bad_parameters_name_themselves(kwargs, param):
    with pytest.raises(InputError, match=param):
        no2.NO2Params(**kwargs)


def test_dataset_follows_the_writer_contract():
    ds = swath([[1.0, 2.0], [3.0, 4.0]], np.full((2, 2), 100))
    pixels = no2.extract_pixels(ds, GRID)["2019-06-12"]
    out = no2.to_dataset([pixels], GRID, "2019-06-12", no2.NO2Params())
    assert out["tropospheric_no2_column"].chunks is not None  # lazy until a writer computes it
    out = out.compute()
    assert list(out.data_vars) == ["tropospheric_no2_column", "weight", "count"]
    assert out["tropospheric_no2_column"].dtype == np.float32
    assert out.lat.values[0] > out.lat.values[-1]  # north-up
    assert out.attrs["period"] == "day" and out.attrs["period_label"] == "2019-06-12"
    assert out.attrs["time_coverage_start"] == "2019-06-12T05:00:00Z"
    np.testing.assert_allclose(out["weight"].values, 1.0, rtol=1e-5)


def test_lazy_blocks_equal_the_eager_accumulator():
    rng = np.random.default_rng(7)
    big = LonLatGrid.from_bbox("110,20,113,22", 0.05)  # 60 x 40 cells, several 16-cell blocks
    vals = rng.normal(1e-4, 3e-5, (20, 30))
    ds = swath(vals, np.full((20, 30), 100), size=0.1)
    eager = no2.grid_swath(ds, big)["2019-06-12"]
    lazy = no2.to_dataset(list(no2.extract_pixels(ds, big).values()), big, "2019-06-12", no2.NO2Params(),
                          block_size=16).compute()
    np.testing.assert_allclose(lazy["tropospheric_no2_column"].values, eager.mean(), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(lazy["weight"].values, eager.sum_w, rtol=1e-6)
    np.testing.assert_array_equal(lazy["count"].values, eager.count)
