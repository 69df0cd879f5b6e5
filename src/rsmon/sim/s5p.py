"""Simulated Sentinel-5P/TROPOMI L2 NO2 files in the real file layout (HARP ``S5P_L2_NO2`` accepts them).

What is simulated
-----------------
* **Orbit.** Circular sun-synchronous orbit: altitude 824 km, inclination 98.7 deg, ascending node at
  13:29:40 mean local solar time, nodal period from the 16-day / 227-orbit repeat cycle. Orbit numbers
  and start times are tied to real file names (:data:`ORBIT_ANCHORS`). An orbit starts at "spacecraft
  midnight" (the orbit point nearest the anti-solar direction), so the day-side node follows about half
  an orbit later, shifted with the season: this reproduces the node phase 0.5022 that
  ``satellite_orbit_phase`` gives in the real CH4 orbit 07293 and the 53 s shift in orbit 07407.
* **Ground track and swath.** The sub-satellite point comes from the orbital elements plus Earth
  rotation (relative to the precessing orbit plane the Earth turns once per mean solar day), so tracks
  curve and reach 81.3 deg. The 450 across-track pixels sample the 108 deg field of view uniformly in
  scan angle; each line of sight lies in the plane perpendicular to the ground track, tilted back by a
  small "smile" fitted to real TROPOMI geolocation (rows bend back ~160 km at the swath edges), and
  meets a spherical Earth: pixels ~3.5 km wide at nadir and ~17 km at the edges (the x5 growth of the
  real orbit 07407), swath ~2650 km; scanlines 0.840 s (5.5 km) apart. The model lands within ~12 km
  (median) of the real pixels of the CH4 orbits 07293 and 07407. Corners are the same geometry half a
  pixel and half a scanline away (the midpoints in scan angle and time between neighbouring centres;
  at the swath edges the natural extrapolation), so neighbours share corners exactly; corner order as in
  the real files, counter-clockwise from the south-west corner in the ascending part of the orbit.
* **Values.** ``nitrogendioxide_tropospheric_column`` = :func:`truth_column` at the pixel centre plus
  Gaussian noise of the stated precision (~1e-5 mol m-2, larger for cloudy scenes and slant geometry).
  A cloud field with spatial structure (random plane waves on the sphere, new for every orbit) sets
  the cloud fraction, the cloud radiance fraction and ``qa_value``: 1.00 clear, 0.74 cloudy (cloud
  radiance fraction > 0.5), 0 with fill values for failed retrievals and for night (SZA > 88 deg).
  Slant, stratospheric and total columns, air-mass factors and averaging kernels are consistent with
  each other; large support fields that rsmon does not use are cheap (smooth, layer-only or
  bit-groomed to a few significant digits) so a full orbit stays under 100 MB.

Everything is deterministic for a given ``seed``; a scanline subset holds exactly the same values as
the same scanlines of the whole orbit.

References
----------
* Veefkind et al. (2012), TROPOMI on the ESA Sentinel-5 Precursor, Remote Sens. Environ. 120, 70-83:
  824 km, 13:30 ascending node, 108 deg field of view, 2600 km swath.
* sentinel-hub/sentinelhub-js ``DatasetsInfo.md``: Sentinel-5P orbital cycle 16 days, 227 orbits.
* Local real files (``shared/data``, also in ``seeds/s5p``):
  ``S5P_OFFL_L2__NO2____20200303T013547_..._12367_01_010302_...nc`` (global attributes,
  ``METADATA/GRANULE_DESCRIPTION``, PRODUCT dimension sizes);
  ``S5P_OFFL_L2__CH4____20190311T101655_..._07293_01_010202_...SUB.nc4`` (variable dtypes, fill values,
  attributes, corner order, ``delta_time``/``time_utc`` conventions, satellite track);
  ``..._CH4____20190319T110835_..._07407_...subset.nc4`` (a whole orbit of pixel centres: swath shape).
* HARP ``S5P_L2_NO2`` ingestion mapping (stcorp/harp ``doc/html/ingestions/S5P_L2_NO2.html``) for the
  variables HARP reads.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output, check_output_dir

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SOURCES",
    "EmissionSource",
    "main",
    "orbit_at",
    "orbit_start_time",
    "orbits_of_day",
    "simulate_day",
    "scanlines_crossing",
    "simulate_orbit",
    "truth_column",
]

# --------------------------------------------------------------------------------------------------
# Constants (each with its source)
# --------------------------------------------------------------------------------------------------

UTC = timezone.utc
#: Epoch of the S5P ``time`` variable: "seconds since 2010-01-01 00:00:00" (real CH4 file).
EPOCH = datetime(2010, 1, 1, tzinfo=UTC)
_EPOCH_MINUS_J2000_S = 315_576_000.0  # 2010-01-01T00:00 minus 2000-01-01T12:00 (J2000.0), seconds

#: Mean Earth radius (IUGG), km. The simulator uses a spherical Earth.
EARTH_RADIUS_KM = 6371.0088
#: WGS84 semi-axes (km), only for ``satellite_altitude`` above the ellipsoid.
_WGS84_A_KM, _WGS84_B_KM = 6378.137, 6356.752314
#: Orbit altitude, km (Veefkind et al. 2012).
ALTITUDE_KM = 824.0
#: Orbit inclination, degrees (sun-synchronous at 824 km).
INCLINATION_DEG = 98.7
#: Nodal period, s: 16-day repeat cycle of 227 orbits (sentinelhub-js DatasetsInfo.md). The real file
#: names give 6089.81 s on average between orbits 03821 and 12367.
NODAL_PERIOD_S = 16 * 86400.0 / 227
#: Mean local solar time of the day-side ascending node, hours: 13:29:40, the mean over the real
#: files' ``LongitudeOfDaysideNadirEquatorCrossing`` at the modelled node times (orbit 12367: 165.467 E
#: -> 13:29:32; 07293: 35.465 E -> 13:29:46; 07407: 22.787 E -> 13:29:44). Nominal 13:30
#: (Veefkind et al. 2012).
LTAN_HOURS = 13.0 + 29.0 / 60.0 + 40.0 / 3600.0
#: Earth rotation relative to a sun-synchronous orbit plane: one turn per mean solar day, rad/s.
_OMEGA_REL = 2.0 * math.pi / 86400.0

#: (orbit, orbit start) from real file names: the start in the name is the orbit start.
ORBIT_ANCHORS: tuple[tuple[int, datetime], ...] = (
    # satpy tests/reader_tests/test_tropomi_l2.py: S5P_OFFL_L2__NO2____20180709T170334_..._03821_01_010002_...
    (3821, datetime(2018, 7, 9, 17, 3, 34, tzinfo=UTC)),
    # shared/data/s5p-ch4-subset: S5P_OFFL_L2__CH4____20190311T101655_..._07293_01_010202_...
    (7293, datetime(2019, 3, 11, 10, 16, 55, tzinfo=UTC)),
    # shared/data/s5p-ch4-subset: S5P_OFFL_L2__CH4____20190319T110835_..._07407_01_010202_...
    (7407, datetime(2019, 3, 19, 11, 8, 35, tzinfo=UTC)),
    # shared/data/s5p-no2-metadata-only: S5P_OFFL_L2__NO2____20200303T013547_..._12367_01_010302_...
    (12367, datetime(2020, 3, 3, 1, 35, 47, tzinfo=UTC)),
)

#: Scanlines per orbit and their spacing since 6 Aug 2019 (PT0.840S; real NO2 file, atmos.md 1.1).
N_SCANLINES = 4172
SCANLINE_MS = 840
#: Ground pixels across track for the UV-VIS bands (real NO2 file).
N_GROUND_PIXELS = 450
#: Full across-track field of view, degrees (Veefkind et al. 2012), sampled uniformly in scan angle
#: (the real SWIR orbit 07407 steps 0.496 deg per pixel at nadir, 0.519 deg at the edges).
FIELD_OF_VIEW_DEG = 108.0
#: Backward (against flight) tilt of the line of sight, degrees, is ``SMILE_DEG * (1 - cos(scan angle))``:
#: the rows of real TROPOMI pixels are perpendicular to the track at nadir but bend back, the swath
#: edges lagging ~160 km behind the nadir line. Fitted to the real CH4 orbit 07407 (tilt 5.2-5.6 deg
#: at +-54 deg scan angle, 1-cos shape within 0.1 deg).
SMILE_DEG = 13.0
#: Constant backward tilt of the line of sight, degrees (nadir pixels ~17 km behind the sub-satellite
#: point): with it the model puts the pixels of the real CH4 orbits 07293 and 07407 within ~12 km
#: (median) of their real positions, 71 km at worst (swath edge near the pole; spherical Earth).
NADIR_TILT_DEG = 1.2
#: First scanline after the orbit start, s: 01:57:22 - 01:35:47 in the real NO2 orbit 12367
#: (10:38:29 - 10:16:55 = 1294 s in the CH4 orbit 07293).
FIRST_SCANLINE_AFTER_START_S = 1295.0
#: TM5 layers (real NO2 file ``layer`` dimension).
N_LAYERS = 34

#: netCDF fill values as in the real files (``_FillValue`` attributes of the CH4 file).
FILL_FLOAT = np.float32(9.96921e36)
FILL_INT32 = np.int32(-2147483647)
FILL_UINT8 = np.uint8(255)
FILL_UINT32 = np.uint32(4294967295)
#: Avogadro / 1e4: mol m-2 -> molecules cm-2 (the attribute real files carry).
MOL_M2_TO_MOLEC_CM2 = np.float32(6.02214e19)

#: Tropospheric NO2 background, mol m-2 (~6e14 molec cm-2, remote continental).
BACKGROUND_MOL_M2 = 1.0e-5
#: Slant-column noise, mol m-2: TROPOMI NO2 SCD precision ~0.5-0.7e15 molec cm-2 (van Geffen et al.,
#: AMT 13, 1315, 2020), which gives tropospheric precisions of ~1e-5 mol m-2 after the AMF.
SLANT_NOISE_MOL_M2 = 1.1e-5
#: ``qa_value`` of good clear-sky retrievals, of cloudy ones (cloud radiance fraction > 0.5), of failures.
#: The 0.75 threshold removes cloudy scenes, errors and problematic retrievals (PRF S5P-MPC-KNMI-PRF-NO2).
QA_CLEAR, QA_CLOUDY, QA_FAILED = 100, 74, 0
#: Solar zenith angle above which no retrieval is done, degrees.
SZA_MAX_DEG = 88.0
#: Fraction of day-side pixels whose retrieval fails at random.
FAILURE_FRACTION = 0.002
#: Cloud albedo of the FRESCO/CRB cloud model (fixed 0.8 in the S5P CRB retrievals).
CLOUD_ALBEDO = 0.8

_MODES = {"OFFL": "Offline", "NRTI": "Near-realtime", "RPRO": "Reprocessing"}
_BLOCK = 256  # scanlines written per block (also the chunk length of 2-D fields)
_NOISE_BLOCK = 64  # scanlines per independent random stream (absolute index, so subsets match)


# --------------------------------------------------------------------------------------------------
# Truth field
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmissionSource:
    """A Gaussian NO2 hot spot added to the background tropospheric column.

    Attributes
    ----------
    name : str
        City or region name.
    lon, lat : float
        Centre, degrees.
    peak_mol_m2 : float
        Column enhancement at the centre, mol m-2 (1e-4 mol m-2 = 6.0e15 molec cm-2).
    sigma_km : float
        Gaussian standard deviation, km (great-circle distance).
    """

    name: str
    lon: float
    lat: float
    peak_mol_m2: float
    sigma_km: float


#: Chinese cities (city-centre coordinates) with plausible winter-to-summer mean tropospheric NO2
#: enhancements of 1e-4 .. 3e-4 mol m-2 over the background (cf. TROPOMI city means in e.g. Liu et al.,
#: Sci. Adv. 6, eabc2992, 2020).
DEFAULT_SOURCES: list[EmissionSource] = [
    EmissionSource("Beijing", 116.40, 39.90, 2.2e-4, 30.0),
    EmissionSource("Tianjin", 117.20, 39.13, 1.8e-4, 25.0),
    EmissionSource("Tangshan", 118.18, 39.63, 2.0e-4, 22.0),
    EmissionSource("Shijiazhuang", 114.51, 38.04, 2.0e-4, 25.0),
    EmissionSource("Jinan", 117.00, 36.65, 1.6e-4, 22.0),
    EmissionSource("Zhengzhou", 113.65, 34.76, 1.6e-4, 25.0),
    EmissionSource("Xi'an", 108.94, 34.34, 1.3e-4, 22.0),
    EmissionSource("Nanjing", 118.80, 32.06, 1.7e-4, 22.0),
    EmissionSource("Shanghai", 121.47, 31.23, 2.6e-4, 35.0),
    EmissionSource("Hangzhou", 120.16, 30.27, 1.5e-4, 22.0),
    EmissionSource("Wuhan", 114.30, 30.59, 1.6e-4, 25.0),
    EmissionSource("Chengdu", 104.07, 30.67, 1.2e-4, 25.0),
    EmissionSource("Chongqing", 106.55, 29.56, 1.2e-4, 22.0),
    EmissionSource("Changsha", 112.94, 28.23, 1.1e-4, 18.0),
    EmissionSource("Fuzhou", 119.30, 26.08, 1.0e-4, 15.0),
    EmissionSource("Xiamen", 118.09, 24.48, 1.0e-4, 15.0),
    EmissionSource("Kunming", 102.83, 24.88, 1.0e-4, 15.0),
    EmissionSource("Guangzhou", 113.26, 23.13, 2.0e-4, 30.0),
    EmissionSource("Shenzhen", 114.06, 22.54, 1.5e-4, 20.0),
    EmissionSource("Hong Kong", 114.17, 22.32, 1.2e-4, 15.0),
    EmissionSource("Nanning", 108.37, 22.82, 1.0e-4, 15.0),
]


def truth_column(lon, lat, sources: Sequence[EmissionSource] | None = DEFAULT_SOURCES) -> np.ndarray:
    """Noise-free tropospheric NO2 column the simulator draws from, mol m-2.

    ``BACKGROUND_MOL_M2`` plus, for each source, ``peak * exp(-d^2 / (2 sigma^2))`` with ``d`` the
    great-circle distance (spherical Earth, radius ``EARTH_RADIUS_KM``).

    Parameters
    ----------
    lon, lat : array_like
        Degrees; broadcast against each other. Longitudes may use any 360-degree convention.
    sources : sequence of EmissionSource, optional
        Defaults to :data:`DEFAULT_SOURCES`; ``None`` also means the defaults.

    Returns
    -------
    numpy.ndarray
        float64, the broadcast shape of ``lon`` and ``lat``.
    """
    if sources is None:
        sources = DEFAULT_SOURCES
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    out = np.full(lon.shape, BACKGROUND_MOL_M2, dtype=np.float64)
    for src in sources:
        reach_deg = 6.0 * src.sigma_km / (EARTH_RADIUS_KM * math.pi / 180.0)
        dlon = (lon - src.lon + 180.0) % 360.0 - 180.0
        near = np.abs(lat - src.lat) < reach_deg
        coslat = max(math.cos(math.radians(min(abs(src.lat) + reach_deg, 89.9))), 1e-3)
        near &= np.abs(dlon) * coslat < reach_deg
        if not near.any():
            continue
        la1, la2 = math.radians(src.lat), np.radians(lat[near])
        hav = np.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * np.cos(la2) * np.sin(np.radians(dlon[near]) / 2) ** 2
        dist_km = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))
        out[near] += src.peak_mol_m2 * np.exp(-0.5 * (dist_km / src.sigma_km) ** 2)
    return out


# --------------------------------------------------------------------------------------------------
# Orbit timing
# --------------------------------------------------------------------------------------------------


def _to_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _seconds(t: datetime) -> float:
    """Seconds since 2010-01-01T00:00:00Z."""
    return (_to_utc(t) - EPOCH).total_seconds()


def _datetime(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=float(seconds))


def orbit_start_time(orbit: int) -> datetime:
    """Start of an absolute orbit (the time in the real file names), UTC.

    Piecewise linear between the real :data:`ORBIT_ANCHORS`, extrapolated with
    :data:`NODAL_PERIOD_S` outside them (a few minutes of drift per year of extrapolation).
    """
    if orbit < 1:
        raise InputError(f"orbit: must be a positive absolute orbit number, got {orbit}")
    anchors = ORBIT_ANCHORS
    if orbit <= anchors[0][0]:
        n0, t0 = anchors[0]
        return t0 + timedelta(seconds=(orbit - n0) * NODAL_PERIOD_S)
    if orbit >= anchors[-1][0]:
        n0, t0 = anchors[-1]
        return t0 + timedelta(seconds=(orbit - n0) * NODAL_PERIOD_S)
    for (na, ta), (nb, tb) in zip(anchors, anchors[1:]):
        if na <= orbit <= nb:
            return ta + (tb - ta) * ((orbit - na) / (nb - na))
    raise AssertionError("unreachable")


def _orbit_period_s(orbit: int) -> float:
    return (orbit_start_time(orbit + 1) - orbit_start_time(orbit)).total_seconds()


def orbit_at(t: datetime) -> int:
    """The absolute orbit whose [start, next start) interval holds ``t``."""
    t = _to_utc(t)
    n0, t0 = ORBIT_ANCHORS[-1]
    n = n0 + math.floor((t - t0).total_seconds() / NODAL_PERIOD_S)
    n = max(n, 1)
    while orbit_start_time(n) > t and n > 1:
        n -= 1
    while orbit_start_time(n + 1) <= t:
        n += 1
    return n


def orbits_of_day(day: date) -> list[int]:
    """Absolute orbits that start on the UTC day ``day`` (14 or 15)."""
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    first = orbit_at(t0)
    if orbit_start_time(first) < t0:
        first += 1
    out = []
    n = first
    while orbit_start_time(n) < t0 + timedelta(days=1):
        out.append(n)
        n += 1
    return out


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OrbitGeometry:
    """One orbit: start (s since 2010), nodal period (s) and ascending-node longitude (deg)."""

    number: int
    start_s: float
    period_s: float

    @cached_property
    def anx_s(self) -> float:
        """Time of the day-side ascending node.

        An orbit starts at "spacecraft midnight", the orbit point closest to the anti-solar direction,
        so the node follows after about half an orbit, earlier or later with the season. This
        reproduces the node phase 0.50221 that ``satellite_latitude``/``satellite_orbit_phase`` of the
        real CH4 orbit 07293 give (model 0.50225), and the 53 s shift of orbit 07407 eight days later.
        """
        phase = 0.5
        for _ in range(2):
            t_anx = self.start_s + phase * self.period_s
            sun = _subsolar(np.array([t_anx]))[0]
            lam = math.radians(self._anx_lon(t_anx))
            inc = math.radians(INCLINATION_DEG)
            node = np.array([math.cos(lam), math.sin(lam), 0.0])
            normal_ish = np.array([-math.sin(lam) * math.cos(inc), math.cos(lam) * math.cos(inc), math.sin(inc)])
            u_midnight = math.atan2(-float(sun @ normal_ish), -float(sun @ node)) % (2.0 * math.pi)
            phase = 1.0 - u_midnight / (2.0 * math.pi)
        return self.start_s + phase * self.period_s

    @property
    def anx_lon_deg(self) -> float:
        """Longitude of the ascending node: mean local solar time ``LTAN_HOURS`` there."""
        return self._anx_lon(self.anx_s)

    @staticmethod
    def _anx_lon(t_anx: float) -> float:
        utc_hours = (t_anx % 86400.0) / 3600.0
        return (15.0 * (LTAN_HOURS - utc_hours) + 180.0) % 360.0 - 180.0

    def subsatellite(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (Earth-fixed) of the sub-satellite point and of its ground velocity, (n, 3)."""
        t = np.asarray(t_s, dtype=np.float64) - self.anx_s
        n_u = 2.0 * math.pi / self.period_s
        u = n_u * t
        node = math.radians(self.anx_lon_deg) - _OMEGA_REL * t
        inc = math.radians(INCLINATION_DEG)
        x0, y0, z0 = np.cos(u), np.sin(u) * math.cos(inc), np.sin(u) * math.sin(inc)
        cn, sn = np.cos(node), np.sin(node)
        pos = np.stack([x0 * cn - y0 * sn, x0 * sn + y0 * cn, z0], axis=-1)
        dx0, dy0, dz0 = -np.sin(u) * n_u, np.cos(u) * math.cos(inc) * n_u, np.cos(u) * math.sin(inc) * n_u
        vel = np.stack(
            [dx0 * cn - dy0 * sn + _OMEGA_REL * pos[:, 1], dx0 * sn + dy0 * cn - _OMEGA_REL * pos[:, 0], dz0],
            axis=-1,
        )
        return pos, vel / np.linalg.norm(vel, axis=-1, keepdims=True)

    def ground_points(self, t_s: np.ndarray, scan_angle_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground points (n_t, n_angle, 3) seen at scan angles (deg, + = right of track) and the nadir points.

        The line of sight lies in the plane through nadir perpendicular to the ground track, tilted
        back by the smile angle (:data:`SMILE_DEG`); its intersection with the sphere gives the ground
        point (spherical viewing geometry: ~3.5 km pixels at nadir, ~17 km at +-54 deg).
        """
        pos, vel = self.subsatellite(t_s)
        right = np.cross(vel, pos)
        right /= np.linalg.norm(right, axis=-1, keepdims=True)
        eta = np.radians(np.asarray(scan_angle_deg, dtype=np.float64))
        beta = np.radians(NADIR_TILT_DEG + SMILE_DEG * (1.0 - np.cos(eta)))
        k = (EARTH_RADIUS_KM + ALTITUDE_KM) / EARTH_RADIUS_KM
        # view direction: down (-pos), right and backward (-vel) components
        c_down = (np.cos(beta) * np.cos(eta))[None, :, None]
        c_right = (np.cos(beta) * np.sin(eta))[None, :, None]
        c_back = np.sin(beta)[None, :, None]
        view = -c_down * pos[:, None, :] + c_right * right[:, None, :] - c_back * vel[:, None, :]
        # |k*pos + L*view| = 1, nearest root; pos.view = -c_down
        cd = c_down[..., 0]
        dist = k * cd - np.sqrt(np.maximum((k * cd) ** 2 - (k * k - 1.0), 0.0))
        pts = k * pos[:, None, :] + dist[..., None] * view
        pts /= np.linalg.norm(pts, axis=-1, keepdims=True)
        return pts, pos


def _scan_angles(edges: bool = False) -> np.ndarray:
    """Scan angles of the pixel centres (450) or of the pixel edges (451), degrees, west/left negative."""
    idx = np.arange(N_GROUND_PIXELS + 1, dtype=np.float64) if edges else np.arange(N_GROUND_PIXELS) + 0.5
    return (idx / N_GROUND_PIXELS - 0.5) * FIELD_OF_VIEW_DEG


def _lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude in [-180, 180) and latitude, degrees, of unit vectors (..., 3)."""
    lon = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(xyz[..., 2], -1.0, 1.0)))
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    return lon, lat


def _subsolar(t_s: np.ndarray) -> np.ndarray:
    """Earth-fixed unit vectors to the Sun, (n, 3).

    Low-precision solar coordinates and GMST of the U.S. Naval Observatory ("Approximate Solar
    Coordinates", "Computing Greenwich Apparent Sidereal Time"), about 1 arcmin accuracy.
    """
    d = (np.asarray(t_s, dtype=np.float64) + _EPOCH_MINUS_J2000_S) / 86400.0
    g = np.radians(357.529 + 0.98560028 * d)
    q = 280.459 + 0.98564736 * d
    ecl_lon = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.00000036 * d)
    ra = np.arctan2(np.cos(eps) * np.sin(ecl_lon), np.cos(ecl_lon))
    dec = np.arcsin(np.sin(eps) * np.sin(ecl_lon))
    gmst = np.radians((280.46061837 + 360.98564736629 * d) % 360.0)
    lon = ra - gmst
    return np.stack([np.cos(dec) * np.cos(lon), np.cos(dec) * np.sin(lon), np.sin(dec)], axis=-1)


def _zenith_azimuth(points: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zenith and azimuth angles (deg; azimuth clockwise from north in (-180, 180]) of ``target``.

    ``points`` are unit ground vectors (..., 3); ``target`` are direction vectors from each point
    (broadcastable), e.g. the Sun direction or the vector to the satellite.
    """
    tnorm = target / np.linalg.norm(target, axis=-1, keepdims=True)
    cos_zen = np.sum(points * tnorm, axis=-1)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    rho = np.maximum(np.hypot(x, y), 1e-12)
    east = np.stack([-y / rho, x / rho, np.zeros_like(x)], axis=-1)
    north = np.stack([-z * x / rho, -z * y / rho, rho], axis=-1)
    azimuth = np.degrees(np.arctan2(np.sum(tnorm * east, axis=-1), np.sum(tnorm * north, axis=-1)))
    return np.degrees(np.arccos(np.clip(cos_zen, -1.0, 1.0))), azimuth


# --------------------------------------------------------------------------------------------------
# Support fields (cheap, smooth)
# --------------------------------------------------------------------------------------------------


def _tm5_levels() -> tuple[np.ndarray, np.ndarray]:
    """Hybrid coefficients a (Pa) and b (1) of 35 level interfaces, surface first, top (0 Pa) last.

    A synthetic 34-layer hybrid sigma-pressure grid shaped like TM5's (thin layers near the surface,
    pure pressure levels above ~100 hPa); not the operational TM5 coefficients.
    """
    z_km = np.array([0.0, 0.1, 0.25, 0.45, 0.7, 1.0, 1.35, 1.75, 2.2, 2.7, 3.25, 3.85, 4.5, 5.2, 5.95,
                     6.75, 7.6, 8.5, 9.45, 10.45, 11.5, 12.6, 13.8, 15.1, 16.5, 18.1, 19.9, 22.0, 24.5,
                     27.5, 31.0, 35.5, 41.0, 48.5])
    p_ref = np.append(101325.0 * np.exp(-z_km / 7.0), 0.0)
    p_top_sigma = 10000.0
    b = np.clip((p_ref - p_top_sigma) / (101325.0 - p_top_sigma), 0.0, 1.0) ** 1.5
    a = p_ref - b * 101325.0
    return a, b


_TM5_A, _TM5_B = _tm5_levels()
#: Total-column averaging kernel per layer (rises from ~0.4 near the surface to ~1.2 aloft, the
#: typical shape for NO2 in clear skies; Eskes & Boersma, ACP 3, 1285, 2003).
_LAYER_MID_P = 0.5 * (_TM5_A[:-1] + _TM5_A[1:]) + 0.5 * (_TM5_B[:-1] + _TM5_B[1:]) * 101325.0
_AK_PROFILE = (0.35 + 0.85 * (1.0 - _LAYER_MID_P / 101325.0) ** 0.6).astype(np.float32)


class _CloudField:
    """Cloud fraction with spatial structure: random plane waves on the unit sphere, one set per orbit.

    Wavelengths 150-1500 km with a red spectrum; the field is normalised to unit variance and mapped to
    a cloud fraction that is 0 on ~60 % and > 0.13 (cloud radiance fraction > 0.5) on ~30 % of pixels.
    """

    def __init__(self, seed: int, orbit: int, n_modes: int = 40):
        rng = np.random.default_rng(np.random.SeedSequence([seed, orbit, 11]))
        wavelength_km = np.exp(rng.uniform(math.log(150.0), math.log(1500.0), n_modes))
        k = 2.0 * math.pi * EARTH_RADIUS_KM / wavelength_km
        direction = rng.normal(size=(n_modes, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        self.k = direction * k[:, None]
        self.phase = rng.uniform(0.0, 2.0 * math.pi, n_modes)
        amp = wavelength_km ** 0.5
        self.amp = amp / math.sqrt(0.5 * np.sum(amp**2))

    def gaussian(self, xyz: np.ndarray) -> np.ndarray:
        out = np.zeros(xyz.shape[:-1])
        for km, ph, am in zip(self.k, self.phase, self.amp):
            out += am * np.cos(xyz @ km + ph)
        return out

    def cloud_fraction(self, xyz: np.ndarray) -> np.ndarray:
        return np.clip(0.45 * (self.gaussian(xyz) - 0.3), 0.0, 1.0)


def _smooth(xyz: np.ndarray, k: Sequence[float], phase: float) -> np.ndarray:
    """A cheap smooth field in [-1, 1] (one plane wave on the sphere)."""
    return np.cos(xyz @ np.asarray(k, dtype=np.float64) + phase)


# --------------------------------------------------------------------------------------------------
# File layout: variables and attributes
# --------------------------------------------------------------------------------------------------

_D2 = ("time", "scanline", "ground_pixel")
_DS = ("time", "scanline")
_DC = ("time", "scanline", "ground_pixel", "corner")
_DL = ("time", "scanline", "ground_pixel", "layer")

_P = "PRODUCT"
_GEO = "PRODUCT/SUPPORT_DATA/GEOLOCATIONS"
_DET = "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS"
_INP = "PRODUCT/SUPPORT_DATA/INPUT_DATA"
_O22 = "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS/O22CLD"
_COORDS = "longitude latitude"
_GCOORDS = "/PRODUCT/longitude /PRODUCT/latitude"

_ERRORS = (
    "success radiance_missing irradiance_missing input_spectrum_missing reflectance_range_error "
    "ler_range_error snr_range_error sza_range_error vza_range_error lut_range_error ozone_range_error "
    "wavelength_offset_error initialization_error memory_error assertion_error io_error numerical_error "
    "lut_error ISRF_error convergence_error cloud_filter_convergence_error max_iteration_convergence_error "
    "aot_lower_boundary_convergence_error other_boundary_convergence_error geolocation_error "
    "ch4_noscat_zero_error h2o_noscat_zero_error max_optical_thickness_error aerosol_boundary_error "
    "boundary_hit_error chi2_error svd_error dfs_error radiative_transfer_error optimal_estimation_error "
    "profile_error cloud_error model_error number_of_input_data_points_too_low_error "
    "cloud_pressure_spread_too_low_error cloud_too_low_level_error generic_range_error generic_exception "
    "input_spectrum_alignment_error abort_error wrong_input_type_error wavelength_calibration_error "
    "coregistration_error slant_column_density_error airmass_factor_error vertical_column_density_error "
    "signal_to_noise_ratio_error configuration_error key_error saturation_error"
).split()
_FILTERS = (
    "solar_eclipse_filter cloud_filter altitude_consistency_filter altitude_roughness_filter "
    "sun_glint_filter mixed_surface_type_filter snow_ice_filter aai_filter cloud_fraction_fresco_filter "
    "aai_scene_albedo_filter small_pixel_radiance_std_filter cloud_fraction_viirs_filter "
    "cirrus_reflectance_viirs_filter cf_viirs_swir_ifov_filter cf_viirs_swir_ofova_filter "
    "cf_viirs_swir_ofovb_filter cf_viirs_swir_ofovc_filter cf_viirs_nir_ifov_filter "
    "cf_viirs_nir_ofova_filter cf_viirs_nir_ofovb_filter cf_viirs_nir_ofovc_filter "
    "refl_cirrus_viirs_swir_filter refl_cirrus_viirs_nir_filter diff_refl_cirrus_viirs_filter "
    "ch4_noscat_ratio_filter ch4_noscat_ratio_std_filter h2o_noscat_ratio_filter "
    "h2o_noscat_ratio_std_filter diff_psurf_fresco_ecmwf_filter psurf_fresco_stdv_filter ocean_filter "
    "time_range_filter pixel_or_scanline_index_filter geographic_region_filter"
).split()
_WARNINGS = (
    "input_spectrum_warning wavelength_calibration_warning extrapolation_warning sun_glint_warning "
    "south_atlantic_anomaly_warning sun_glint_correction snow_ice_warning cloud_warning AAI_warning "
    "pixel_level_input_data_missing data_range_warning low_cloud_fraction_warning "
    "altitude_consistency_warning signal_to_noise_ratio_warning deconvolution_warning "
    "so2_volcanic_origin_likely_warning so2_volcanic_origin_certain_warning interpolation_warning "
    "saturation_warning"
).split()
#: ``processing_quality_flags`` codes used here (real flag table, CH4 file).
FLAG_SZA_RANGE_ERROR = _ERRORS.index("sza_range_error")
FLAG_SCD_ERROR = _ERRORS.index("slant_column_density_error")
FLAG_CLOUD_WARNING = 256 << _WARNINGS.index("cloud_warning")


def _quality_flag_attrs() -> dict:
    values = list(range(len(_ERRORS))) + [64 + i for i in range(len(_FILTERS))]
    bits = [256 << i for i in range(len(_WARNINGS))]
    return {
        "long_name": "Processing quality flags",
        "comment": "Flags indicating conditions that affect quality of the retrieval.",
        "flag_meanings": " ".join(_ERRORS + _FILTERS + _WARNINGS),
        "flag_masks": np.array([255] * len(values) + bits, dtype=np.uint32),
        "flag_values": np.array(values + bits, dtype=np.uint32),
        "coordinates": _GCOORDS,
    }


def _f(long_name: str, units: str, coords: str = _GCOORDS, **extra) -> dict:
    attrs = {"units": units, "long_name": long_name, "coordinates": coords}
    attrs.update(extra)
    return attrs


def _col(long_name: str, standard_name: str, coords: str = _GCOORDS, **extra) -> dict:
    return _f(long_name, "mol m-2", coords, standard_name=standard_name,
              multiplication_factor_to_convert_to_molecules_percm2=MOL_M2_TO_MOLEC_CM2, **extra)


_NO2 = "nitrogendioxide"
_ANGLE = dict(valid_min=np.float32(0.0), valid_max=np.float32(180.0))
_AZIMUTH = dict(valid_min=np.float32(-180.0), valid_max=np.float32(180.0))

#: name -> (group, dtype, dims, attributes). ``_FillValue`` is added from the dtype.
_VARIABLES: dict[str, tuple[str, str, tuple[str, ...], dict]] = {
    # PRODUCT
    "latitude": (_P, "f4", _D2, dict(long_name="pixel center latitude", units="degrees_north",
                                     standard_name="latitude", valid_min=np.float32(-90.0),
                                     valid_max=np.float32(90.0), bounds=f"/{_GEO}/latitude_bounds")),
    "longitude": (_P, "f4", _D2, dict(long_name="pixel center longitude", units="degrees_east",
                                      standard_name="longitude", valid_min=np.float32(-180.0),
                                      valid_max=np.float32(180.0), bounds=f"/{_GEO}/longitude_bounds")),
    "delta_time": (_P, "i4", _DS, dict(long_name="offset from reference start time of measurement",
                                       units="milliseconds")),
    "time_utc": (_P, "str", _DS, dict(long_name="Time of observation as ISO 8601 date-time string")),
    "qa_value": (_P, "u1", _D2, dict(
        scale_factor=np.float32(0.01), units="1", add_offset=np.float32(0.0), valid_min=np.uint8(0),
        valid_max=np.uint8(100), long_name="data quality value",
        comment="A continuous quality descriptor, varying between 0 (no data) and 1 (full quality data). "
                "Recommend to ignore data with qa_value < 0.75",
        coordinates=_COORDS)),
    f"{_NO2}_tropospheric_column": (_P, "f4", _D2, _col(
        "Tropospheric vertical column of nitrogen dioxide", "troposphere_mole_content_of_nitrogen_dioxide",
        _COORDS, ancillary_variables=f"{_NO2}_tropospheric_column_precision air_mass_factor_troposphere "
                                     "air_mass_factor_total averaging_kernel")),
    f"{_NO2}_tropospheric_column_precision": (_P, "f4", _D2, _col(
        "Precision of the tropospheric vertical column of nitrogen dioxide",
        "troposphere_mole_content_of_nitrogen_dioxide standard_error", _COORDS)),
    f"{_NO2}_tropospheric_column_precision_kernel": (_P, "f4", _D2, _col(
        "Precision of the tropospheric vertical column of nitrogen dioxide when applying the averaging kernel",
        "troposphere_mole_content_of_nitrogen_dioxide standard_error", _COORDS)),
    "averaging_kernel": (_P, "f4", _DL, _f("Averaging kernel", "1", _COORDS)),
    "air_mass_factor_troposphere": (_P, "f4", _D2, _f("Tropospheric air mass factor", "1", _COORDS)),
    "air_mass_factor_total": (_P, "f4", _D2, _f("Total air mass factor", "1", _COORDS)),
    "tm5_tropopause_layer_index": (_P, "i4", _D2, _f(
        "TM5 layer index of the highest layer in the tropopause", "1", _COORDS)),
    "tm5_constant_a": (_P, "f4", ("layer", "vertices"), dict(
        long_name="TM5 hybrid A coefficient at upper and lower interface levels", units="Pa")),
    "tm5_constant_b": (_P, "f4", ("layer", "vertices"), dict(
        long_name="TM5 hybrid B coefficient at upper and lower interface levels", units="1")),
    # GEOLOCATIONS
    "satellite_latitude": (_GEO, "f4", _DS, _f(
        "sub satellite latitude", "degrees_north", valid_min=np.float32(-90.0), valid_max=np.float32(90.0),
        comment="Latitude of the geodetic sub satellite point on the WGS84 reference ellipsoid")),
    "satellite_longitude": (_GEO, "f4", _DS, _f(
        "satellite_longitude", "degrees_east", valid_min=np.float32(-180.0), valid_max=np.float32(180.0),
        comment="Longitude of the geodetic sub satellite point on the WGS84 reference ellipsoid")),
    "satellite_altitude": (_GEO, "f4", _DS, _f(
        "satellite altitude", "m", valid_min=np.float32(700000.0), valid_max=np.float32(900000.0),
        comment="The altitude of the satellite with respect to the geodetic sub satellite point on the WGS84 "
                "reference ellipsoid")),
    "satellite_orbit_phase": (_GEO, "f4", _DS, _f(
        "fractional satellite orbit phase", "1", valid_min=np.float32(-0.02), valid_max=np.float32(1.02),
        comment="Relative offset [0.0, ..., 1.0] of the measurement in the orbit")),
    "solar_zenith_angle": (_GEO, "f4", _D2, _f(
        "solar zenith angle", "degree", standard_name="solar_zenith_angle", **_ANGLE,
        comment="Solar zenith angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured away from the vertical")),
    "solar_azimuth_angle": (_GEO, "f4", _D2, _f(
        "solar azimuth angle", "degree", standard_name="solar_azimuth_angle", **_AZIMUTH,
        comment="Solar azimuth angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured clockwise from the North (East = 90, South = 180, West = 270)")),
    "viewing_zenith_angle": (_GEO, "f4", _D2, _f(
        "viewing zenith angle", "degree", standard_name="viewing_zenith_angle", **_ANGLE,
        comment="Zenith angle of the satellite at the ground pixel location on the reference ellipsoid. "
                "Angle is measured away from the vertical")),
    "viewing_azimuth_angle": (_GEO, "f4", _D2, _f(
        "viewing azimuth angle", "degree", standard_name="viewing_azimuth_angle", **_AZIMUTH,
        comment="Satellite azimuth angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured clockwise from the North (East = 90, South = 180, West = 270)")),
    "latitude_bounds": (_GEO, "f4", _DC, dict(long_name="latitude_bounds", coordinates=_GCOORDS)),
    "longitude_bounds": (_GEO, "f4", _DC, dict(long_name="longitude_bounds", coordinates=_GCOORDS)),
    "geolocation_flags": (_GEO, "u1", _D2, dict(
        coordinates=_GCOORDS, flag_masks=np.array([0, 1, 2, 4, 8, 16, 128], dtype=np.uint8),
        flag_meanings="no_error solar_eclipse sun_glint_possible descending night geo_boundary_crossing "
                      "geolocation_error",
        flag_values=np.array([0, 1, 2, 4, 8, 16, 128], dtype=np.uint8), long_name="ground pixel quality flag",
        max_val=np.uint8(254), min_val=np.uint8(0), units="1")),
    # DETAILED_RESULTS
    "processing_quality_flags": (_DET, "u4", _D2, _quality_flag_attrs()),
    f"{_NO2}_slant_column_density": (_DET, "f4", _D2, _col(
        "Nitrogen dioxide slant column density", "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_slant_column_density_precision": (_DET, "f4", _D2, _col(
        "Precision of the nitrogen dioxide slant column density",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_stratospheric_column": (_DET, "f4", _D2, _col(
        "Stratospheric vertical column of nitrogen dioxide", "stratosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_stratospheric_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the stratospheric vertical column of nitrogen dioxide",
        "stratosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_total_column": (_DET, "f4", _D2, _col(
        "Total vertical column of nitrogen dioxide derived from the total slant column and total air mass factor",
        "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_total_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the total vertical column of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_total_column_precision_kernel": (_DET, "f4", _D2, _col(
        "Precision of the total vertical column of nitrogen dioxide when applying the averaging kernel",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_summed_total_column": (_DET, "f4", _D2, _col(
        "Sum of the tropospheric and stratospheric vertical columns of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_summed_total_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the summed total vertical column of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    "air_mass_factor_stratosphere": (_DET, "f4", _D2, _f("Stratospheric air mass factor", "1")),
    "air_mass_factor_clear": (_DET, "f4", _D2, _f("Air mass factor for the clear-sky part of the scene", "1")),
    "air_mass_factor_cloudy": (_DET, "f4", _D2, _f("Air mass factor for the cloud-covered part of the scene", "1")),
    "cloud_fraction_crb_nitrogendioxide_window": (_DET, "f4", _D2, _f(
        "Cloud fraction at 440 nm for NO2 retrieval", "1", radiation_wavelength=np.float32(440.0))),
    "cloud_radiance_fraction_nitrogendioxide_window": (_DET, "f4", _D2, _f(
        "Cloud radiance fraction at 440 nm for NO2 retrieval", "1", radiation_wavelength=np.float32(440.0))),
    "chi_square": (_DET, "f4", _D2, _f("Chi-square of the DOAS fit", "1")),
    # DETAILED_RESULTS/O22CLD (processor >= 2: O2-O2 cloud retrieval; HARP option data=o22cld)
    "o22cld_cloud_fraction_crb": (_O22, "f4", _D2, _f("O2-O2 cloud fraction at 477 nm", "1")),
    "o22cld_cloud_fraction_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud fraction", "1")),
    "o22cld_cloud_pressure_crb": (_O22, "f4", _D2, _f("O2-O2 cloud pressure", "Pa")),
    "o22cld_cloud_pressure_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud pressure", "Pa")),
    "o22cld_cloud_height_crb": (_O22, "f4", _D2, _f("O2-O2 cloud height", "m")),
    "o22cld_cloud_height_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud height", "m")),
    "o22cld_cloud_albedo_crb": (_O22, "f4", _D2, _f("O2-O2 cloud albedo", "1")),
    "o22cld_surface_albedo": (_O22, "f4", _D2, _f("Surface albedo assumed in the O2-O2 cloud retrieval", "1",
                                                  radiation_wavelength=np.float32(477.0))),
    # INPUT_DATA
    "surface_altitude": (_INP, "f4", _D2, _f(
        "Surface altitude", "m", standard_name="surface_altitude",
        source="http://topotools.cr.usgs.gov/gmted_viewer/",
        comment="The mean of the sub-pixels of the surface altitudewithin the approximate field of view, based "
                "on the GMTED2010 surface elevation database")),
    "surface_altitude_precision": (_INP, "f4", _D2, _f(
        "surface altitude precision", "m", standard_name="surface_altitude standard_error",
        standard_error_multiplier=np.float32(1.0), source="http://topotools.cr.usgs.gov/gmted_viewer/",
        comment="The standard deviation of sub-pixels used in calculating the mean surface altitude, based on "
                "the GMTED2010 surface elevation database")),
    "surface_classification": (_INP, "u1", _D2, dict(
        long_name="Land-water mask and surface classification based on a static database",
        comment="Flag indicating land/water and further surface classifications for the ground pixel",
        source="USGS (https://lta.cr.usgs.gov/GLCC) and NASA SDP toolkit "
               "(http://newsroom.gsfc.nasa.gov/sdptoolkit/toolkit.html)",
        flag_meanings="land water some_water coast value_covers_majority_of_pixel",
        flag_values=np.array([0, 1, 2, 3, 4], dtype=np.uint8),
        flag_masks=np.array([3, 3, 3, 3, 4], dtype=np.uint8),
        coordinates=_GCOORDS)),
    "surface_pressure": (_INP, "f4", _D2, _f("surface air pressure", "Pa", standard_name="surface_air_pressure")),
    "surface_albedo_nitrogendioxide_window": (_INP, "f4", _D2, _f(
        "Surface albedo in the nitrogen dioxide window", "1", standard_name="surface_albedo",
        radiation_wavelength=np.float32(440.0))),
    "surface_albedo": (_INP, "f4", _D2, _f("Surface albedo in the cloud product", "1",
                                           standard_name="surface_albedo")),
    "cloud_pressure_crb": (_INP, "f4", _D2, _f("Cloud optical centroid pressure", "Pa")),
    "cloud_albedo_crb": (_INP, "f4", _D2, _f("Cloud albedo", "1")),
    "cloud_fraction_crb": (_INP, "f4", _D2, _f("Effective cloud fraction from the cloud product", "1")),
    "scene_albedo": (_INP, "f4", _D2, _f("Scene albedo", "1")),
    "apparent_scene_pressure": (_INP, "f4", _D2, _f("Apparent scene pressure", "Pa")),
    "snow_ice_flag": (_INP, "u1", _D2, dict(
        long_name="Snow-ice mask", coordinates=_GCOORDS,
        comment="0: snow-free land; 1-100: sea-ice concentration (percent); 101: permanent ice; 103: snow; "
                "255: ocean")),
    "aerosol_index_354_388": (_INP, "f4", _D2, _f("Aerosol index from 388 and 354 nm", "1")),
    "aerosol_index_340_380": (_INP, "f4", _D2, _f("Aerosol index from 380 and 340 nm", "1")),
    "eastward_wind": (_INP, "f4", _D2, _f("Eastward wind from ECMWF at 10 meter height level", "m s-1",
                                          standard_name="eastward_wind")),
    "northward_wind": (_INP, "f4", _D2, _f("Northward wind from ECMWF at 10 meter height level", "m s-1",
                                           standard_name="northward_wind")),
}

#: Bit-groomed significant digits of float fields that rsmon does not grid: quantisation keeps a full
#: orbit small (smooth float32 fields otherwise compress only ~2x). Geolocation, corners, the
#: tropospheric and slant columns and the cloud fractions that set ``qa_value`` are written exactly.
_SIGNIFICANT_DIGITS: dict[str, int] = {
    **{name: 4 for name in ("solar_zenith_angle", "solar_azimuth_angle", "viewing_zenith_angle",
                            "viewing_azimuth_angle", f"{_NO2}_total_column", f"{_NO2}_summed_total_column")},
    **{name: 3 for name, (group, dtype, dims, _) in _VARIABLES.items()
       if dtype == "f4" and dims == _D2 and group in (_DET, _INP, _O22) and name not in (
           f"{_NO2}_slant_column_density", f"{_NO2}_total_column", f"{_NO2}_summed_total_column",
           "cloud_fraction_crb_nitrogendioxide_window", "cloud_radiance_fraction_nitrogendioxide_window")},
    **{name: 3 for name in (f"{_NO2}_tropospheric_column_precision", f"{_NO2}_tropospheric_column_precision_kernel",
                            "air_mass_factor_troposphere", "air_mass_factor_total")},
    "surface_pressure": 5,
}

_FILLS = {"f4": FILL_FLOAT, "i4": FILL_INT32, "u1": FILL_UINT8, "u4": FILL_UINT32, "str": ""}

_COORD_VARS = {
    "scanline": dict(units="1", axis="Y", long_name="along-track dimension index",
                     comment="This coordinate variable defines the indices along track; index starts at 0"),
    "ground_pixel": dict(units="1", axis="X", long_name="across-track dimension index",
                         comment="This coordinate variable defines the indices across track, from west to east; "
                                 "index starts at 0"),
    "time": dict(units="seconds since 2010-01-01 00:00:00", standard_name="time", axis="T",
                 long_name="reference time for the measurements",
                 comment="The time in this variable corresponds to the time in the time_reference global "
                         "attribute"),
    "corner": dict(units="1", long_name="pixel corner index",
                   comment="This coordinate variable defines the indices for the pixel corners; index starts at "
                           "0 (counter-clockwise, starting from south-western corner of the pixel in ascending "
                           "part of the orbit)"),
    "polynomial_exponents": dict(units="1", long_name="polynomial exponents",
                                 comment="This coordinate variable defines the indices for the polynomial "
                                         "exponents; index starts at 0"),
    "intensity_offset_polynomial_exponents": dict(units="1", long_name="intensity offset polynomial exponents"),
    "layer": dict(units="1", axis="Z", positive="down", long_name="layer"),
    "vertices": dict(units="1", long_name="vertices index",
                     comment="This coordinate variable defines the indices for the interface levels of a layer"),
}


# --------------------------------------------------------------------------------------------------
# Per-block physics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Everything that fixes one file: orbit, scanline sampling, subset, seed, sources, naming."""

    geometry: _OrbitGeometry
    n_scanlines: int
    first: int
    stop: int
    seed: int
    sources: tuple[EmissionSource, ...]
    mode: str
    processor: str

    @property
    def scanline_ms(self) -> int:
        return int(round(N_SCANLINES * SCANLINE_MS / self.n_scanlines))

    @property
    def first_scan_ms(self) -> int:
        """Time of scanline 0, ms since 2010: the real offset after the orbit start (centred when coarse)."""
        window_ms = N_SCANLINES * SCANLINE_MS
        offset_ms = FIRST_SCANLINE_AFTER_START_S * 1000.0 + 0.5 * (window_ms - self.n_scanlines * self.scanline_ms)
        return int(round(self.geometry.start_s * 1000.0 + offset_ms))

    def scan_times(self, k: np.ndarray) -> np.ndarray:
        """Scanline times in s since 2010 for absolute scanline indices (fractional allowed)."""
        return (self.first_scan_ms + np.asarray(k, dtype=np.float64) * self.scanline_ms) / 1000.0


def _random_rows(plan: _Plan, k0: int, k1: int, stream: int, kind: str) -> np.ndarray:
    """Random numbers (k1 - k0, 450) for absolute scanlines [k0, k1).

    Drawn in blocks of ``_NOISE_BLOCK`` scanlines whose streams are keyed by (seed, orbit, block,
    stream), so a scanline subset gets exactly the numbers of the same scanlines of the whole orbit.
    ``kind`` is "normal" or "uniform".
    """
    rows = []
    for b in range(k0 // _NOISE_BLOCK, (k1 - 1) // _NOISE_BLOCK + 1):
        rng = np.random.default_rng(np.random.SeedSequence([plan.seed, plan.geometry.number, b, stream]))
        shape = (_NOISE_BLOCK, N_GROUND_PIXELS)
        block = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
        base = b * _NOISE_BLOCK
        rows.append(block[max(k0, base) - base:min(k1, base + _NOISE_BLOCK) - base])
    return np.concatenate(rows, axis=0)


def _f4(a: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(a, dtype=np.float32)
    if valid is not None:
        out = np.where(valid, out, FILL_FLOAT)
    return out


def _block(plan: _Plan, clouds: _CloudField, k0: int, k1: int) -> dict[str, np.ndarray]:
    """All per-scanline and per-pixel fields for absolute scanlines [k0, k1)."""
    geo = plan.geometry
    k = np.arange(k0, k1)
    t = plan.scan_times(k)
    pts, nadir = geo.ground_points(t, _scan_angles())
    k_edges = np.arange(k0, k1 + 1) - 0.5
    cpts, _ = geo.ground_points(plan.scan_times(k_edges), _scan_angles(edges=True))
    lon, lat = _lonlat(pts)
    clon, clat = _lonlat(cpts)
    # corners: 0 = (k-1/2, j-1/2), 1 = (k-1/2, j+1/2), 2 = (k+1/2, j+1/2), 3 = (k+1/2, j-1/2)
    lon_b = np.stack([clon[:-1, :-1], clon[:-1, 1:], clon[1:, 1:], clon[1:, :-1]], axis=-1)
    lat_b = np.stack([clat[:-1, :-1], clat[:-1, 1:], clat[1:, 1:], clat[1:, :-1]], axis=-1)

    sun = _subsolar(t)[:, None, :]
    sza, saa = _zenith_azimuth(pts, sun)
    k_alt = (EARTH_RADIUS_KM + ALTITUDE_KM) / EARTH_RADIUS_KM
    to_sat = k_alt * nadir[:, None, :] - pts
    vza, vaa = _zenith_azimuth(pts, to_sat)
    sat_lon, sat_lat = _lonlat(nadir)
    phase = (t - geo.start_s) / geo.period_s
    u = 2.0 * math.pi * (t - geo.anx_s) / geo.period_s
    descending = np.cos(u) < 0.0

    day = sza <= SZA_MAX_DEG
    fail = (_random_rows(plan, k0, k1, 3, "uniform") < FAILURE_FRACTION) & day
    valid = day & ~fail

    # clouds and surface
    cf = clouds.cloud_fraction(pts)
    xyz = pts
    albedo = 0.05 + 0.02 * _smooth(xyz, (3.0, 7.0, 2.0), 0.3)
    i_clear = 0.10 + albedo  # Rayleigh path radiance + surface, relative units
    crf = cf * CLOUD_ALBEDO / (cf * CLOUD_ALBEDO + (1.0 - cf) * i_clear)
    cloudy = crf > 0.5
    p_surf = 101325.0 * (1.0 + 0.008 * _smooth(xyz, (4.0, -3.0, 6.0), 1.1))
    p_cloud = np.minimum(72000.0 + 15000.0 * _smooth(xyz, (9.0, -4.0, 6.0), 0.5), p_surf - 2000.0)

    # columns and air-mass factors
    mu = 1.0 / np.cos(np.radians(np.minimum(sza, 89.0))) + 1.0 / np.cos(np.radians(vza))
    amf_strat = mu
    amf_clear = 0.56 * mu
    amf_cloudy = 0.25 * mu
    amf_trop = crf * amf_cloudy + (1.0 - crf) * amf_clear
    trop_true = truth_column(lon, lat, plan.sources)
    strat = 4.5e-5 + 1.5e-5 * np.sin(np.radians(lat)) ** 2 + 2.0e-6 * _smooth(xyz, (2.0, 1.0, 3.0), 0.7)
    amf_total = (strat * amf_strat + trop_true * amf_trop) / (strat + trop_true)
    scd_noise = SLANT_NOISE_MOL_M2 * (1.0 + 0.3 * (mu / 2.0 - 1.0))
    scd = trop_true * amf_trop + strat * amf_strat + scd_noise * _random_rows(plan, k0, k1, 1, "normal")
    trop = (scd - strat * amf_strat) / amf_trop
    trop_prec = np.hypot(scd_noise / amf_trop, 0.25 * np.maximum(trop_true, 0.0))
    trop_prec_kernel = scd_noise / amf_trop
    strat_prec = np.full_like(strat, 2.0e-6)
    total = scd / amf_total
    total_prec = np.hypot(scd_noise / amf_total, 0.1 * total)

    # tropopause: ~100 hPa in the tropics to ~300 hPa at the poles
    p_tropopause = 10000.0 + 20000.0 * np.sin(np.radians(lat)) ** 2
    p_interfaces = _TM5_A[None, None, :] + _TM5_B[None, None, :] * p_surf[..., None]
    tp_index = (np.sum(p_interfaces[..., 1:] > p_tropopause[..., None], axis=-1)).astype(np.int32)

    qa = np.where(cloudy, QA_CLOUDY, QA_CLEAR).astype(np.uint8)
    qa[~valid] = QA_FAILED
    flags = np.where(cloudy, FLAG_CLOUD_WARNING, 0).astype(np.uint32)
    flags[fail] = FLAG_SCD_ERROR
    flags[~day] = FLAG_SZA_RANGE_ERROR
    geo_flags = (np.where(descending[:, None], 4, 0) | np.where(sza > 90.0, 8, 0)).astype(np.uint8)

    wind_u = 4.0 + 5.0 * _smooth(xyz, (2.0, -5.0, 4.0), 0.2)
    wind_v = 3.0 * _smooth(xyz, (-4.0, 2.0, 5.0), 2.0)
    ai = -0.8 + 0.4 * _smooth(xyz, (5.0, 5.0, -2.0), 0.4)

    t_ms = plan.first_scan_ms + k.astype(np.int64) * plan.scanline_ms
    return {
        "_t_ms": t_ms,
        "latitude": _f4(lat),
        "longitude": _f4(lon),
        "qa_value": qa,
        f"{_NO2}_tropospheric_column": _f4(trop, valid),
        f"{_NO2}_tropospheric_column_precision": _f4(trop_prec, valid),
        f"{_NO2}_tropospheric_column_precision_kernel": _f4(trop_prec_kernel, valid),
        "air_mass_factor_troposphere": _f4(amf_trop, valid),
        "air_mass_factor_total": _f4(amf_total, valid),
        "tm5_tropopause_layer_index": np.where(valid, tp_index, FILL_INT32).astype(np.int32),
        "satellite_latitude": _f4(sat_lat),
        "satellite_longitude": _f4(sat_lon),
        "satellite_altitude": _f4(_satellite_altitude_m(sat_lat)),
        "satellite_orbit_phase": _f4(phase),
        "solar_zenith_angle": _f4(sza),
        "solar_azimuth_angle": _f4(saa),
        "viewing_zenith_angle": _f4(vza),
        "viewing_azimuth_angle": _f4(vaa),
        "latitude_bounds": _f4(lat_b),
        "longitude_bounds": _f4(lon_b),
        "geolocation_flags": geo_flags,
        "processing_quality_flags": flags,
        f"{_NO2}_slant_column_density": _f4(scd, valid),
        f"{_NO2}_slant_column_density_precision": _f4(np.broadcast_to(scd_noise, scd.shape), valid),
        f"{_NO2}_stratospheric_column": _f4(strat, valid),
        f"{_NO2}_stratospheric_column_precision": _f4(strat_prec, valid),
        f"{_NO2}_total_column": _f4(total, valid),
        f"{_NO2}_total_column_precision": _f4(total_prec, valid),
        f"{_NO2}_total_column_precision_kernel": _f4(scd_noise / amf_total, valid),
        f"{_NO2}_summed_total_column": _f4(trop + strat, valid),
        f"{_NO2}_summed_total_column_precision": _f4(np.hypot(trop_prec, strat_prec), valid),
        "air_mass_factor_stratosphere": _f4(amf_strat, valid),
        "air_mass_factor_clear": _f4(amf_clear, valid),
        "air_mass_factor_cloudy": _f4(amf_cloudy, valid),
        "cloud_fraction_crb_nitrogendioxide_window": _f4(cf, day),
        "cloud_radiance_fraction_nitrogendioxide_window": _f4(crf, day),
        "chi_square": _f4(np.full(lat.shape, 1.2), valid),
        "surface_altitude": _f4(np.zeros(lat.shape)),
        "surface_altitude_precision": _f4(np.zeros(lat.shape)),
        "surface_classification": np.zeros(lat.shape, dtype=np.uint8),
        "o22cld_cloud_fraction_crb": _f4(np.clip(1.05 * cf, 0.0, 1.0), day),
        "o22cld_cloud_fraction_crb_precision": _f4(np.full(lat.shape, 0.02), day),
        "o22cld_cloud_pressure_crb": _f4(np.minimum(p_cloud + 3000.0, p_surf), day),
        "o22cld_cloud_pressure_crb_precision": _f4(np.full(lat.shape, 5000.0), day),
        "o22cld_cloud_height_crb": _f4(7400.0 * np.log(p_surf / np.minimum(p_cloud + 3000.0, p_surf)), day),
        "o22cld_cloud_height_crb_precision": _f4(np.full(lat.shape, 500.0), day),
        "o22cld_cloud_albedo_crb": _f4(np.full(lat.shape, CLOUD_ALBEDO), day),
        "o22cld_surface_albedo": _f4(albedo + 0.005, day),
        "surface_pressure": _f4(p_surf),
        "surface_albedo_nitrogendioxide_window": _f4(albedo),
        "surface_albedo": _f4(albedo),
        "cloud_pressure_crb": _f4(p_cloud, day),
        "cloud_albedo_crb": _f4(np.full(lat.shape, CLOUD_ALBEDO), day),
        "cloud_fraction_crb": _f4(cf, day),
        "scene_albedo": _f4(cf * CLOUD_ALBEDO + (1.0 - cf) * albedo, day),
        "apparent_scene_pressure": _f4(cf * p_cloud + (1.0 - cf) * p_surf, day),
        "snow_ice_flag": np.zeros(lat.shape, dtype=np.uint8),
        "aerosol_index_354_388": _f4(ai, day),
        "aerosol_index_340_380": _f4(ai * 0.9, day),
        "eastward_wind": _f4(wind_u),
        "northward_wind": _f4(wind_v),
        "_valid": valid,
    }


def _satellite_altitude_m(lat_deg: np.ndarray) -> np.ndarray:
    """Altitude above the WGS84 ellipsoid of an orbit ``ALTITUDE_KM`` above the equatorial radius."""
    phi = np.radians(lat_deg)
    a, b = _WGS84_A_KM, _WGS84_B_KM
    r_ell = np.sqrt(((a * a * np.cos(phi)) ** 2 + (b * b * np.sin(phi)) ** 2)
                    / ((a * np.cos(phi)) ** 2 + (b * np.sin(phi)) ** 2))
    return (a + ALTITUDE_KM - r_ell) * 1000.0


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _iso(t: datetime, frac: bool = False) -> str:
    t = _to_utc(t)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if frac else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(t: datetime) -> str:
    return _to_utc(t).strftime("%Y%m%dT%H%M%S")


def _collection(processor: str) -> int:
    """Collection of a processor version: 03 from 02.03.01 (the 2022 reprocessing), 01 before."""
    return 3 if int(processor) >= 20301 else 1


def _product_name(plan: _Plan) -> str:
    geo = plan.geometry
    start = _datetime(round(geo.start_s))
    end = _datetime(round(geo.start_s + geo.period_s))
    production = end + timedelta(days=3, seconds=3600 + 37 * (geo.number % 97))
    return (f"S5P_{plan.mode}_L2__NO2____{_compact(start)}_{_compact(end)}_{geo.number:05d}_"
            f"{_collection(plan.processor):02d}_{plan.processor}_{_compact(production)}")


def _processor_dotted(processor: str) -> str:
    return f"{int(processor[0:2])}.{int(processor[2:4])}.{int(processor[4:6])}"


def _write(path: Path, plan: _Plan, complevel: int) -> None:
    import netCDF4

    geo = plan.geometry
    n_file = plan.stop - plan.first
    name = _product_name(plan)
    t_first = _datetime(plan.scan_times(plan.first))
    t_last = _datetime(plan.scan_times(plan.stop - 1))
    ref_day = datetime(t_first.year, t_first.month, t_first.day, tzinfo=UTC)
    ref_s = _seconds(ref_day)
    clouds = _CloudField(plan.seed, geo.number)
    dotted = _processor_dotted(plan.processor)
    comp = dict(zlib=True, complevel=complevel, shuffle=True)

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(_global_attrs(plan, name, t_first, t_last, ref_day))
        prod = ds.createGroup("PRODUCT")
        dims = {"scanline": n_file, "ground_pixel": N_GROUND_PIXELS, "corner": 4, "time": 1,
                "polynomial_exponents": 6, "intensity_offset_polynomial_exponents": 1, "layer": N_LAYERS,
                "vertices": 2}
        for dim, size in dims.items():
            prod.createDimension(dim, size)
        coord_values = {"scanline": np.arange(plan.first, plan.stop), "ground_pixel": np.arange(N_GROUND_PIXELS),
                        "time": np.array([round(ref_s)]), "corner": np.arange(4),
                        "polynomial_exponents": np.arange(6), "intensity_offset_polynomial_exponents": np.arange(1),
                        "layer": np.arange(N_LAYERS), "vertices": np.arange(2)}
        for dim, attrs in _COORD_VARS.items():
            var = prod.createVariable(dim, "i4", (dim,), fill_value=FILL_INT32, **comp)
            var.setncatts(attrs)
            var[:] = coord_values[dim].astype(np.int32)
        support = prod.createGroup("SUPPORT_DATA")
        for sub in ("GEOLOCATIONS", "DETAILED_RESULTS", "INPUT_DATA"):
            support.createGroup(sub)
        support["DETAILED_RESULTS"].createGroup("O22CLD")
        meta = ds.createGroup("METADATA")
        for sub in ("QA_STATISTICS", "ALGORITHM_SETTINGS", "GRANULE_DESCRIPTION", "ISO_METADATA",
                    "EOP_METADATA", "ESA_METADATA"):
            meta.createGroup(sub)
        meta["GRANULE_DESCRIPTION"].setncatts({
            "GranuleStart": _iso(t_first), "GranuleEnd": _iso(t_last), "InstrumentName": "TROPOMI",
            "MissionName": "Sentinel-5 precursor", "MissionShortName": "S5P", "ProcessLevel": "2",
            "ProcessingCenter": "PDGS-OP", "ProcessingNode": "rsmon-sim", "ProcessorVersion": dotted,
            "ProductFormatVersion": np.int32(10100), "ProcessingMode": _MODES[plan.mode],
            "LongitudeOfDaysideNadirEquatorCrossing": np.float32(geo.anx_lon_deg),
            "ProductShortName": "L2__NO2___",
        })
        meta["ALGORITHM_SETTINGS"].setncatts({"simulator": "rsmon.sim.s5p", "seed": np.int32(plan.seed)})

        variables = {}
        for vname, (group, dtype, vdims, attrs) in _VARIABLES.items():
            grp = ds[group]
            if dtype == "str":
                var = grp.createVariable(vname, str, vdims, fill_value="")
            else:
                chunks = _chunks(vdims, n_file)
                digits = _SIGNIFICANT_DIGITS.get(vname) if dtype == "f4" else None
                extra = {} if digits is None else {"significant_digits": digits}
                var = grp.createVariable(vname, dtype, vdims, fill_value=_FILLS[dtype], chunksizes=chunks, **comp,
                                         **extra)
                # we write whole chunks once: a one-chunk cache keeps ~70 variables from holding ~1 GB
                var.set_var_chunk_cache(size=int(np.prod(chunks)) * np.dtype(dtype).itemsize + 1024, nelems=7)
            var.set_auto_maskandscale(False)  # we write stored values (qa_value is packed uint8)
            var.setncatts(attrs)
            variables[vname] = var
        variables["tm5_constant_a"][:] = np.stack([_TM5_A[:-1], _TM5_A[1:]], axis=-1).astype(np.float32)
        variables["tm5_constant_b"][:] = np.stack([_TM5_B[:-1], _TM5_B[1:]], axis=-1).astype(np.float32)

        lat_rng = [np.inf, -np.inf]
        lon_rng = [np.inf, -np.inf]
        ak_var = variables["averaging_kernel"]
        for r0 in range(0, n_file, _BLOCK):
            r1 = min(n_file, r0 + _BLOCK)
            fields = _block(plan, clouds, plan.first + r0, plan.first + r1)
            t_ms = fields.pop("_t_ms")
            valid = fields.pop("_valid")
            delta_ms = t_ms - int(round(ref_s * 1000.0))
            variables["delta_time"][0, r0:r1] = delta_ms.astype(np.int32)
            stamps = np.array([_iso(ref_day + timedelta(milliseconds=int(ms)), frac=True) for ms in delta_ms],
                              dtype=object)
            variables["time_utc"][0, r0:r1] = stamps
            for vname, arr in fields.items():
                var = variables[vname]
                if var.dimensions == _DS:
                    var[0, r0:r1] = arr
                else:
                    var[0, r0:r1, ...] = arr
            ak = np.where(valid[..., None], _AK_PROFILE[None, None, :], FILL_FLOAT).astype(np.float32)
            ak_var[0, r0:r1, :, :] = ak
            lat_b, lon_b = fields["latitude_bounds"], fields["longitude_bounds"]
            lat_rng = [min(lat_rng[0], float(lat_b.min())), max(lat_rng[1], float(lat_b.max()))]
            lon_rng = [min(lon_rng[0], float(lon_b.min())), max(lon_rng[1], float(lon_b.max()))]
        ds.setncatts({"geospatial_lat_min": np.float32(lat_rng[0]), "geospatial_lat_max": np.float32(lat_rng[1]),
                      "geospatial_lon_min": np.float32(lon_rng[0]), "geospatial_lon_max": np.float32(lon_rng[1])})


def _chunks(dims: tuple[str, ...], n_file: int) -> list[int]:
    along = {_D2: _BLOCK, _DS: _BLOCK, _DC: 256, _DL: 64}.get(dims)
    if along is None:
        return [2 if d == "vertices" else N_LAYERS for d in dims]
    size = {"time": 1, "scanline": min(n_file, along), "ground_pixel": N_GROUND_PIXELS, "corner": 4,
            "layer": N_LAYERS}
    return [size[d] for d in dims]


def _global_attrs(plan: _Plan, name: str, t_first: datetime, t_last: datetime, ref_day: datetime) -> dict:
    geo = plan.geometry
    dotted = _processor_dotted(plan.processor)
    created = _datetime(round(geo.start_s + geo.period_s)) + timedelta(days=3)
    res_s = plan.scanline_ms / 1000.0
    duration = (plan.stop - plan.first - 1) * res_s
    subset = (plan.first, plan.stop) != (0, plan.n_scanlines)
    history = f"{_iso(created)} rsmon.sim.s5p (simulated TROPOMI L2 NO2; seed {plan.seed})"
    if subset:
        history += f"; scanline subset [{plan.first}, {plan.stop}) of {plan.n_scanlines}"
    return {
        "Conventions": "CF-1.7",
        "institution": "KNMI",
        "source": "Sentinel 5 precursor, TROPOMI, space-borne remote sensing, L2",
        "summary": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km (SIMULATED by rsmon.sim.s5p)",
        "tracking_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rsmon-sim/{name}/{plan.seed}")),
        "id": name,
        "time_reference": _iso(ref_day),
        "time_reference_days_since_1950": np.int32((ref_day - datetime(1950, 1, 1, tzinfo=UTC)).days),
        "time_reference_julian_day": np.float64(2440587.5 + ref_day.timestamp() / 86400.0),
        "time_reference_seconds_since_1970": np.int64(ref_day.timestamp()),
        "time_coverage_start": _iso(t_first),
        "time_coverage_end": _iso(t_last),
        "time_coverage_duration": f"PT{duration:.3f}S",
        "time_coverage_resolution": f"PT{res_s:.3f}S",
        "orbit": np.int32(geo.number),
        "references": "http://www.tropomi.eu/data-products/nitrogen-dioxide",
        "processor_version": dotted,
        "keywords_vocabulary": "AGU index terms, http://publications.agu.org/author-resource-center/index-terms/",
        "keywords": "0345 Pollution, Urban and Regional; 0365 Troposphere, Composition and Chemistry; "
                    "0368 Troposphere, Constituent Transport and Chemistry; 3360 Remote Sensing; "
                    "3363 Stratospheric Dynamics",
        "standard_name_vocabulary": "NetCDF Climate and Forecast Metadata Conventions Standard Name Table "
                                    "(v29, 08 July 2015), http://cfconventions.org/standard-names.html",
        "naming_authority": "nl.knmi",
        "cdm_data_type": "Swath",
        "date_created": _iso(created),
        "creator_name": "rsmon.sim.s5p (simulated data in the layout of the KNMI TROPOMI L2 NO2 product)",
        "creator_url": "http://www.tropomi.eu",
        "creator_email": "EOSupport@Copernicus.esa.int",
        "project": "Sentinel 5 precursor/TROPOMI",
        "license": "No conditions apply",
        "platform": "S5P",
        "sensor": "TROPOMI",
        "spatial_resolution": "5.5x3.5km2",
        "cpp_compiler_version": "n/a (rsmon.sim.s5p, Python)",
        "cpp_compiler_flags": "",
        "f90_compiler_version": "n/a (rsmon.sim.s5p, Python)",
        "f90_compiler_flags": "",
        "build_date": _iso(created),
        "revision_control_identifier": "",
        "geolocation_grid_from_band": np.int32(4),
        "identifier_product_doi": "10.5270/S5P-9bnp8q8",
        "identifier_product_doi_authority": "http://dx.doi.org/",
        "algorithm_version": dotted,
        "title": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km",
        "product_version": "3.0.0",
        "Status_MET_2D": "Nominal",
        "Status_NISE__": "Nominal",
        "Status_CTMFCT": "Nominal",
        "history": history,
        "processing_status": f"{plan.mode}-processing nominal product (simulated)",
        "date_modified": _iso(created),
    }


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _check_processor(processor: str) -> str:
    if not (isinstance(processor, str) and len(processor) == 6 and processor.isdigit()):
        raise InputError(f"processor: expected six digits like '020400', got {processor!r}")
    return processor


def simulate_orbit(out_dir, orbit: int, *, seed: int = 0, start: datetime | None = None,
                   scanline_range: tuple[int, int] | None = None, n_scanlines: int = N_SCANLINES,
                   sources: list[EmissionSource] | None = None, mode: str = "OFFL",
                   processor: str = "020400", complevel: int = 2) -> Path:
    """Write one orbit (or the scanline slice [a, b) of it, like a GES DISC subset, when scanline_range is given).

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    orbit : int
        Absolute orbit number; fixes the start time (:func:`orbit_start_time`) unless ``start`` is given.
    seed : int
        Seed of all random parts (noise, clouds, failures); same seed, same values.
    start : datetime, optional
        Orbit start (UTC; naive means UTC), overriding the time derived from ``orbit``.
    scanline_range : (int, int), optional
        Keep absolute scanlines ``a <= k < b`` only. The ``scanline`` coordinate keeps the orbit's
        indices, and the values equal those of the same scanlines in the whole orbit.
    n_scanlines : int
        Scanlines spanning the day-side part of the orbit: 4172 gives the real 0.840 s (5.5 km)
        sampling; fewer give proportionally longer scanlines (coarse pixels), for fast tests.
    sources : list of EmissionSource, optional
        Hot spots of the truth field (default :data:`DEFAULT_SOURCES`).
    mode : {"OFFL", "NRTI", "RPRO"}
        Processing mode in the file name and ``ProcessingMode``.
    processor : str
        Six-digit processor version in the file name, e.g. "020400".
    complevel : int
        zlib level (1-9) of every variable (shuffle on).

    Returns
    -------
    pathlib.Path
        The file written, named like the real products.

    Raises
    ------
    InputError
        Bad orbit, range, mode, processor or scanline count.
    OutputError
        The folder cannot be created or written.
    """
    if mode not in _MODES:
        raise InputError(f"mode: expected one of {sorted(_MODES)}, got {mode!r}")
    _check_processor(processor)
    if not isinstance(n_scanlines, (int, np.integer)) or n_scanlines < 2:
        raise InputError(f"n_scanlines: expected an integer >= 2, got {n_scanlines!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    if not 1 <= complevel <= 9:
        raise InputError(f"complevel: expected 1..9, got {complevel}")
    first, stop = (0, n_scanlines) if scanline_range is None else (int(scanline_range[0]), int(scanline_range[1]))
    if not 0 <= first < stop <= n_scanlines:
        raise InputError(f"scanline_range: expected 0 <= a < b <= {n_scanlines}, got {scanline_range!r}")
    start_dt = orbit_start_time(orbit) if start is None else _to_utc(start)
    period = _orbit_period_s(orbit) if start is None else NODAL_PERIOD_S
    geo = _OrbitGeometry(number=int(orbit), start_s=_seconds(start_dt), period_s=period)
    plan = _Plan(geometry=geo, n_scanlines=int(n_scanlines), first=first, stop=stop, seed=int(seed),
                 sources=tuple(DEFAULT_SOURCES if sources is None else sources), mode=mode, processor=processor)
    folder = check_output_dir(out_dir)
    path = folder / f"{_product_name(plan)}.nc"
    log.info("writing %s (scanlines %d..%d of %d)", path.name, first, stop, n_scanlines)
    with atomic_output(path) as tmp:
        _write(tmp, plan, complevel)
    return path


def _check_bbox(bbox) -> tuple[float, float, float, float]:
    """(W, S, E, N) in degrees; a bbox across the antimeridian is written with E > 180 (like rsmon.grid)."""
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"bbox: expected (W, S, E, N) numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError(f"bbox: values must be finite, got {bbox!r}")
    if not (-90.0 <= south < north <= 90.0):
        raise InputError(f"bbox: need -90 <= S < N <= 90, got S={south}, N={north}")
    if not (-180.0 <= west < east <= west + 360.0):
        raise InputError(f"bbox: need -180 <= W < E <= W + 360 (write an antimeridian-crossing bbox with "
                         f"E > 180), got W={west}, E={east}")
    return west, south, east, north


def scanlines_crossing(orbit: int, bbox, *, margin_deg: float = 0.3) -> tuple[int, int] | None:
    """Scanline range [a, b) of a 4172-scanline orbit whose swath crosses ``bbox`` (W, S, E, N), or None.

    Every third pixel of every scanline is tested against the bbox grown by ``margin_deg``; the range
    is padded by two scanlines.
    """
    west, south, east, north = _check_bbox(bbox)
    geo = _OrbitGeometry(number=orbit, start_s=_seconds(orbit_start_time(orbit)), period_s=_orbit_period_s(orbit))
    plan = _Plan(geo, N_SCANLINES, 0, N_SCANLINES, 0, (), "OFFL", "020400")
    angles = _scan_angles()
    pts, _ = geo.ground_points(plan.scan_times(np.arange(N_SCANLINES)), np.append(angles[::3], angles[-1]))
    lon, lat = _lonlat(pts)
    in_lon = (lon - (west - margin_deg)) % 360.0 < (east - west) + 2.0 * margin_deg
    inside = in_lon & (lat > south - margin_deg) & (lat < north + margin_deg)
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size == 0:
        return None
    return max(0, int(rows[0]) - 2), min(N_SCANLINES, int(rows[-1]) + 3)


def simulate_day(out_dir, day: date, *, seed: int = 0,
                 bbox: tuple[float, float, float, float] | None = (100, 10, 132, 30),
                 full_orbits: bool = False, sources=None) -> list[Path]:
    """~14 orbits of that UTC day; when bbox is given and full_orbits is False, only the orbits that cross the bbox, each cut to the scanlines that cross it (fast for the demo); full_orbits=True writes whole 4172-scanline orbits.

    Parameters
    ----------
    out_dir : path
        Output folder.
    day : datetime.date
        UTC day; the orbits that start on it (:func:`orbits_of_day`, 14 or 15).
    seed : int
        Seed; orbit ``n`` of this day uses the same seed (its streams are keyed by orbit number too).
    bbox : (W, S, E, N), optional
        Degrees (E > 180 for a bbox across the antimeridian); ``None`` writes every orbit whole.
    full_orbits : bool
        Write every orbit of the day whole, even when ``bbox`` is given.
    sources : list of EmissionSource, optional
        Hot spots (default :data:`DEFAULT_SOURCES`).

    Returns
    -------
    list of pathlib.Path
        Files written, in orbit order (empty if no orbit crosses the bbox).
    """
    if isinstance(day, datetime):
        day = day.date()
    if not isinstance(day, date):
        raise InputError(f"day: expected a datetime.date, got {day!r}")
    if bbox is not None:
        bbox = _check_bbox(bbox)
    return _simulate_orbits(out_dir, orbits_of_day(day), seed=seed, bbox=bbox, full_orbits=full_orbits,
                            sources=sources)


def _simulate_orbits(out_dir, orbits: Iterable[int], *, seed: int, bbox, full_orbits: bool, sources=None,
                     mode: str = "OFFL", processor: str = "020400") -> list[Path]:
    paths = []
    for orbit in orbits:
        scan_range = None
        if bbox is not None and not full_orbits:
            scan_range = scanlines_crossing(orbit, bbox)
            if scan_range is None:
                log.info("orbit %d does not cross %s: skipped", orbit, bbox)
                continue
        paths.append(simulate_orbit(out_dir, orbit, seed=seed, scanline_range=scan_range, sources=sources,
                                    mode=mode, processor=processor))
    return paths


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit(2); rsmon reports InputError
        raise InputError(f"sim s5p: {message}")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _parse_bbox(text: str):
    if text.strip().lower() in ("none", "all", "global"):
        return None
    try:
        values = [float(p) for p in text.split(",")]
        if len(values) != 4:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four numbers W,S,E,N, got {text!r}") from None
    try:
        return _check_bbox(values)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Iterable[str] | None = None) -> int:
    """``rsmon sim s5p --date YYYY-MM-DD [--seed N] [--bbox W,S,E,N] [--full-orbits] [--orbit N] -o OUTDIR``.

    Prints the paths written, one per line. Raises :class:`~rsmon.errors.InputError` for bad arguments.
    """
    parser = _Parser(prog="rsmon sim s5p",
                     description="Write simulated Sentinel-5P TROPOMI L2 NO2 files in the real layout.")
    parser.add_argument("--date", type=_parse_date, help="UTC day (YYYY-MM-DD): its ~14 orbits")
    parser.add_argument("--orbit", type=int, help="one absolute orbit instead of a day")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--bbox", type=_parse_bbox, default="100,10,132,30",
                        help="W,S,E,N: keep orbits crossing it, cut to it (default 100,10,132,30; 'none': whole orbits)")
    parser.add_argument("--full-orbits", action="store_true", help="write whole 4172-scanline orbits")
    parser.add_argument("--mode", default="OFFL", choices=sorted(_MODES))
    parser.add_argument("--processor", default="020400", help="six-digit processor version (default 020400)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    _check_processor(args.processor)
    if args.orbit is not None:
        if args.date is not None and args.orbit not in orbits_of_day(args.date):
            raise InputError(f"--orbit {args.orbit} does not start on {args.date} "
                             f"(orbits of that day: {orbits_of_day(args.date)})")
        orbits = [args.orbit]
    elif args.date is not None:
        orbits = orbits_of_day(args.date)
    else:
        raise InputError("sim s5p: give --date YYYY-MM-DD or --orbit N")
    paths = _simulate_orbits(args.out, orbits, seed=args.seed, bbox=args.bbox, full_orbits=args.full_orbits,
                             mode=args.mode, processor=args.processor)
    if not paths:
        print(f"no orbit crosses bbox {args.bbox}; nothing written", file=sys.stderr)
    for p in paths:
        print(p)
    return 0
