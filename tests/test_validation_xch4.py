"""`rsmon validate --kind xch4`: a real TROPOMI CH4 swath against a TCCON-format station file.

The station file is written in the TCCON public netCDF layout (time, lat, long, xch4 in ppb, as in
tests/test_stations.py) next to the real CH4 subset's only finite retrievals (2019-03-11, orbit 7293,
qa 0.40), so the expected matchup is hand-computable.
"""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pandas as pd
import pytest

from paths import SEEDS
from rsmon.cli import main

CH4 = SEEDS / "s5p" / "S5P_OFFL_L2__CH4____20190311T101655_20190311T115825_07293_01_010202_20190317T121015.SUB.nc4"


def write_tccon_site(path, lon, lat, times, values):
    epoch = pd.Timestamp("1970-01-01T00:00Z")
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.createDimension("time", len(times))
        v = nc.createVariable("time", "f8", ("time",))
        v.setncatts({"standard_name": "time", "units": "seconds since 1970-01-01 00:00:00", "calendar": "gregorian"})
        v[:] = [(pd.Timestamp(t) - epoch).total_seconds() for t in times]
        for name, units, value in (("lat", "degrees_north", lat), ("long", "degrees_east", lon)):
            v = nc.createVariable(name, "f4", ("time",))
            v.units = units
            v[:] = np.full(len(times), value)
        v = nc.createVariable("xch4", "f4", ("time",))
        v.units = "ppb"
        v[:] = values
        nc.setncatts({"long_name": "test01", "location": "test site in the Libyan desert"})
    return path


def test_xch4_swath_against_tccon_format_station(tmp_path, capsys):
    if not CH4.exists():
        pytest.skip(f"{CH4} absent")
    # the two finite pixels at (19.76E, 29.82N) and (19.74E, 29.89N), 11:17:09-11:17:10 UTC
    station = write_tccon_site(tmp_path / "te20190311_20190311.public.qc.nc", 19.75, 29.85,
                               ["2019-03-11T11:00:00Z", "2019-03-11T11:20:00Z", "2019-03-11T13:00:00Z"],
                               [1880.0, 1890.0, 1950.0])
    out = tmp_path / "out"
    rc = main(["validate", "--kind", "xch4", "--product", str(CH4), "--stations", str(station),
               "--radius-km", "20", "--qa", "0.3", "--window-min", "30", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    matchups = pd.read_csv(out / "matchups.csv")
    assert len(matchups) == 1
    row = matchups.iloc[0]
    assert row["sat_n"] == 2
    assert row["sat_mean"] == pytest.approx((1913.802 + 1889.2413) / 2, abs=1e-2)
    # station values within +-30 min of 11:17: those at 11:00 and 11:20, not 13:00
    assert row["ground_n"] == 2 and row["ground_mean"] == pytest.approx(1885.0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n"] == 1 and stats["r"] is None
    assert stats["mb"] == pytest.approx(row["sat_mean"] - 1885.0, abs=1e-2)
    # the default QA rule for CH4 (qa > 0.5) rejects these qa-0.40 pixels: nothing to validate
    rc = main(["validate", "--kind", "xch4", "--product", str(CH4), "--stations", str(station),
               "--radius-km", "20", "--out", str(tmp_path / "out2")])
    assert rc == 2 and "no matchups" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "stats.json").exists()


def test_an_orbit_given_twice_is_matched_once(tmp_path, capsys):
    """The real swath and a near-real-time copy of it (same scanlines, an NRTI name): the copy's
    scanlines are held by the offline processing, so the station gets one matchup, not two."""
    import shutil

    if not CH4.exists():
        pytest.skip(f"{CH4} absent")
    nrti = tmp_path / CH4.name.replace("_OFFL_", "_NRTI_").replace("20190317T121015", "20190311T133000")
    shutil.copy(CH4, nrti)
    station = write_tccon_site(tmp_path / "te20190311_20190311.public.qc.nc", 19.75, 29.85,
                               ["2019-03-11T11:00:00Z", "2019-03-11T11:20:00Z"], [1880.0, 1890.0])
    out = tmp_path / "out"
    rc = main(["validate", "--kind", "xch4", "--product", str(nrti), str(CH4), "--stations",
               str(station), "--radius-km", "20", "--qa", "0.3", "--window-min", "30", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    matchups = pd.read_csv(out / "matchups.csv")
    assert len(matchups) == 1 and matchups.iloc[0]["sat_n"] == 2
    assert matchups.iloc[0]["sat_mean"] == pytest.approx((1913.802 + 1889.2413) / 2, abs=1e-2)
