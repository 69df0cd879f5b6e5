"""CF-1.8 NetCDF writer: CF structure checked by hand (no cf_xarray), exact cell bounds, values
round trip, compression, GDAL georeferencing and atomic output."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import netCDF4
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

import rsmon.io.netcdf as ncw
from rsmon.errors import InputError, OutputError
from rsmon.grid import LonLatGrid
from rsmon.io.netcdf import write_netcdf
from rsmon.provenance import InputRef, Provenance

from l3fixtures import GRID
from l3fixtures import make_product as _make_product  # noqa: E402
VARS = ("tropospheric_no2_column", "weight", "count")


def make_product(grid: LonLatGrid = GRID) -> xr.Dataset:
    """Values encode their cell centre (lon * 1000 + lat) so a flip or shift shows."""
    return _make_product(grid, coverage_end="2019-06-13T00:00:00Z",
                         mean_attrs={"scale_factor": 1.0, "add_offset": 0.0})


def make_provenance() -> Provenance:
    return Provenance(
        inputs=[InputRef("/data/S5P_OFFL_L2__NO2____20190612T040000_x.nc", sha256="f" * 64)],
        parameters={"qa_min": 0.75},
        created=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )


@pytest.fixture(scope="module")
def product() -> xr.Dataset:
    return make_product()


@pytest.fixture(scope="module")
def nc_path(tmp_path_factory, product):
    path = tmp_path_factory.mktemp("nc") / "no2_2019-06-12.nc"
    assert write_netcdf(path, product, GRID, make_provenance()) == path
    return path


def test_global_attributes(nc_path):
    with xr.open_dataset(nc_path) as ds:
        attrs = ds.attrs
    assert attrs["Conventions"] == "CF-1.8"
    assert attrs["institution"] == "rsmon"
    for key in ("title", "source", "history"):
        assert attrs[key]
    assert attrs["product"] == "no2"
    assert attrs["period"] == "day"
    assert attrs["period_label"] == "2019-06-12"
    assert attrs["time_coverage_start"] == "2019-06-12T00:00:00Z"
    assert attrs["time_coverage_end"] == "2019-06-13T00:00:00Z"
    assert (attrs["geospatial_lat_min"], attrs["geospatial_lat_max"]) == (GRID.south, GRID.north)
    assert (attrs["geospatial_lon_min"], attrs["geospatial_lon_max"]) == (GRID.west, GRID.east)
    assert "cell_methods" not in attrs  # it belongs on the mean variable
    prov = Provenance.from_json(attrs["rsmon_provenance"])
    assert prov == make_provenance()
    assert json.loads(attrs["rsmon_provenance"])["parameters"] == {"qa_min": 0.75}


def test_grid_mapping_and_variable_attributes(nc_path):
    with xr.open_dataset(nc_path) as ds:
        crs = ds["crs"].attrs
        assert crs["grid_mapping_name"] == "latitude_longitude"
        assert "WGS 84" in crs["crs_wkt"]
        assert rasterio.crs.CRS.from_wkt(crs["crs_wkt"]).to_epsg() == 4326
        for name in VARS:
            assert ds[name].attrs["grid_mapping"] == "crs"
            assert ds[name].dims == ("time", "lat", "lon")
        no2 = ds["tropospheric_no2_column"].attrs
        assert no2["cell_methods"] == "area: mean (area-weighted, HARP bin_spatial) time: mean"
        assert no2["ancillary_variables"] == "weight count"
        assert no2["units"] == "mol m-2"
        assert no2["standard_name"] == "troposphere_mole_content_of_nitrogen_dioxide"
        assert "cell_methods" not in ds["count"].attrs
        assert ds["weight"].attrs["long_name"] == "sum of overlap fractions (HARP bin_spatial weight)"
        for coord, units, std, axis in (("lat", "degrees_north", "latitude", "Y"), ("lon", "degrees_east", "longitude", "X")):
            attrs = ds[coord].attrs
            assert (attrs["units"], attrs["standard_name"], attrs["axis"], attrs["bounds"]) == (
                units, std, axis, f"{coord}_bnds"
            )


def test_scale_offset_of_one_and_zero_are_not_written(nc_path):
    with netCDF4.Dataset(nc_path) as nc:
        names = nc["tropospheric_no2_column"].ncattrs()
    assert "scale_factor" not in names and "add_offset" not in names


def test_cell_bounds_are_the_exact_grid_edges(nc_path):
    with xr.open_dataset(nc_path) as ds:
        lat_bnds, lon_bnds = ds["lat_bnds"].values, ds["lon_bnds"].values
        np.testing.assert_array_equal(ds["lat"].values, GRID.lat_centers())
        np.testing.assert_array_equal(ds["lon"].values, GRID.lon_centers())
    lat_edges, lon_edges = GRID.lat_edges(), GRID.lon_edges()
    np.testing.assert_array_equal(lat_bnds[:, 0], lat_edges[:-1])
    np.testing.assert_array_equal(lat_bnds[:, 1], lat_edges[1:])
    np.testing.assert_array_equal(lon_bnds[:, 0], lon_edges[:-1])
    np.testing.assert_array_equal(lon_bnds[:, 1], lon_edges[1:])
    assert lat_bnds[0, 0] == GRID.north and lat_bnds[-1, 1] == GRID.south
    np.testing.assert_array_equal(lat_bnds[1:, 0], lat_bnds[:-1, 1])  # contiguous cells (CF 7.1)


def test_time_axis_and_bounds(nc_path):
    with xr.open_dataset(nc_path) as ds:
        assert ds.sizes["time"] == 1
        assert ds["time"].attrs["bounds"] == "time_bnds"
        assert ds["time"].values[0] == np.datetime64("2019-06-12T12:00:00")
        np.testing.assert_array_equal(
            ds["time_bnds"].values[0], [np.datetime64("2019-06-12T00:00:00"), np.datetime64("2019-06-13T00:00:00")]
        )
    with netCDF4.Dataset(nc_path) as nc:
        assert nc["time"].units == ncw.TIME_UNITS
        assert nc["time"].calendar == "standard"


def test_values_round_trip(nc_path, product):
    with xr.open_dataset(nc_path) as ds:
        for name in VARS:
            written = ds[name].isel(time=0)
            assert written.dtype == product[name].dtype
            np.testing.assert_array_equal(written.values, product[name].values)
        # a pixel is the value of its own cell centre
        row, col = 124, 456  # count (124 + 3*456) % 7 = 1: a valid cell
        lat, lon = GRID.lat_centers()[row], GRID.lon_centers()[col]
        picked = ds["tropospheric_no2_column"].isel(time=0).sel(lat=lat, lon=lon).item()
        assert picked == np.float32(lon * 1000 + lat)


def test_fill_compression_and_chunking(nc_path):
    with netCDF4.Dataset(nc_path) as nc:
        for name in VARS:
            var = nc[name]
            filters = var.filters()
            assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 4
            assert var.chunking() == [1, 512, 512]
        assert np.isnan(nc["tropospheric_no2_column"]._FillValue)
        assert np.isnan(nc["weight"]._FillValue)
        assert "_FillValue" not in nc["count"].ncattrs()
        assert "_FillValue" not in nc["lat"].ncattrs()


def test_gdal_reads_the_exact_grid(nc_path):
    with rasterio.open(f"netcdf:{nc_path}:tropospheric_no2_column") as src:
        assert src.transform.almost_equals(GRID.transform, precision=1e-12)
        assert src.crs.to_epsg() == 4326
        assert src.shape == GRID.shape
        value = src.read(1)[124, 456]
    assert value == np.float32(GRID.lon_centers()[456] * 1000 + GRID.lat_centers()[124])


def test_dask_backed_input(tmp_path, product):
    path = tmp_path / "lazy.nc"
    write_netcdf(path, product.chunk({"lat": 200, "lon": 350}), GRID, make_provenance())
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(ds["count"].isel(time=0).values, product["count"].values)


def test_missing_time_coverage_is_refused(tmp_path, product):
    ds = product.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "time_coverage_end"}
    with pytest.raises(InputError, match="time_coverage_end"):
        write_netcdf(tmp_path / "x.nc", ds, GRID, make_provenance())
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_file_and_keeps_existing(tmp_path, monkeypatch, product):
    real = ncw.iter_grid_blocks

    def crash_after_first_block(*args, **kwargs):
        blocks = real(*args, **kwargs)
        yield next(blocks)
        raise RuntimeError("simulated crash while writing blocks")

    monkeypatch.setattr(ncw, "iter_grid_blocks", crash_after_first_block)
    target = tmp_path / "out.nc"
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_netcdf(target, product, GRID, make_provenance())
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"previous good product")
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_netcdf(target, product, GRID, make_provenance())
    assert target.read_bytes() == b"previous good product"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]


def test_unwritable_folder_raises_output_error(tmp_path, product):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="file.txt"):
        write_netcdf(blocker / "out.nc", product, GRID, make_provenance())


def test_reserved_variable_name_is_refused(tmp_path, product):
    ds = product.rename({"weight": "crs"})
    with pytest.raises(InputError, match="'crs'"):
        write_netcdf(tmp_path / "x.nc", ds, GRID, make_provenance())


def test_time_is_middle_of_a_month(tmp_path, product):
    ds = product.copy()
    ds.attrs.update(period="month", period_label="2019-06",
                    time_coverage_start="2019-06-01T00:00:00Z", time_coverage_end="2019-07-01T00:00:00Z")
    write_netcdf(tmp_path / "m.nc", ds, GRID, make_provenance())
    with xr.open_dataset(tmp_path / "m.nc") as out:
        assert pd.Timestamp(out["time"].values[0]) == pd.Timestamp("2019-06-16T00:00:00")
