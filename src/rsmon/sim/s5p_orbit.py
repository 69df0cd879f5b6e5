"""Orbital geometry of the Sentinel-5P simulator (:mod:`rsmon.sim.s5p`).

Orbit timing (absolute orbit numbers and start times tied to real file names), the circular
sun-synchronous orbit and its ground track, the TROPOMI scan geometry (scan angles, smile, line of
sight onto a spherical Earth), the sub-solar point and the zenith/azimuth angles, the scanline
sampling of one file (:class:`_Plan`) and :func:`scanlines_crossing`. The model and how it was fitted
to the real files are described in :mod:`rsmon.sim.s5p`.

References
----------
* Veefkind et al. (2012), TROPOMI on the ESA Sentinel-5 Precursor, Remote Sens. Environ. 120, 70-83:
  824 km, 13:30 ascending node, 108 deg field of view, 2600 km swath.
* sentinel-hub/sentinelhub-js ``DatasetsInfo.md``: Sentinel-5P orbital cycle 16 days, 227 orbits.
* U.S. Naval Observatory, "Approximate Solar Coordinates" and "Computing Greenwich Apparent Sidereal
  Time" (:func:`_subsolar`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from rsmon.grid import parse_bbox
from rsmon.errors import InputError

if TYPE_CHECKING:  # only for the annotation of _Plan.sources (rsmon.sim.s5p imports this module)
    from rsmon.sim.s5p import EmissionSource

__all__ = [
    "orbit_at",
    "orbit_start_time",
    "orbits_of_day",
    "scanlines_crossing",
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


def _satellite_altitude_m(lat_deg: np.ndarray) -> np.ndarray:
    """Altitude above the WGS84 ellipsoid of an orbit ``ALTITUDE_KM`` above the equatorial radius."""
    phi = np.radians(lat_deg)
    a, b = _WGS84_A_KM, _WGS84_B_KM
    r_ell = np.sqrt(((a * a * np.cos(phi)) ** 2 + (b * b * np.sin(phi)) ** 2)
                    / ((a * np.cos(phi)) ** 2 + (b * np.sin(phi)) ** 2))
    return (a + ALTITUDE_KM - r_ell) * 1000.0


# --------------------------------------------------------------------------------------------------
# Scanline sampling of one file
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


# --------------------------------------------------------------------------------------------------
# Scanlines over a bbox
# --------------------------------------------------------------------------------------------------


def _check_bbox(bbox) -> tuple[float, float, float, float]:
    """(W, S, E, N) in degrees, checked by :func:`rsmon.grid.parse_bbox`; W must also be >= -180 (a bbox
    across the antimeridian is written with E > 180, like rsmon.grid)."""
    west, south, east, north = parse_bbox(bbox)
    if west < -180.0:
        raise InputError(f"bbox: need W >= -180 (write an antimeridian-crossing bbox with E > 180), got W={west}")
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
