"""HARP accepts the simulated TROPOMI L2 NO2 files (``harpcheck``, ``harpconvert`` + ``bin_spatial``).

Skipped when ``harpconvert`` is not installed (Debian/Ubuntu: ``apt-get install harp``). The helper
:func:`rsmon.sim.harp.run_harp_bin` (re-exported here) returns HARP's mean and weight on a north-up
grid for cell-by-cell comparisons with rsmon's binner.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from rsmon.sim.harp import HARP_NO2, harp_bin_operations, run_harp_bin  # noqa: F401  (re-export for reuse)
from rsmon.sim.s5p import scanlines_crossing, simulate_orbit, truth_column

HARPCONVERT = shutil.which("harpconvert")
if HARPCONVERT is None:
    print("test_harp_acceptance: harpconvert not found (apt-get install harp); skipping")
    pytest.skip("harpconvert not found (apt-get install harp)", allow_module_level=True)

pytestmark = pytest.mark.harp

ORBIT = 8609  # 2019-06-12, crosses eastern China
BBOX = (112.0, 21.0, 122.0, 33.0)  # Guangzhou .. Shanghai
RES = 0.05


@pytest.fixture(scope="module")
def l2_file(tmp_path_factory) -> Path:
    scan_range = scanlines_crossing(ORBIT, BBOX)
    assert scan_range is not None
    return simulate_orbit(tmp_path_factory.mktemp("l2"), ORBIT, seed=11, scanline_range=scan_range)


def test_harpcheck_accepts_every_ingestion_option(l2_file):
    proc = subprocess.run(["harpcheck", str(l2_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "S5P_L2_NO2" in proc.stdout and "[FAIL]" not in proc.stdout


def test_harpconvert_qa_filter_and_bin_spatial(l2_file, tmp_path):
    """The operations a user would type: validity filter, then area-weighted binning."""
    west, south, east, north = BBOX
    nlat, nlon = round((north - south) / RES), round((east - west) / RES)
    ops = (f"tropospheric_NO2_column_number_density_validity>75;"
           f"bin_spatial({nlat + 1},{south},{RES},{nlon + 1},{west},{RES})")
    out = tmp_path / "harp.nc"
    proc = subprocess.run([HARPCONVERT, "-a", ops, str(l2_file), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with netCDF4.Dataset(out) as ds:
        assert HARP_NO2 in ds.variables and "weight" in ds.variables
        no2 = ds[HARP_NO2][0]
        weight = ds["weight"][0]
        assert no2.shape == (nlat, nlon) and weight.shape == (nlat, nlon)
        assert ds[HARP_NO2].units == "mol/m^2"
        lat_b = ds["latitude_bounds"][:]
        assert lat_b[0, 0] == pytest.approx(south) and lat_b[-1, 1] == pytest.approx(north)
    assert float(np.nanmax(weight)) <= 1.0 + 1e-4
    assert np.mean(weight > 0) > 0.5  # the swath covers most of the box


def test_run_harp_bin_north_up_and_close_to_truth(l2_file, tmp_path):
    ds = run_harp_bin([l2_file], BBOX, RES, tmp_path / "harp_grid.nc", qa=75)
    no2, weight = ds[HARP_NO2].values, ds["weight"].values
    assert no2.shape == (240, 200)
    assert ds.lat.values[0] > ds.lat.values[-1]  # north-up
    assert ds.lat.values[0] == pytest.approx(BBOX[3] - RES / 2)
    assert np.all(np.isnan(no2) == (weight == 0))
    assert (tmp_path / "harp_grid.nc").exists()
    lon2, lat2 = np.meshgrid(ds.lon.values, ds.lat.values)
    truth = truth_column(lon2, lat2)
    well = weight > 0.9
    assert well.sum() > 5000
    diff = no2[well] - truth[well]
    assert abs(np.mean(diff)) < 2e-6  # unbiased
    assert np.std(diff) < 2e-5  # ~1e-5 noise per pixel, ~1-2 pixels per 0.05 deg cell
    assert np.corrcoef(no2[well], truth[well])[0, 1] > 0.7
    # Guangzhou's hot spot shows up where the truth puts it
    row = int(np.argmin(np.abs(ds.lat.values - 23.13)))
    col = int(np.argmin(np.abs(ds.lon.values - 113.26)))
    patch = no2[row - 4:row + 5, col - 4:col + 5]
    assert np.nanmean(patch) > 1e-4


def test_run_harp_bin_combines_files_by_weight(l2_file, tmp_path):
    """Two copies of one file: same mean, twice the weight (HARP's weights add up across files)."""
    one = run_harp_bin([l2_file], BBOX, 0.1, tmp_path / "one.nc")
    two = run_harp_bin([l2_file, l2_file], BBOX, 0.1, tmp_path / "two.nc")
    np.testing.assert_allclose(two["weight"].values, 2 * one["weight"].values, rtol=1e-6)
    np.testing.assert_allclose(two[HARP_NO2].values, one[HARP_NO2].values, rtol=1e-9, equal_nan=True)
    assert "bin_spatial(121,21.0,0.1,101,112.0,0.1)" in harp_bin_operations(BBOX, 0.1)


def test_run_harp_bin_empty_after_filter(l2_file, tmp_path):
    """HARP exits 2 with "product is empty" when the filter removes everything: an all-NaN grid."""
    ds = run_harp_bin([l2_file], BBOX, 0.5, tmp_path / "empty.nc", qa=100)
    assert np.all(np.isnan(ds[HARP_NO2].values)) and np.all(ds["weight"].values == 0)
