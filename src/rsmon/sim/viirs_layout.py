"""File layout of the simulated VIIRS L1B granules (:mod:`rsmon.sim.viirs`): what is written where.

A ``{VNP,VJ1,VJ2}02IMG`` file (groups ``observation_data`` and ``scan_line_attributes``) and its
``03IMG`` geolocation file (``geolocation_data``, ``navigation_data``, ``scan_line_attributes``) with the
dimensions, dtypes, scaling, special counts, lookup tables and global attributes of the NASA files
(LAADS file specifications VNP02IMG/VNP03IMG V3.0.0; NASA VIIRS L1B Product User Guide; attribute values
quoted in public readers: satpy ``viirs_l1b``, GeoIPS ``viirs_netcdf``). Values this module cannot
verify against a real file are marked "[assumed]".

Encoding of the thermal bands: ``L = count * scale_factor + add_offset``; I5 uses the real NOAA-20
values (0.0003815221, 0.141121, GeoIPS comment); I4 uses scale/offset chosen so that count 0 is the
208 K of folded pixels and ``valid_max`` 65527 the 367 K saturation (fire.md 1.1) for the monochromatic
3.74 um Planck function used here (real files: 6.104354e-05 / 0.0016703 with a band-integrated LUT).
The lookup tables hold the Planck brightness temperature of every count.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from rsmon.io.ncfile import NC_LOCK
from rsmon.io.viirs import (
    FILL_COUNT,
    PLATFORMS,
    QF_FLAG_MASKS,
    QF_FLAG_MEANINGS,
    SPECIAL_COUNTS,
    VALID_MAX_COUNT,
)
from rsmon.sim.viirs_scene import I4_WAVELENGTH_UM, I5_WAVELENGTH_UM, brightness_temperature, planck_radiance

__all__ = ["GranuleMeta", "GranuleWriter", "I4_SATURATION_K", "I5_SATURATION_K", "FOLDED_BT_K", "lut",
           "encode_radiance", "encode_reflectance"]

#: I4 saturates at 367 K and severe saturation folds to 208 K; I5 saturates at 380 K (fire.md 1.1).
I4_SATURATION_K = 367.0
I5_SATURATION_K = 380.0
FOLDED_BT_K = 208.0

_F4 = np.float32
I4_OFFSET = _F4(planck_radiance(I4_WAVELENGTH_UM, FOLDED_BT_K))
I4_SCALE = _F4((planck_radiance(I4_WAVELENGTH_UM, I4_SATURATION_K) - float(I4_OFFSET)) / VALID_MAX_COUNT)
I5_SCALE, I5_OFFSET = _F4(0.0003815221), _F4(0.141121)
#: I01-I03 reflectance scale and radiance scales (GeoIPS viirs_netcdf comments, real NOAA-20 files).
REFLECTANCE_SCALE = _F4(1.9991758e-05)
RADIANCE_SCALE = {"I01": _F4(0.010167242), "I02": _F4(0.006007384), "I03": _F4(0.0015311801)}
BAND_NAMES = {"I01": "0.64 um", "I02": "0.865 um", "I03": "1.61 um", "I04": "3.74 um", "I05": "11.45 um"}
LUT_FILL = _F4(-999.9)
GEO_FILL = _F4(-999.9)
ANGLE_FILL = np.int16(-32768)
ANGLE_SCALE = _F4(0.01)
RAD_UNITS = "Watts/meter^2/steradian/micrometer"
#: Seconds from 1993-01-01 (UTC) to ``t`` in TAI: UTC seconds plus the leap seconds inserted since.
_LEAP_SECONDS_AFTER_1993 = (datetime(1993, 7, 1), datetime(1994, 7, 1), datetime(1996, 1, 1), datetime(1997, 7, 1),
                            datetime(1999, 1, 1), datetime(2006, 1, 1), datetime(2009, 1, 1), datetime(2012, 7, 1),
                            datetime(2015, 7, 1), datetime(2017, 1, 1))
_CHUNK_LINES, _CHUNK_PIXELS = 64, 1600
#: Launch times: rough orbit numbers (orbits since launch at 101.44 min) [assumed].
_LAUNCH = {"Suomi-NPP": datetime(2011, 10, 28, 9, 48, tzinfo=timezone.utc),
           "NOAA-20": datetime(2017, 11, 18, 9, 47, tzinfo=timezone.utc),
           "NOAA-21": datetime(2022, 11, 10, 9, 49, tzinfo=timezone.utc)}


def tai93(t: datetime) -> float:
    """TAI seconds since 1993-01-01T00:00:00 UTC (the L1B scan time convention)."""
    naive = t.astimezone(timezone.utc).replace(tzinfo=None)
    leaps = sum(1 for d in _LEAP_SECONDS_AFTER_1993 if naive >= d)
    return (naive - datetime(1993, 1, 1)).total_seconds() + leaps


def lut(scale: np.float32, offset: np.float32, wavelength_um: float) -> np.ndarray:
    """65536-entry brightness-temperature table of the counts 0..65527 (fill above)."""
    counts = np.arange(VALID_MAX_COUNT + 1, dtype=np.float64)
    table = np.full(65536, LUT_FILL, dtype=np.float32)
    table[: VALID_MAX_COUNT + 1] = brightness_temperature(wavelength_um, counts * float(scale) + float(offset))
    return table


def encode_radiance(radiance: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    """Radiance (W m-2 sr-1 um-1) -> uint16 counts 0..65527 (clipped)."""
    counts = np.rint((np.asarray(radiance, dtype=np.float64) - float(offset)) / float(scale))
    return np.clip(counts, 0, VALID_MAX_COUNT).astype(np.uint16)


def encode_reflectance(rho: np.ndarray) -> np.ndarray:
    """Reflectance factor -> uint16 counts 0..65527 (clipped)."""
    return np.clip(np.rint(np.asarray(rho, dtype=np.float64) / float(REFLECTANCE_SCALE)), 0,
                   VALID_MAX_COUNT).astype(np.uint16)


def encode_angle(deg: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(deg) / float(ANGLE_SCALE)).astype(np.int16)


@dataclass
class GranuleMeta:
    """Granule-level facts of one simulated pair."""

    platform: str
    start: datetime
    n_scans: int
    n_pixels: int
    day: bool
    ascending: bool
    collection: str
    seed: int
    production: datetime
    img_name: str
    geo_name: str
    scan_times: list[datetime] = field(default_factory=list)

    @property
    def n_lines(self) -> int:
        return self.n_scans * 32

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=6)

    @property
    def orbit(self) -> int:
        launch = _LAUNCH[self.platform]
        return int((self.start - launch).total_seconds() // (101.44 * 60.0)) + 1


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _global_attrs(meta: GranuleMeta, level: str) -> dict:
    p = PLATFORMS[meta.platform]
    sat_short = {"Suomi-NPP": "NPP", "NOAA-20": "JPSS1", "NOAA-21": "JPSS2"}[meta.platform]
    kind = ("Imagery Resolution 6-Min L1B Swath 375m" if level == "02"
            else "Imagery Resolution Terrain-Corrected Geolocation 6-Min L1 Swath 375m")
    name = meta.img_name if level == "02" else meta.geo_name
    return {
        "AlgorithmType": "SCI",
        "AlgorithmVersion": f"{sat_short}_PR{level} v3.1.0",
        "cdm_data_type": "swath",
        "Conventions": "CF-1.6",
        "creator_name": "rsmon.sim.viirs (simulated data)",
        "date_created": _iso(meta.production),
        "DayNightFlag": "Day" if meta.day else "Night",
        "history": f"simulated by rsmon.sim.viirs, seed {meta.seed}: NOT REAL DATA",
        "instrument": "VIIRS",
        "LocalGranuleID": name,
        "LongName": f"VIIRS/{sat_short} {kind}",
        "number_of_filled_scans": np.int32(meta.n_scans),
        "platform": p.file_platform,
        "processing_level": "L1B" if level == "02" else "L1",
        "processing_version": "v3.1.0",
        "product_name": name,
        "ShortName": f"{p.prefix}{level}IMG",
        "startDirection": "Ascending" if meta.ascending else "Descending",
        "endDirection": "Ascending" if meta.ascending else "Descending",
        "time_coverage_start": _iso(meta.start),
        "time_coverage_end": _iso(meta.end),
        ("orbit_number" if level == "02" else "OrbitNumber"): np.int32(meta.orbit),
        "title": ("VIIRS I-band Reflected Solar and Brightness Temperature" if level == "02"
                  else "VIIRS I-band Geolocation Data"),
    }


class GranuleWriter:
    """Lays out a 02IMG/03IMG pair and writes it block by block (use as a context manager).

    Parameters
    ----------
    img_tmp, geo_tmp : Path
        Where to write (temporary names; the caller renames them).
    meta : GranuleMeta
    complevel : int
        zlib level of every variable (shuffle on).
    """

    def __init__(self, img_tmp: Path, geo_tmp: Path, meta: GranuleMeta, complevel: int = 1):
        self.meta = meta
        self.complevel = complevel
        self._paths = (img_tmp, geo_tmp)
        self._stack = ExitStack()
        self.vars: dict[str, object] = {}
        self.lat_range = [math.inf, -math.inf]
        self.lon_range = [math.inf, -math.inf]
        self.corners: dict[str, tuple[float, float]] = {}

    def __enter__(self) -> "GranuleWriter":
        import netCDF4

        with NC_LOCK:
            self.img = self._stack.enter_context(netCDF4.Dataset(self._paths[0], "w", format="NETCDF4"))
            self.geo = self._stack.enter_context(netCDF4.Dataset(self._paths[1], "w", format="NETCDF4"))
            self._layout()
        return self

    def __exit__(self, *exc) -> None:
        with NC_LOCK:
            self._stack.close()

    # -- layout --------------------------------------------------------------------------------------

    def _var(self, grp, name: str, dtype, dims, attrs: dict, fill=None, chunks=None):
        comp = dict(zlib=True, complevel=self.complevel, shuffle=True)
        var = grp.createVariable(name, dtype, dims, fill_value=fill, chunksizes=chunks, **comp)
        var.set_auto_maskandscale(False)  # we write stored values
        var.setncatts(attrs)
        if chunks is not None:
            var.set_var_chunk_cache(size=int(np.prod(chunks)) * np.dtype(dtype).itemsize * 8 + 1024, nelems=31)
        self.vars[name] = var
        return var

    def _layout(self) -> None:
        m = self.meta
        n_lines, n_pix = m.n_lines, m.n_pixels
        chunks = (min(_CHUNK_LINES, n_lines), min(_CHUNK_PIXELS, n_pix))
        d2 = ("number_of_lines", "number_of_pixels")
        for ds, level in ((self.img, "02"), (self.geo, "03")):
            ds.setncatts(_global_attrs(m, level))
            ds.createDimension("number_of_scans", m.n_scans)
            ds.createDimension("number_of_lines", n_lines)
            ds.createDimension("number_of_pixels", n_pix)
        self.img.createDimension("number_of_LUT_values", 65536)
        self.geo.createDimension("vector_elements", 3)

        obs = self.img.createGroup("observation_data")
        bands = ["I01", "I02", "I03", "I04", "I05"] if m.day else ["I04", "I05"]
        for band in bands:
            attrs = {"long_name": f"I-band {band[1:]} earth view "
                                  + ("radiance" if band in ("I04", "I05") else "reflectance")
                                  + f" ({BAND_NAMES[band]})",
                     "valid_min": np.uint16(0), "valid_max": np.uint16(VALID_MAX_COUNT),
                     "flag_values": np.array(list(SPECIAL_COUNTS), dtype=np.uint16),
                     "flag_meanings": " ".join(SPECIAL_COUNTS.values())}
            if band == "I04":
                attrs.update(units=RAD_UNITS, scale_factor=I4_SCALE, add_offset=I4_OFFSET)
            elif band == "I05":
                attrs.update(units=RAD_UNITS, scale_factor=I5_SCALE, add_offset=I5_OFFSET)
            else:  # reflective bands carry no units since L1 v1.1; radiance scaling in extra attributes
                attrs.update(scale_factor=REFLECTANCE_SCALE, add_offset=_F4(0.0), radiance_units=RAD_UNITS,
                             radiance_scale_factor=RADIANCE_SCALE[band], radiance_add_offset=_F4(0.0))
            self._var(obs, band, "u2", d2, attrs, fill=np.uint16(FILL_COUNT), chunks=chunks)
            self._var(obs, f"{band}_quality_flags", "u2", d2,
                      {"long_name": f"I-band {band[1:]} quality flags",
                       "flag_masks": np.array(QF_FLAG_MASKS, dtype=np.uint16), "flag_meanings": QF_FLAG_MEANINGS},
                      chunks=chunks)
            self._var(obs, f"{band}_uncert_index", "i1", d2,
                      {"long_name": f"I-band {band[1:]} uncertainty index", "units": "percent",
                       "scale_factor": _F4(0.006138), "conversion": "1.0 + scale_factor * index^2 [assumed]",
                       "valid_min": np.int8(0), "valid_max": np.int8(127)},
                      fill=np.int8(-1), chunks=chunks)
        for band, scale, offset, wl in (("I04", I4_SCALE, I4_OFFSET, I4_WAVELENGTH_UM),
                                        ("I05", I5_SCALE, I5_OFFSET, I5_WAVELENGTH_UM)):
            table = lut(scale, offset, wl)
            var = self._var(obs, f"{band}_brightness_temperature_lut", "f4", ("number_of_LUT_values",),
                            {"long_name": f"I-band {band[1:]} brightness temperature lookup table",
                             "units": "Kelvin", "valid_min": table[0], "valid_max": table[VALID_MAX_COUNT]},
                            fill=LUT_FILL)
            var[:] = table

        sla = self.img.createGroup("scan_line_attributes")
        self._scan_times(sla, "02")
        for name in ("scan_state_flags", "scan_quality_flags"):
            self._var(sla, name, "u1", ("number_of_scans",), {"long_name": name.replace("_", " ")})[:] = 0

        geo = self.geo.createGroup("geolocation_data")
        self._var(geo, "latitude", "f4", d2, {"long_name": "Latitudes of pixel locations", "units": "degrees_north",
                                              "valid_min": _F4(-90.0), "valid_max": _F4(90.0)},
                  fill=GEO_FILL, chunks=chunks)
        self._var(geo, "longitude", "f4", d2, {"long_name": "Longitudes of pixel locations",
                                               "units": "degrees_east", "valid_min": _F4(-180.0),
                                               "valid_max": _F4(180.0)}, fill=GEO_FILL, chunks=chunks)
        self._var(geo, "height", "i2", d2, {"long_name": "Terrain height at pixel locations", "units": "meters",
                                            "valid_min": np.int16(-1000), "valid_max": np.int16(10000)},
                  fill=np.int16(-32768), chunks=chunks)
        for name, lo, hi in (("sensor_azimuth", -18000, 18000), ("sensor_zenith", 0, 18000),
                             ("solar_azimuth", -18000, 18000), ("solar_zenith", 0, 18000)):
            self._var(geo, name, "i2", d2, {"long_name": f"{name.replace('_', ' ')} angle at pixel locations",
                                            "units": "degrees", "scale_factor": ANGLE_SCALE,
                                            "add_offset": _F4(0.0), "valid_min": np.int16(lo),
                                            "valid_max": np.int16(hi)},
                      fill=ANGLE_FILL, chunks=chunks)
        self._var(geo, "land_water_mask", "u1", d2,
                  {"long_name": "Land/Water mask at pixel locations", "flag_values": np.arange(8, dtype=np.uint8),
                   "flag_meanings": "Shallow_Ocean Land Coastline Shallow_Inland Ephemeral Deep_Inland "
                                    "Continental Deep_Ocean"}, fill=np.uint8(255), chunks=chunks)
        self._var(geo, "quality_flag", "u1", d2,
                  {"long_name": "Geolocation pixel quality flags [assumed meanings]",
                   "flag_masks": np.array([1, 2, 4, 8], dtype=np.uint8),
                   "flag_meanings": "Input_invalid Pointing_bad Terrain_bad Invalid_solar_angles"},
                  fill=np.uint8(255), chunks=chunks)
        nav = self.geo.createGroup("navigation_data")
        for name, units in (("orb_pos", "meters"), ("orb_vel", "meters/second")):
            self._var(nav, name, "f4", ("number_of_scans", "vector_elements"),
                      {"long_name": f"Earth-fixed satellite {'position' if name == 'orb_pos' else 'velocity'}",
                       "units": units}, fill=_F4(-9999999.0))
        self._scan_times(self.geo.createGroup("scan_line_attributes"), "03")

    def _scan_times(self, grp, level: str) -> None:
        times = np.array([tai93(t) for t in self.meta.scan_times])
        for name, shift in (("scan_start_time", 0.0), ("scan_end_time", 1.7864), ("scan_mid_time", 0.8932)):
            if name == "scan_mid_time" and level == "02":
                continue
            var = self._var(grp, name, "f8", ("number_of_scans",),
                            {"long_name": f"{name.replace('_', ' ').capitalize()} (TAI93)", "units": "seconds"},
                            fill=-999.9)
            var[:] = times + shift

    # -- data ----------------------------------------------------------------------------------------

    def write_block(self, l0: int, fields: dict[str, np.ndarray]) -> None:
        """Write 2-D fields (stored dtypes) for lines ``l0 .. l0 + rows``."""
        with NC_LOCK:
            for name, arr in fields.items():
                self.vars[name][l0:l0 + arr.shape[0], :] = arr

    def write_navigation(self, scan: int, pos: np.ndarray, vel: np.ndarray) -> None:
        with NC_LOCK:
            self.vars["orb_pos"][scan, :] = pos.astype(np.float32)
            self.vars["orb_vel"][scan, :] = vel.astype(np.float32)

    def track_extent(self, lat: np.ndarray, lon: np.ndarray, first: bool, last: bool) -> None:
        self.lat_range = [min(self.lat_range[0], float(lat.min())), max(self.lat_range[1], float(lat.max()))]
        self.lon_range = [min(self.lon_range[0], float(lon.min())), max(self.lon_range[1], float(lon.max()))]
        if first:
            self.corners["first"] = ((float(lon[0, 0]), float(lat[0, 0])), (float(lon[0, -1]), float(lat[0, -1])))
        if last:
            self.corners["last"] = ((float(lon[-1, 0]), float(lat[-1, 0])), (float(lon[-1, -1]), float(lat[-1, -1])))

    def finish(self, day_night: str) -> None:
        """Bounding coordinates, G-ring and the day/night flag (known once every block is written)."""
        (a, b), (c, d) = self.corners["first"], self.corners["last"]
        ring = [a, b, d, c]  # first-left, first-right, last-right, last-left
        attrs = {"NorthBoundingCoordinate": _F4(self.lat_range[1]), "SouthBoundingCoordinate": _F4(self.lat_range[0]),
                 "EastBoundingCoordinate": _F4(self.lon_range[1]), "WestBoundingCoordinate": _F4(self.lon_range[0]),
                 "GRingPointLatitude": np.array([p[1] for p in ring], dtype=np.float32),
                 "GRingPointLongitude": np.array([p[0] for p in ring], dtype=np.float32),
                 "GRingPointSequenceNo": np.arange(1, 5, dtype=np.int32),
                 "DayNightFlag": day_night}
        with NC_LOCK:
            for ds in (self.img, self.geo):
                ds.setncatts(attrs)
