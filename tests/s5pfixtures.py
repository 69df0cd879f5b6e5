"""Small Sentinel-5P L2 files in the real layout, for reader tests (satpy's fake-file habit).

:func:`write_s5p_l2` writes an NO2, CH4 or AER_AI file with netCDF4: the ``PRODUCT`` group with
``time``/``delta_time``/``time_utc`` (strings), pixel centres, ``qa_value`` (uint8, scale 0.01, fill 255) and the product
variables (float32, fill 9.96921e36); ``PRODUCT/SUPPORT_DATA/GEOLOCATIONS`` with corner bounds;
``DETAILED_RESULTS``/``INPUT_DATA`` with one variable each; ``METADATA/GRANULE_DESCRIPTION``; the
real global attributes and a real file name. Every pixel value encodes its own (scanline,
ground_pixel) index (see :func:`expected_value`), so an indexing bug shows as a wrong number.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import netCDF4
import numpy as np

FILL_FLOAT = np.float32(9.96921e36)
FILL_INT = np.int32(-2147483647)
QA_FILL = np.uint8(255)
EPOCH_2010 = datetime(2010, 1, 1, tzinfo=timezone.utc)
MOLECULES_FACTOR = np.float32(6.02214e19)
SCANLINE_MS = 840  # time between scanlines, ms (PT0.840S since 6 Aug 2019)

#: product -> (short name in the file name, title, [(variable, units, standard_name)])
PRODUCTS = {
    "NO2": ("NO2___", "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km", [
        ("nitrogendioxide_tropospheric_column", "mol m-2", "troposphere_mole_content_of_nitrogen_dioxide"),
        ("nitrogendioxide_tropospheric_column_precision", "mol m-2",
         "troposphere_mole_content_of_nitrogen_dioxide standard_error"),
    ]),
    "CH4": ("CH4___", "TROPOMI/S5P Methane 1-Orbit L2 Swath 7x7km", [
        ("methane_mixing_ratio", "1e-9", "dry_atmosphere_mole_fraction_of_methane"),
        ("methane_mixing_ratio_precision", "1e-9", "dry_atmosphere_mole_fraction_of_methane standard_error"),
        ("methane_mixing_ratio_bias_corrected", "1e-9", "dry_atmosphere_mole_fraction_of_methane"),
    ]),
    "AER_AI": ("AER_AI", "TROPOMI/S5P Aerosol Index 1-Orbit L2 Swath 5.5x3.5km", [
        ("aerosol_index_354_388", "1", None),
        ("aerosol_index_354_388_precision", "1", None),
        ("aerosol_index_340_380", "1", None),
        ("aerosol_index_340_380_precision", "1", None),
    ]),
}


def expected_value(variable: str, i, j):
    """The value written for ``variable`` at scanline ``i``, ground pixel ``j`` (before fill)."""
    i = np.asarray(i, dtype=np.float64)
    j = np.asarray(j, dtype=np.float64)
    code = i * 100.0 + j
    table = {
        "nitrogendioxide_tropospheric_column": 1e-5 + 1e-8 * code,           # mol m-2
        "nitrogendioxide_tropospheric_column_precision": 1e-6 + 1e-10 * code,
        "methane_mixing_ratio": 1800.0 + i + j / 100.0,                      # ppb
        "methane_mixing_ratio_precision": 1.0 + j / 100.0,
        "methane_mixing_ratio_bias_corrected": 1790.0 + i + j / 100.0,
        "aerosol_index_354_388": (i - j) / 10.0,
        "aerosol_index_354_388_precision": 0.01 + j / 1000.0,
        "aerosol_index_340_380": (i - j) / 10.0 + 0.5,
        "aerosol_index_340_380_precision": 0.02 + j / 1000.0,
    }
    return np.float32(table[variable]) if np.ndim(table[variable]) == 0 else table[variable].astype(np.float32)


def expected_qa_raw(i, j):
    """Stored qa integer (0..100) at (i, j); fill pixels hold 255 instead."""
    return ((np.asarray(i) * 7 + np.asarray(j) * 3) % 101).astype(np.uint8)


def centre(i, j, lon0: float, lat0: float, dlon: float, dlat: float):
    """Pixel-centre (lon, lat) in degrees; the swath is slightly slanted (lat grows across track)."""
    lon = lon0 + np.asarray(j) * dlon
    lat = lat0 + np.asarray(i) * dlat + np.asarray(j) * 0.001
    return lon, lat


def s5p_name(product: str = "NO2", start: datetime | None = None, orbit: int = 9355,
             mode: str = "OFFL", processor: str = "010302", suffix: str = ".nc") -> str:
    """A real-format S5P L2 file name."""
    start = start or datetime(2019, 8, 10, 4, 30, tzinfo=timezone.utc)
    end = start + timedelta(minutes=101)
    prod = start + timedelta(days=6)
    f = "%Y%m%dT%H%M%S"
    return (f"S5P_{mode}_L2__{PRODUCTS[product][0]}_{start:{f}}_{end:{f}}_{orbit:05d}_01_{processor}_"
            f"{prod:{f}}{suffix}")


def write_s5p_l2(
    folder: str | Path,
    product: str = "NO2",
    *,
    n_scanline: int = 12,
    n_ground_pixel: int = 8,
    start: datetime | None = None,
    orbit: int = 9355,
    lon0: float = 116.0,
    lat0: float = 39.0,
    dlon: float = 0.05,
    dlat: float = 0.03,
    fill_pixels: tuple[tuple[int, int], ...] = ((0, 0), (3, 5)),
    omit_variables: tuple[str, ...] = (),
    omit_groups: tuple[str, ...] = (),
    delta_time_per_pixel: bool = False,
    name: str | None = None,
    metadata_only: bool = False,
) -> Path:
    """Write a small S5P L2 file and return its path.

    Parameters
    ----------
    folder : path
        Where to write.
    product : {"NO2", "CH4", "AER_AI"}
    n_scanline, n_ground_pixel : int
        Swath shape.
    start : datetime
        First scanline time (UTC); scanlines follow every 840 ms.
    lon0, lat0, dlon, dlat : float
        Geolocation of pixel (0, 0) and the steps across/along track, degrees.
    fill_pixels : tuple of (i, j)
        Pixels whose product values are fill and whose qa is 255 (geolocation stays valid).
    omit_variables : tuple of str
        PRODUCT or GEOLOCATIONS variables not to write (e.g. ``"latitude_bounds"``, ``"qa_value"``).
    omit_groups : tuple of str
        Groups not to write: ``"PRODUCT"``, ``"GEOLOCATIONS"``, ``"METADATA"``.
    delta_time_per_pixel : bool
        Write ``delta_time`` as (time, scanline, ground_pixel), as some processor versions do.
    name : str, optional
        File name (default: a real S5P name from :func:`s5p_name`).
    metadata_only : bool
        Write the PRODUCT group with dimensions but no variables (like stripped sample files).
    """
    start = start or datetime(2019, 8, 10, 4, 30, tzinfo=timezone.utc)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or s5p_name(product, start, orbit))
    short, title, variables = PRODUCTS[product]
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(milliseconds=SCANLINE_MS * (n_scanline - 1))

    ii, jj = np.meshgrid(np.arange(n_scanline), np.arange(n_ground_pixel), indexing="ij")
    fill = np.zeros(ii.shape, dtype=bool)
    for i, j in fill_pixels:
        fill[i, j] = True
    lon, lat = centre(ii, jj, lon0, lat0, dlon, dlat)
    # corners: 0 = (i-1/2, j-1/2), 1 = (i-1/2, j+1/2), 2 = (i+1/2, j+1/2), 3 = (i+1/2, j-1/2)
    offsets = [(-0.5, -0.5), (-0.5, 0.5), (0.5, 0.5), (0.5, -0.5)]
    lon_b = np.stack([centre(ii + di, jj + dj, lon0, lat0, dlon, dlat)[0] for di, dj in offsets], axis=-1)
    lat_b = np.stack([centre(ii + di, jj + dj, lon0, lat0, dlon, dlat)[1] for di, dj in offsets], axis=-1)

    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({
            "Conventions": "CF-1.7", "institution": "KNMI",
            "source": "Sentinel 5 precursor, TROPOMI, space-borne remote sensing, L2",
            "title": title, "summary": title,
            "id": Path(s5p_name(product, start, orbit)).stem,
            "time_reference": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "time_coverage_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "time_coverage_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "time_coverage_resolution": "PT0.840S",
            "orbit": np.int32(orbit), "processor_version": "1.3.2", "product_version": "1.3.0",
            "algorithm_version": "1.3.0", "platform": "S5P", "sensor": "TROPOMI",
            "geospatial_lat_min": np.float32(lat_b.min()), "geospatial_lat_max": np.float32(lat_b.max()),
            "geospatial_lon_min": np.float32(lon_b.min()), "geospatial_lon_max": np.float32(lon_b.max()),
            "cdm_data_type": "Swath",
        })
        if "METADATA" not in omit_groups:
            meta = nc.createGroup("METADATA")
            meta.createGroup("QA_STATISTICS")
            gd = meta.createGroup("GRANULE_DESCRIPTION")
            gd.setncatts({
                "GranuleStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "GranuleEnd": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "InstrumentName": "TROPOMI", "MissionName": "Sentinel-5 precursor",
                "MissionShortName": "S5P", "ProcessLevel": "2", "ProcessorVersion": "1.3.2",
                "ProcessingMode": "Offline", "ProductShortName": f"L2__{short}",
            })
        if "PRODUCT" in omit_groups:
            return path

        prod = nc.createGroup("PRODUCT")
        prod.createDimension("time", 1)
        prod.createDimension("scanline", n_scanline)
        prod.createDimension("ground_pixel", n_ground_pixel)
        prod.createDimension("corner", 4)
        if metadata_only:
            return path
        for dim, n in (("scanline", n_scanline), ("ground_pixel", n_ground_pixel), ("corner", 4)):
            v = prod.createVariable(dim, "i4", (dim,), fill_value=FILL_INT)
            v[:] = np.arange(n)
            v.units = "1"
        t = prod.createVariable("time", "i4", ("time",), fill_value=FILL_INT)
        t.units = "seconds since 2010-01-01 00:00:00"
        t.standard_name = "time"
        t.axis = "T"
        t[:] = int((day - EPOCH_2010).total_seconds())
        delta_ms = int((start - day).total_seconds() * 1000) + SCANLINE_MS * np.arange(n_scanline)
        if delta_time_per_pixel:
            dt = prod.createVariable("delta_time", "i4", ("time", "scanline", "ground_pixel"), fill_value=FILL_INT)
            block = np.repeat(delta_ms[:, None], n_ground_pixel, axis=1)
            dt[0] = np.ma.masked_array(block, mask=np.zeros(block.shape, bool) | (jj == 0) & (ii == 1))
        else:
            dt = prod.createVariable("delta_time", "i4", ("time", "scanline"), fill_value=FILL_INT)
            dt[0] = delta_ms
        dt.units = "milliseconds"
        dt.long_name = "offset from reference start time of measurement"
        # the real files also carry ISO strings (a variable-length string variable)
        tu = prod.createVariable("time_utc", str, ("time", "scanline"))
        tu.long_name = "Time of observation as ISO 8601 date-time string"
        stamps = [(start + timedelta(milliseconds=SCANLINE_MS * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                  for i in range(n_scanline)]
        tu[0, :] = np.array(stamps, dtype=object)

        pixel = ("time", "scanline", "ground_pixel")
        for vname, data, units, std in (("latitude", lat, "degrees_north", "latitude"),
                                        ("longitude", lon, "degrees_east", "longitude")):
            if vname in omit_variables:
                continue
            v = prod.createVariable(vname, "f4", pixel, fill_value=FILL_FLOAT, zlib=True)
            v.setncatts({"units": units, "standard_name": std, "long_name": f"pixel center {vname}",
                         "bounds": f"/PRODUCT/SUPPORT_DATA/GEOLOCATIONS/{vname}_bounds"})
            v[0] = data.astype(np.float32)
        if "qa_value" not in omit_variables:
            q = prod.createVariable("qa_value", "u1", pixel, fill_value=QA_FILL, zlib=True)
            q.setncatts({"scale_factor": np.float32(0.01), "add_offset": np.float32(0.0), "units": "1",
                         "valid_min": np.uint8(0), "valid_max": np.uint8(100),
                         "long_name": "data quality value", "coordinates": "longitude latitude"})
            q.set_auto_maskandscale(False)  # write the stored integers as they are
            q[0] = np.where(fill, QA_FILL, expected_qa_raw(ii, jj)).astype(np.uint8)
        for vname, units, std in variables:
            if vname in omit_variables:
                continue
            v = prod.createVariable(vname, "f4", pixel, fill_value=FILL_FLOAT, zlib=True)
            attrs = {"units": units, "long_name": vname.replace("_", " "), "coordinates": "longitude latitude"}
            if std:
                attrs["standard_name"] = std
            if product == "NO2":
                attrs["multiplication_factor_to_convert_to_molecules_percm2"] = MOLECULES_FACTOR
            v.setncatts(attrs)
            v[0] = np.ma.masked_array(expected_value(vname, ii, jj), mask=fill)

        support = prod.createGroup("SUPPORT_DATA")
        if "GEOLOCATIONS" not in omit_groups:
            geo = support.createGroup("GEOLOCATIONS")
            for vname, data in (("latitude_bounds", lat_b), ("longitude_bounds", lon_b)):
                if vname in omit_variables:
                    continue
                v = geo.createVariable(vname, "f4", pixel + ("corner",), fill_value=FILL_FLOAT, zlib=True)
                v.long_name = vname
                v[0] = data.astype(np.float32)
            sza = geo.createVariable("solar_zenith_angle", "f4", pixel, fill_value=FILL_FLOAT)
            sza.units = "degree"
            sza[0] = (30.0 + ii + jj / 10.0).astype(np.float32)
        detailed = support.createGroup("DETAILED_RESULTS")
        cf = detailed.createVariable("cloud_fraction_crb", "f4", pixel, fill_value=FILL_FLOAT)
        cf.units = "1"
        cf[0] = (jj / 100.0).astype(np.float32)
        inp = support.createGroup("INPUT_DATA")
        sp = inp.createVariable("surface_pressure", "f4", pixel, fill_value=FILL_FLOAT)
        sp.units = "Pa"
        sp[0] = (100000.0 + ii).astype(np.float32)
    return path


def truncate(path: str | Path, keep_fraction: float = 0.5) -> Path:
    """Cut a file to ``keep_fraction`` of its bytes (an interrupted download)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * keep_fraction))
    return path


def write_plain_netcdf(path: str | Path) -> Path:
    """A valid NetCDF-4 file that is not Sentinel-5P (no groups, a simple lat/lon grid)."""
    path = Path(path)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("lat", 3)
        nc.createDimension("lon", 4)
        v = nc.createVariable("temperature", "f4", ("lat", "lon"))
        v.units = "K"
        v[:] = np.full((3, 4), 290.0, dtype=np.float32)
        nc.title = "not a satellite swath"
    return path
